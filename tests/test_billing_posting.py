"""What a billing system posts from a ChargeItem: the chargemaster code and price, the NDC with
its quantity, who gave the drug, where, on which account, references that resolve, and when the
charge was entered."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.chargeitem import ChargeItem
from pydantic import ValidationError

from coding_core.engine import code_encounter
from coding_core.formulary import NDC_SYSTEM, NdcUnit
from coding_core.model import Coding, EncounterInfo
from coding_core.profile import CdmItem, Chargemaster, Profile
from mapping.chargeitem_out import (EXT_LOCATION, EXT_NDC_QUANTITY, EXT_REVENUE, EXT_REVIEW_FLAG, billing_of, entered_date,
                                    to_charge_items)
from connectors.cli import collect
from mapping.chargemaster import ChargemasterError, definitions_bundle, read_chargemaster
from mapping.explain_out import explain
from mapping.reference_data import ReferenceDataError, formulary_for, load_formulary, load_profile
from mapping.references_out import ADMINISTRATION_SYSTEM, AUTHORITY_URN
from tests.builders import CHEMO, FORMULARY, NS, THER, adm, run

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
CDM = Chargemaster(system="https://h.example.org/cdm", version="2026-12", items=(
    CdmItem(code="96413", cdm_code="33596413", description="CHEMO IV INF 1ST HR", revenue_code="0335", unit_price=Decimal("812.00")),
    CdmItem(code="J9312", cdm_code="63609312", description="RITUXIMAB 10 MG", revenue_code="0636", unit_price=Decimal("128.30")),
    CdmItem(code="J9312", modifiers=("JW",), cdm_code="63609313", description="RITUXIMAB WASTED", revenue_code="0637"),
))
BILLING = Profile(chargemaster=CDM, fhir_base_url="https://fhir.h.example.org/r4")
ENCOUNTER = EncounterInfo(id="enc-1", patient_id="pat-1")
BUNDLED = load_formulary()


def bundled(*events, **profile):
    """Coded with the bundled formulary (its NDC package units)."""
    return code_encounter(ENCOUNTER, list(events), BUNDLED, Profile(**profile))


def _by_code(items: list[dict]) -> dict[tuple[str, tuple[str, ...]], dict]:
    out = {}
    for i in items:
        mods = tuple(e["valueCoding"]["code"] for e in i["extension"] if e["url"].endswith("chargeitem-modifier"))
        out[i["code"]["coding"][0]["code"], mods] = i
    return out


def _ext(item: dict, url: str) -> list:
    return [e for e in item["extension"] if e["url"] == url]


def _flags(item: dict) -> list[str]:
    return [e["valueCode"] for e in _ext(item, EXT_REVIEW_FLAG)]


# --- chargemaster -----------------------------------------------------------------------------


def test_each_line_carries_its_cdm_code_revenue_code_and_price_definition():
    result = run(adm(CHEMO, "09:00", "10:00", id="c", dose=(680, "mg"), wasted=(20, "mg")))
    items = _by_code(to_charge_items(result, ENCOUNTER, BILLING))
    chemo, drug, wasted = items["96413", ()], items["J9312", ()], items["J9312", ("JW",)]
    assert chemo["code"]["coding"][1] == {"system": CDM.system, "version": "2026-12", "code": "33596413",
                                          "display": "CHEMO IV INF 1ST HR"}
    assert chemo["definitionCanonical"] == ["https://fhir.h.example.org/r4/ChargeItemDefinition/cdm-33596413|2026-12"]
    assert wasted["code"]["coding"][1]["code"] == "63609313"  # the row for exactly its modifiers
    assert _ext(wasted, EXT_REVENUE)[0]["valueCoding"]["code"] == "0637"  # the row's revenue code wins
    assert "definitionCanonical" not in wasted  # an unpriced row names no definition
    assert drug["code"]["coding"][1]["code"] == "63609312"
    for item in items.values():
        ChargeItem.model_validate(item)
        assert "no-cdm-item" not in _flags(item)


def test_a_code_without_a_row_is_flagged_no_cdm_item_and_held_when_the_profile_holds():
    result = run(adm(THER, "09:00", None, id="p", method="push", dose=(4, "mg")))
    items = _by_code(to_charge_items(result, ENCOUNTER, BILLING.model_copy(update={"hold_flagged_lines": True})))
    for item in items.values():
        assert _flags(item) == ["no-cdm-item"] and item["status"] == "planned"
        assert any(n["text"].startswith("review no-cdm-item: no chargemaster row for") for n in item["note"])
        assert len(item["code"]["coding"]) == 1
    # A modifier with no row of its own falls back to the code's plain row:
    assert CDM.row("J9312", ("JZ",)).cdm_code == "63609312"


def test_the_cdm_row_is_the_one_with_the_most_of_the_lines_modifiers():
    """A 340B drug line carries TB on every line: its waste line is still the JW row."""
    assert CDM.row("J9312", ("TB", "JW")).cdm_code == "63609313"
    assert CDM.row("J9312", ("JW", "TB")).cdm_code == "63609313"
    assert CDM.row("J9312", ("TB",)).cdm_code == "63609312"
    assert CDM.row("96365", ()) is None
    result = run(adm(CHEMO, "09:00", "10:00", id="c", dose=(680, "mg"), wasted=(20, "mg")), drug_line_modifiers=("TB",))
    items = _by_code(to_charge_items(result, ENCOUNTER, BILLING))
    assert items["J9312", ("TB", "JW")]["code"]["coding"][1]["code"] == "63609313"
    assert ("J9312", ("TB", "JZ")) not in items  # waste documented and billed: JW, no JZ
    assert items["J9312", ("TB",)]["code"]["coding"][1]["code"] == "63609312"


def test_without_a_chargemaster_no_line_is_flagged_for_it():
    items = to_charge_items(run(adm(CHEMO, "09:00", "10:00", id="c", dose=(700, "mg"))), ENCOUNTER, Profile())
    assert all("no-cdm-item" not in _flags(i) for i in items)


def test_explain_shows_the_cdm_code_revenue_and_flags_as_the_chargeitems_carry_them():
    result = run(adm(CHEMO, "09:00", "10:00", id="c", dose=(700, "mg")), adm(THER, "10:05", None, id="p", method="push"))
    items = to_charge_items(result, ENCOUNTER, BILLING)
    bills = billing_of(result, ENCOUNTER, BILLING)
    assert [b.row.cdm_code if b.row else None for b in bills] == \
        [next((c["code"] for c in i["code"]["coding"][1:]), None) for i in items]
    assert [b.flags for b in bills] == [_flags(i) for i in items]
    text = explain(result, ENCOUNTER, BILLING)
    assert "cdm" in text.splitlines()[2] and "33596413" in text and "no-cdm-item" in text


def test_the_cdm_csv_is_read_and_its_errors_name_row_and_column_never_a_value():
    items = read_chargemaster("code,modifiers,cdm_code,description,revenue_code,unit_price\n"
                              "96413,,335-96413,CHEMO,0335,\"1,212.50\"\nj9312,JW JZ,6,RITUX,,\n\n", "cdm.csv")
    assert items[0].unit_price == Decimal("1212.50") and items[1].code == "J9312" and items[1].modifiers == ("JW", "JZ")
    for text, where in [
        ("code,cdm_code\n96413,1\n", "header: missing description"),
        ("code,cdm_code,description,price\n", "unknown column(s) at position 4"),
        ("96413,SECRET-1,INFUSE\n", "unknown column(s) at position 1, 2, 3"),  # no header row: never echoed
        ("code,cdm_code,description\n96413,1,CHEMO\x01\n", "row 2, column description: contains control characters"),
        ("code,modifiers,cdm_code,description\n96413,,1,X\n96415,,2,Y\n96413,,3,Z\n", "row 4: a second row for its code with the same modifiers (row 2)"),
        ("code,cdm_code,description,unit_price\n96413,1,X,SECRET-12\n", "row 2: unit_price: not a number"),
        ("code,cdm_code,description,revenue_code\n96413,1,X,26O\n", "row 2: revenue_code"),
        ("code,cdm_code,description\nINFUSE,1,X\n", "row 2: code"),
        ("code,cdm_code,description\n96413,1,X,extra\n", "row 2: more cells"),
        ("code,cdm_code,description\n", "no rows"),
        ("code,cdm_code,description,code\n96413,1,X,96415\n", "named twice"),
    ]:
        with pytest.raises(ChargemasterError) as e:
            read_chargemaster(text, "cdm.csv")
        assert where in str(e.value) and "SECRET" not in str(e.value) and "INFUSE" not in str(e.value)


@pytest.mark.parametrize("bad, says", [
    ({"chargemaster": {"system": "urn:cdm", "version": "1", "items": [
        {"code": "96413", "cdm_code": "1", "description": "X", "unit_price": "1"}]}}, "definition_base or fhir_base_url"),
    ({"fhir_base_url": "https://f.example.org", "chargemaster": {"system": "urn:cdm", "items": [
        {"code": "96413", "cdm_code": "1", "description": "X", "unit_price": "1"}]}}, "version"),
    ({"chargemaster": {"system": "urn:cdm", "items": [{"code": "96413", "cdm_code": "1", "description": "X\x7f"}]}}, "description"),
    ({"chargemaster": {"system": "urn:cdm", "items": [{"code": "96413", "cdm_code": "1", "description": "X"},
                                                      {"code": "96413", "cdm_code": "2", "description": "Y"}]}}, "a second row"),
    ({"chargemaster": {"system": "cdm", "items": []}}, "system"),
    ({"identifier_systems": {"HOSP": "not a uri"}}, "URIs"),
])
def test_inconsistent_billing_settings_are_refused(bad, says):
    with pytest.raises(ValidationError, match=says):
        Profile(**bad)


def test_the_profile_reads_its_cdm_file_beside_it(tmp_path):
    (tmp_path / "cdm.csv").write_text("code,cdm_code,description,unit_price\n96413,1,X,10.00\n")
    (tmp_path / "p.yaml").write_text("fhir_base_url: https://f.example.org\nchargemaster: {file: cdm.csv, system: 'urn:cdm', version: v1}\n")
    assert load_profile(tmp_path / "p.yaml").chargemaster.row("96413", ()).unit_price == Decimal("10.00")
    (tmp_path / "p.yaml").write_text("chargemaster: {file: cdm.csv, system: 'urn:cdm', items: [{code: '96413', cdm_code: '1', "
                                     "description: X}]}\n")
    with pytest.raises(ReferenceDataError, match="file or items, not both"):
        load_profile(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_text("chargemaster: {file: missing.csv, system: 'urn:cdm'}\n")
    with pytest.raises(ReferenceDataError, match="cannot read"):
        load_profile(tmp_path / "p.yaml")


def test_priced_rows_are_chargeitem_definitions_the_lines_name_by_canonical():
    doc = definitions_bundle(BILLING)
    Bundle.model_validate(doc)
    by_canonical = {f"{e['resource']['url']}|{e['resource']['version']}": e["resource"] for e in doc["entry"]}
    assert len(by_canonical) == 2  # the unpriced JW row is no definition
    for e in doc["entry"]:
        assert e["request"] == {"method": "PUT", "url": f"ChargeItemDefinition/{e['resource']['id']}"}
        assert e["fullUrl"].endswith("/" + e["request"]["url"])
    items = to_charge_items(run(adm(CHEMO, "09:00", "10:00", id="c", dose=(700, "mg"))), ENCOUNTER, BILLING)
    for item in items:
        (canonical,) = item["definitionCanonical"]
        definition = by_canonical[canonical]
        assert definition["code"]["coding"][0]["code"] == item["code"]["coding"][1]["code"]
        assert definition["code"]["coding"][1]["code"] == item["code"]["coding"][0]["code"]
    assert by_canonical[items[0]["definitionCanonical"][0]]["propertyGroup"][0]["priceComponent"][0]["amount"] == \
        {"value": 812.0, "currency": "USD"}


# --- NDC quantity -----------------------------------------------------------------------------


def _with_ndc(event, ndc: str):
    return event.model_copy(update={"ndc": ndc, "drug_codings": (*event.drug_codings, Coding(system=NDC_SYSTEM, code=ndc))})


def test_drug_lines_carry_the_ndc_quantity_in_the_package_unit_and_quantity_with_its_unit():
    # rituximab 10 mg/mL: 680 mg given, 20 mg discarded -> 68 mL and 2 mL; 70 + 2 billing units of 10 mg
    event = _with_ndc(adm(CHEMO, "09:00", "10:00", id="c", dose=(685, "mg"), wasted=(20, "mg")), "50242-053-06")
    items = _by_code(to_charge_items(bundled(event), ENCOUNTER))
    given, wasted = items["J9312", ()], items["J9312", ("JW",)]
    assert given["quantity"] == {"value": 69, "unit": "10 mg"}
    assert _ext(given, EXT_NDC_QUANTITY)[0]["valueQuantity"] == {
        "value": 68.5, "unit": "ML", "system": "urn:infusion-charges:ndc-unit-qualifier", "code": "ML"}
    assert _ext(wasted, EXT_NDC_QUANTITY)[0]["valueQuantity"]["value"] == 2
    assert {"system": NDC_SYSTEM, "code": "50242005306"} in given["productCodeableConcept"]["coding"]
    assert items["96413", ()]["quantity"] == {"value": 1, "unit": "service"}


def _drug_line(result, code: str, jw: bool = False) -> dict:
    (item,) = [i for i in to_charge_items(result, ENCOUNTER)
               if i["code"]["coding"][0]["code"] == code and (_ext_mods(i)[-1:] == ["JW"]) == jw]
    return item


def _ext_mods(item: dict) -> list[str]:
    return [e["valueCoding"]["code"] for e in item["extension"] if e["url"].endswith("chargeitem-modifier")]


def _ndc_q(item: dict):
    q = _ext(item, EXT_NDC_QUANTITY)
    return (q[0]["valueQuantity"]["value"], q[0]["valueQuantity"]["code"]) if q else None


def test_vials_are_counted_as_opened_and_a_jw_line_takes_the_discarded_share():
    vial = BUNDLED.by_hcpcs("J9042")  # brentuximab vedotin: 50 mg vials, counted in vials
    assert vial.ndc_unit == NdcUnit(qualifier="UN", amount=Decimal(50))
    given = _with_ndc(adm("J9042", "09:00", "09:30", id="b", dose=(180, "mg")), "51144-050-01")
    assert _ndc_q(_drug_line(bundled(given), "J9042")) == (4, "UN")  # 3.6 vials: 4 opened
    # 126 mg given, 24 mg discarded: 3 vials opened, 0.48 of them discarded
    wasted = _with_ndc(adm("J9042", "09:00", "09:30", id="b", dose=(126, "mg"), wasted=(24, "mg")), "51144-050-01")
    result = bundled(wasted)
    assert _ndc_q(_drug_line(result, "J9042")) == (2.52, "UN") and _ndc_q(_drug_line(result, "J9042", jw=True)) == (0.48, "UN")


def test_bags_billed_per_bag_count_the_bags_opened():
    bag = adm(NS, "09:00", "10:00", id="n", volume=250, rate=250)
    item = _drug_line(bundled(_with_ndc(bag, "00338-0049-04")), "J7030")
    assert item["quantity"] == {"value": 1, "unit": "1000 mL"} and _ndc_q(item) == (1000, "ML")


def test_oral_drugs_do_not_take_the_iv_package_unit():
    oral = _with_ndc(adm("J2405", "08:30", None, id="o", route="oral", dose=(8, "mg")), "68462-0157-30")
    chemo = adm(CHEMO, "09:00", "10:00", id="c", dose=(700, "mg"))  # Medicare: the oral anti-emetic with chemotherapy
    line = _drug_line(bundled(oral, chemo), "Q0162")
    assert line["quantity"]["value"] == 8 and _ndc_q(line) is None  # Q0162 per 1 mg; not 4 mL of the 2 mg/mL injection
    assert BUNDLED.for_route(BUNDLED.by_hcpcs("J2405"), "oral").ndc_unit is None


def test_a_package_per_ndc_wins_over_the_entrys_whatever_layout_the_ndc_comes_in():
    profile = Profile(formulary_overrides=({"hcpcs": "J9042", "ndc_units": {"51144-0050-01": {"qualifier": "ML", "amount": "5"}}},))
    formulary = formulary_for(profile, BUNDLED)
    assert formulary.by_hcpcs("J9042").ndc_units == {"51144005001": NdcUnit(qualifier="ML", amount=Decimal(5))}
    for sent in ("51144-050-01", "51144005001", "51144-0050-01"):
        event = _with_ndc(adm("J9042", "09:00", "09:30", id="b", dose=(180, "mg")), sent)
        result = code_encounter(ENCOUNTER, [event], formulary, profile)
        assert _ndc_q(_drug_line(result, "J9042")) == (36, "ML"), sent
    with pytest.raises(ValidationError, match="one 11-digit form"):
        Profile(formulary_overrides=({"hcpcs": "J9042", "ndc_units": {"5114405001": {"qualifier": "UN", "amount": 1}}},))


def test_a_line_of_several_ndcs_reports_the_first_without_a_quantity_and_is_flagged():
    a = _with_ndc(adm(CHEMO, "09:00", "10:00", id="a", dose=(500, "mg")), "50242-053-06")
    b = _with_ndc(adm(CHEMO, "10:00", "10:30", id="b", dose=(100, "mg")), "50242-051-21")
    item = _drug_line(bundled(a, b), "J9312")
    assert _ndc_q(item) is None and "mixed-ndc" in _flags(item) and "no-ndc-quantity" in _flags(item)
    assert {"system": NDC_SYSTEM, "code": "50242005306"} in item["productCodeableConcept"]["coding"]


def test_an_ndc_without_a_package_unit_is_flagged_and_a_required_ndc_missing_too():
    # fulvestrant has no package unit in the bundled formulary
    items = to_charge_items(bundled(_with_ndc(adm("J9395", "09:00", None, id="f", route="im", method="injection", dose=(500, "mg")),
                                          "00310-0720-10")), ENCOUNTER)
    (drug,) = [i for i in items if i["code"]["coding"][0]["code"] == "J9395"]
    assert "no-ndc-quantity" in _flags(drug) and not _ext(drug, EXT_NDC_QUANTITY)
    plain = to_charge_items(run(adm(CHEMO, "09:00", "10:00", id="c", dose=(700, "mg"))), ENCOUNTER, Profile(require_ndc=True))
    assert [_flags(i) for i in plain if i["code"]["coding"][0]["code"] == "J9312"] == [["no-ndc"]]
    assert all("no-ndc" not in _flags(i) for i in plain if i["code"]["coding"][0]["code"] != "J9312")


# --- who, where, which account, references ------------------------------------------------------


def _fhir_feed(tmp_path: Path, encounter_extra: dict, performer: dict | None) -> tuple:
    enc = {"resourceType": "Encounter", "id": "e1", "status": "finished",
           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
           "subject": {"reference": "https://ehr.example.org/fhir/Patient/p1"},
           "period": {"start": "2026-11-02T08:00:00-05:00", "end": "2026-11-02T12:00:00-05:00"}, **encounter_extra}
    ma = {"resourceType": "MedicationAdministration", "id": "m1", "status": "completed",
          "medicationCodeableConcept": {"coding": [{"system": "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "J9312"}]},
          "subject": {"reference": "https://ehr.example.org/fhir/Patient/p1"}, "context": {"reference": "Encounter/e1"},
          "effectivePeriod": {"start": "2026-11-02T09:00:00-05:00", "end": "2026-11-02T10:00:00-05:00"},
          "dosage": {"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]}, "dose": {"value": 700, "unit": "mg"}},
          **({"performer": [performer]} if performer else {})}
    path = tmp_path / "feed.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": enc}, {"resource": ma}]}))
    ((info, events),) = collect([str(path)], ZoneInfo("America/New_York")).by_encounter().values()
    return info, events


def test_fhir_lines_keep_the_literal_references_they_came_with(tmp_path):
    info, events = _fhir_feed(tmp_path, {
        "location": [{"location": {"reference": "Location/onc-2"}}], "serviceProvider": {"reference": "Organization/gh"},
        "account": [{"reference": "Account/a-77"}]}, {"actor": {"reference": "Practitioner/rn-5"}})
    profile = Profile(cost_centers={"onc-2": "4630"}, cost_center_system="https://h.example.org/cc", enterer="Device/ic")
    items = to_charge_items(code_encounter(info, events, FORMULARY, profile), info, profile, events)
    for item in items:
        ChargeItem.model_validate(item)
        assert item["subject"] == {"reference": "https://ehr.example.org/fhir/Patient/p1"}
        assert item["context"] == {"reference": "Encounter/e1"}
        assert item["service"] == [{"reference": "MedicationAdministration/m1"}]
        assert item["performer"] == [{"actor": {"reference": "Practitioner/rn-5"}}]
        assert item["performingOrganization"] == {"reference": "Organization/gh"}
        assert item["account"] == [{"reference": "Account/a-77"}]
        assert item["costCenter"] == {"type": "Organization", "identifier": {"system": "https://h.example.org/cc", "value": "4630"}}
        assert _ext(item, EXT_LOCATION)[0]["valueReference"] == {"reference": "Location/onc-2"}
        assert item["enterer"] == {"reference": "Device/ic"}
        assert item["enteredDate"] == "2026-11-02T12:00:00-05:00"  # the encounter's end, not the wall clock
        assert "no-cost-center" not in _flags(item)


def test_references_that_resolve_nowhere_are_not_kept_and_an_unmapped_location_is_flagged(tmp_path):
    info, events = _fhir_feed(tmp_path, {"location": [{"location": {"reference": "#loc"}}]},
                              {"actor": {"reference": "urn:uuid:6f1c2a7d-0000-5000-8000-000000000001"}})
    profile = Profile(cost_centers={"onc-2": "4630"})
    items = to_charge_items(code_encounter(info, events, FORMULARY, profile), info, profile, events)
    for item in items:
        assert "performer" not in item and "costCenter" not in item and not _ext(item, EXT_LOCATION)
        assert "no-cost-center" in _flags(item)
        assert item["enterer"] == {"display": "infusion-charges"}


HL7 = "\r".join([
    "MSH|^~\\&|PHARM|GENHOSP|IC|GENHOSP|20261102101500||RAS^O17|C1|P|2.5",
    "PID|||MRN5^^^GENHOSP^MR" + "|" * 15 + "ACC-9^^^GENHOSP^AN",  # PID-3, PID-18
    "PV1||O|ONC^12^1^MAIN||||||||||||||||V5^^^GENHOSP^VN",
    "ORC|RE|P1^EPIC|F1^PHARM",
    "RXA|0|1|20261102090000|20261102100000|J9312^rituximab^HCPCS|700|mg|||RN55^NURSE^ANN^^^^^^NPI",
    "RXR|IV^intravenous^HL70162",
]) + "\r"


def _hl7_items(profile: Profile) -> list[dict]:
    from mapping.collector import FeedCollector
    from mapping.hl7_in import add_hl7_text

    collector = FeedCollector()
    add_hl7_text(collector, HL7, source="t.hl7", tz=ZoneInfo(profile.timezone))
    ((info, events),) = collector.by_encounter().values()
    return to_charge_items(code_encounter(info.model_copy(update={"status": "finished"}), events, FORMULARY, profile),
                           info, profile, events)


def test_hl7_lines_name_patient_visit_account_and_nurse_by_identifier_with_the_authoritys_uri():
    profile = Profile(identifier_systems={"Patient:GENHOSP": "https://h.example.org/sid/mrn", "GENHOSP": "https://h.example.org/sid/gh",
                                          "NPI": "http://hl7.org/fhir/sid/us-npi"}, cost_centers={"ONC": "4630"})
    items = _hl7_items(profile)
    assert items
    for item in items:
        ChargeItem.model_validate(item)
        assert item["subject"] == {"type": "Patient", "identifier": {"system": "https://h.example.org/sid/mrn", "value": "MRN5"}}
        assert item["context"] == {"type": "Encounter", "identifier": {"system": "https://h.example.org/sid/gh", "value": "V5"}}
        assert item["account"] == [{"type": "Account", "identifier": {"system": "https://h.example.org/sid/gh", "value": "ACC-9"}}]
        assert item["performer"] == [{"actor": {"type": "Practitioner", "identifier": {"system": "http://hl7.org/fhir/sid/us-npi",
                                                                                         "value": "RN55"}}}]
        # The administration id is this product's (ORC-3, RXA-1, RXA-2): no authority of the feed assigned it.
        assert item["service"] == [{"type": "MedicationAdministration",
                                    "identifier": {"system": ADMINISTRATION_SYSTEM, "value": "F1-0-1"}}]
        assert _ext(item, EXT_LOCATION)[0]["valueReference"] == {"type": "Location", "identifier": {
            "system": AUTHORITY_URN + "MAIN", "value": "ONC"}}
        assert item["costCenter"]["identifier"]["value"] == "4630"
        assert not any("reference" in ref for ref in (item["subject"], item["context"], *item["service"]))
    star = _hl7_items(Profile(identifier_systems={"*": "https://h.example.org/sid/any"}))
    assert star[0]["subject"]["identifier"]["system"] == "https://h.example.org/sid/any"
    plain = _hl7_items(Profile())
    assert plain[0]["subject"]["identifier"]["system"] == AUTHORITY_URN + "GENHOSP"


@pytest.mark.parametrize("field, old, new", [
    ("RXA-10", "RN55^", "RN\x7f55^"), ("RXA-10.9", "^^^^^^NPI", "^^^^^^N\x7fPI"),
    ("PID-18", "ACC-9^", "AC\x7fC-9^"), ("PID-18.4", "^GENHOSP^AN", "^GEN\x7fHOSP^AN"),
    ("PID-3.4", "^^^GENHOSP^MR", "^^^GEN\x7fHOSP^MR"), ("PV1-3", "ONC^12", "O\x7fNC^12"),
    ("PV1-3.4", "^MAIN|", "^MA\x7fIN|"), ("PV1-19.4", "^^^GENHOSP^VN", "^^^GENH\x7fOSP^VN"),
])
def test_hl7_identifiers_with_control_characters_are_refused_naming_the_field(field, old, new):
    from mapping.errors import MappingError
    from mapping.hl7_in import map_message

    assert HL7.count(old) == 1
    with pytest.raises(MappingError) as e:
        map_message(HL7.rstrip("\r").replace(old, new), ZoneInfo("America/New_York"))
    message = str(e.value)
    assert f"{field}" in message and "control characters" in message
    assert not any(v in message for v in ("RN55", "ACC-9", "GENHOSP", "ONC", "MAIN", "NPI"))


def test_the_medical_record_number_is_the_patient_not_the_first_pid_3_repetition():
    """PID-3 often leads with an SSN or a driver's licence: the charges name the MR repetition."""
    ssn_first = HL7.replace("PID|||MRN5^^^GENHOSP^MR", "PID|||123-45-6789^^^SSA^SS~MRN5^^^GENHOSP^MR")
    from mapping.collector import FeedCollector
    from mapping.hl7_in import add_hl7_text

    collector = FeedCollector()
    add_hl7_text(collector, ssn_first, source="t.hl7", tz=ZoneInfo("America/New_York"))
    ((info, events),) = collector.by_encounter().values()
    assert info.patient.value == "MRN5" and info.patient.authority == "GENHOSP" and info.patient_id == "MRN5"
    assert all(e.patient_id == "MRN5" for e in events)
    untyped = HL7.replace("PID|||MRN5^^^GENHOSP^MR", "PID|||MRN5^^^GENHOSP~X9^^^OTHER")
    collector = FeedCollector()
    add_hl7_text(collector, untyped, source="t.hl7", tz=ZoneInfo("America/New_York"))
    ((info, _),) = collector.by_encounter().values()
    assert info.patient.value == "MRN5"  # no MR repetition: the first, as before


