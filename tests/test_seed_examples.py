"""Every worked example in ../shared/seeds/, as a test.

Where a seed contradicts CPT / CMS (CODING_RULES.md says which governs), the test follows CPT
and its id names the seed and what it got wrong.
Seeds: 000 = SunKnowledge "CPT 96413" post; 001 = N. Shende "Drug Administration - Infusion
Coding" + Pabau "CPT 96413" reference; 002 = Shende examples continued; 003 = "Precision
Billing Guide: CPT 96365"; 004 = SunKnowledge "Infusion Billing 101".
"""

from __future__ import annotations

import pytest

from coding_core.model import EncounterClass, Method
from tests.builders import CHEMO, CHEMO2, NS, THER, THER2, THER3, adm, cpt, run

EXAMPLES = [
    # seed 002 (Shende) A) chemotherapy infusion
    ("002: chemo Drug A 1:00-2:00 -> 96413", lambda: [adm(CHEMO, "01:00", "02:00")], [("96413", 1)]),
    ("002: chemo infused only 16 min -> 96413", lambda: [adm(CHEMO, "01:00", "01:16")], [("96413", 1)]),
    ("002: chemo 1:00-2:31 -> 96413 + 96415", lambda: [adm(CHEMO, "01:00", "02:31")], [("96413", 1), ("96415", 1)]),
    ("002: chemo A 1:00-2:31, B 3:00-3:16 -> 96413, 96415, 96417",
     lambda: [adm(CHEMO, "01:00", "02:31"), adm(CHEMO2, "03:00", "03:16")], [("96413", 1), ("96415", 1), ("96417", 1)]),
    # seed 002 says "If Drug B runs for 2 hours, report 96417 x 2 units": CPT says 96417 once per
    # sequential infusion and its added hour is 96415 (CODING_RULES: "CPT wins").
    ("002 contradicts CPT: sequential chemo of 2 h is 96417 x1 + 96415, not 96417 x2",
     lambda: [adm(CHEMO, "01:00", "02:31"), adm(CHEMO2, "03:00", "05:00")],
     # one 96415 for A's added hour, one for B's: separate lines, each explaining its own infusion
     [("96413", 1), ("96415", 1), ("96415", 1), ("96417", 1)]),
    # B) chemo push
    ("002: chemo push 1:00-1:15 -> 96409", lambda: [adm(CHEMO, "01:00", "01:15")], [("96409", 1)]),
    ("002: chemo push A 1:00-1:15, B 3:00-3:15 -> 96409 + 96411",
     lambda: [adm(CHEMO, "01:00", "01:15"), adm(CHEMO2, "03:00", "03:15")], [("96409", 1), ("96411", 1)]),
    # C) therapeutic infusion
    ("002: ther A 1:00-1:16 -> 96365", lambda: [adm(THER, "01:00", "01:16")], [("96365", 1)]),
    ("002: ther A 1:00-2:31 -> 96365 + 96366", lambda: [adm(THER, "01:00", "02:31")], [("96365", 1), ("96366", 1)]),
    ("002: ther A 1:00-2:31, B 3:00-3:16 -> + 96367",
     lambda: [adm(THER, "01:00", "02:31"), adm(THER2, "03:00", "03:16")], [("96365", 1), ("96366", 1), ("96367", 1)]),
    ("002: ther A, B sequential, C 1:00-1:16 concurrent -> + 96368",
     lambda: [adm(THER, "01:00", "02:31"), adm(THER2, "03:00", "03:16"), adm(THER3, "01:00", "01:16")],
     [("96365", 1), ("96366", 1), ("96367", 1), ("96368", 1)]),
    # D) therapeutic push
    ("002: ther push A 3:00-3:15 -> 96374", lambda: [adm(THER, "03:00", "03:15")], [("96374", 1)]),
    ("002: push A 3:00, B 3:00-3:15 -> 96374 + 96375",
     lambda: [adm(THER, "03:00", method=Method.PUSH), adm(THER2, "03:00", "03:15")], [("96374", 1), ("96375", 1)]),
    ("002: push A 3:00, B 3:00-3:15, A 3:31 -> + 96376",
     lambda: [adm(THER, "03:00", method=Method.PUSH), adm(THER2, "03:00", "03:15"), adm(THER, "03:31", method=Method.PUSH)],
     [("96374", 1), ("96375", 1), ("96376", 1)]),
    # E) hydration
    ("002: hydration 11:00-11:31 -> 96360", lambda: [adm(NS, "11:00", "11:31")], [("96360", 1)]),
    ("002: hydration under 31 min is not considered", lambda: [adm(NS, "11:00", "11:30")], []),
    ("002: hydration 11:00-12:31 -> 96360 + 96361", lambda: [adm(NS, "11:00", "12:31")], [("96360", 1), ("96361", 1)]),
    # Important billing notes
    ("002: no stop time -> report as IV push, not infusion", lambda: [adm(THER, "11:00")], [("96374", 1)]),
    ("002: hydration is not billable around a blood transfusion",
     lambda: [adm(NS, "09:00", "10:00"), adm("P9016", "10:00", "12:00"), adm(NS, "12:00", "13:00")], []),
    ("002: multi-port IV counts as one site (same device, two drugs -> one initial)",
     lambda: [adm(THER, "09:00", "10:00", site="triple-lumen-1"), adm(THER2, "09:30", "10:00", site="triple-lumen-1")],
     [("96365", 1), ("96368", 1)]),
    ("002: hierarchy does not apply to SQ/IM injections",
     lambda: [adm(THER, "09:00", route="im", site=None), adm(THER2, "09:05", "09:35")], [("96365", 1), ("96372", 1)]),
    # seed 002 says 96368 is "chargeable once per day": so does CPT (once per date of service, MUE 1).
    ("002: 96368 once per date of service (observation over two days)",
     lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "09:10", "09:40"),
              adm(THER, "09:00", "10:00", day=1), adm(THER3, "09:10", "09:40", day=1)],
     [("96365", 1), ("96366", 1), ("96368", 1), ("96368", 1)]),
    # seed 000 (SunKnowledge 96413): "96413 ... administered over a period of 15 minutes" - CPT: >= 16 min;
    # 15 min is a push (96409).
    ("000 contradicts CPT: a 15-minute chemo infusion is 96409, 96413 needs 16 min", lambda: [adm(CHEMO, "09:00", "09:15")], [("96409", 1)]),
    # seed 000 calls 96374 the code "for sequential IV infusions" and 96375 "an extra IV infusion":
    # both are pushes; a sequential infusion of a new drug is 96367.
    ("000 contradicts CPT: a sequential therapeutic infusion is 96367, not 96374/96375",
     lambda: [adm(CHEMO, "09:00", "10:00"), adm(THER, "10:00", "10:30")], [("96367", 1), ("96413", 1)]),
    ("000: only one initial per session unless a separate IV line",
     lambda: [adm(CHEMO, "09:00", "10:00"), adm(CHEMO2, "10:00", "11:00")], [("96413", 1), ("96417", 1)]),
    # seed 001 (Pabau): 96413 16-60 min; 96415 when total > 90 min; two units past 150 min.
    ("001: 96415 only when total time exceeds 90 min", lambda: [adm(CHEMO, "09:00", "10:30")], [("96413", 1)]),
    ("001: total > 150 min -> 96415 x2", lambda: [adm(CHEMO, "09:00", "11:31")], [("96413", 1), ("96415", 2)]),
    ("001: under 16 min -> 96409 not 96413", lambda: [adm(CHEMO, "09:00", "09:14")], [("96409", 1)]),
    ("001: supportive drugs with 96413 are 96366/96367/96375/96376, not more 96413",
     lambda: [adm(CHEMO, "09:00", "10:00"), adm(THER, "10:00", "10:30"), adm(THER2, "08:45", method=Method.PUSH)],
     [("96367", 1), ("96375", 1), ("96413", 1)]),
    ("001: two initial chemo infusions through separate IV lines -> second with 59",
     lambda: [adm(CHEMO, "09:00", "10:00", site="port-1"), adm(CHEMO2, "09:00", "10:00", site="piv-R")],
     [("96413", 1), ("96413", 1, ("59",))]),
    # seed 003 (Precision Billing 96365): "31 minutes to 60 minutes -> bill 96365" - CPT: 96365 needs 16 min.
    ("003 contradicts CPT: a 20-minute therapeutic infusion is 96365 (16 min suffices, not 31)", lambda: [adm(THER, "09:00", "09:20")], [("96365", 1)]),
    ("003: less than 16 minutes is not billable as an infusion (it is a push)", lambda: [adm(THER, "09:00", "09:10")], [("96374", 1)]),
    ("003: additional sequential infusion 96367, concurrent 96368",
     lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "10:00", "10:30"), adm(THER3, "09:20", "09:50")],
     [("96365", 1), ("96367", 1), ("96368", 1)]),
    # seed 004 (SunKnowledge Infusion Billing 101)
    ("004: hydration with IV pushes: the push is initial (96374) and hydration 96361",
     lambda: [adm(NS, "09:00", "10:00"), adm(THER, "09:30", method=Method.PUSH)], [("96361", 1), ("96374", 1)]),
    ("004: hierarchy chemo > therapeutic > hydration",
     lambda: [adm(NS, "08:00", "09:00"), adm(THER, "09:00", "09:30"), adm(CHEMO, "09:30", "10:30")],
     [("96361", 1), ("96367", 1), ("96413", 1)]),
    ("004: hydration without stop time: derived from volume, start and rate",
     lambda: [adm(NS, "09:00", volume=500, rate=250)], [("96360", 1), ("96361", 1)]),
    ("004: hydration of 30 minutes or less is not separately billable", lambda: [adm(NS, "09:00", "09:25")], []),
    ("004: concurrent hydration is not billable", lambda: [adm(CHEMO, "09:00", "11:00"), adm(NS, "09:00", "11:00")], [("96413", 1), ("96415", 1)]),
    ("004: concurrent chemo infusions are coded with the unlisted chemo code",
     lambda: [adm(CHEMO, "09:00", "11:00"), adm(CHEMO2, "09:30", "10:30")], [("96413", 1), ("96415", 1), ("96549", 1)]),
    ("004: sequential charged once per sequential infusion of the same infusate",
     lambda: [adm(THER, "09:00", "10:00"), adm(THER2, "10:00", "10:30"), adm(THER2, "10:40", "11:00")], [("96365", 1), ("96367", 1)]),
]


@pytest.mark.parametrize(("events", "expected"), [(e, x) for _, e, x in EXAMPLES], ids=[i for i, _, _ in EXAMPLES])
def test_seed_example(events, expected) -> None:
    assert cpt(run(*events(), encounter_class=EncounterClass.OBSERVATION)) == sorted(expected)
