"""Close-to-charge at light load with the close hold's grace fixed (``hold_grace_ms``) and
measured (``hold_grace_measured``), interleaved A/B on one embedded broker.

    python benchmarks/bench_hold_grace.py [--rate 100] [--seconds 10] [--rounds 3]

Prints, per round and mode, the p50 / p99 / mean close-to-charge, the mean time closes were
held, and the revisions beyond the first per encounter (an early release costs one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.bench import close_to_charge, progress  # noqa: E402
from connectors.broker import embedded_broker  # noqa: E402

MODES = {"fixed": {"hold_grace_measured": False}, "measured": {"hold_grace_measured": True}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100.0, help="administrations/s (default 100)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each run (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="A/B rounds (default 3)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    with embedded_broker() as bootstrap:
        for r in range(args.rounds):
            for mode, overrides in (MODES.items() if r % 2 == 0 else reversed(MODES.items())):
                progress(f"round {r + 1}, grace {mode} ...")
                p50, p99, n, stages = close_to_charge(bootstrap, args.rate, args.seconds, args.seed + r, **overrides)
                runs[mode].append({"p50_ms": p50, "p99_ms": p99, "closes": n, "mean_ms": stages.get("total", float("nan")),
                                   "held_ms": stages.get("held", float("nan")), "extra_revisions": stages["extra_revisions"]})
    for mode, results in runs.items():
        for key in ("p50_ms", "p99_ms", "mean_ms", "held_ms", "extra_revisions"):
            values = [x[key] for x in results]
            print(f"{mode:9} {key:16} {min(values):8.1f} – {max(values):8.1f}   ({', '.join(f'{v:.1f}' for v in values)})")
    print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
