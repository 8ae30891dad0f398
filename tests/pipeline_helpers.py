"""Helpers for pipeline tests: feed the samples into Kafka, read charges back, offline truth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from coding_core.engine import code_encounter
from coding_core.profile import Profile
from connectors.cli import collect
from connectors.demo import feed_messages
from connectors.settings import Settings, Topics
from connectors.worker import Worker
from mapping.chargeitem_out import to_charge_items
from mapping.reference_data import load_formulary

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".json", ".ndjson", ".hl7"))


def settings_for(bootstrap: str, **over: Any) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    topics = Topics(**{name: f"{prefix}.{default}" for name, default in Topics().model_dump().items()})
    base = dict(bootstrap_servers=bootstrap, group_id=prefix, topics=topics, partitions=3, session_timeout_ms=6000,
                max_poll_interval_ms=10000, metrics_port=None, state_dir=Path(tempfile.mkdtemp(prefix=f"{prefix}-state-")))
    return Settings(**{**base, **over})


def sample_messages(settings: Settings) -> list[tuple[str, bytes | None, bytes]]:
    """(topic, key, value) for every resource / HL7 message of the bundled samples."""
    return feed_messages(SAMPLE_FILES, settings.topics)


def offline_truth() -> dict[str, list[dict]]:
    """What `infusion-charges code` gives for the samples: encounter -> ChargeItems."""
    from zoneinfo import ZoneInfo

    collector = collect([str(p) for p in SAMPLE_FILES], ZoneInfo("America/New_York"))
    formulary, profile = load_formulary(), Profile()
    return {enc: to_charge_items(code_encounter(info, events, formulary, profile), info, profile, events)
            for enc, (info, events) in collector.by_encounter().items()}


def produce(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]], **client: Any) -> None:
    """``client``: further kafka-python arguments (security)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, **client)
    for topic, key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def produce_from_another_process(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    """``produce``, from a process of its own, as a feed's producer runs beside a worker.  In
    the worker's process, its sender thread waits for the interpreter lock: records stamped
    at send() reached the broker hundreds of milliseconds later, more than ``hold_grace_ms``
    allows a producer (then a close may rightly overtake them: the encounter is corrected in
    a second revision)."""
    import pickle
    import subprocess
    import sys
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pickle") as f:
        pickle.dump(messages, f)
        f.flush()
        subprocess.run([sys.executable, "-c", "import pickle, sys; from tests.pipeline_helpers import produce; "
                        "produce(sys.argv[1], pickle.load(open(sys.argv[2], 'rb')))", bootstrap, f.name],
                       check=True, cwd=Path(__file__).resolve().parent.parent, timeout=120)


class Running:
    """A worker in a thread, with a state directory of its own unless given one (as two pods
    have two volumes)."""

    def __init__(self, settings: Settings, clock: Any = time.time, state_dir: Path | None = None):
        settings = settings.model_copy(update={"state_dir": state_dir or Path(tempfile.mkdtemp(prefix="worker-state-"))})
        self.stop = threading.Event()
        from connectors.settings import site_profile
        from mapping.reference_data import formulary_for, load_profile

        profile = site_profile(settings, load_profile(settings.profile)) if settings.profile else Profile()
        self.worker = Worker(settings, formulary_for(profile, load_formulary(settings.formulary)), profile, clock=clock)
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self, timeout: float = 30) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"


@contextmanager
def thread_errors() -> Iterator[list[BaseException]]:
    """The exceptions that end threads inside the block (a worker stopping on an error),
    collected instead of printed."""
    hook = threading.excepthook
    errors: list[BaseException] = []
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        yield errors
    finally:
        threading.excepthook = hook


def latest_revisions(bootstrap: str, topic: str, until: Any, timeout_s: float = 120, **client: Any) -> dict[str, dict]:
    """Read the charges topic; encounter -> its latest revision bundle, until ``until(latest)``."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=1000, **client)
    latest: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for record in consumer.poll(500).values():
                for r in record:
                    bundle = json.loads(r.value)
                    enc = r.key.decode()
                    if enc not in latest or int(bundle["meta"]["versionId"]) > int(latest[enc]["meta"]["versionId"]):
                        latest[enc] = bundle
            if until(latest):
                return latest
    finally:
        consumer.close()
    return latest


def billable(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["status"] == "billable"]


def charged_as(truth: dict[str, list[dict]], exactly: bool = True) -> Any:
    """A ``latest_revisions`` stop condition: every encounter of ``truth`` has its charges (and,
    ``exactly``, no other encounter has any)."""
    def done(latest: dict[str, dict]) -> bool:
        return (set(latest) == set(truth) if exactly else set(truth) <= set(latest)) and \
            all(billable(latest[e]) == truth[e] for e in truth)
    return done


def all_results(bootstrap: str, topic: str, settle_s: float = 2.0) -> dict[tuple[str, str], set[bytes]]:
    """Every message on the charges topic: (encounter, revision) -> the distinct values seen."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                             group_id=None)
    out: dict[tuple[str, str], set[bytes]] = {}
    quiet_since = time.monotonic()
    try:
        while time.monotonic() - quiet_since < settle_s:
            batch = consumer.poll(300)
            if batch:
                quiet_since = time.monotonic()
            for records in batch.values():
                for r in records:
                    out.setdefault((r.key.decode(), dict(r.headers)["revision"].decode()), set()).add(r.value)
    finally:
        consumer.close()
    return out


