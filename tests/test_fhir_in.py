"""FHIR in: R4/R4B and R5 MedicationAdministration / Encounter -> events; files; dedupe."""

from __future__ import annotations

import copy
import json
import random
import string
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from coding_core.formulary import HCPCS_SYSTEM, NDC_SYSTEM, RXNORM_SYSTEM
from coding_core.model import AdministrationEvent, AdminStatus, EncounterClass, Method, PumpType, Route
from mapping.collector import FeedCollector
from mapping.errors import MappingError, UnreadableSourceError
from mapping.fhir_in import (
    EXT_ACCESS_TYPE,
    EXT_KVO,
    EXT_PUMP,
    EXT_WASTED,
    FIELD_PATHS,
    add_resource,
    iter_json_document,
    iter_ndjson,
    map_encounter,
    map_medication_administration,
)

SCT = "http://snomed.info/sct"
V2_0162 = "http://terminology.hl7.org/CodeSystem/v2-0162"
V2_0165 = "http://terminology.hl7.org/CodeSystem/v2-0165"
START, END = "2026-03-02T09:00:00-05:00", "2026-03-02T10:40:00-05:00"


def r4(**over) -> dict:
    """A complete R4 MedicationAdministration; keyword arguments replace top-level elements."""
    res = {
        "resourceType": "MedicationAdministration",
        "id": "ma-1",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": HCPCS_SYSTEM, "code": "J9312", "display": "rituximab"}], "text": "rituximab"},
        "subject": {"reference": "Patient/p-1"},
        "context": {"reference": "Encounter/e-1"},
        "effectivePeriod": {"start": START, "end": END},
        "device": [{"reference": "Device/port-7", "display": "implanted port"}],
        "dosage": {
            "route": {"coding": [{"system": SCT, "code": "47625008"}]},
            "dose": {"value": 700, "unit": "mg", "code": "mg"},
            "rateQuantity": {"value": 175, "unit": "mL/h", "code": "mL/h"},
        },
    }
    res.update(over)
    return res


def r4_bulky(n: int, **over) -> dict:
    """``r4(id=f"ma-{n}")`` whose drug text is 800 letters no compressor shortens (each such
    administration adds ~0.6 KB to its encounter's compressed changelog state): for tests of
    states too large to write."""
    text = "".join(random.Random(n).choices(string.ascii_letters, k=800))
    return r4(id=f"ma-{n}", medicationCodeableConcept={"coding": [{"system": HCPCS_SYSTEM, "code": "J9312"}], "text": text},
              **over)


def r5(**over) -> dict:
    """The same administration in R5."""
    res = r4()
    del res["context"], res["effectivePeriod"], res["medicationCodeableConcept"]
    res.update(
        encounter={"reference": "Encounter/e-1"},
        occurencePeriod={"start": START, "end": END},
        medication={"concept": r4()["medicationCodeableConcept"]},
        device=[{"reference": {"reference": "Device/port-7", "display": "implanted port"}}],
    )
    res.update(over)
    return res


def dosage(**over) -> dict:
    d = copy.deepcopy(r4()["dosage"])
    d.update(over)
    return d


def test_r4_and_r5_map_to_the_same_event():
    a, b = map_medication_administration(r4()), map_medication_administration(r5())
    assert a == b
    assert a.encounter_id == "e-1" and a.patient_id == "p-1"
    assert a.access_device == "port-7" and a.access_type == "port" and a.access_site == "device:port-7"
    assert a.route is Route.IV and a.rate_ml_per_h == 175
    assert a.dose is not None and (a.dose.value, a.dose.unit) == (700, "mg")
    assert a.end - a.start == timedelta(minutes=100)


def test_every_event_field_has_a_documented_source():
    documented = {part for key in FIELD_PATHS for part in key.split("/")}
    fields = set(AdministrationEvent.model_fields) - {"id", "drug_codings", "drug_text"}
    assert fields - documented == set(), "add the FHIR path of new event fields to FIELD_PATHS"


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ({"coding": [{"system": SCT, "code": "47625008"}]}, Route.IV),
        ({"coding": [{"system": V2_0162, "code": "IV"}]}, Route.IV),
        ({"text": "Intravenous"}, Route.IV),
        ({"coding": [{"system": SCT, "code": "34206005"}]}, Route.SC),
        ({"coding": [{"system": V2_0162, "code": "SC"}]}, Route.SC),
        ({"coding": [{"system": V2_0162, "code": "IM"}]}, Route.IM),
        ({"coding": [{"system": SCT, "code": "58100008"}]}, Route.INTRA_ARTERIAL),
        ({"coding": [{"system": V2_0162, "code": "PO"}]}, Route.ORAL),
        ({"text": "something the table does not know"}, Route.UNRECOGNISED),
    ],
)
def test_route_table(route, expected):
    assert map_medication_administration(r4(dosage=dosage(route=route))).route is expected


