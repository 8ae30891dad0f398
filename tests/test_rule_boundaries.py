"""Boundaries of rules in CODING_RULES.md that no other test pins down.

Each test was written against a mutation of the coding core (threshold off by one, rounding
mode, a dropped once-per-day check, a warning no longer raised, ...) and fails under it.
``cpt()`` lists (code, units[, modifiers]) sorted; ``drug()`` lists (code, units, modifiers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest

from coding_core.model import Method, PumpType, Route
from tests.builders import CHEMO, NS, THER, THER2, THER3, adm, cpt, drug, run, warning_codes

FLUOROURACIL = "J9190"  # chemo, given over days on a portable pump


# ------------------------------------------------------------------ 1. 96416 needs more than 8 h

@pytest.mark.parametrize(
    ("end", "pump", "expected"),
    [
        # 480 min = exactly 8 h: an ordinary chemo infusion, 96413 + 7 additional hours
        ("17:00", PumpType.PORTABLE, [("96413", 1), ("96415", 7)]),
        # 481 min: more than 8 h on a pump
        ("17:01", PumpType.PORTABLE, [("96416", 1)]),
        ("17:01", PumpType.IMPLANTABLE, [("96416", 1)]),
        # more than 8 h but no pump documented: not 96416 (481 - 60 = 421 min -> 7 hours)
        ("17:01", None, [("96413", 1), ("96415", 7)]),
    ],
    ids=["480 min on a pump", "481 min on a portable pump", "481 min on an implantable pump", "481 min without a pump"],
)
def test_prolonged_chemo_pump_96416_needs_more_than_8_hours(end: str, pump: PumpType | None, expected: list[tuple]) -> None:
    result = run(adm(FLUOROURACIL, "09:00", end, pump=pump))
    assert cpt(result) == sorted(expected)
    if end == "17:00":
        assert "96416" not in {row[0] for row in cpt(result)}


# ------------------------------------------------------------------ 2. 96425: intra-arterial prolonged on a pump

@pytest.mark.parametrize(
    ("end", "expected"),
    [
        ("17:00", [("96422", 1), ("96423", 7)]),  # 480 min: intra-arterial infusion + hours
        ("17:01", [("96425", 1)]),  # 481 min on a pump: 96425 (not 96416, not 96422)
    ],
    ids=["480 min", "481 min"],
)
def test_intra_arterial_prolonged_chemo_on_a_pump_is_96425(end: str, expected: list[tuple]) -> None:
    result = run(adm(CHEMO, "09:00", end, route=Route.INTRA_ARTERIAL, pump=PumpType.IMPLANTABLE, id="ia"))
    assert cpt(result) == expected
    if end == "17:01":
        (line,) = [ln for ln in result.lines if ln.system == "CPT"]
        assert line.rule == "ia.chemo.prolonged-pump" and line.administration_ids == ("ia",)


# ------------------------------------------------------------------ 3. KVO: rate <= 30 mL/h

@pytest.mark.parametrize(
    ("rate", "kw", "expected"),
    [
        (30, {}, []),  # exactly the KVO maximum: keep-vein-open, not hydration
        (31, {}, [("96360", 1), ("96361", 3)]),  # above it: 4 h of hydration
        (50, {"kvo_max_rate_ml_per_h": 50}, []),  # the maximum is a profile setting
        (51, {"kvo_max_rate_ml_per_h": 50}, [("96360", 1), ("96361", 3)]),
    ],
    ids=["30 mL/h is KVO", "31 mL/h is hydration", "profile max 50: 50 mL/h is KVO", "profile max 50: 51 mL/h is hydration"],
)
def test_kvo_rate_boundary(rate: int, kw: dict, expected: list[tuple]) -> None:
    result = run(adm(NS, "09:00", "13:00", rate=rate, id="ns"), **kw)
    assert cpt(result) == expected
    if not expected:
        assert drug(result) == []  # KVO fluid is bundled: no drug line either
        assert any("keep-vein-open" in x.reason for x in result.exclusions if x.administration_id == "ns")


# ------------------------------------------------------------------ 4. 96523 at most once a day

def _port_flush(id: str, start: str, day: int = 0):
    return adm(None, start, id=id, day=day, method=Method.FLUSH, access_type="port", text="heparin lock flush")


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ((0, 0), [("96523", 1, 0)]),  # two flushes the same day: one 96523
        ((0, 1), [("96523", 1, 0), ("96523", 1, 1)]),  # one flush on each of two days: one each day
    ],
    ids=["same day", "two days"],
)
def test_port_irrigation_once_per_day(days: tuple[int, int], expected: list[tuple]) -> None:
    result = run(_port_flush("f1", "09:00", days[0]), _port_flush("f2", "15:00", days[1]))
    assert cpt(result, with_dates=True) == expected
    if days[0] == days[1]:
        assert any(x.administration_id == "f2" for x in result.exclusions)


# ------------------------------------------------------------------ 5. JZ when the documented waste is 0

def test_documented_zero_waste_on_single_dose_drug_gets_jz_and_no_jw() -> None:
    result = run(adm(CHEMO, "09:00", "12:00", dose=(655, "mg"), wasted=(0, "mg")))
    assert drug(result) == [("J9312", 66, ("JZ",))]
    assert not any("JW" in ln.modifiers for ln in result.lines)


# ------------------------------------------------------------------ 6. drug units round up, not half-up

@pytest.mark.parametrize(
    ("dose", "units"),
    [
        (650, 65),  # exactly 65 units
        (651, 66),  # 65.1 -> 66 (half-up or half-even would give 65)
        (654, 66),  # 65.4 -> 66
    ],
)
def test_drug_units_are_rounded_up(dose: int, units: int) -> None:
    result = run(adm(CHEMO, "09:00", "12:00", dose=(dose, "mg")), jw_jz=False)
    assert drug(result) == [("J9312", units, ())]


# ------------------------------------------------------------------ 7. SC infusion: established site vs new site

def _sc(id: str, start: str, end: str, body_site: str):
    return adm(THER, start, end, id=id, route=Route.SC, method=Method.INFUSION, site=None, body_site=body_site)


@pytest.mark.parametrize(
    ("second_site", "expected"),
    [
        ("abdomen-L", [("96369", 1)]),  # same, already established site: nothing more
        ("abdomen-R", [("96369", 1), ("96371", 1)]),  # a new site: 96371
    ],
    ids=["established site: excluded", "new site: 96371"],
)
def test_second_subcutaneous_infusion_site(second_site: str, expected: list[tuple]) -> None:
    result = run(_sc("sc1", "09:00", "09:45", "abdomen-L"), _sc("sc2", "10:00", "10:45", second_site))
    assert cpt(result) == expected
    excluded = {x.administration_id for x in result.exclusions}
    assert ("sc2" in excluded) == (second_site == "abdomen-L")


# ------------------------------------------------------------------ 8. 96376 from the last *reported* push

@pytest.mark.parametrize(
    ("times", "repeat_id"),
    [
        # 09:31 is 31 min after 09:00: 96376, and it becomes the last reported push;
        # 09:50 is 19 min after 09:31: not reported (although 50 min after 09:00)
        (("09:00", "09:31", "09:50"), "p2"),
        # 09:20 is 20 min after 09:00: not reported, so 09:50 is measured from 09:00 (50 min): 96376
        (("09:00", "09:20", "09:50"), "p3"),
    ],
    ids=["measured from the reported 09:31", "unreported 09:20 does not count"],
)
def test_repeat_push_96376_measured_from_last_reported_push(times: tuple[str, str, str], repeat_id: str) -> None:
    # a chemo infusion on the same access is the initial service; the first push is 96375
    events = [adm(CHEMO, "07:30", "08:30", id="chemo")]
    events += [adm(THER, t, id=f"p{i}", method=Method.PUSH) for i, t in enumerate(times, start=1)]
    result = run(*events)
    assert cpt(result) == [("96375", 1), ("96376", 1), ("96413", 1)]
    by_code = {ln.code: ln.administration_ids for ln in result.lines if ln.system == "CPT"}
    assert by_code["96375"] == ("p1",)
    assert by_code["96376"] == (repeat_id,)


# ------------------------------------------------------------------ 9. warnings with the administrations they concern

@dataclass
class WarningCase:
    id: str
    events: Callable[[], list]
    code: str
    ids: tuple[str, ...]
    expected: list[tuple] | None = None  # the CPT lines, when the case pins them
    kw: dict = field(default_factory=dict)


WARNING_CASES = [
    WarningCase("same id twice with different content",
                lambda: [adm(THER, "09:00", "10:00", id="dup"), adm(THER, "09:00", "10:30", id="dup")],
                "conflicting-duplicate", ("dup",)),
    WarningCase("stop before start: stop ignored, reported as a push",
                lambda: [adm(THER, "09:00", "08:00", end_day=0, id="rev")],
                "stop-before-start", ("rev",), [("96374", 1)]),
    WarningCase("no start time: no administration service",
                lambda: [adm(THER, None, id="nostart")],
                "missing-start-time", ("nostart",), []),
    WarningCase("every record without a site: coded as one access",
                lambda: [adm(THER, "09:00", "10:00", id="u1", site=None), adm(THER2, "10:00", "10:30", id="u2", site=None)],
                "missing-access-site", ("u1", "u2"), [("96365", 1), ("96367", 1)]),
    WarningCase("two overlapping infusions of the same drug on one access: time counted once",
                lambda: [adm(THER, "09:00", "10:00", id="o1"), adm(THER, "09:30", "10:30", id="o2")],
                "possible-duplicate", ("o1", "o2"), [("96365", 1)]),
]


@pytest.mark.parametrize("case", WARNING_CASES, ids=[c.id for c in WARNING_CASES])
def test_warning_names_its_administrations(case: WarningCase) -> None:
    result = run(*case.events(), **case.kw)
    assert case.code in warning_codes(result)
    assert case.ids in {w.administration_ids for w in result.warnings if w.code == case.code}
    if case.expected is not None:
        assert cpt(result) == sorted(case.expected)
    assert "second-initial-service" not in warning_codes(result)


# ------------------------------------------------------------------ 10. 96368: the infusion primary may be on another access

def test_concurrent_96368_kept_when_its_infusion_primary_is_on_another_access() -> None:
    """Concurrent = a second infusate on the *same* access (here port-1, whose initial service is a
    chemo push); the add-on check is per claim (CPT: "use 96368 in conjunction with 96365, 96366,
    96413, 96415, 96416"), so the 96365-59 of the second access is its primary.  Without that
    second access the 96368 is removed (test_rules: "96368 needs an infusion primary")."""
    result = run(
        adm(CHEMO, "09:00", "09:05", id="push", method=Method.PUSH, site="port-1"),
        adm(THER, "10:00", "11:00", id="seq", site="port-1"),
        adm(THER2, "10:20", "10:50", id="conc", site="port-1"),
        adm(THER3, "09:00", "10:00", id="piv", site="piv-L"),
    )
    assert cpt(result) == [("96365", 1, ("59",)), ("96367", 1), ("96368", 1), ("96409", 1)]
    concurrent = next(ln for ln in result.lines if ln.code == "96368")
    assert concurrent.administration_ids == ("conc",)
    assert "addon-without-primary" not in warning_codes(result)
    assert "second-initial-service" in warning_codes(result)

