"""``infusion-charges bench [--quick]``: pipeline figures against the stack's own ceiling.

On the embedded broker, in one run, with the same synthetic feeds (``connectors.synthetic``):

* raw passthrough: kafka-python consume -> produce of the FHIR feed's messages (the ceiling);
* two-hop passthrough: the same messages through the pipeline's Kafka steps with nothing done
  to them (per encounter to a middle topic, as the events topic, then on): what the design
  leaves of the ceiling before any mapping, coding or JSON;
* the full pipeline on a FHIR backlog and on an HL7 backlog (input messages per second, from
  the worker being ready to the last encounter charged; every result checked against the
  offline path);
* close-to-charge latency p50/p99 with administrations produced at a steady 1,000/s, and at
  100/s (``--light-rate``), where the worker is far from busy -- still well above a large
  hospital's real rate -- so what remains is the pipeline's fixed delays; and, from the
  worker's own histograms, where the time goes: the close queued behind other input, held
  for the other input partitions, the events hop and coding, and delivery;
* coding-core throughput (no Kafka) and memory per open encounter in the state store.

Progress goes to stderr; a table and, as the last line, one JSON object go to stdout.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from coding_core.profile import Profile
from connectors.broker import embedded_broker
from connectors.settings import Settings, Topics
from connectors.state import EncounterState
from connectors.synthetic import generate, offline_charges
from connectors.topics import prepare_topics
from mapping.collector import FeedCollector
from mapping.reference_data import load_formulary

Message = tuple[str, bytes | None, bytes]


def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def settings_for(bootstrap: str, **overrides: Any) -> Settings:
    prefix = f"b{uuid.uuid4().hex[:6]}"
    topics = Topics(**{k: f"{prefix}.{v}" for k, v in Topics().model_dump().items()})
    return Settings(bootstrap_servers=bootstrap, group_id=prefix, topics=topics, partitions=3, session_timeout_ms=6000,
                    max_poll_interval_ms=30000, metrics_port=None, **overrides)


def produce(bootstrap: str, messages: list[Message], rate_per_s: float | None = None,
            on_sent: Any = None) -> float:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    start = time.perf_counter()
    for i, (topic, key, value) in enumerate(messages):
        if rate_per_s is not None:
            delay = start + i / rate_per_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        producer.send(topic, key=key, value=value)
        if on_sent is not None:
            on_sent(topic, key, value)
    producer.flush()
    producer.close()
    return time.perf_counter() - start


def raw_passthrough(bootstrap: str, messages: list[Message]) -> float:
    """Messages/s of a bare consume -> produce loop over the same bytes (no group: no join wait)."""
    src, dst = f"raw-{uuid.uuid4().hex[:6]}", f"raw-out-{uuid.uuid4().hex[:6]}"
    produce(bootstrap, [(src, k, v) for _, k, v in messages])
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, max_poll_records=1000)
    partitions = [TopicPartition(src, p) for p in consumer.partitions_for_topic(src) or {0}]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    moved, start = 0, time.perf_counter()
    while moved < len(messages):
        for records in consumer.poll(500).values():
            for r in records:
                producer.send(dst, key=r.key, value=r.value)
                moved += 1
    producer.flush()
    elapsed = time.perf_counter() - start
    producer.close()
    consumer.close()
    return len(messages) / elapsed


def two_hop_passthrough(bootstrap: str, messages: list[Message], keys: list[bytes]) -> float:
    """Messages/s of the pipeline's Kafka work alone, with nothing done to a record: consume,
    send one message per key per poll batch to a middle topic (as the worker does with the
    events topic, ``keys`` standing for the encounters), consume those and send each on (as
    the worker writes states and charges).  The ceiling of the pipeline's design on this
    stack, before any mapping, coding or JSON."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    tag = uuid.uuid4().hex[:6]
    src, mid, dst = f"hop-in-{tag}", f"hop-mid-{tag}", f"hop-out-{tag}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(t, 3, 1) for t in (src, mid)])
    admin.close()
    produce(bootstrap, [(src, key, value) for (_, _, value), key in zip(messages, keys, strict=True)])
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, max_poll_records=2000,
                             fetch_max_wait_ms=25)
    partitions = [TopicPartition(t, p) for t in (src, mid) for p in sorted(consumer.partitions_for_topic(t) or {0})]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=Settings.model_fields["linger_ms"].default, batch_size=512 * 1024)
    done, start = 0, time.perf_counter()
    while done < len(messages):
        outgoing: dict[bytes, list[bytes]] = {}
        for tp, records in consumer.poll(500).items():
            if tp.topic == src:
                for r in records:
                    outgoing.setdefault(r.key, []).append(r.value)
            else:
                for r in records:
                    producer.send(dst, key=r.key, value=r.value)
                    done += int.from_bytes(r.value[:4], "big")
        for key, values in outgoing.items():
            frame = len(values).to_bytes(4, "big") + b"".join(len(v).to_bytes(4, "big") + v for v in values)
            producer.send(mid, key=key, value=frame)
    producer.flush()
    elapsed = time.perf_counter() - start
    producer.close()
    consumer.close()
    return len(messages) / elapsed


