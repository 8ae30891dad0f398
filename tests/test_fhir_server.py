"""The published transactions posted to a strict FHIR R4 server: Medplum's FHIR router and
validator over an in-memory store (tests/fhir_server, installed from npm on first use), which
checks every resource against the base R4 StructureDefinitions (cardinality, types, invariants)
and its required terminology bindings, and the Bundle itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from coding_core.engine import code_encounter
from connectors.cli import collect
from mapping.chargeitem_out import revision_bundle, to_charge_items
from mapping.chargemaster import definitions_bundle
from mapping.reference_data import formulary_for, load_formulary, load_profile

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "fhir_server"
SAMPLE_FILES = [str(p) for p in sorted((ROOT / "samples").glob("*")) if p.suffix in (".json", ".ndjson", ".hl7")]


class FhirServer:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}/fhir/R4"

    def send(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}/{path}", data=data, method=method,
                                         headers={"content-type": "application/fhir+json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)


@pytest.fixture(scope="module")
def server() -> Iterator[FhirServer]:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js is not installed: the strict FHIR server of tests/fhir_server cannot run")
    if not (SERVER / "node_modules" / "@medplum" / "fhir-router").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SERVER, check=True, timeout=600)
    proc = subprocess.Popen(["node", "--experimental-websocket", "server.js"], cwd=SERVER, env={"PORT": "0", "PATH": _path()},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "listening <port>" once the definitions are loaded
        if not line.startswith("listening "):
            raise RuntimeError(f"the FHIR server did not start: {line}{proc.stderr.read()[-2000:]}")
        yield FhirServer(int(line.split()[1]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _path() -> str:
    import os

    return os.environ.get("PATH", "/usr/bin:/bin")


def _coded(profile_path: Path | None, base_url: str | None) -> dict[str, tuple[list[dict], str | None]]:
    profile = load_profile(profile_path) if profile_path else load_profile()
    if base_url:
        profile = profile.model_copy(update={"fhir_base_url": base_url})
    formulary = formulary_for(profile, load_formulary())
    out = {}
    for enc, (info, events) in collect(SAMPLE_FILES, ZoneInfo(profile.timezone)).by_encounter().items():
        out[enc] = (to_charge_items(code_encounter(info, events, formulary, profile), info, profile, events), profile.fhir_base_url)
    return out


def _accepted(status: int, body: dict) -> list[str]:
    assert status == 200, json.dumps(body)[:3000]
    assert body["resourceType"] == "Bundle" and body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert all(s.startswith(("200", "201")) for s in statuses), statuses
    return statuses


def test_the_server_refuses_what_a_strict_server_refuses(server):
    """The control: without it, a server accepting anything would pass every test below."""
    (items, _), *_ = _coded(None, None).values()
    good = revision_bundle("enc", 1, items[:1])
    bad_code = json.loads(json.dumps(good))
    bad_code["entry"][0]["resource"]["status"] = "posted"
    unknown = json.loads(json.dumps(good))
    unknown["entry"][0]["resource"]["price"] = 12
    no_request = json.loads(json.dumps(good))
    del no_request["entry"][0]["request"]
    for doc in (bad_code, unknown, no_request):
        status, body = server.send("POST", "", doc)
        assert 400 <= status < 500 and body["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("profile", [None, ROOT / "samples" / "profile-billing.yaml"], ids=["default", "billing-profile"])
def test_every_samples_revision_is_accepted_and_a_correction_withdraws_lines(server, profile):
    for enc, (items, _) in _coded(profile, server.base if profile else None).items():
        first = revision_bundle(enc, 1, items, base_url=server.base if profile else None)
        _accepted(*server.send("POST", "", first))
        _accepted(*server.send("POST", "", first))  # delivered twice: the same state
        for item in items:
            status, stored = server.send("GET", f"ChargeItem/{item['id']}")
            assert status == 200 and stored["code"] == item["code"] and stored["status"] == item["status"]
        if len(items) > 1:
            second = revision_bundle(enc, 2, items[1:], previous={i["id"]: i for i in items},
                                     base_url=server.base if profile else None)
            _accepted(*server.send("POST", "", second))
            status, withdrawn = server.send("GET", f"ChargeItem/{items[0]['id']}")
            assert status == 200 and withdrawn["status"] == "entered-in-error"


def test_the_chargemaster_definitions_are_accepted_and_found_by_their_canonical(server):
    profile = load_profile(ROOT / "samples" / "profile-billing.yaml")
    profile = profile.model_copy(update={"fhir_base_url": server.base})
    doc = definitions_bundle(profile)
    _accepted(*server.send("POST", "", doc))
    canonical_url = doc["entry"][0]["resource"]["url"]
    status, found = server.send("GET", f"ChargeItemDefinition?url={canonical_url}&version={profile.chargemaster.version}")
    assert status == 200 and [e["resource"]["id"] for e in found.get("entry", [])] == [doc["entry"][0]["resource"]["id"]]
