"""The sizing figures of the Helm chart's README: memory and disk per 1,000 encounters.

Builds synthetic encounters (5-30 administrations each, as the pipeline benchmark's feeds),
then measures, in ``--repeat`` fresh child processes (the range is printed), the Python heap
each group of states holds (tracemalloc; SQLite's own page cache, at most ~2 MB per open
partition file, is outside it):

* open, active: encounters in memory as the worker holds open ones that received records in
  the last ten minutes (records parsed for coding);
* open, quiet: the same after they let go of their parsed records (``Ticker.QUIET_MS``);
* the tick: CPU the once-a-second tick spends on each quiet open encounter (letting go of
  parsed records, asking whether an idle close is due), per 1,000 open encounters;
* closed: encounters coded, written to the local state store and let go from memory -- what
  the worker keeps in memory for them and on disk;
* recovery: changelog records written into a new store per second, and open encounters read
  back into memory per second (the work a restart with a new volume does, less the Kafka read).

    python benchmarks/bench_state_store.py [--encounters N] [--repeat R]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coding_core.profile import Profile  # noqa: E402
from connectors.recovery import row_from_record  # noqa: E402
from connectors.routing import route_fhir  # noqa: E402
from connectors.settings import Topics  # noqa: E402
from connectors.state import EncounterState  # noqa: E402
from connectors.store import PartitionStore, Row  # noqa: E402
from connectors.synthetic import generate  # noqa: E402
from connectors.ticker import QUIET_MS  # noqa: E402
from mapping.collector import Mapped  # noqa: E402
from mapping.reference_data import load_formulary  # noqa: E402

TZ = ZoneInfo("America/New_York")


def heap_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def build(n: int, close: bool) -> dict[str, EncounterState]:
    """States as the worker holds them: each record read from its events JSON and kept parsed."""
    topics = Topics()
    states: dict[str, EncounterState] = {}
    formulary, profile = load_formulary(), Profile()
    for t, (topic, _, value) in enumerate(generate(n, "fhir", topics, seed=3)):
        if topic == topics.fhir_encounters and not close:
            continue
        for doc in [m.to_json() for m in route_fhir(value, TZ).records]:
            mapped = Mapped.from_json(doc)
            state = states.get(mapped.key()) or states.setdefault(mapped.key(), EncounterState(encounter_id=mapped.key()))
            state.apply(mapped, t, as_json=doc)
            if state.due():
                state.code(formulary, profile)
    return states


def _tick_seconds(states: dict[str, EncounterState]) -> float:
    """CPU of one tick's per-encounter work over quiet open encounters (connectors/ticker.py):
    the quiet check, letting go of parsed records, and whether an idle close is due."""
    now_ms = 10**13  # long after every record: every encounter is quiet and due
    t0 = time.process_time()
    for state in states.values():
        if now_ms - state.last_record_ms > QUIET_MS:
            state.release_parsed()
        state.idle_close_due(now_ms, 60 * 60_000)
    return time.process_time() - t0


def measure(n: int) -> dict[str, float]:
    build(20, close=True)  # imports, models and formulary loaded before anything is counted
    tracemalloc.start()
    base = heap_bytes()
    open_states = build(n, close=False)
    open_bytes = heap_bytes() - base
    for state in open_states.values():
        state.release_parsed()
    quiet_bytes = heap_bytes() - base
    del open_states
    closed = build(n, close=True)
    rows = [Row(k, s.to_bytes(), s.standing, s.last_record_ms) for k, s in closed.items()]
    with tempfile.TemporaryDirectory() as d:
        store = PartitionStore(Path(d) / "0.sqlite3", 0)
        before = heap_bytes() - sum(len(r.value or b"") for r in rows)  # the rows are the test's, not the store's
        for k, s in closed.items():
            store.put(k, s)
        del closed, s
        store.save(rows, len(rows))
        store.take_dirty()
        store.evict()
        closed_memory = heap_bytes() - before
        tracemalloc.stop()
        store.close()
        disk = sum(p.stat().st_size for p in Path(d).iterdir())
        fresh = PartitionStore(Path(d) / "fresh.sqlite3", 0)
        t0 = time.perf_counter()
        fresh.restore([row_from_record(r.key, r.value, None) for r in rows], len(rows))  # records without headers: parsed
        parsed_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fresh.restore(rows, 2 * len(rows))  # with the standing headers: not parsed
        headers_s = time.perf_counter() - t0
        fresh.close()
    with tempfile.TemporaryDirectory() as d:
        store = PartitionStore(Path(d) / "0.sqlite3", 0)
        opened = build(n, close=False)
        store.save([Row(k, s.to_bytes(), s.standing, s.last_record_ms) for k, s in opened.items()], 1)
        for state in opened.values():
            state.release_parsed()
        tick_s = min(_tick_seconds(opened) for _ in range(5))  # tracemalloc off: it slows what allocates
        del opened
        t0 = time.perf_counter()
        loaded = store.load_open()
        load_s = time.perf_counter() - t0
        store.close()
    per_k = 1000 / n
    return {"open_active_memory_mib_per_1000": open_bytes * per_k / 2**20, "open_quiet_memory_mib_per_1000": quiet_bytes * per_k / 2**20,
            "tick_cpu_ms_per_1000_open": tick_s * per_k * 1000,
            "closed_memory_mib_per_1000": max(0, closed_memory) * per_k / 2**20,
            "closed_disk_mib_per_1000": disk * per_k / 2**20, "restore_records_per_s_parsed": n / parsed_s,
            "restore_records_per_s_with_headers": n / headers_s, "open_loaded_per_s": loaded / load_s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encounters", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.encounters)))
        return 0
    runs = []
    for _ in range(args.repeat):  # a fresh process each: memory figures do not inherit a warm heap
        out = subprocess.run([sys.executable, __file__, "--child", "--encounters", str(args.encounters)],
                             check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out))
    summary = {"encounters": args.encounters, "runs": args.repeat}
    for key in runs[0]:
        values = sorted(r[key] for r in runs)
        summary[key] = [round(values[0], 2), round(values[-1], 2)]  # range over the runs
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
