"""References inside a Bundle: Medications by fullUrl (urn:uuid included) and by Medication/id,
Encounters of transaction Bundles that have only a urn:uuid, and errors that name the form of
a reference that resolves to nothing."""

from __future__ import annotations

import copy
import io
import json
from zoneinfo import ZoneInfo

import pytest

from connectors.cli import main
from connectors.routing import route_fhir
from coding_core.formulary import NDC_SYSTEM, RXNORM_SYSTEM
from tests.test_fhir_in import r4, r5

TZ = ZoneInfo("America/New_York")
ENC_UUID = "0c3e1a52-6f1d-4b7e-9d0a-2f6f3e0b8a11"
MED_UUID = "7a9d2c40-1b3e-4f55-8c6d-9e0f1a2b3c4d"
PAT_UUID = "5b1c9e7d-2a4f-4e3b-b6d8-0f1e2d3c4b5a"


def _ma(**over) -> dict:
    res = r4(medicationReference={"reference": f"urn:uuid:{MED_UUID}"}, context={"reference": f"urn:uuid:{ENC_UUID}"},
             subject={"reference": f"urn:uuid:{PAT_UUID}"}, **over)
    del res["medicationCodeableConcept"]
    return res


def _medication(**over) -> dict:
    return {"resourceType": "Medication", "meta": {"lastUpdated": "2026-03-01T00:00:00Z"},
            "code": {"coding": [{"system": RXNORM_SYSTEM, "code": "121191", "display": "rituximab"}]}, **over}


def transaction(ma: dict | None = None, medication: dict | None = None, **extra_entries: dict) -> dict:
    """As generators and EHR exports write them: new resources without ids, urn:uuid fullUrls."""
    entries = [
        {"fullUrl": f"urn:uuid:{PAT_UUID}", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": f"urn:uuid:{ENC_UUID}", "resource": {"resourceType": "Encounter", "status": "finished",
                                                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                                                        "period": {"start": "2026-03-02T08:00:00-05:00", "end": "2026-03-02T16:00:00-05:00"}},
         "request": {"method": "POST", "url": "Encounter"}},
        {"fullUrl": f"urn:uuid:{MED_UUID}", "resource": medication or _medication(), "request": {"method": "POST", "url": "Medication"}},
        {"fullUrl": "urn:uuid:11111111-2222-4333-8444-555555555555", "resource": ma or _ma(id=None) | {}, "request": {"method": "POST", "url": "MedicationAdministration"}},
    ]
    for url, resource in extra_entries.items():
        entries.append({"fullUrl": url, "resource": resource})
    for e in entries:  # resources without ids, as POSTed
        e["resource"] = {k: v for k, v in e["resource"].items() if v is not None}
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _routed(bundle: dict):
    return route_fhir(json.dumps(bundle).encode(), TZ)


def test_a_transaction_bundle_with_urn_uuid_references_is_charged():
    bundle = transaction()
    before = copy.deepcopy(bundle)
    routed = _routed(bundle)
    assert routed.errors == []
    (enc,) = [r for r in routed.records if r.kind == "encounter"]
    (adm,) = [r for r in routed.records if r.kind == "administration"]
    event = adm.administration
    assert enc.encounter.id == event.encounter_id == ENC_UUID  # the Encounter's id is its urn:uuid
    assert event.id == "11111111-2222-4333-8444-555555555555" and event.patient_id == PAT_UUID
    assert [(c.system, c.code) for c in event.drug_codings] == [(RXNORM_SYSTEM, "121191")]  # the Bundle's Medication
    assert routed.ignored == 2  # the Patient and the Medication: read, not mapped as records
    assert bundle == before  # the input is not changed


def test_the_code_command_codes_a_transaction_bundle(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(transaction()))
    out, err = io.StringIO(), io.StringIO()
    assert main(["code", str(path)], out, err) == 0, err.getvalue()
    codes = {i["resource"]["code"]["coding"][0]["code"] for i in json.loads(out.getvalue())["entry"]}
    assert {"96413", "J9312"} <= codes  # rituximab: chemotherapy infusion, not an unknown drug


