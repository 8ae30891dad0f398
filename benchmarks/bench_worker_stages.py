"""The worker's steps timed in-process (CPU time per input message), as docs/performance.md's
"Where the worker's time goes" describes: routing and mapping, the events record out and
back in, the state update, and at close coding, ChargeItems, the revision bundle's JSON and
the changelog serialisation.  No Kafka.

    python benchmarks/bench_worker_stages.py [--format fhir|hl7] [--encounters 150] [--repeat 3]

Best of ``--repeat`` passes after a warm-up pass, over connectors.synthetic.generate(N, fmt).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coding_core.engine import code_encounter  # noqa: E402
from coding_core.profile import Profile  # noqa: E402
from connectors.codec import event_json, loads, published_json  # noqa: E402
from connectors.routing import route_fhir, route_hl7  # noqa: E402
from connectors.settings import Topics  # noqa: E402
from connectors.state import EncounterState  # noqa: E402
from connectors.synthetic import generate  # noqa: E402
from mapping.chargeitem_out import revision_bundle, to_charge_items  # noqa: E402
from mapping.collector import Mapped  # noqa: E402
from mapping.reference_data import load_formulary  # noqa: E402

STAGES = ("mapping", "events", "apply", "coding", "chargeitems", "bundle", "state_bytes")


def one_pass(messages, router, tz, formulary, profile) -> dict[str, float]:
    t = time.process_time
    timing = dict.fromkeys(STAGES, 0.0)
    states: dict[str, EncounterState] = {}
    for _, _, value in messages:
        a = t()
        routed = router(value, tz)
        timing["mapping"] += t() - a
        for m in routed.records:
            a = t()
            doc = loads(event_json(m.to_json()))
            mapped = Mapped.from_json(doc)
            b = t()
            state = states.get(mapped.key()) or states.setdefault(mapped.key(), EncounterState(encounter_id=mapped.key()))
            state.apply(mapped, 0, as_json=doc)
            c = t()
            timing["events"] += b - a
            timing["apply"] += c - b
    for key, state in states.items():
        a = t()
        info, events = state.encounter(), state.administrations()
        result = code_encounter(info, events, formulary, profile)
        b = t()
        items = to_charge_items(result, info, profile, events)
        c = t()
        published_json(revision_bundle(key, 1, items))
        d = t()
        state.to_bytes()
        e = t()
        timing["coding"] += b - a
        timing["chargeitems"] += c - b
        timing["bundle"] += d - c
        timing["state_bytes"] += e - d
    return timing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", choices=("fhir", "hl7"), default="fhir")
    ap.add_argument("--encounters", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    tz = ZoneInfo("America/New_York")
    messages = generate(args.encounters, args.format, Topics(), seed=args.seed)
    router = route_hl7 if args.format == "hl7" else route_fhir
    formulary, profile = load_formulary(), Profile()
    one_pass(messages, router, tz, formulary, profile)  # warm-up: shapes learned, caches filled
    best = dict.fromkeys(STAGES, float("inf"))
    for _ in range(args.repeat):
        timing = one_pass(messages, router, tz, formulary, profile)
        best = {k: min(best[k], timing[k]) for k in STAGES}
    n = len(messages)
    print(f"{args.format}: {n} messages; CPU µs per input message (best of {args.repeat})")
    for k in STAGES:
        print(f"  {k:12} {best[k] / n * 1e6:7.1f}")
    print(f"  {'sum':12} {sum(best.values()) / n * 1e6:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