def write_config(settings: Settings, path: Path, **over: Any) -> Path:
    """The settings as a worker.yaml (None included: ``metrics_port: null`` means no listener,
    where leaving it out would bind the default port)."""
    import yaml

    path.write_text(yaml.safe_dump({**settings.model_dump(mode="json"), **over}))
    return path


def dead_letters(bootstrap: str, topic: str, at_least: int = 1, timeout_s: float = 30) -> list[Any]:
    """Records on the dead-letter topic, read until ``at_least`` arrived or the timeout."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                             enable_auto_commit=False)
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < at_least and time.monotonic() < deadline:
            for records in consumer.poll(500).values():
                got.extend(records)
    finally:
        consumer.close()
    return got


def charge_backlog(bootstrap: str, settings: Settings, encounters: int = 20, seed: int = 5) -> tuple[Running, list, list]:
    """A synthetic FHIR backlog produced before the worker starts (so it reads many records per
    poll), run until every encounter is charged as offline: (the worker, still running; the
    messages; the events topic's records).  The caller closes the worker."""
    from connectors.synthetic import generate, offline_charges

    messages = generate(encounters, "fhir", settings.topics, seed=seed)
    truth = offline_charges(messages, settings.topics)
    produce(bootstrap, messages)
    worker = Running(settings)
    try:
        done = charged_as(truth, exactly=False)
        assert done(latest_revisions(bootstrap, settings.topics.charges, done))
        consumer = KafkaConsumer(settings.topics.events, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False, group_id=None, consumer_timeout_ms=2000)
        events = list(consumer)
        consumer.close()
    except BaseException:
        worker.close()
        raise
    return worker, messages, events


ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """``infusion-charges run`` in a process of its own, as a pod runs it: its own state
    directory (volume) unless given one, a free port for its metrics listener, stderr in a
    log file."""

    def __init__(self, settings: Settings, tmp_path: Path, name: str, state_dir: Path | None = None, **over: Any):
        from connectors.broker import free_port

        self.name, self.port = name, free_port()
        self.log = tmp_path / f"{name}.log"
        config = write_config(settings, tmp_path / f"{name}.yaml", metrics_port=self.port,
                              state_dir=str(state_dir or tmp_path / f"{name}-state"), **over)
        self.cmd = [sys.executable, "-m", "connectors.cli", "run", "--config", str(config)]
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log.open("w"))

    def _status(self, path: str) -> int | None:
        from urllib.error import HTTPError, URLError
        from urllib.request import urlopen

        try:
            with urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status)
        except HTTPError as e:
            return int(e.code)
        except (URLError, OSError):
            return None

    def ready(self) -> bool:
        return self._status("/readyz") == 200

    def alive(self) -> bool:
        return self._status("/healthz") == 200

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited {self.proc.returncode}:\n{self.tail()}"
            if self.ready():
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready after {timeout_s} s:\n{self.tail()}")

    def terminate(self, timeout_s: float = 60) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds it took)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout_s)
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text()
        return "\n".join(line for line in text.splitlines() if '"logger": "kafka' not in line)[-chars:]

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines of the worker's own logger."""
        out = []
        for line in self.log.read_text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                out.append({"level": "RAW", "message": line})
                continue
            if doc.get("logger", "").startswith("infusion_charges"):
                out.append(doc)
        return out


def produce_paced(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]], seconds: float) -> subprocess.Popen[bytes]:
    """Produce ``messages`` evenly over ``seconds`` from another process: live traffic."""
    import pickle

    f = tempfile.NamedTemporaryFile(suffix=".pickle", delete=False)
    pickle.dump(messages, f)
    f.close()
    code = ("import pickle, sys, time\nfrom kafka import KafkaProducer\nmsgs = pickle.load(open(sys.argv[2], 'rb'))\n"
            "p = KafkaProducer(bootstrap_servers=sys.argv[1])\ngap = float(sys.argv[3]) / max(1, len(msgs))\n"
            "for t, k, v in msgs:\n    p.send(t, key=k, value=v)\n    time.sleep(gap)\np.flush()\np.close()\n")
    return subprocess.Popen([sys.executable, "-c", code, bootstrap, f.name, str(seconds)], cwd=ROOT)
