"""ChargeItem out: the documented R4 profile, validated, with deterministic ids."""

from __future__ import annotations

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.chargeitem import ChargeItem
from hypothesis import given, settings
from hypothesis import strategies as st

from coding_core.formulary import HCPCS_SYSTEM
from coding_core.model import EncounterInfo, Method
from mapping.chargeitem_out import CPT_SYSTEM, EXT_MINUTES, EXT_MODIFIER, EXT_RULE, bundle, charge_item_ids, revision_bundle, to_charge_items
from tests.builders import CHEMO, NS, THER, adm, run

ENCOUNTER = EncounterInfo(id="enc-1", patient_id="pat-1")


def day():
    return (
        adm(NS, "08:00", "12:00", id="a-ns", volume=1000),
        adm(THER, "08:40", "08:40", id="a-push", method=Method.PUSH, dose=(8, "mg")),
        adm(CHEMO, "09:00", "11:10", id="a-chemo", dose=(700, "mg"), wasted=(0, "mg")),
        adm(THER, "09:00", "09:00", id="a-push2", method=Method.PUSH, site="piv-2", dose=(4, "mg")),
    )


def items_by_code(items):
    return {i["code"]["coding"][0]["code"]: i for i in items}


def test_items_follow_the_profile():
    result = run(*day())
    items = to_charge_items(result, ENCOUNTER)
    assert len(items) == len(result.lines)
    for item, line in zip(items, result.lines, strict=True):
        ChargeItem.model_validate(item)  # published only when valid
        assert item["status"] == "billable"
        system = item["code"]["coding"][0]["system"]
        assert system == (CPT_SYSTEM if line.system == "CPT" else HCPCS_SYSTEM)
        assert item["quantity"]["value"] == line.units
        assert item["occurrenceDateTime"] == line.service_date.isoformat()
        assert item["context"] == {"reference": "Encounter/enc-1"}
        assert item["subject"] == {"reference": "Patient/pat-1"}
        assert [s["reference"] for s in item["service"]] == [f"MedicationAdministration/{a}" for a in line.administration_ids]
        assert item["note"][0]["text"] == line.reason
        ext = {e["url"]: e for e in item["extension"] if e["url"] != EXT_MODIFIER}
        assert ext[EXT_RULE]["valueString"] == line.rule
        modifiers = [e["valueCoding"]["code"] for e in item["extension"] if e["url"] == EXT_MODIFIER]
        assert tuple(modifiers) == line.modifiers
        if line.minutes is not None:
            assert ext[EXT_MINUTES]["valueInteger"] == line.minutes

    by_code = items_by_code(items)
    chemo = by_code["96413"]
    assert chemo["bodysite"][0]["coding"][0]["code"] == "device:port-1"
    assert chemo["productCodeableConcept"]["text"] == "rituximab"
    second_site = by_code["96374"]
    assert [e["valueCoding"]["code"] for e in second_site["extension"] if e["url"] == EXT_MODIFIER] == ["59"]
    drug = by_code[CHEMO]
    assert drug["quantity"]["value"] == 70 and drug["productCodeableConcept"]["coding"][0]["code"] == CHEMO


def test_warnings_about_a_lines_administrations_are_in_its_notes():
    result = run(adm(THER, "09:00", None, id="a-nostop", dose=(4, "mg")))
    (line_item,) = [i for i in to_charge_items(result, ENCOUNTER) if i["code"]["coding"][0]["code"] == "96374"]
    assert any("missing-stop-time" in n["text"] for n in line_item["note"][1:])


def test_ids_are_deterministic_and_unique():
    a = to_charge_items(run(*day()), ENCOUNTER)
    b = to_charge_items(run(*reversed(day())), ENCOUNTER)
    assert [i["id"] for i in a] == [i["id"] for i in b]
    assert len({i["id"] for i in a}) == len(a)
    assert all(len(i["id"]) <= 64 for i in a)


def test_ids_survive_a_change_of_units_but_not_of_encounter():
    short = to_charge_items(run(adm(CHEMO, "09:00", "10:40", id="c", dose=(100, "mg"))), ENCOUNTER)
    long = to_charge_items(run(adm(CHEMO, "09:00", "12:30", id="c", dose=(300, "mg"))), ENCOUNTER)
    assert items_by_code(short)["96415"]["quantity"]["value"] != items_by_code(long)["96415"]["quantity"]["value"]
    assert items_by_code(short)["96415"]["id"] == items_by_code(long)["96415"]["id"]
    result = run(adm(CHEMO, "09:00", "10:30", id="c", dose=(100, "mg")))
    assert charge_item_ids("enc-2", result.lines) != charge_item_ids("enc-1", result.lines)