def test_no_route_is_unknown_not_guessed():
    d = dosage()
    del d["route"]
    assert map_medication_administration(r4(dosage=d)).route is Route.UNKNOWN


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ({"coding": [{"system": V2_0165, "code": "IVP"}]}, Method.PUSH),
        ({"coding": [{"system": V2_0165, "code": "IVPB"}]}, Method.INFUSION),
        ({"text": "IV push"}, Method.PUSH),
        ({"text": "infusion"}, Method.INFUSION),
        ({"text": "flush"}, Method.FLUSH),
        ({"text": "pump refill"}, Method.PUMP_REFILL),
        ({"text": "hand-written note"}, Method.UNKNOWN),
    ],
)
def test_method_table(method, expected):
    assert map_medication_administration(r4(dosage=dosage(method=method))).method is expected


def test_single_time_is_complete_for_a_push_but_not_for_an_infusion():
    push = r4(effectiveDateTime=START, dosage=dosage(method={"coding": [{"system": V2_0165, "code": "IVP"}]}))
    del push["effectivePeriod"]
    ev = map_medication_administration(push)
    assert ev.start == ev.end == datetime.fromisoformat(START)
    infusion = r4(effectiveDateTime=START)
    del infusion["effectivePeriod"]
    ev = map_medication_administration(infusion)
    assert ev.start == datetime.fromisoformat(START) and ev.end is None  # the engine warns: missing stop time


def test_date_only_time_gives_no_start():
    res = r4(effectivePeriod={"start": "2026-03-02"})
    ev = map_medication_administration(res)
    assert ev.start is None
    assert ev.source_warnings == ("effectivePeriod.start is a date without a time of day; it cannot be used for timing",)


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ({"rateQuantity": {"value": 125, "unit": "mL/h"}}, Decimal(125)),
        ({"rateQuantity": {"value": 2, "code": "mL/min"}}, Decimal(120)),
        ({"rateQuantity": {"value": "0.1", "code": "L/h"}}, Decimal(100)),
        ({"rateQuantity": None, "rateRatio": {"numerator": {"value": 500, "code": "mL"}, "denominator": {"value": 4, "code": "h"}}}, Decimal(125)),
    ],
)
def test_rate_converted_to_ml_per_hour(rate, expected):
    d = {k: v for k, v in dosage(**rate).items() if v is not None}
    assert map_medication_administration(r4(dosage=d)).rate_ml_per_h == expected


@pytest.mark.parametrize(("rate", "drug_rate"), [
    ({"value": 5, "code": "mg/h"}, "5 mg/h"), ({"value": 100, "code": "mg/min"}, "100 mg/min"),
    ({"value": 2, "unit": "units/h"}, "2 units/h"), ({"value": 0.5, "code": "ug/kg/min"}, "0.5 ug/kg/min"),
    ({"value": 10, "code": "mcg/kg/min"}, "10 mcg/kg/min"),
])
def test_a_drug_rate_is_kept_as_text_and_never_rejects_the_record(rate, drug_rate):
    ev = map_medication_administration(r4(dosage=dosage(rateQuantity=rate)))
    assert ev.rate_ml_per_h is None and ev.drug_rate == drug_rate and not ev.source_warnings


@pytest.mark.parametrize(("rate", "why"), [
    ({"value": 20, "code": "min"}, "is a duration, not a rate"),
    ({"value": 5, "unit": "Jane Doe"}, "is not a rate per time"),
    ({"value": 5, "code": "mL/kg"}, "is not a rate per time"),
])
def test_a_rate_that_is_not_a_rate_is_ignored_with_a_source_warning(rate, why):
    ev = map_medication_administration(r4(dosage=dosage(rateQuantity=rate)))
    assert ev.rate_ml_per_h is None and ev.drug_rate is None
    assert [w for w in ev.source_warnings if why in w and "dosage.rateQuantity" in w]
    assert not any("Jane" in w for w in ev.source_warnings)