@pytest.mark.parametrize("full_url, reference", [
    ("http://ehr.example.org/fhir/Medication/m-1", "Medication/m-1"),  # relative against an absolute fullUrl
    ("http://ehr.example.org/fhir/Medication/m-1", "http://ehr.example.org/fhir/Medication/m-1"),
    (None, "Medication/m-1"),  # by type and id
    ("urn:uuid:" + MED_UUID, "urn:uuid:" + MED_UUID),
])
def test_a_medication_elsewhere_in_the_bundle_is_read(full_url, reference):
    ma = r4(medicationReference={"reference": reference})
    del ma["medicationCodeableConcept"]
    entry = {"resource": _medication(id="m-1")} | ({"fullUrl": full_url} if full_url else {})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": ma}, entry]}
    (record,) = _routed(bundle).records
    assert [c.code for c in record.administration.drug_codings] == ["121191"]


def test_an_r5_medication_reference_and_an_ingredient_only_medication_are_read():
    kcl = {"resourceType": "Medication", "id": "kcl",
           "ingredient": [{"item": {"concept": {"coding": [{"system": RXNORM_SYSTEM, "code": "8591", "display": "potassium chloride"}]}}}]}
    ma = r5(medication={"reference": {"reference": "Medication/kcl"}})
    (record,) = _routed({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": ma}, {"resource": kcl}]}).records
    assert [c.code for c in record.administration.drug_codings] == ["8591"]


def test_a_medication_that_the_administration_already_contains_keeps_its_id():
    ma = r4(contained=[{"resourceType": "Medication", "id": "bundle-medication-0",
                        "code": {"coding": [{"system": NDC_SYSTEM, "code": "0338-0049-04"}]}}],
            medicationReference={"reference": "Medication/m-1"})
    del ma["medicationCodeableConcept"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": ma}, {"resource": _medication(id="m-1")}]}
    (record,) = _routed(bundle).records
    assert [c.code for c in record.administration.drug_codings] == ["121191"]  # the referenced one, not the other contained


@pytest.mark.parametrize("reference, form", [
    ("urn:uuid:" + "9" * 8 + "-1111-4111-8111-" + "1" * 12, "a urn:uuid reference"),
    ("Medication/nowhere", "a relative reference Medication/id"),
    ("https://ehr.example.org/fhir/Medication/nowhere", "an absolute URL"),
    ("#nothing", "a contained reference #id"),
])
def test_a_medication_reference_that_resolves_to_nothing_names_its_form(reference, form, tmp_path):
    """Offline (``code``): there is no reference table, so it is an error."""
    ma = r4(medicationReference={"reference": reference})
    del ma["medicationCodeableConcept"]
    path = tmp_path / "feed.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": ma}]}))
    err = io.StringIO()
    assert main(["code", str(path)], io.StringIO(), err) == 1
    assert f"medicationReference is {form} that resolves to no Medication" in err.getvalue()
    assert "nowhere" not in err.getvalue() and "99999999" not in err.getvalue()


@pytest.mark.parametrize("reference", ["Medication/m-9", "https://ehr.example.org/fhir/Medication/m-9"])
def test_the_worker_leaves_a_medication_named_by_id_to_the_reference_table(reference):
    ma = r4(medicationReference={"reference": reference, "display": "Rituxan"})
    del ma["medicationCodeableConcept"]
    (record,) = _routed({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": ma}]}).records
    event = record.administration
    assert (event.medication_ref, event.drug_codings, event.drug_text) == ("m-9", (), "Rituxan")
    urn = r4(medicationReference={"reference": "urn:uuid:" + MED_UUID})  # a urn names no Medication by id: still an error
    del urn["medicationCodeableConcept"]
    assert "a urn:uuid reference that resolves to no Medication" in str(_routed(urn).errors[0])


def test_an_encounter_reference_that_resolves_to_nothing_names_its_form():
    ma = r4(context={"reference": "urn:uuid:" + ENC_UUID})
    (error,) = _routed({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": ma}]}).errors
    assert "context is a urn:uuid reference to no Encounter in the message" in str(error) and ENC_UUID not in str(error)
