"""One row per rule of CODING_RULES.md: the administrations, and the lines a coder would produce.

Each row would fail if its rule broke.  ``cpt()`` lists (code, units[, modifiers]) sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest

from coding_core.model import AdminStatus, EncounterClass, Method, PumpType, Route, Setting
from tests.builders import CHEMO, CHEMO2, HORMONAL, NS, THER, THER2, THER3, adm, at, cpt, run, warning_codes


@dataclass
class Case:
    id: str
    events: Callable[[], list]
    expected: list[tuple]
    warnings: set[str] = field(default_factory=set)
    kw: dict = field(default_factory=dict)


CASES = [
    # --- push vs infusion --------------------------------------------------------------------
    Case("ther IV of 15 min is a push", lambda: [adm(THER, "09:00", "09:15")], [("96374", 1)]),
    Case("ther IV of 16 min is an infusion", lambda: [adm(THER, "09:00", "09:16")], [("96365", 1)]),
    Case("chemo IV of 15 min is a chemo push", lambda: [adm(CHEMO, "09:00", "09:15")], [("96409", 1)]),
    Case("chemo IV of 16 min is a chemo infusion", lambda: [adm(CHEMO, "09:00", "09:16")], [("96413", 1)]),
    Case("documented push stays a push whatever the minutes", lambda: [adm(THER, "09:00", "09:20", method=Method.PUSH)], [("96374", 1)]),
    Case("no stop time, push plausible: reported as push with a warning",
         lambda: [adm(THER, "09:00")], [("96374", 1)], {"missing-stop-time"}),
    Case("no stop time on a documented infusion: not billable, warning",
         lambda: [adm(THER, "09:00", method=Method.INFUSION, rate=100)], [], {"missing-stop-time"}),
    Case("hydration without stop: stop = volume / rate (1000 mL at 500 mL/h = 2 h)",
         lambda: [adm(NS, "09:00", volume=1000, rate=500)], [("96360", 1), ("96361", 1)], {"derived-stop-time"}),
    Case("hydration without stop and without rate: not billable",
         lambda: [adm(NS, "09:00", volume=1000)], [], {"missing-stop-time"}),
    # --- thresholds and additional-hour units --------------------------------------------------
    Case("90 min: no additional hour", lambda: [adm(THER, "09:00", "10:30")], [("96365", 1)]),
    Case("91 min: one additional hour", lambda: [adm(THER, "09:00", "10:31")], [("96365", 1), ("96366", 1)]),
    Case("150 min: one additional hour", lambda: [adm(THER, "09:00", "11:30")], [("96365", 1), ("96366", 1)]),
    Case("151 min: two additional hours", lambda: [adm(THER, "09:00", "11:31")], [("96365", 1), ("96366", 2)]),
    Case("chemo 151 min: 96413 + 96415 x2", lambda: [adm(CHEMO, "09:00", "11:31")], [("96413", 1), ("96415", 2)]),
    Case("hydration of 30 min is not billable", lambda: [adm(NS, "09:00", "09:30")], [], {"hydration-too-short"}),
    Case("hydration of 31 min is 96360", lambda: [adm(NS, "09:00", "09:31")], [("96360", 1)]),
    Case("hydration of 91 min is 96360 + 96361", lambda: [adm(NS, "09:00", "10:31")], [("96360", 1), ("96361", 1)]),
    # --- hierarchy: the initial service is chosen by rank, not clock ---------------------------
    Case("push before a chemo infusion becomes 96375",
         lambda: [adm(THER, "09:00", "09:05", method=Method.PUSH), adm(CHEMO, "09:30", "10:30")],
         [("96375", 1), ("96413", 1)]),
    Case("chemo push before a chemo infusion becomes 96411",
         lambda: [adm(CHEMO2, "09:00", "09:05", method=Method.PUSH), adm(CHEMO, "09:30", "10:30")],
         [("96411", 1), ("96413", 1)]),
    Case("hydration with a push: the push is initial, hydration 96361",
         lambda: [adm(NS, "08:00", "09:00"), adm(THER, "09:10", "09:12", method=Method.PUSH)],
         [("96361", 1), ("96374", 1)]),
    Case("hydration before a therapeutic infusion: 96365 initial, 96361",
         lambda: [adm(NS, "08:00", "08:45"), adm(THER, "09:00", "09:30")],
         [("96361", 1), ("96365", 1)]),
    Case("chemo infusion outranks an earlier therapeutic infusion: 96413 + 96367",
         lambda: [adm(THER, "08:00", "08:30"), adm(CHEMO, "09:00", "10:00")],
         [("96367", 1), ("96413", 1)]),
    Case("chemo push outranks a therapeutic infusion: 96409 + 96367",
         lambda: [adm(THER, "08:00", "08:30"), adm(CHEMO, "09:00", "09:05", method=Method.PUSH)],
         [("96367", 1), ("96409", 1)]),
    # --- sequential infusions ----------------------------------------------------------------
    Case("sequential new drug: 96367", lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "10:00", "10:30")], [("96365", 1), ("96367", 1)]),
    Case("sequential infusion of 130 min: 96367 + 96366 (not 96367 x2)",
         lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "10:00", "12:10")], [("96365", 1), ("96366", 1), ("96367", 1)]),
    Case("sequential infusion under 16 min is a push: 96375",
         lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "10:00", "10:10")], [("96365", 1), ("96375", 1)]),
    Case("96367 once per sequential infusate: two bags of the same new drug = one 96367, times added",
         lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "10:00", "10:50"), adm(THER2, "11:00", "11:50")],
         [("96365", 1), ("96366", 1), ("96367", 1)]),
    Case("same drug in several bags: times added before counting hours (50 + 50 min = 96365 + 96366)",
         lambda: [adm(THER, "09:00", "09:50"), adm(THER, "10:00", "10:50")], [("96365", 1), ("96366", 1)]),
    Case("same drug separated by another drug still sums: A 60 + B 30 + A 60",
         lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "10:00", "10:30"), adm(THER, "10:30", "11:30")],
         [("96365", 1), ("96366", 1), ("96367", 1)]),
    Case("chemo sequential different drug: 96417 once, its hours are 96415",
         lambda: [adm(CHEMO, "09:00", "10:00"), adm(CHEMO2, "10:00", "12:00")], [("96413", 1), ("96415", 1), ("96417", 1)]),
    # --- concurrent ---------------------------------------------------------------------------
    Case("concurrent therapeutic infusion: 96368",
         lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "09:10", "09:40")], [("96365", 1), ("96368", 1)]),
    Case("96368 once per encounter",
         lambda: [adm(THER, "09:00", "11:00"), adm(THER2, "09:10", "09:40"), adm(THER3, "10:10", "10:40")],
         [("96365", 1), ("96366", 1), ("96368", 1)]),
    Case("concurrent with a chemo infusion: 96413 + 96368",
         lambda: [adm(CHEMO, "09:00", "10:00"), adm(THER, "09:00", "09:30")], [("96368", 1), ("96413", 1)]),
    Case("concurrent hydration is not billable",
         lambda: [adm(THER, "09:00", "10:00"), adm(NS, "09:00", "10:00")], [("96365", 1)], {"hydration-concurrent"}),
    Case("only the non-concurrent part of hydration counts (45 min outside = 96361)",
         lambda: [adm(THER, "09:00", "10:00"), adm(NS, "09:30", "10:45")], [("96361", 1), ("96365", 1)]),
    Case("concurrent chemo infusions: unlisted 96549",
         lambda: [adm(CHEMO, "09:00", "10:00"), adm(CHEMO2, "09:15", "09:45")], [("96413", 1), ("96549", 1)], {"unlisted-code"}),
    Case("start exactly at the previous stop is sequential, not concurrent",
         lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "10:00", "10:20")], [("96365", 1), ("96367", 1)]),
    # --- pushes, 96376 ---------------------------------------------------------------------------
    Case("96376: same drug pushed 31 min after its last push",
         lambda: [adm(THER, "09:00", "09:02", method=Method.PUSH), adm(THER, "09:31", "09:33", method=Method.PUSH)],
         [("96374", 1), ("96376", 1)]),
    Case("96376 needs more than 30 min: 30 min later is not billable",
         lambda: [adm(THER, "09:00", "09:02", method=Method.PUSH), adm(THER, "09:30", "09:32", method=Method.PUSH)],
         [("96374", 1)]),
    Case("96376 measured from the last *reported* push",
         lambda: [adm(THER, "09:00", method=Method.PUSH), adm(THER, "09:20", method=Method.PUSH), adm(THER, "09:40", method=Method.PUSH)],
         [("96374", 1), ("96376", 1)]),
    Case("new drug push: 96375",
         lambda: [adm(THER, "09:00", method=Method.PUSH), adm(THER2, "09:05", method=Method.PUSH)], [("96374", 1), ("96375", 1)]),
    Case("professional setting never reports 96376",
         lambda: [adm(THER, "09:00", method=Method.PUSH), adm(THER, "10:00", method=Method.PUSH)], [("96374", 1)],
         kw={"setting": Setting.PROFESSIONAL}),
    Case("the same chemo drug pushed again is not an additional drug",
         lambda: [adm(CHEMO, "09:00", method=Method.PUSH), adm(CHEMO, "10:00", method=Method.PUSH)], [("96409", 1)]),
    Case("duplicate push records at the same minute count once",
         lambda: [adm(THER, "09:00", method=Method.PUSH), adm(THER, "09:00", method=Method.PUSH)], [("96374", 1)], {"possible-duplicate"}),
    # --- injections: outside the hierarchy, one unit each ------------------------------------------
    Case("SC chemo injection 96401", lambda: [adm(CHEMO, "09:00", route=Route.SC, site=None)], [("96401", 1)]),
    Case("SC hormonal chemo injection 96402", lambda: [adm(HORMONAL, "09:00", route=Route.SC, site=None)], [("96402", 1)]),
    Case("two IM therapeutic injections: 96372 x2", lambda: [adm(THER, "09:00", route=Route.IM, site=None), adm(THER2, "09:30", route=Route.IM, site=None)], [("96372", 2)]),
    Case("injections do not displace the IV initial",
         lambda: [adm(THER, "09:00", route=Route.IM, site=None), adm(THER2, "09:10", method=Method.PUSH)], [("96372", 1), ("96374", 1)]),
    # --- other families ------------------------------------------------------------------------
    Case("intra-arterial chemo infusion 96422 + 96423", lambda: [adm(CHEMO, "09:00", "10:31", route=Route.INTRA_ARTERIAL)], [("96422", 1), ("96423", 1)]),
    Case("intra-arterial chemo push 96420", lambda: [adm(CHEMO, "09:00", "09:05", route=Route.INTRA_ARTERIAL)], [("96420", 1)]),
    Case("intra-arterial therapeutic 96373", lambda: [adm(THER, "09:00", "09:05", route=Route.INTRA_ARTERIAL)], [("96373", 1)]),
    Case("subcutaneous infusion 96369 + 96370", lambda: [adm(THER, "09:00", "10:45", route=Route.SC, method=Method.INFUSION, site=None, body_site="abdomen-L")], [("96369", 1), ("96370", 1)]),
    Case("second SC infusion site: 96371",
         lambda: [adm(THER, "09:00", "09:45", route=Route.SC, method=Method.INFUSION, site=None, body_site="abdomen-L"),
                  adm(THER, "09:00", "09:45", route=Route.SC, method=Method.INFUSION, site=None, body_site="abdomen-R")],
         [("96369", 1), ("96371", 1)]),
    Case("prolonged chemo infusion on a portable pump: 96416 (with the 96413 of the same visit)",
         lambda: [adm(CHEMO2, "09:00", "10:00"), adm("J9190", "10:30", "08:30", end_day=2, pump=PumpType.PORTABLE)],
         [("96413", 1), ("96416", 1)]),
    Case("portable pump refill 96521", lambda: [adm("J9190", "09:00", method=Method.PUMP_REFILL, pump=PumpType.PORTABLE)], [("96521", 1)]),
    Case("implantable pump refill 96522", lambda: [adm(THER, "09:00", method=Method.PUMP_REFILL, pump=PumpType.IMPLANTABLE)], [("96522", 1)]),
    Case("port irrigation alone that day: 96523", lambda: [adm(None, "09:00", method=Method.FLUSH, access_type="port", text="heparin lock flush")], [("96523", 1)]),
    Case("port irrigation with another service that day: bundled",
         lambda: [adm(None, "09:00", method=Method.FLUSH, access_type="port", text="heparin lock flush"), adm(THER, "09:10", method=Method.PUSH)], [("96374", 1)]),
    Case("unlisted route: 96379 with a review warning", lambda: [adm(THER, "09:00", "09:30", route=Route.OTHER)], [("96379", 1)], {"unlisted-code"}),
    # --- never billable ------------------------------------------------------------------------
    Case("flush is not billable", lambda: [adm(NS, "09:00", method=Method.FLUSH)], []),
    Case("KVO is not hydration", lambda: [adm(NS, "09:00", "13:00", kvo=True)], []),
    Case("KVO rate is not hydration", lambda: [adm(NS, "09:00", "13:00", rate=20)], []),
    Case("fluid pushed is a flush", lambda: [adm(NS, "09:00", "09:40", method=Method.PUSH)], []),
    Case("contrast for imaging is not drug administration", lambda: [adm("Q9967", "09:00", "09:01")], []),
    Case("sedation integral to a procedure is not billable", lambda: [adm(THER, "09:00", "09:02", part_of_procedure=True)], []),
    Case("hydration around a blood transfusion is not billable",
         lambda: [adm("P9016", "10:00", "12:00"), adm(NS, "09:30", "12:30")], [], {"hydration-around-transfusion"}),
    Case("entered-in-error and not-done are ignored",
         lambda: [adm(CHEMO, "09:00", "10:00", status=AdminStatus.ENTERED_IN_ERROR), adm(THER, "09:00", "10:00", status=AdminStatus.NOT_DONE)], []),
    Case("inpatient encounters get no administration lines",
         lambda: [adm(CHEMO, "09:00", "10:00")], [], kw={"encounter_class": EncounterClass.INPATIENT}),
    # --- access sites --------------------------------------------------------------------------
    Case("second access site: its own initial with 59 and a warning",
         lambda: [adm(THER, "09:00", "10:00", site="piv-L"), adm(THER2, "09:00", "10:00", site="picc-1")],
         [("96365", 1), ("96365", 1, ("59",))], {"second-initial-service"}),
    Case("second access site with the X-modifier profile: XS",
         lambda: [adm(THER, "09:00", "10:00", site="piv-L"), adm(THER2, "09:00", "10:00", site="picc-1")],
         [("96365", 1), ("96365", 1, ("XS",))], {"second-initial-service"}, {"distinct_service_modifier": "XS"}),
    Case("the higher-ranked site is primary, the other gets 59",
         lambda: [adm(THER, "08:00", "09:00", site="piv-L"), adm(CHEMO, "09:00", "10:00", site="port-1")],
         [("96365", 1, ("59",)), ("96413", 1)], {"second-initial-service"}),
    Case("body site identifies the access when no device is documented",
         lambda: [adm(THER, "09:00", "10:00", site=None, body_site="LA"), adm(THER2, "10:00", "10:30", site=None, body_site="LA")],
         [("96365", 1), ("96367", 1)]),
    Case("missing access site joins the primary access, never a second initial",
         lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "10:00", "10:30", site=None)], [("96365", 1), ("96367", 1)], {"missing-access-site"}),
    # an administration without a site is on the primary access for everything, not only the initial
    Case("missing site, concurrent with the primary access's infusion: 96368",
         lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "09:10", "09:40", site=None)], [("96365", 1), ("96368", 1)], {"missing-access-site"}),
    Case("missing site, hydration concurrent with the primary infusion: not billable",
         lambda: [adm(THER, "09:00", "10:00"), adm(NS, "09:00", "10:00", site=None)], [("96365", 1)], {"missing-access-site"}),
    Case("missing site, same drug's second bag: times added (96365 + 96366, no 96367)",
         lambda: [adm(THER, "09:00", "09:50"), adm(THER, "10:00", "10:50", site=None)], [("96365", 1), ("96366", 1)], {"missing-access-site"}),
    Case("missing site, hydration bags summed on the primary access: 80 min is 96360 only",
         lambda: [adm(NS, "09:00", "09:40"), adm(NS, "10:00", "10:40", site=None)], [("96360", 1)], {"missing-access-site"}),
    Case("professional: missing site, concurrent infusion on the same date: 96368",
         lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "09:10", "09:40", site=None)], [("96365", 1), ("96368", 1)],
         {"missing-access-site"}, {"setting": Setting.PROFESSIONAL}),
    Case("a site whose only service is not billable leaves the other site's initial without 59",
         lambda: [adm(NS, "08:00", "08:20", site="piv-A"), adm(NS, "09:00", "09:40", site="piv-B")], [("96360", 1)], {"hydration-too-short"}),
    Case("professional: one initial per date, no modifier, whatever the sites",
         lambda: [adm(THER, "09:00", "10:00", site="piv-L"), adm(THER2, "10:00", "10:30", site="picc-1")],
         [("96365", 1), ("96367", 1)], kw={"setting": Setting.PROFESSIONAL}),
    # --- an infusion on a pump is never a push ---------------------------------------------------
    Case("chemo started on a portable pump, no stop time: 96416 initiation, with a warning",
         lambda: [adm(CHEMO, "10:30", pump=PumpType.PORTABLE)], [("96416", 1)], {"missing-stop-time"}),
    Case("chemo push then the same chemo on a pump with no stop time: 96409 + 96416",
         lambda: [adm(CHEMO2, "09:00", "09:05", method=Method.PUSH), adm(CHEMO2, "09:30", pump=PumpType.PORTABLE)],
         [("96409", 1), ("96416", 1)], {"missing-stop-time"}),
    Case("therapeutic infusion on a pump with no stop time: not billable, not a push",
         lambda: [adm(THER, "10:30", pump=PumpType.PORTABLE)], [], {"missing-stop-time"}),
    # --- a push of a drug already infused is not a new drug ------------------------------------
    Case("facility: push of the infused drug > 30 min after the infusion ended: 96376, not 96375",
         lambda: [adm(THER, "09:00", "09:30"), adm(THER, "10:05", "10:06", method=Method.PUSH)], [("96365", 1), ("96376", 1)]),
    Case("facility: push of the infused drug 10 min after the infusion ended: not billable",
         lambda: [adm(THER, "09:00", "09:30"), adm(THER, "09:40", "09:41", method=Method.PUSH)], [("96365", 1)]),
    Case("professional: push of the infused drug: not billable (no 96376)",
         lambda: [adm(THER, "09:00", "09:30"), adm(THER, "10:05", "10:06", method=Method.PUSH)], [("96365", 1)],
         kw={"setting": Setting.PROFESSIONAL}),
    Case("a push before the same drug's infusion is still a new drug",
         lambda: [adm(THER, "08:30", "08:31", method=Method.PUSH), adm(THER, "09:00", "09:30")], [("96365", 1), ("96375", 1)]),
    # --- add-on without its primary ------------------------------------------------------------
    Case("96368 needs an infusion primary: with a 96409 initial it is removed",
         lambda: [adm(CHEMO, "09:00", "09:05", method=Method.PUSH), adm(THER, "10:00", "11:00"), adm(THER2, "10:20", "10:50")],
         [("96367", 1), ("96409", 1)], {"addon-without-primary"}),
    # --- drugs ---------------------------------------------------------------------------------
    Case("unknown drug: coded as therapeutic, with a warning", lambda: [adm(None, "09:00", "09:40", text="investigational mab")], [("96365", 1)], {"unknown-drug"}),
    Case("administration after the encounter closed is coded and flagged",
         lambda: [adm(THER, "18:00", "18:40")], [("96365", 1)], {"administered-after-close"}, {"period_end": at("17:00")}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(case: Case) -> None:
    result = run(*case.events(), **case.kw)
    assert cpt(result) == sorted(case.expected)
    assert case.warnings <= warning_codes(result), f"missing warnings {case.warnings - warning_codes(result)}"


def test_every_line_explains_itself() -> None:
    result = run(adm(THER, "09:00", "10:31", id="a"), adm(THER2, "10:40", "10:45", id="b", method=Method.PUSH))
    for line in result.lines:
        assert line.reason and line.rule and line.administration_ids
    infusion = next(ln for ln in result.lines if ln.code == "96365")
    assert infusion.minutes == 91 and infusion.administration_ids == ("a",)
    assert "91 min" in infusion.reason


def test_excluded_administrations_are_listed_with_a_reason() -> None:
    result = run(adm(NS, "09:00", method=Method.FLUSH, id="flush-1"), adm(CHEMO, "09:00", "10:00", id="eie", status=AdminStatus.ENTERED_IN_ERROR))
    reasons = {x.administration_id: x.reason for x in result.exclusions}
    assert "flush" in reasons["flush-1"]
    assert "entered in error" in reasons["eie"]


def test_inpatient_keeps_drug_lines() -> None:
    result = run(adm(CHEMO, "09:00", "10:00", dose=(655, "mg")), encounter_class=EncounterClass.INPATIENT)
    assert cpt(result) == []
    assert [(ln.code, ln.units) for ln in result.lines] == [("J9312", 66)]