def test_entered_date_is_the_encounters_end_else_its_last_administration_and_recode_time_in_the_worker():
    start = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
    events = [adm(CHEMO, start, start + timedelta(hours=1), id="c"), adm(NS, start + timedelta(hours=2), None, id="n")]
    assert entered_date(ENCOUNTER, events) == start + timedelta(hours=2)
    assert entered_date(ENCOUNTER.model_copy(update={"period_end": start}), events) == start
    assert entered_date(ENCOUNTER, []) is None
    item = to_charge_items(run(*events), ENCOUNTER, None, events, entered=start + timedelta(days=3))[0]
    assert item["enteredDate"] == "2026-11-05T14:00:00+00:00"


def test_a_recode_that_changes_only_the_entered_date_publishes_nothing():
    from connectors.state import EncounterState
    from mapping.collector import Mapped

    state = EncounterState(encounter_id="enc-1")
    state.apply(Mapped("encounter", "enc-1", ("1", None), encounter=ENCOUNTER.model_copy(update={"status": "finished"})), 1000)
    state.apply(Mapped("administration", "c", ("1", None), administration=adm(CHEMO, "09:00", "10:00", id="c", dose=(700, "mg"))), 2000)
    first = state.code(FORMULARY, Profile())
    assert first is not None and "enteredDate" in first["entry"][0]["resource"]
    state.recoded_ms, state.dirty = 9_000_000, True
    assert state.code(FORMULARY, Profile()) is None  # the same charges: no revision
    # A later administration dates its revision from the record again, not from the old recode.
    state.apply(Mapped("administration", "d", ("1", None), administration=adm(CHEMO, "11:00", "12:30", id="d", dose=(100, "mg"))), 3000)
    assert state.recoded_ms is None
    second = state.code(FORMULARY, Profile())
    assert {e["resource"]["enteredDate"] for e in second["entry"] if e["resource"]["status"] != "entered-in-error"} == {entered_date(ENCOUNTER, [
        adm(CHEMO, "11:00", "12:30", id="d")]).isoformat()}