def test_lines_sharing_every_key_get_distinct_ids():
    result = run(adm(CHEMO, "09:00", "10:30", id="c", dose=(100, "mg")))
    line = result.lines[0]
    ids = charge_item_ids("enc-1", [line, line])
    assert ids[0] != ids[1]


def test_unknown_patient_is_explicit():
    items = to_charge_items(run(*day()), EncounterInfo(id="enc-1"))
    assert items[0]["subject"] == {"display": "patient not identified in the feed"}


def test_bundle_is_a_valid_collection():
    doc = bundle(to_charge_items(run(*day()), ENCOUNTER))
    parsed = Bundle.model_validate(doc)
    assert parsed.type == "collection" and len(parsed.entry) == len(run(*day()).lines)
    assert bundle(to_charge_items(run(*day()), ENCOUNTER))["id"] == doc["id"]
    assert Bundle.model_validate(bundle([])).type == "collection"


def test_revision_bundle_puts_current_lines_and_withdraws_vanished_ones():
    first = to_charge_items(run(*day()), ENCOUNTER)
    # the second push on its own site was documented in error: its lines vanish
    second = to_charge_items(run(*day()[:3]), ENCOUNTER)
    doc = revision_bundle("enc-1", 2, second, {i["id"]: i for i in first})
    Bundle.model_validate(doc)
    assert doc["type"] == "transaction" and doc["meta"]["versionId"] == "2"
    puts = {e["request"]["url"]: e["resource"]["status"] for e in doc["entry"]}
    assert all(e["request"]["method"] == "PUT" for e in doc["entry"])
    vanished = {i["id"] for i in first} - {i["id"] for i in second}
    assert vanished, "the scenario must withdraw a line"
    assert {u for u, s in puts.items() if s == "entered-in-error"} == {f"ChargeItem/{i}" for i in vanished}
    assert {u for u, s in puts.items() if s == "billable"} == {f"ChargeItem/{i['id']}" for i in second}
    # deterministic: the same revision built again is the same document
    assert revision_bundle("enc-1", 2, second, {i["id"]: i for i in first}) == doc
    # a line already withdrawn is not withdrawn again in a later revision
    r3 = revision_bundle("enc-1", 3, second, {**{i["id"]: i for i in second}, **{e["resource"]["id"]: e["resource"] for e in doc["entry"]}})
    assert all(e["resource"]["status"] == "billable" for e in r3["entry"])
    assert revision_bundle("enc-1", 1, first)["id"] != revision_bundle("enc-2", 1, first)["id"]


def test_items_are_published_exactly_as_fhir_resources_writes_them():
    """The built dict is published without a model round trip: it must already be canonical."""
    from zoneinfo import ZoneInfo

    from connectors.routing import route_fhir
    from connectors.settings import Topics
    from connectors.synthetic import generate
    from mapping.collector import FeedCollector
    from coding_core.engine import code_encounter
    from coding_core.profile import Profile
    from mapping.reference_data import load_formulary

    collector = FeedCollector()
    for _, _, value in generate(25, "fhir", Topics(), seed=3):
        for record in route_fhir(value, ZoneInfo("America/New_York")).records:
            collector.offer(record)
    items = [it for enc, events in collector.by_encounter().values()
             for it in to_charge_items(code_encounter(enc, events, load_formulary(), Profile()), enc)]
    items += to_charge_items(run(*day()), ENCOUNTER)
    assert len(items) > 200
    for item in items:
        assert ChargeItem.model_validate(item).model_dump(mode="json", exclude_none=True) == item


def test_an_invalid_charge_item_is_never_returned(monkeypatch):
    import pydantic

    import mapping.chargeitem_out as out

    result = run(*day())
    good = to_charge_items(result, ENCOUNTER)  # validated and remembered
    # the same lines with an id FHIR does not allow: validation must refuse them, cache or not
    monkeypatch.setattr(out, "charge_item_ids", lambda enc, lines: ["bad id with spaces"] * len(lines))
    try:
        to_charge_items(result, ENCOUNTER)
    except pydantic.ValidationError:
        pass
    else:
        raise AssertionError("an invalid ChargeItem was returned")
    assert good


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_the_name_based_full_url_is_uuid5_of_the_item_id(name):
    import uuid

    from mapping.chargeitem_out import FULL_URL_NAMESPACE, full_url, name_uuid

    expected = str(uuid.uuid5(FULL_URL_NAMESPACE, name))
    assert name_uuid(name) == expected
    assert full_url(name) == f"urn:uuid:{expected}"