def test_a_drug_rate_ratio_and_a_volume_rate_ratio():
    def ratio(numerator: dict, denominator: dict) -> dict:
        d = dosage(rateRatio={"numerator": numerator, "denominator": denominator})
        del d["rateQuantity"]
        return d

    mg = map_medication_administration(r4(dosage=ratio({"value": 100, "code": "mg"}, {"value": 1, "code": "min"})))
    assert mg.drug_rate == "100 mg/min" and mg.rate_ml_per_h is None
    ml = map_medication_administration(r4(dosage=ratio({"value": 250, "code": "mL"}, {"value": 2, "code": "h"})))
    assert ml.rate_ml_per_h == 125


def test_volume_from_a_dose_in_ml():
    ev = map_medication_administration(r4(dosage=dosage(dose={"value": 1, "code": "L"})))
    assert ev.volume_ml == 1000


@pytest.mark.parametrize("text", ["NS @ KVO", "tko rate", "to keep vein open"])
def test_kvo_text(text):
    assert map_medication_administration(r4(dosage=dosage(text=text))).kvo is True


def test_kvo_extension_and_plain_text():
    assert map_medication_administration(r4(dosage=dosage(text="over 2 hours"))).kvo is False
    assert map_medication_administration(r4(extension=[{"url": EXT_KVO, "valueBoolean": True}])).kvo is True


def test_body_site_when_no_device():
    site = {"coding": [{"system": SCT, "code": "368208006", "display": "Left upper arm"}], "text": "left forearm PIV"}
    ev = map_medication_administration(r4(device=None, dosage=dosage(site=site)))
    assert ev.access_device is None and ev.body_site == "368208006" and ev.access_site == "site:368208006"
    assert ev.access_type == "peripheral"  # "PIV" in the site text
    ev = map_medication_administration(r4(device=None, dosage=dosage(site={"text": "peripheral IV right hand"})))
    assert ev.body_site == "peripheral IV right hand" and ev.access_type == "peripheral"


def test_access_type_extension_wins_over_words():
    ext = [{"url": EXT_ACCESS_TYPE, "valueCode": "picc"}]
    assert map_medication_administration(r4(extension=ext)).access_type == "picc"


def test_device_display_only():
    ev = map_medication_administration(r4(device=[{"display": "PICC right arm"}]))
    assert ev.access_device == "PICC right arm" and ev.access_type == "picc"


def test_wasted_pump_ndc_and_procedure():
    res = r4(
        extension=[
            {"url": EXT_WASTED, "valueQuantity": {"value": 30, "code": "mg"}},
            {"url": EXT_PUMP, "valueCode": "implantable"},
        ],
        partOf=[{"reference": "Procedure/proc-1"}],
        medicationCodeableConcept={"coding": [{"system": NDC_SYSTEM, "code": "50242-051-21"}]},
    )
    ev = map_medication_administration(res)
    assert ev.wasted is not None and ev.wasted.value == 30
    assert ev.pump is PumpType.IMPLANTABLE
    assert ev.part_of_procedure is True
    assert ev.ndc == "50242-051-21"


def test_bad_pump_code_is_a_mapping_error():
    with pytest.raises(MappingError, match="pump-type"):
        map_medication_administration(r4(extension=[{"url": EXT_PUMP, "valueCode": "elastomeric"}]))


def test_contained_medication_reference():
    res = r4(
        contained=[{"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": RXNORM_SYSTEM, "code": "3264"}]}}],
        medicationReference={"reference": "#m1"},
    )
    del res["medicationCodeableConcept"]
    ev = map_medication_administration(res)
    assert [(c.system, c.code) for c in ev.drug_codings] == [(RXNORM_SYSTEM, "3264")]


def test_r5_medication_reference_to_contained():
    res = r5(
        contained=[{"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": RXNORM_SYSTEM, "code": "3264"}]}}],
        medication={"reference": {"reference": "#m1"}},
    )
    assert [c.code for c in map_medication_administration(res).drug_codings] == ["3264"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [("completed", AdminStatus.COMPLETED), ("entered-in-error", AdminStatus.ENTERED_IN_ERROR), ("not-done", AdminStatus.NOT_DONE), ("stopped", AdminStatus.STOPPED)],
)
def test_status(status, expected):
    assert map_medication_administration(r4(status=status)).status is expected


