"""The rules real feeds need (CODING_RULES, "What is an administration service at all"): routes
that are no service, codes nobody knows, "inject" is not "push", statuses, derived stop times,
drug rates, subcutaneous and intra-arterial infusions, 96368 per date of service.

Each row would fail if its rule broke.  ``cpt()`` lists the administration lines, ``drug()``
the HCPCS drug lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest

from coding_core.model import AdminStatus, EncounterClass, Method, Route
from tests.builders import CHEMO, NS, THER, THER2, THER3, adm, cpt, drug, run, warning_codes


@dataclass
class Case:
    id: str
    events: Callable[[], list]
    lines: list[tuple]  # administration lines
    drugs: list[str] | None = None  # HCPCS codes of the drug lines (None: not checked)
    warnings: set[str] = field(default_factory=set)
    kw: dict = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)  # warnings that must not be raised


CASES = [
    # --- routes that are not a drug administration service ------------------------------------
    Case("oral ondansetron with chemotherapy: the drug line only (Q0162), its condition flagged",
         lambda: [adm(THER, "09:00", route=Route.ORAL, dose=(8, "mg")), adm(CHEMO, "09:30", "10:30", dose=(500, "mg"))],
         [("96413", 1)], ["J9312", "Q0162"], {"route-drug-condition"}),
    Case("oral ondansetron without chemotherapy: not charged (Q0162 needs chemotherapy)",
         lambda: [adm(THER, "09:00", route=Route.ORAL, dose=(8, "mg"))], [], []),
    Case("an oral drug with an unrecognised method keeps its oral line",
         lambda: [adm(THER, "09:00", route=Route.ORAL, dose=(8, "mg"), method=Method.UNRECOGNISED, unrecognised=("method urn:local|ZZ",)),
                  adm(CHEMO, "09:30", "10:30", dose=(500, "mg"))], [("96413", 1)], ["J9312", "Q0162"], absent={"needs-review"}),
    Case("within a procedure (epidural, intra-articular, ...): no administration line, the drug line stays, flagged",
         lambda: [adm(THER2, "09:00", "09:05", route=Route.PROCEDURE, dose=(10, "mg"))], [], ["J1100"], {"procedure-route"}),
    Case("oral drug with no oral HCPCS code: nothing at all, not J3490",
         lambda: [adm(THER3, "09:00", route=Route.ORAL, dose=(650, "mg"), text="acetaminophen")], [], []),
    Case("oral dexamethasone: J8540 per 0.25 mg", lambda: [adm(THER2, "09:00", route=Route.ORAL, dose=(4, "mg"))], [], ["J8540"]),
    Case("stopped with no stop time: the planned duration is not the time given",
         lambda: [adm("J3370", "09:00", rate=125, volume=250, infusion_minutes=120, status=AdminStatus.STOPPED)], [], None,
         {"missing-stop-time"}, absent={"derived-stop-time"}),
    Case("an IV 'inject' with a documented 90-min duration is an infusion",
         lambda: [adm(CHEMO, "09:00", method=Method.INJECTION, infusion_minutes=90)], [("96413", 1)], None, {"derived-stop-time"}),
    Case("SC with a documented 90-min duration and no method: an SC infusion",
         lambda: [adm(THER, "09:00", route=Route.SC, site=None, infusion_minutes=90)], [("96369", 1)], None, {"derived-stop-time"}),
    Case("an unknown oral drug: no line and no unknown-drug warning",
         lambda: [adm(None, "09:00", route=Route.ORAL, text="azithromycin 250 mg tablet")], [], [], absent={"unknown-drug"}),
    Case("sublingual, topical, inhaled ...: no line",
         lambda: [adm(THER, "09:00", "09:30", route=Route.NON_PARENTERAL)], [], []),
    Case("an oral drug beside an IV push: the push is still coded",
         lambda: [adm(THER2, "09:00", route=Route.ORAL, dose=(4, "mg")), adm(THER, "09:10", method=Method.PUSH, dose=(8, "mg"))],
         [("96374", 1)], ["J2405", "J8540"]),
    # --- codes nobody knows -------------------------------------------------------------------
    Case("unrecognised route code: no administration line, no drug line, needs review",
         lambda: [adm(THER, "09:00", "09:40", route=Route.UNRECOGNISED, unrecognised=("route http://snomed.info/sct|999",))],
         [], [], {"needs-review"}),
    Case("unrecognised method on an IV route: no administration line; the drug line stays",
         lambda: [adm(THER, "09:00", "09:40", method=Method.UNRECOGNISED, unrecognised=("method urn:local|ZZ",), dose=(8, "mg"))],
         [], ["J2405"], {"needs-review"}),
    Case("one unrecognised administration does not stop the rest of the encounter",
         lambda: [adm(THER, "09:00", "09:40", route=Route.UNRECOGNISED, unrecognised=("route urn:local|X",)), adm(THER2, "10:00", "10:30")],
         [("96365", 1)], None, {"needs-review"}),
    # --- "inject" is not "push" -------------------------------------------------------------------
    Case("IV 'inject' over 10 h is an infusion, not a push",
         lambda: [adm(THER, "08:00", "18:00", method=Method.INJECTION)], [("96365", 1), ("96366", 9)]),
    Case("IV 'inject' of 10 min is a push", lambda: [adm(THER, "08:00", "08:10", method=Method.INJECTION)], [("96374", 1)]),
    Case("IV 'inject' at a single time is a push, without a missing-stop warning",
         lambda: [adm(THER, "08:00", "08:00", method=Method.INJECTION)], [("96374", 1)], absent={"missing-stop-time"}),
    Case("documented push over 10 h stays a push, flagged",
         lambda: [adm(THER, "08:00", "18:00", method=Method.PUSH)], [("96374", 1)], None, {"method-time-conflict"}),
    Case("documented push of 15 min: no conflict",
         lambda: [adm(THER, "08:00", "08:15", method=Method.PUSH)], [("96374", 1)], absent={"method-time-conflict"}),
    # --- statuses ---------------------------------------------------------------------------------
    Case("stopped is charged for the time given", lambda: [adm(THER, "09:00", "09:40", status=AdminStatus.STOPPED)], [("96365", 1)]),
    Case("in-progress at close: not charged, warned",
         lambda: [adm(THER, "09:00", status=AdminStatus.IN_PROGRESS)], [], [], {"in-progress-at-close"}),
    Case("on-hold (not given): not charged", lambda: [adm(THER, "09:00", "09:40", status=AdminStatus.ON_HOLD)], [], []),
    Case("unknown status: not charged", lambda: [adm(THER, "09:00", "09:40", status=AdminStatus.UNKNOWN)], [], []),
    # --- stop times derived from a documented duration, or volume / rate ----------------------------
    Case("IVPB with one time, 250 mL at 125 mL/h and 'infuse over' 120 min: 96365 + 96366",
         lambda: [adm("J3370", "09:00", rate=125, volume=250, infusion_minutes=120, dose=(1, "g"))],
         [("96365", 1), ("96366", 1)], ["J3370"], {"derived-stop-time"}),
    Case("a drug infusion with one time, 250 mL at 125 mL/h: stop from volume / rate",
         lambda: [adm("J3370", "09:00", rate=125, volume=250)], [("96365", 1), ("96366", 1)], None, {"derived-stop-time"}),
    Case("a documented duration of 10 min makes a push",
         lambda: [adm(THER, "09:00", infusion_minutes=10)], [("96374", 1)], None, {"derived-stop-time"}),
    Case("a documented end wins over a documented duration",
         lambda: [adm(THER, "09:00", "09:30", infusion_minutes=120)], [("96365", 1)], absent={"derived-stop-time"}),
    Case("derive_stop_time false: a drug infusion without a stop is not billable",
         lambda: [adm("J3370", "09:00", rate=125, volume=250, infusion_minutes=120)], [], None, {"missing-stop-time"},
         {"derive_stop_time": False}),
    Case("derive_stop_time false: hydration still derives from volume / rate",
         lambda: [adm(NS, "09:00", volume=1000, rate=500)], [("96360", 1), ("96361", 1)], None, {"derived-stop-time"},
         {"derive_stop_time": False}),
    # --- rates ---------------------------------------------------------------------------------------
    Case("a drug rate makes an administration without a stop an infusion (not billable), never a push",
         lambda: [adm(THER, "09:00", drug_rate="100 mg/min")], [], None, {"missing-stop-time"}),
    # --- subcutaneous and intra-arterial infusions ---------------------------------------------------
    Case("SC with start and stop 91 min apart and no method: 96369 + 96370",
         lambda: [adm(THER, "09:00", "10:31", route=Route.SC, site=None, body_site="abdomen")], [("96369", 1), ("96370", 1)]),
    Case("SC of 10 min: an injection", lambda: [adm(THER, "09:00", "09:10", route=Route.SC, site=None)], [("96372", 1)]),
    Case("SC documented as an injection over 40 min stays an injection, flagged",
         lambda: [adm(THER, "09:00", "09:40", route=Route.SC, method=Method.INJECTION, site=None)], [("96372", 1)], None,
         {"method-time-conflict"}),
    Case("SC infusion with no stop: not billable as an infusion",
         lambda: [adm(THER, "09:00", route=Route.SC, method=Method.INFUSION, site=None)], [], None, {"missing-stop-time"}),
    Case("intra-arterial therapeutic infusion: 96379, not 96373",
         lambda: [adm(THER, "09:00", "10:00", route=Route.INTRA_ARTERIAL)], [("96379", 1)], None, {"unlisted-code"}),
    Case("intra-arterial therapeutic push at a single time: 96373, no missing-stop warning",
         lambda: [adm(THER, "09:00", "09:00", route=Route.INTRA_ARTERIAL, method=Method.PUSH)], [("96373", 1)],
         absent={"missing-stop-time"}),
    Case("intra-arterial chemo infusion: 96422", lambda: [adm(CHEMO, "09:00", "09:50", route=Route.INTRA_ARTERIAL)], [("96422", 1)]),
    # --- 96368 per date of service ---------------------------------------------------------------------
    Case("two concurrent infusions on two dates of an observation stay: 96368 on each date",
         lambda: [adm(THER, "22:00", "23:50"), adm(THER2, "22:30", "23:00"), adm(THER3, "01:00", "01:40", day=1),
                  adm("J3370", "01:10", "01:30", day=1)],
         [("96365", 1), ("96366", 1), ("96367", 1), ("96368", 1), ("96368", 1)], None, set(),
         {"encounter_class": EncounterClass.OBSERVATION}),
    Case("two concurrent infusions on one date: 96368 once",
         lambda: [adm(THER, "09:00", "11:00"), adm(THER2, "09:10", "09:40"), adm(THER3, "10:00", "10:30")],
         [("96365", 1), ("96366", 1), ("96368", 1)]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(case: Case) -> None:
    result = run(*case.events(), **case.kw)
    assert cpt(result) == sorted(case.lines)
    if case.drugs is not None:
        assert sorted(code for code, _, _ in drug(result)) == sorted(case.drugs)
    codes = warning_codes(result)
    assert case.warnings <= codes, f"missing warnings {case.warnings - codes}"
    assert not case.absent & codes, f"unexpected warnings {case.absent & codes}"


def test_a_needs_review_warning_names_system_and_code_never_display():
    result = run(adm(THER, "09:00", "09:40", route=Route.UNRECOGNISED, unrecognised=("route http://snomed.info/sct|999",), id="a"))
    (w,) = [w for w in result.warnings if w.code == "needs-review"]
    assert "http://snomed.info/sct|999" in w.message and w.administration_ids == ("a",)
    assert [x.reason for x in result.exclusions if x.administration_id == "a"] == ["route or method code not recognised: needs review"]


def test_oral_units_follow_the_oral_billing_unit():
    result = run(adm(THER, "09:00", route=Route.ORAL, dose=(8, "mg")), adm(CHEMO, "09:30", "10:30"))
    (line,) = [ln for ln in result.lines if ln.code == "Q0162"]
    assert line.units == 8


def test_the_explanation_names_the_stop_time_source_and_the_rate_of_every_infusion_line():
    result = run(adm("J3370", "09:00", rate=125, volume=250, infusion_minutes=120, id="ivpb"),
                 adm(THER, "12:00", "12:40", drug_rate="2 mg/min", id="drip"), adm(NS, "13:00", "14:00", rate=250, id="ns"))
    reasons = {ln.code: ln.reason for ln in result.lines if ln.system == "CPT"}
    assert "stop derived from the documented infusion duration, 120 min; volume rate 125 mL/h" in reasons["96365"]
    assert "documented stop; drug rate 2 mg/min" in reasons["96367"]
    assert "documented stop; volume rate 250 mL/h" in reasons["96361"]


def test_a_documented_push_with_one_time_shows_its_time():
    (line,) = run(adm(THER, "09:00", route=Route.INTRA_ARTERIAL, method=Method.PUSH)).lines[:1]
    assert "[2026-" in line.reason and "[]" not in line.reason
