"""The worker's CPU per message at steady input rates, split between its main thread (the
worker loop) and its other threads (kafka-python's network and sender threads, the metrics
server), and the changelog bytes it writes per message.

    python benchmarks/bench_load_cpu.py [--rates 300,1000,2000] [--seconds 15] [--rounds 2]
                                        [--worker KEY=VALUE ...] [--versus KEY=VALUE ...]

``--worker`` sets worker settings for every run; with ``--versus``, each rate runs twice per
round, with ``--worker``'s settings and with ``--versus``'s (A/B, alternating which goes first).

Each run feeds the ``--quick`` FHIR feed (connectors.synthetic, seed 7) at one rate into one
worker on a broker of its own, as ``infusion-charges bench`` does for close-to-charge, and
reads the worker's CPU from /proc from its ready state to the last close charged.  Rates are
interleaved across rounds; the ranges are printed last.  A backlog of the same feed uses
what ``infusion-charges bench`` reports as ``pipeline_fhir_worker_cpu_us_per_msg``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.bench import WorkerGroup, close_to_charge, progress  # noqa: E402
from connectors.broker import embedded_broker  # noqa: E402
from connectors.clients import read_topic  # noqa: E402
from connectors.settings import Settings  # noqa: E402


def one_run(rate: float, seconds: float, seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    marks: dict[str, tuple[float, float]] = {}
    used: list[Settings] = []

    def probe(moment: str, workers: WorkerGroup) -> None:
        marks[moment] = workers.workers[0].thread_cpu_seconds()
        used.append(workers.settings)

    with embedded_broker() as bootstrap:
        p50, p99, closes, _ = close_to_charge(bootstrap, rate, seconds, seed, probe=probe, **overrides)
        settings = used[0]
        changelog = sum(len(r.value or b"") for r in read_topic(settings, settings.topics.state, 60))
    messages = int(rate * seconds)
    main = (marks["done"][0] - marks["ready"][0]) * 1e6 / messages
    others = (marks["done"][1] - marks["ready"][1]) * 1e6 / messages
    return {"rate": rate, "settings": overrides, "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "closes": closes,
            "cpu_us_per_msg": round(main + others, 1), "main_thread_us_per_msg": round(main, 1),
            "other_threads_us_per_msg": round(others, 1), "cores_busy": round((main + others) * rate / 1e6, 2),
            "changelog_bytes_per_msg": round(changelog / messages)}


def _settings(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="300,1000,2000", help="administrations/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each run (default 15)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--worker", action="append", default=[], metavar="KEY=VALUE", help="a worker setting for every run")
    ap.add_argument("--versus", action="append", default=[], metavar="KEY=VALUE", help="the B side's settings")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    common, versus = _settings(args.worker), _settings(args.versus)
    if "workers" in common or "workers" in versus:
        ap.error("one worker: its CPU is what is measured")
    rates = [float(r) for r in args.rates.split(",")]
    sides = [common] + ([{**common, **versus}] if versus else [])
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for rate in rates if r % 2 == 0 else reversed(rates):
            for overrides in sides if r % 2 == 0 else reversed(sides):
                progress(f"round {r + 1}, {rate:g}/s, {overrides or 'defaults'} ...")
                result = one_run(rate, args.seconds, args.seed, overrides)
                print(json.dumps(result), flush=True)
                runs.append(result)
    keys = ("cpu_us_per_msg", "main_thread_us_per_msg", "other_threads_us_per_msg", "cores_busy", "changelog_bytes_per_msg",
            "p50_ms", "p99_ms")
    for rate in rates:
        for overrides in sides:
            mine = [x for x in runs if x["rate"] == rate and x["settings"] == overrides]
            print(f"{rate:g}/s {json.dumps(overrides)}: "
                  + "; ".join(f"{k} {min(x[k] for x in mine):g}–{max(x[k] for x in mine):g}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