# --- the shipped sample profile -----------------------------------------------------------------


def test_the_sample_billing_profile_codes_every_sample_with_a_cdm_row_per_line_but_the_unlisted_drug():
    profile = load_profile(SAMPLES / "profile-billing.yaml")
    assert profile.chargemaster is not None and profile.chargemaster.items
    files = [str(p) for p in sorted(SAMPLES.glob("*")) if p.suffix in (".json", ".ndjson", ".hl7")]
    collector = collect(files, ZoneInfo(profile.timezone))
    formulary = formulary_for(profile, load_formulary())
    missing = set()
    for info, events in collector.by_encounter().values():
        for item in to_charge_items(code_encounter(info, events, formulary, profile), info, profile, events):
            ChargeItem.model_validate(item)
            if "no-cdm-item" in _flags(item):
                missing.add(item["code"]["coding"][0]["code"])
            else:
                assert item["code"]["coding"][1]["system"] == profile.chargemaster.system
    assert missing == {"J3490"}  # the unclassified drug: priced by invoice, never from the CDM
    assert definitions_bundle(profile)["entry"]


def test_the_demo_summarises_a_revision_one_row_per_chargeitem():
    from connectors.demo import COLUMNS, summary
    from mapping.chargeitem_out import revision_bundle

    result = run(adm(CHEMO, "09:00", "10:00", id="c", dose=(700, "mg")), adm(THER, "10:05", None, id="p", method="push"))
    items = to_charge_items(result, ENCOUNTER, BILLING)
    rows = summary(revision_bundle("enc-1", 1, items))
    assert rows[0].split() == [w for c in COLUMNS for w in c.split()]
    assert len(rows) == 1 + len(items)
    for row, item in zip(rows[1:], items, strict=True):
        cells = row.split()
        assert cells[0] == item["code"]["coding"][0]["code"] and cells[-1] == item["id"]
        assert ("33596413" in cells) == (item["code"]["coding"][0]["code"] == "96413")
        assert ("no-cdm-item" in row) == ("no-cdm-item" in _flags(item))


def test_the_encounter_paths_table_names_every_reference_field_of_the_encounter():
    from mapping.fhir_in import ENCOUNTER_PATHS

    documented = {part.strip() for key in ENCOUNTER_PATHS for part in key.split("/")}
    references = {name for name, f in EncounterInfo.model_fields.items() if "Ref" in str(f.annotation)} | {"location_code"}
    assert references - {"identifier"} == documented  # identifier: HL7 only (PV1-19)