def test_errors_name_the_record_and_field_but_never_the_values():
    with pytest.raises(MappingError) as e:
        map_medication_administration(r4(status="done-ish", subject={"reference": "Patient/SMITH-JOHN-MRN-0042"}))
    assert e.value.record_id == "ma-1" and "status" in str(e.value)
    assert "SMITH" not in str(e.value)
    with pytest.raises(MappingError) as e:
        map_medication_administration(r4(dosage=dosage(dose={"value": "SMITH-JOHN", "code": "mg"})))
    assert "dosage" in str(e.value) and "SMITH" not in str(e.value)
    # a feed that puts free text in a coded element: the text is never echoed
    for change in ({"status": "Jane Doe"},
                   {"extension": [{"url": "https://infusion-charges.dev/fhir/StructureDefinition/pump-type", "valueCode": "JaneDoe"}]}):
        with pytest.raises(MappingError) as e:
            map_medication_administration(r4(**change))
        assert "Jane" not in str(e.value), str(e.value)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"context": None}, "no context reference to an Encounter"),
        ({"context": {"reference": "EpisodeOfCare/x"}}, "context is a relative reference EpisodeOfCare/id to no Encounter"),
        ({"medicationCodeableConcept": {"coding": [{"system": HCPCS_SYSTEM}]}}, "drug cannot be identified"),
        ({"id": None}, "has no id"),
    ],
)
def test_records_that_cannot_be_charged(change, reason):
    res = {k: v for k, v in r4(**change).items() if v is not None}
    with pytest.raises(MappingError, match=reason):
        map_medication_administration(res)


def test_r5_missing_encounter_names_the_r5_element():
    res = r5()
    del res["encounter"]
    with pytest.raises(MappingError, match="no encounter reference"):
        map_medication_administration(res)


@pytest.mark.parametrize(
    ("resource", "cls", "start"),
    [
        ({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "OBSENC"},
          "subject": {"reference": "Patient/p-1"}, "period": {"start": START}}, EncounterClass.OBSERVATION, START),
        ({"resourceType": "Encounter", "id": "e-1", "status": "completed", "class": [{"coding": [{"code": "IMP"}]}],
          "actualPeriod": {"start": START}}, EncounterClass.INPATIENT, START),
        ({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}}, EncounterClass.AMBULATORY, None),
        ({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "EMER"}}, EncounterClass.EMERGENCY, None),
        ({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "SS"}}, EncounterClass.OTHER, None),
    ],
)
def test_encounter_class_and_period(resource, cls, start):
    enc = map_encounter(resource)
    assert enc.encounter_class is cls
    assert enc.period_start == (datetime.fromisoformat(start) if start else None)


# --- files and the collector -------------------------------------------------------------


def collect(records, source: str = "feed") -> FeedCollector:
    c = FeedCollector()
    for pos, rec in records:
        add_resource(c, rec, source=source, position=pos)
    return c


def test_bundle_file_with_patient_and_entry_without_resource():
    doc = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": r4()}, {"resource": {"resourceType": "Patient", "id": "p-1"}}, {"fullUrl": "urn:x"},
    ]}
    c = collect(iter_json_document(json.dumps(doc), "feed.json"))
    assert list(c.administrations) == ["ma-1"] and c.ignored == 1
    assert [(e.position, e.reason) for e in c.errors] == [("entry[2]", "Bundle entry has no resource")]


def test_unreadable_json_names_file_and_position():
    with pytest.raises(UnreadableSourceError) as e:
        list(iter_json_document('{"resourceType": "Bundle",\n  "entry": [}', "bad.json"))
    assert e.value.source == "bad.json" and e.value.position == "line 2 column 13"
    assert "bad.json, line 2 column 13" in str(e.value)


def test_ndjson_bad_line_is_reported_and_the_rest_still_mapped():
    lines = [json.dumps(r4(id="a")), "{not json", json.dumps(r4(id="b", status="bogus")), json.dumps(r5(id="c"))]
    c = collect(iter_ndjson("\n".join(lines) + "\n", "feed.ndjson"), "feed.ndjson")
    assert list(c.administrations) == ["a", "c"]
    assert [(e.source, e.position, e.record_id) for e in c.errors] == [("feed.ndjson", "line 2", None), ("feed.ndjson", "line 3", "b")]


def test_ndjson_with_no_json_line_is_unreadable():
    with pytest.raises(UnreadableSourceError, match="no line is JSON"):
        list(iter_ndjson("MSH|^~\\&|PHARM\nRXA|0|1\n", "x.ndjson"))


def _meta(version=None, updated=None) -> dict:
    return {k: v for k, v in (("versionId", version), ("lastUpdated", updated)) if v is not None}


NEW_END = "2026-03-02T11:00:00-05:00"