def encounter_keys(messages: list[Message]) -> list[bytes]:
    """The encounter each FHIR message belongs to (its key downstream), found before timing."""
    from zoneinfo import ZoneInfo

    from connectors.routing import route_fhir

    tz = ZoneInfo("America/New_York")
    keys = []
    for _, key, value in messages:
        records = route_fhir(value, tz).records
        keys.append(records[0].key().encode() if records else key or b"")
    return keys


class ChargeWatcher(threading.Thread):
    """Reads the charges topic: arrival times and the latest bundle per encounter.  Bundles
    are kept as bytes and parsed when asked for (``bundle``), and the encounters whose bundle
    changed are queued (``drain_changed``): the harness shares the machine's two cores with
    the worker and the broker, so it parses and compares each revision once."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                      enable_auto_commit=False, group_id=None, fetch_max_wait_ms=10)
        self._latest: dict[str, bytes] = {}
        self._changed: collections.deque[str] = collections.deque()  # appended here, popped by the harness
        self.arrived: dict[str, list[float]] = {}
        self.stop = threading.Event()

    def bundle(self, encounter_id: str) -> dict:
        """The latest bundle published for the encounter (an empty one before any)."""
        raw = self._latest.get(encounter_id)
        return {"entry": []} if raw is None else json.loads(raw)

    def drain_changed(self) -> set[str]:
        """Encounters with a new bundle since the last call."""
        changed = set()
        while self._changed:
            changed.add(self._changed.popleft())
        return changed

    def run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(100).values():
                now = time.perf_counter()
                for r in records:
                    enc = r.key.decode()
                    self._latest[enc] = r.value
                    self._changed.append(enc)
                    self.arrived.setdefault(enc, []).append(now)
        self.consumer.close()


class WorkerProcess:
    """``infusion-charges run`` in its own process, as deployed: the harness's threads (the
    producer, the charge watcher) do not share its interpreter lock.  Ready when /readyz says
    its partitions are assigned and restored."""

    def __init__(self, settings: Settings):
        import socket
        import tempfile

        import yaml

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.TemporaryDirectory(prefix="bench-worker-")
        config = os.path.join(self.dir.name, "worker.yaml")
        with open(config, "w") as f:
            own = {"metrics_port": self.port, "state_dir": os.path.join(self.dir.name, "state")}  # a volume of its own
            yaml.safe_dump(settings.model_copy(update=own).model_dump(mode="json", exclude_none=True), f)
        self.proc = subprocess.Popen([sys.executable, "-m", "connectors.cli", "run", "--config", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout_s: float = 180) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("worker not ready")

    def cpu_seconds(self) -> float:
        """User + system CPU time the worker process has used so far (Linux /proc)."""
        return _cpu_seconds(f"/proc/{self.proc.pid}/stat")

    def thread_cpu_seconds(self) -> tuple[float, float]:
        """(main thread, every other thread) CPU time so far: the worker loop against
        kafka-python's network and sender threads and the metrics server (Linux /proc).  The
        others are the process less the main thread, so threads that ended still count."""
        main = _cpu_seconds(f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat")
        return main, self.cpu_seconds() - main

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


def _cpu_seconds(stat_path: str) -> float:
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerGroup:
    """``n`` worker processes in one consumer group (scale-out by partition), each with its own
    client id; ready when every one has its partitions and the group has stopped rebalancing."""

    def __init__(self, settings: Settings, n: int):
        self.settings = settings
        self.workers = [WorkerProcess(settings.model_copy(update={"client_id": f"{settings.client_id}-{i}"}))
                        for i in range(n)]

    def wait_ready(self, timeout_s: float = 180, settle_s: float = 2.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        ready_since: float | None = None
        while time.monotonic() < deadline:
            ready = True
            for w in self.workers:
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {w.proc.returncode}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{w.port}/readyz", timeout=1) as r:
                        ready = ready and r.status == 200
                except OSError:
                    ready = False
            now = time.monotonic()
            if not ready:
                ready_since = None
            elif ready_since is None:
                ready_since = now
            elif now - ready_since >= (settle_s if len(self.workers) > 1 else 0):
                return
            time.sleep(0.05)
        raise TimeoutError("workers not ready")

    def cpu_seconds(self) -> float:
        return sum(w.cpu_seconds() for w in self.workers)

    def stop(self) -> None:
        for w in self.workers:
            w.proc.terminate()
        for w in self.workers:
            w.stop()


def billable(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["status"] == "billable"]


def pipeline_backlog(bootstrap: str, fmt: str, n_encounters: int, seed: int, workers: int = 1) -> tuple[float, int, bool, float]:
    """(input messages/s, messages, all results equal the offline path, worker CPU µs per
    message) for a backlog produced at full speed once the workers are ready (and, with
    several, done rebalancing): timed from the first message produced to the last encounter
    charged correctly.  The CPU figure is the workers' own user+system time over the same
    span: unlike the rate, it hardly moves when the harness or the broker compete for cores."""
    settings = settings_for(bootstrap)
    messages = generate(n_encounters, fmt, settings.topics, seed=seed)
    truth = offline_charges(messages, settings.topics)
    prepare_topics(settings)
    watcher = ChargeWatcher(bootstrap, settings.topics.charges)
    watcher.start()
    worker = WorkerGroup(settings, workers)  # own processes: their caches start cold
    worker.wait_ready()
    cpu_before = worker.cpu_seconds()
    start = time.perf_counter()
    produce(bootstrap, messages)
    deadline = time.monotonic() + 600
    wrong = {e for e, items in truth.items() if items}  # encounters whose charges are not (yet) the offline ones
    while time.monotonic() < deadline and wrong:
        time.sleep(0.02)
        for e in watcher.drain_changed() & truth.keys():  # each new revision compared once
            if billable(watcher.bundle(e)) == truth[e]:
                wrong.discard(e)
            else:
                wrong.add(e)
    correct = not wrong
    elapsed = time.perf_counter() - start
    cpu_us = (worker.cpu_seconds() - cpu_before) * 1e6 / len(messages)
    worker.stop()
    watcher.stop.set()
    return len(messages) / elapsed, len(messages), correct, cpu_us


def close_to_charge(bootstrap: str, rate: float, seconds: float, seed: int, workers: int = 1,
                    probe: Callable[[str, WorkerGroup], None] | None = None,
                    **overrides: Any) -> tuple[float, float, int, dict[str, float]]:
    """p50/p99 ms from producing an encounter's close to its first charges, at ``rate`` msgs/s,
    and where the time goes (:func:`close_stages`; ``stages["extra_revisions"]``: revisions
    beyond the first per encounter).  ``overrides``: worker settings.  ``probe`` is called
    with ``"ready"`` before the first message and ``"done"`` once every close is charged (or
    the wait gave up), the workers still running."""
    settings = settings_for(bootstrap, **overrides)
    messages: list[Message] = []
    n = 1
    while len(messages) < rate * seconds:
        messages = generate(n, "fhir", settings.topics, seed=seed)
        n += max(1, n // 2)
    messages = messages[: int(rate * seconds)]
    prepare_topics(settings)
    watcher = ChargeWatcher(bootstrap, settings.topics.charges)
    watcher.start()
    worker = WorkerGroup(settings, workers)
    worker.wait_ready()
    if probe is not None:
        probe("ready", worker)
    closed_at: dict[str, float] = {}

    def on_sent(topic: str, key: bytes | None, value: bytes) -> None:
        if topic == settings.topics.fhir_encounters and key is not None:
            closed_at[key.decode()] = time.perf_counter()

    produce(bootstrap, messages, rate_per_s=rate, on_sent=on_sent)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(e in watcher.arrived for e in closed_at):
        time.sleep(0.02)
    if probe is not None:
        probe("done", worker)
    latencies = sorted(1000 * (min(t for t in watcher.arrived[e] if t >= c) - c)
                       for e, c in closed_at.items() if any(t >= c for t in watcher.arrived.get(e, [])))
    stages = close_stages(worker)
    extra = float(sum(len(watcher.arrived.get(e, [])) - 1 for e in closed_at if watcher.arrived.get(e)))
    worker.stop()
    watcher.stop.set()
    if not latencies:
        return float("nan"), float("nan"), 0, {**stages, "extra_revisions": extra}
    mean = statistics.mean(latencies)
    stages["delivery_and_rest"] = mean - sum(stages.values())
    stages["total"] = mean
    stages["extra_revisions"] = extra
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
    return statistics.median(latencies), p99, len(latencies), stages


def close_stages(workers: WorkerGroup) -> dict[str, float]:
    """Mean ms of each stage of close-to-charge, from the workers' own histograms: ``queued``
    (input record's timestamp to mapping), ``held`` (to its release to the events topic),
    ``events_and_coding`` (events-topic timestamp to the revision sent).  The harness adds
    ``delivery_and_rest``: its measured mean minus these (producer batching, the charges'
    trip to the reader, and the encounter updates that were not closes)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, list[float]] = {"queued": [0, 0], "held": [0, 0], "events_and_coding": [0, 0]}
    for w in workers.workers:
        with urllib.request.urlopen(f"http://127.0.0.1:{w.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if family.name == "infusion_charges_close_stage_seconds":
                    stage = sample.labels.get("stage", "")
                elif family.name == "infusion_charges_close_to_charge_seconds":
                    stage = "events_and_coding"
                else:
                    continue
                if stage in sums and sample.name.endswith("_sum"):
                    sums[stage][0] += sample.value
                elif stage in sums and sample.name.endswith("_count"):
                    sums[stage][1] += sample.value
    return {stage: 1000 * total / count if count else float("nan") for stage, (total, count) in sums.items()}


def coding_core_rate(n: int, seed: int) -> tuple[float, float]:
    """(encounters/s, administrations per encounter) of code_encounter on the synthetic mix."""
    from zoneinfo import ZoneInfo

    from coding_core.engine import code_encounter
    from connectors.routing import route_fhir

    topics = Topics()
    collector = FeedCollector()
    for _, _, value in generate(n, "fhir", topics, seed=seed):
        for record in route_fhir(value, ZoneInfo("America/New_York")).records:
            collector.offer(record)
    encounters = list(collector.by_encounter().values())
    formulary, profile = load_formulary(), Profile()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for enc, events in encounters:
            code_encounter(enc, events, formulary, profile)
        best = min(best, time.perf_counter() - t)
    return len(encounters) / best, sum(len(e) for _, e in encounters) / len(encounters)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hold_open_encounters(n: int, seed: int) -> float:
    """In a fresh process: RSS growth per open encounter held in the state store, taken as the
    worker takes it -- each record read from its events JSON, and kept parsed for coding."""
    from zoneinfo import ZoneInfo

    from connectors.routing import route_fhir
    from mapping.collector import Mapped

    topics = Topics()
    messages = [m for m in generate(n, "fhir", topics, seed=seed) if m[0] == topics.fhir_administrations]
    docs = [r.to_json() for _, _, v in messages for r in route_fhir(v, ZoneInfo("America/New_York")).records]
    gc.collect()
    before = rss_bytes()
    store: dict[str, EncounterState] = {}
    for doc in docs:
        r = Mapped.from_json(doc)
        store.setdefault(r.key(), EncounterState(encounter_id=r.key())).apply(r, 0, as_json=doc)
    gc.collect()
    after = rss_bytes()
    assert all(s.lifecycle.value == "open" for s in store.values())
    return (after - before) / len(store)


def bytes_per_open_encounter(n: int, seed: int) -> float:
    """A subprocess, so memory freed by earlier steps of the benchmark cannot hide the growth."""
    code = f"from connectors.bench import _hold_open_encounters as h; print(h({n}, {seed}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="infusion-charges bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller feeds: a few minutes on 2 cores")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=1, help="worker processes in the group (scale-out; default 1)")
    ap.add_argument("--light-rate", type=float, default=100.0,
                    help="administrations/s of the second latency run, far from saturation (default 100)")
    ap.add_argument("--encounters", type=int, help="encounters per feed (default 150 with --quick, else 1000)")
    ap.add_argument("--latency-seconds", type=float, help="length of each latency run (default 10 with --quick, else 30)")
    args = ap.parse_args(argv)
    n_enc = args.encounters or (150 if args.quick else 1000)
    latency_s = args.latency_seconds or (10 if args.quick else 30)
    results: dict[str, Any] = {"workers": args.workers}
    with embedded_broker() as bootstrap:
        progress(f"embedded broker at {bootstrap}; feeds of {n_enc} encounters (5-30 administrations each)")
        base_messages = generate(n_enc, "fhir", Topics(), seed=args.seed)
        progress(f"raw passthrough of {len(base_messages)} messages ...")
        results["raw_passthrough_msgs_per_s"] = raw_passthrough(bootstrap, base_messages)
        progress("two-hop passthrough (the pipeline's Kafka work alone) ...")
        results["two_hop_passthrough_msgs_per_s"] = two_hop_passthrough(bootstrap, base_messages, encounter_keys(base_messages))
        for fmt in ("fhir", "hl7"):
            progress(f"pipeline, {fmt.upper()} backlog, {args.workers} worker process(es) ...")
            rate, count, correct, cpu_us = pipeline_backlog(bootstrap, fmt, n_enc, args.seed, args.workers)
            results[f"pipeline_{fmt}_msgs_per_s"] = rate
            results[f"pipeline_{fmt}_worker_cpu_us_per_msg"] = cpu_us
            results[f"pipeline_{fmt}_messages"] = count
            results[f"pipeline_{fmt}_correct"] = correct
        progress(f"close-to-charge latency at 1,000 administrations/s for {latency_s} s ...")
        p50, p99, closes, stages = close_to_charge(bootstrap, 1000, latency_s, args.seed, args.workers)
        results.update(close_to_charge_p50_ms=p50, close_to_charge_p99_ms=p99, close_to_charge_encounters=closes,
                       close_to_charge_stages_mean_ms=stages)
        progress(f"close-to-charge latency at {args.light_rate:,.0f} administrations/s for {latency_s} s ...")
        lp50, lp99, lcloses, lstages = close_to_charge(bootstrap, args.light_rate, latency_s, args.seed, args.workers)
        results.update(close_to_charge_light_rate=args.light_rate, close_to_charge_light_p50_ms=lp50,
                       close_to_charge_light_p99_ms=lp99, close_to_charge_light_encounters=lcloses,
                       close_to_charge_light_stages_mean_ms=lstages)
    progress("coding core and memory ...")
    results["coding_core_encounters_per_s"], per_encounter = coding_core_rate(2 * n_enc, args.seed)
    results["rss_bytes_per_open_encounter"] = bytes_per_open_encounter(max(200, n_enc), args.seed)
    results["ratio_fhir"] = results["pipeline_fhir_msgs_per_s"] / results["raw_passthrough_msgs_per_s"]
    results["ratio_hl7"] = results["pipeline_hl7_msgs_per_s"] / results["raw_passthrough_msgs_per_s"]
    results["ratio_two_hop"] = results["two_hop_passthrough_msgs_per_s"] / results["raw_passthrough_msgs_per_s"]

    goals = {"ratio_fhir": (">=", 0.5), "ratio_hl7": (">=", 0.3), "close_to_charge_p99_ms": ("<", 500),
             "coding_core_encounters_per_s": (">=", 20000)}
    rows = [
        ("raw passthrough (ceiling)", f"{results['raw_passthrough_msgs_per_s']:,.0f} msgs/s", ""),
        ("two-hop passthrough", f"{results['two_hop_passthrough_msgs_per_s']:,.0f} msgs/s",
         f"ratio {results['ratio_two_hop']:.2f}: the pipeline's Kafka work, nothing done to a record"),
        ("pipeline, FHIR", f"{results['pipeline_fhir_msgs_per_s']:,.0f} msgs/s",
         f"ratio {results['ratio_fhir']:.2f}; worker CPU {results['pipeline_fhir_worker_cpu_us_per_msg']:,.0f} µs/msg"),
        ("pipeline, HL7", f"{results['pipeline_hl7_msgs_per_s']:,.0f} msgs/s",
         f"ratio {results['ratio_hl7']:.2f}; worker CPU {results['pipeline_hl7_worker_cpu_us_per_msg']:,.0f} µs/msg"),
        ("close-to-charge p50 / p99", f"{p50:,.0f} / {p99:,.0f} ms", f"at 1,000 administrations/s, {closes} encounters"),
        ("  where it goes (means)", _stage_text(stages), "queued / held / events hop + coding / delivery"),
        ("  same, light load", f"{lp50:,.0f} / {lp99:,.0f} ms", f"at {args.light_rate:,.0f} administrations/s, {lcloses} encounters"),
        ("  where it goes (means)", _stage_text(lstages), "queued / held / events hop + coding / delivery"),
        ("coding core", f"{results['coding_core_encounters_per_s']:,.0f} encounters/s", f"no Kafka, {per_encounter:.1f} admins/encounter"),
        ("memory per open encounter", f"{results['rss_bytes_per_open_encounter']:,.0f} bytes", "RSS growth"),
    ]
    print(f"{'measure':<30}{'figure':>26}  note")
    for name, figure, note in rows:
        print(f"{name:<30}{figure:>26}  {note}")
    for key, (op, target) in goals.items():
        value = results[key]
        met = value >= target if op == ">=" else value < target
        print(f"goal {key} {op} {target}: {'met' if met else 'NOT met'} ({value:,.2f})")
    print(json.dumps({k: _rounded(v) for k, v in results.items()}))
    return 0 if results["pipeline_fhir_correct"] and results["pipeline_hl7_correct"] else 1


def _stage_text(stages: dict[str, float]) -> str:
    keys = ("queued", "held", "events_and_coding", "delivery_and_rest")
    return " / ".join(f"{stages.get(k, float('nan')):,.0f}" for k in keys) + " ms"


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    sys.exit(main())
