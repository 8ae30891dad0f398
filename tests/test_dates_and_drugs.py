"""Dates of service, DST-safe minutes and HCPCS drug lines."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from coding_core.model import AdministrationEvent, EncounterClass, Method, Route, Setting
from coding_core.timing import additional_hour_units, hour_blocks, whole_minutes
from tests.builders import CHEMO, NS, THER, THER2, adm, cpt, drug, run, warning_codes

NY = ZoneInfo("America/New_York")


# ------------------------------------------------------------------------ dates of service

def test_overnight_observation_hydration_is_dated_per_day() -> None:
    """21:00 -> 06:10: 96360 and 96361 x2 on day 1, 96361 x6 on day 2 (one initial only)."""
    result = run(adm(NS, "21:00", "06:10"), encounter_class=EncounterClass.OBSERVATION)
    assert cpt(result, with_dates=True) == [("96360", 1, 0), ("96361", 2, 0), ("96361", 6, 1)]


def test_facility_one_initial_per_site_across_days() -> None:
    """Observation over two days: the day-2 infusion on the same access is sequential."""
    result = run(adm(THER, "22:00", "22:40"), adm(THER2, "10:00", "10:40", day=1), encounter_class=EncounterClass.OBSERVATION)
    assert cpt(result, with_dates=True) == [("96365", 1, 0), ("96367", 1, 1)]


def test_professional_one_initial_per_date() -> None:
    result = run(adm(THER, "22:00", "22:40"), adm(THER2, "10:00", "10:40", day=1), setting=Setting.PROFESSIONAL)
    assert cpt(result, with_dates=True) == [("96365", 1, 0), ("96365", 1, 1)]


def test_additional_hour_that_begins_before_midnight_is_dated_that_day() -> None:
    # 22:00-00:45: first hour 22:00, the additional hour begins 23:00 (day 1), 00:00-00:45 is a second hour on day 2
    result = run(adm(THER, "22:00", "00:45"))
    assert cpt(result, with_dates=True) == [("96365", 1, 0), ("96366", 1, 0), ("96366", 1, 1)]


@pytest.mark.parametrize(
    ("start", "end", "minutes"),
    [
        # spring forward 2026-03-08 02:00 EST -> 03:00 EDT: 01:00 -> 03:31 local is 91 real minutes
        (datetime(2026, 3, 8, 1, 0, tzinfo=NY), datetime(2026, 3, 8, 3, 31, tzinfo=NY), 91),
        # fall back 2026-11-01 02:00 EDT -> 01:00 EST: 00:30 -> 01:45 (second 01:45) is 135 real minutes
        (datetime(2026, 11, 1, 0, 30, tzinfo=NY), datetime(2026, 11, 1, 1, 45, fold=1, tzinfo=NY), 135),
    ],
)
def test_durations_are_absolute_across_dst(start: datetime, end: datetime, minutes: int) -> None:
    assert whole_minutes(start, end) == minutes
    result = run(adm(NS, start, end))
    assert [c for c, _ in cpt(result)][0] == "96360"
    assert sum(u for c, u in cpt(result) if c == "96361") == additional_hour_units(minutes)


@pytest.mark.parametrize(("minutes", "units"), [(60, 0), (90, 0), (91, 1), (150, 1), (151, 2), (210, 2), (211, 3)])
def test_additional_hour_units_formula(minutes: int, units: int) -> None:
    assert additional_hour_units(minutes) == units


def test_hour_blocks_follow_running_time_across_bags() -> None:
    a = datetime(2026, 3, 2, 9, 0, tzinfo=NY)
    blocks = hour_blocks([(a, a.replace(hour=9, minute=50)), (a.replace(hour=10), a.replace(hour=11, minute=40))])
    assert [(b.start.strftime("%H:%M"), b.minutes) for b in blocks] == [("09:00", 60), ("10:10", 60), ("11:10", 30)]


# ------------------------------------------------------------------------------ drug lines

def test_units_are_dose_over_billing_unit_rounded_up() -> None:
    result = run(adm(CHEMO, "09:00", "12:00", dose=(655, "mg")), adm("J1200", "08:30", method=Method.PUSH, dose=(25, "mg")), jw_jz=False)
    assert drug(result) == [("J1200", 1, ()), ("J9312", 66, ())]


def test_single_dose_without_waste_gets_jz() -> None:
    result = run(adm(CHEMO, "09:00", "12:00", dose=(655, "mg")))
    assert drug(result) == [("J9312", 66, ("JZ",))]


def test_documented_waste_gets_a_jw_line() -> None:
    # 655 mg given, 45 mg discarded from 700 mg of vials: 66 units given, 70 - 66 = 4 units JW
    result = run(adm(CHEMO, "09:00", "12:00", dose=(655, "mg"), wasted=(45, "mg")))
    assert drug(result) == [("J9312", 4, ("JW",)), ("J9312", 66, ())]


def test_waste_within_the_rounded_up_units_gets_jz_and_no_jw_line() -> None:
    # 655 mg given + 3 mg discarded = 658 mg: still 66 units; no billable unit was discarded (Noridian JZ)
    result = run(adm(CHEMO, "09:00", "12:00", dose=(655, "mg"), wasted=(3, "mg")))
    assert drug(result) == [("J9312", 66, ("JZ",))]


def test_a_drug_given_without_a_time_is_dated_on_the_encounters_first_day() -> None:
    result = run(adm(THER, "09:00", "09:40", dose=(8, "mg")), adm(CHEMO, None, id="no-time", dose=(655, "mg")))
    assert ("J9312", 66, ("JZ",)) in drug(result)
    assert next(ln for ln in result.lines if ln.code == "J9312").service_date == date(2026, 3, 2)
    assert {"drug-dated-from-encounter", "missing-start-time"} <= warning_codes(result)


def test_a_drug_that_cannot_be_dated_is_flagged_not_dropped_silently() -> None:
    result = run(adm(CHEMO, None, id="no-time", dose=(655, "mg")))
    assert drug(result) == []
    assert any(w.code == "drug-not-dated" and w.message.startswith("administration no-time") for w in result.warnings)


def test_multi_dose_drugs_get_neither_jw_nor_jz() -> None:
    result = run(adm(THER, "09:00", method=Method.PUSH, dose=(8, "mg")))
    assert drug(result) == [("J2405", 8, ())]


def test_doses_of_one_drug_on_one_day_are_summed_before_rounding() -> None:
    result = run(adm(THER, "09:00", method=Method.PUSH, dose=(4, "mg")), adm(THER, "10:00", method=Method.PUSH, dose=(4, "mg")),
                 adm("J1200", "09:10", method=Method.PUSH, dose=(25, "mg")), adm("J1200", "10:10", method=Method.PUSH, dose=(25, "mg")))
    assert drug(result) == [("J1200", 1, ()), ("J2405", 8, ())]


def test_drug_lines_are_dated_per_day() -> None:
    result = run(adm(THER, "23:00", method=Method.PUSH, dose=(4, "mg")), adm(THER, "08:00", day=1, method=Method.PUSH, dose=(4, "mg")))
    assert sorted((ln.code, ln.units, ln.service_date) for ln in result.lines if ln.system == "HCPCS") == [
        ("J2405", 4, date(2026, 3, 2)), ("J2405", 4, date(2026, 3, 3))]


def test_unit_conversion_g_to_mg_and_meq() -> None:
    result = run(adm("J3370", "09:00", "10:00", dose=(1.25, "g")), adm("J3480", "10:00", "11:00", dose=(20, "mEq")))
    assert drug(result) == [("J3370", 3, ()), ("J3480", 10, ())]


def test_hydration_units_from_volume() -> None:
    result = run(adm(NS, "09:00", "11:00", volume=1500))
    assert drug(result) == [("J7030", 2, ())]


def test_unknown_drug_gets_an_unclassified_line_and_a_warning() -> None:
    result = run(adm(None, "09:00", "09:30", text="mystery mab"))
    assert drug(result) == [("J3490", 1, ())]
    assert "unknown-drug" in warning_codes(result)


def test_unconvertible_dose_is_billed_conservatively_with_a_warning() -> None:
    result = run(adm(CHEMO, "09:00", "10:00", dose=(2, "mL")), jw_jz=False)
    assert drug(result) == [("J9312", 1, ())]
    assert "dose-unit-mismatch" in warning_codes(result)


def test_profile_route_and_payer_drug_modifiers() -> None:
    result = run(adm(CHEMO, "09:00", "10:00", dose=(100, "mg")), adm(THER, "09:00", route=Route.SC, dose=(4, "mg"), site=None),
                 route_drug_modifiers={"iv": "JA", "sc": "JB"}, drug_line_modifiers=("TB",))
    assert drug(result) == [("J2405", 4, ("JB", "TB")), ("J9312", 10, ("JA", "TB", "JZ"))]


def test_flush_and_kvo_produce_no_drug_line() -> None:
    result = run(adm(NS, "09:00", method=Method.FLUSH, volume=10), adm(NS, "09:00", "15:00", kvo=True, volume=100))
    assert result.lines == ()


def test_ndc_goes_with_the_drug_line() -> None:
    from coding_core.formulary import NDC_SYSTEM
    from coding_core.model import Coding

    ev = adm(CHEMO, "09:00", "10:00", dose=(100, "mg"))
    ev = ev.model_copy(update={"drug_codings": (*ev.drug_codings, Coding(system=NDC_SYSTEM, code="50242-051-21"))})
    line = next(ln for ln in run(ev).lines if ln.system == "HCPCS")
    assert line.ndc == "50242005121"


def test_source_warnings_from_the_mapper_reach_the_encounter():
    base = adm(THER, "09:00", "09:40")
    event = AdministrationEvent.model_validate({**base.model_dump(), "source_warnings": ("RXA-3: local time is ambiguous",)})
    result = run(event)
    assert [(w.code, w.message, w.administration_ids) for w in result.warnings if w.code == "source-data"] == [
        ("source-data", "RXA-3: local time is ambiguous", (event.id,))
    ]