@pytest.mark.parametrize(
    ("first", "second", "kept_end", "counts"),
    [
        # (duplicates, replaced, outdated)
        (_meta(), _meta(), NEW_END, (0, 1, 0)),  # same id, no version, changed content: the next version (arrival order)
        (_meta("1"), _meta("2"), NEW_END, (0, 1, 0)),  # newer version replaces
        (_meta("3"), _meta("2"), END, (0, 0, 1)),  # an older version arriving late is ignored, counted as outdated
        (_meta(), _meta("2"), NEW_END, (0, 1, 0)),  # a versioned record beats an unversioned one...
        (_meta("2"), _meta(), END, (0, 0, 1)),  # ... whichever arrives first
        (_meta(updated="2026-03-02T12:00:00Z"), _meta(updated="2026-03-02T13:00:00Z"), NEW_END, (0, 1, 0)),
        (_meta(updated="2026-03-02T13:00:00Z"), _meta(updated="2026-03-02T12:00:00Z"), END, (0, 0, 1)),
        (_meta("2", "2026-03-02T13:00:00Z"), _meta("2", "2026-03-02T13:00:00Z"), NEW_END, (0, 1, 0)),  # same version, changed: arrival
    ],
)
def test_resent_records(first, second, kept_end, counts):
    a = r4(meta=first) if first else r4()
    b = r4(meta=second, effectivePeriod={"start": START, "end": NEW_END}) if second else r4(
        effectivePeriod={"start": START, "end": NEW_END})
    c = collect([("1", a), ("2", b)])
    held = c.administrations["ma-1"].administration
    assert held.end == datetime.fromisoformat(kept_end)
    assert (c.duplicates, c.replaced, c.outdated) == counts


@pytest.mark.parametrize("meta", [_meta(), _meta("1"), _meta(updated="2026-03-02T12:00:00Z")])
def test_the_same_content_again_is_a_duplicate(meta):
    c = collect([("1", r4(meta=meta)), ("2", r4(meta=meta))])
    assert (c.duplicates, c.replaced, c.outdated) == (1, 0, 0)


def test_an_encounter_sent_in_progress_then_finished_without_meta_closes():
    a = {"resourceType": "Encounter", "id": "e-1", "status": "in-progress", "class": {"code": "AMB"}}
    c = collect([("1", a), ("2", {**a, "status": "finished"})])
    assert c.encounters["e-1"].encounter.status == "finished" and c.replaced == 1


def test_by_encounter_groups_and_fills_encounter_info():
    enc = {"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "OBSENC"}}
    other = r4(id="ma-9", context={"reference": "Encounter/e-2"})
    c = collect([("1", r4()), ("2", enc), ("3", other)])
    grouped = c.by_encounter()
    assert set(grouped) == {"e-1", "e-2"}
    info, events = grouped["e-1"]
    assert info.encounter_class is EncounterClass.OBSERVATION and info.patient_id == "p-1"
    assert [e.id for e in events] == ["ma-1"]
    info2, _ = grouped["e-2"]
    assert info2.encounter_class is None and info2.patient_id == "p-1"


def test_times_keep_their_offsets_and_are_aware():
    ev = map_medication_administration(r4(effectivePeriod={"start": "2026-03-02T14:00:00Z", "end": "2026-03-02T15:00:00+01:00"}))
    assert ev.start.tzinfo is not None and ev.start == datetime(2026, 3, 2, 14, tzinfo=timezone.utc)
    assert ev.end - ev.start == timedelta(0)


def test_unknown_contained_resource_type_is_a_mapping_error():
    """Found by tests/fuzzing.py: fhir.resources raised KeyError for it."""
    res = r4(contained=[{"resourceType": "NoSuchThing", "id": "x"}])
    with pytest.raises(MappingError, match="invalid MedicationAdministration"):
        map_medication_administration(res)


def test_a_contained_medication_without_a_code_is_read_by_its_ingredients():
    med = {"resourceType": "Medication", "id": "m1", "ingredient": [
        {"itemCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "8591", "display": "potassium chloride"}]}},
        {"itemCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "313002", "display": "Sodium Chloride 0.9%"}]}}]}
    res = r4(contained=[med], medicationReference={"reference": "#m1"})
    del res["medicationCodeableConcept"]
    ev = map_medication_administration(res)
    assert [c.code for c in ev.drug_codings] == ["8591", "313002"]
    med_no_ingredients = {"resourceType": "Medication", "id": "m1"}
    res = r4(contained=[med_no_ingredients], medicationReference={"reference": "#m1"})
    del res["medicationCodeableConcept"]
    with pytest.raises(MappingError, match="drug cannot be identified"):
        map_medication_administration(res)

