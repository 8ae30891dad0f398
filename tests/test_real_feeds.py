"""Published examples nobody on the project wrote (tests/data/real/, origins and licences in its
SOURCES.md), and what a certified coder reports for each: the lines, or why there are none, or
the clear rejection.  The default CMS facility profile (America/New_York dates of service).

Where drug identification is not yet good enough for a published example (product-level codes
the formulary does not index), the test says so: the administration codes are asserted, and the
drug line is asserted to be flagged as unknown, never silently guessed.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from coding_core.engine import code_encounter
from coding_core.model import CodingResult, EncounterClass, Method, Route
from coding_core.profile import Profile
from mapping.collector import FeedCollector
from mapping.fhir_in import add_resource, iter_json_document
from mapping.hl7_in import add_hl7_text
from mapping.reference_data import load_formulary
from tests.ruby_literal import ruby_constants

REAL = Path(__file__).parent / "data" / "real"
TZ = ZoneInfo("America/New_York")


def collect(*names: str, resources: list[dict] | None = None) -> FeedCollector:
    c = FeedCollector()
    for name in names:
        text = (REAL / name).read_text()
        if name.endswith(".hl7"):
            add_hl7_text(c, text, source=name, tz=TZ)
        else:
            for position, doc in iter_json_document(text, name):
                add_resource(c, doc, source=name, position=position)
    for i, doc in enumerate(resources or []):
        add_resource(c, doc, source="vendor", position=str(i))
    return c


def code(c: FeedCollector, **profile) -> dict[str, CodingResult]:
    formulary, p = load_formulary(), Profile(**profile)
    return {eid: code_encounter(info, events, formulary, p) for eid, (info, events) in c.by_encounter().items()}


def lines(result: CodingResult) -> Counter:
    """(code, units) summed over dates of service."""
    out: Counter = Counter()
    for ln in result.lines:
        out[ln.code] += ln.units
    return out


def warnings(result: CodingResult) -> set[str]:
    return {w.code for w in result.warnings}


def excluded(result: CodingResult) -> dict[str, str]:
    return {x.administration_id: x.reason for x in result.exclusions}


def cerner(name: str, constant: str) -> dict:
    return ruby_constants((REAL / name).read_text())[constant]


def test_every_file_has_its_source_and_licence():
    sources = (REAL / "SOURCES.md").read_text()
    files = sorted(p.name for p in REAL.iterdir() if p.name not in ("SOURCES.md", "SHA256SUMS"))
    assert files and [f for f in files if f"### {f}" not in sources] == []
    assert "CC0" in sources and "licence" in sources.lower()


# --- FHIR R4 specification examples ------------------------------------------------------


def test_0301_vancomycin_in_progress_is_not_charged_and_is_flagged():
    (r,) = code(collect("fhir-r4-medicationadministration0301.json", "fhir-r4-encounter-f001.json")).values()
    assert r.lines == () and "in-progress-at-close" in warnings(r)
    assert "in progress" in excluded(r)["medadmin0301"]


def test_0302_kcl_in_saline_named_only_by_its_ingredients_is_potassium_chloride_given_within_a_procedure():
    # The contained Medication has no code, only RxNorm ingredients (KCl 2 meq/mL, NS 0.9%):
    # the drug is potassium chloride (a drug added to a fluid is therapeutic).  partOf a
    # Procedure: the infusion is integral to it, so no administration line; the drug line stays.
    (r,) = code(collect("fhir-r4-medicationadministration0302.json")).values()
    assert lines(r) == {"J3480": 10}  # 20 meq / 2 meq per unit
    assert "part of a procedure" in excluded(r)["medadmin0302"]


def test_0303_entered_in_error_is_not_charged():
    (r,) = code(collect("fhir-r4-medicationadministration0303.json")).values()
    assert r.lines == () and "entered in error" in excluded(r)["medadmin0303"]


def test_0304_alemtuzumab_documented_inject_over_10_hours_is_a_chemo_infusion_not_a_push():
    c = collect("fhir-r4-medicationadministration0304.json", "fhir-r4-encounter-f001.json")
    (event,) = [e for _, es in c.by_encounter().values() for e in es]
    assert event.method is Method.INJECTION and event.route is Route.IV
    (r,) = code(c).values()
    # 04:30-14:30 +01:00 = 600 min: initial hour + 9 added hours; 3 mg of J0202 (1 mg units).
    assert lines(r) == {"96413": 1, "96415": 9, "J0202": 3}
    assert "96374" not in lines(r)


def test_0305_brentuximab_10_hours_with_a_duration_in_the_rate_field():
    (r,) = code(collect("fhir-r4-medicationadministration0305.json")).values()
    assert lines(r) == {"96413": 1, "96415": 9, "J9042": 1}
    assert "dose-unit-mismatch" in warnings(r)  # 1.8 mg/kg and no weight: the 1 unit is flagged for the coder
    assert any(w.code == "source-data" and "is a duration, not a rate" in w.message for w in r.warnings)
    assert "brentuximab" in next(ln.reason for ln in r.lines if ln.code == "J9042")


def test_0306_oral_azithromycin_is_not_charged():
    (r,) = code(collect("fhir-r4-medicationadministration0306.json")).values()
    assert r.lines == () and "oral administration is not a drug administration service" in excluded(r)["medadmin0306"]
    assert "unknown-drug" not in warnings(r)


def test_0307_lorazepam_documented_push_stays_a_push_and_the_conflict_is_flagged():
    (r,) = code(collect("fhir-r4-medicationadministration0307.json")).values()
    assert lines(r) == {"96374": 1, "J3490": 1}
    assert {"method-time-conflict", "unknown-drug", "source-data"} <= warnings(r)  # a SNOMED product code the formulary lacks


@pytest.mark.parametrize("name", ["fhir-r4-medicationadministration0308.json", "fhir-r4-medicationadministration0309.json"])
def test_administrations_without_an_encounter_are_rejected_clearly(name):
    (e,) = collect(name).errors
    assert "no context reference to an Encounter" in str(e) and e.record_id is not None


def test_example3_on_hold_with_no_dosage_is_not_charged():
    (r,) = code(collect("fhir-r4-medicationadministrationexample3.json")).values()
    assert r.lines == () and "on hold" in excluded(r)["medadminexample03"]


def test_the_encounter_example_gives_the_class_the_administrations_are_coded_in():
    c = collect("fhir-r4-medicationadministration0304.json", "fhir-r4-encounter-f001.json")
    info, _ = c.by_encounter()["f001"]
    assert info.encounter_class is EncounterClass.AMBULATORY


# --- Oracle Health (Cerner) Millennium documentation examples -----------------------------


def test_cerner_r4_ivpb_with_one_time_and_infuse_over_120_min_is_an_infusion():
    c = collect(resources=[cerner("cerner-r4-medicationadministration-examples.rb", "R4_MEDICATION_ADMINISTRATION_BUNDLE")["entry"][i]["resource"]
                           for i in (0, 1)])
    assert c.errors == []
    ivpb = next(e for _, es in c.by_encounter().values() for e in es if e.id == "197287785")
    assert (ivpb.infusion_minutes, ivpb.rate_ml_per_h, ivpb.volume_ml) == (120, 125, 250)
    (r,) = code(c).values()
    # 120 min: 96365 + 96366.  The mixture is named by text only ("potassium acetate + K-Sol +
    # Dextrose 10% ..."): an unknown drug, flagged, with J3490.
    assert lines(r) == {"96365": 1, "96366": 1, "J3490": 1}
    assert {"derived-stop-time", "unknown-drug"} <= warnings(r)
    initial = next(ln for ln in r.lines if ln.code == "96365")
    assert "stop derived from the documented infusion duration, 120 min; volume rate 125 mL/h" in initial.reason
    assert "not done" in excluded(r)["197287732"]


def test_cerner_r4_ivpb_with_derive_stop_time_off_is_not_billable_as_an_infusion():
    c = collect(resources=[cerner("cerner-r4-medicationadministration-examples.rb", "R4_MEDICATION_ADMINISTRATION_ENTRY")])
    (r,) = code(c, derive_stop_time=False).values()
    assert "96365" not in lines(r) and "missing-stop-time" in warnings(r)


@pytest.mark.parametrize("constant", ["DSTU2_MEDICATION_ADMINISTRATION_ENTRY", "DSTU2_MEDICATION_ADMINISTRATION_MULTIPLE_INGREDIENTS_ENTRY"])
def test_cerner_dstu2_resources_are_rejected_clearly(constant):
    (e,) = collect(resources=[cerner("cerner-dstu2-medicationadministration-examples.rb", constant)]).errors
    assert "invalid MedicationAdministration" in str(e)


# --- open-source HL7 v2 fixtures ------------------------------------------------------------


def test_uhn_ras_o17_with_repeated_sub_ids_is_rejected_clearly():
    # Two RXAs of order 7777 carry RXA-2 "1" (and two "2"): an RXA-21 update could not say
    # which it corrects, so the message is rejected whole rather than guessed.
    (e,) = collect("cgta-uhn-ras-o17.hl7").errors
    assert "RXA-1/RXA-2" in str(e) and e.record_id == "31768"
    assert "Smith" not in str(e) and "7005728" not in str(e)


def test_hapi_ras_o17_without_a_visit_number_is_rejected_clearly():
    (e,) = collect("hapi-hl7v2-ras-o17.hl7").errors
    assert "PV1-19" in str(e) and "7000135" not in str(e)


@pytest.mark.parametrize("name", ["google-harmonization-rde-o01-millennium.hl7", "lfh-hl7v2-fhir-converter-rde-o11-ivpb.hl7",
                                  "lfh-hl7v2-fhir-converter-vxu-v04-im.hl7"])
def test_orders_and_immunizations_are_not_administrations_and_are_rejected_clearly(name):
    (e,) = collect(name).errors
    assert "MSH-9: not a RAS or ADT message" in str(e)


def test_no_real_example_crashes_the_command(tmp_path, capsys):
    from connectors.cli import main

    files = [str(p) for p in sorted(REAL.iterdir()) if p.suffix in (".json", ".hl7")]
    assert main(["code", "--explain", *files]) in (0, 1)
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "Encounter f001" in out.out


def test_the_examples_are_kept_as_published():
    """SHA256SUMS holds each file's digest as it was collected: an edited example fails here."""
    import hashlib

    sums = dict(reversed(line.split("  ", 1)) for line in (REAL / "SHA256SUMS").read_text().splitlines())
    files = sorted(p.name for p in REAL.iterdir() if p.name not in ("SOURCES.md", "SHA256SUMS"))
    assert sorted(sums) == files
    assert {f: hashlib.sha256((REAL / f).read_bytes()).hexdigest() for f in files} == sums
    for p in REAL.glob("*.json"):
        assert json.loads(p.read_text())["resourceType"] in ("MedicationAdministration", "Encounter")
