"""``make demo``: the real pipeline over the bundled sample feeds, on the embedded broker.

Starts tansu, starts a worker, produces the samples (each FHIR resource and each HL7 message
as one Kafka message on its input topic), prints the latest ChargeItem revision of every
encounter as it arrives on the charges topic, and shuts everything down.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from coding_core.profile import Profile
from connectors.broker import embedded_broker
from connectors.settings import Settings, Topics
from connectors.worker import Worker
from mapping.hl7_er7 import split_messages
from mapping.reference_data import load_formulary

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def feed_messages(paths: Iterable[Path], topics: Topics) -> list[tuple[str, bytes | None, bytes]]:
    """(topic, key, value) for every FHIR resource and HL7 message in the files, in file order."""
    out: list[tuple[str, bytes | None, bytes]] = []
    for path in paths:
        if path.suffix == ".hl7":
            for _, msg in split_messages(path.read_text(encoding="latin-1")):
                topic = topics.hl7_adt if "|ADT^" in msg.split("\r", 1)[0] else topics.hl7_ras
                out.append((topic, None, msg.encode()))
            continue
        text = path.read_text()
        docs = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".ndjson" else [json.loads(text)]
        for doc in docs:
            resources = [e["resource"] for e in doc["entry"]] if doc.get("resourceType") == "Bundle" else [doc]
            for r in resources:
                topic = topics.fhir_encounters if r["resourceType"] == "Encounter" else topics.fhir_administrations
                out.append((topic, r["id"].encode(), json.dumps(r).encode()))
    return out


def main(quiet_s: float = 4.0, timeout_s: float = 120.0) -> int:
    paths = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".json", ".ndjson", ".hl7"))
    with embedded_broker() as bootstrap, tempfile.TemporaryDirectory(prefix="infusion-charges-demo-") as state_dir:
        print(f"== embedded broker on {bootstrap}", file=sys.stderr)
        settings = Settings(bootstrap_servers=bootstrap, group_id="infusion-charges-demo", partitions=3,
                            session_timeout_ms=6000, max_poll_interval_ms=10000, metrics_port=None, state_dir=Path(state_dir))
        stop = threading.Event()
        worker = Worker(settings, load_formulary(), Profile())
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        messages = feed_messages(paths, settings.topics)
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        for topic, key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush()
        producer.close()
        print(f"== produced {len(messages)} messages from {len(paths)} sample files", file=sys.stderr)

        latest: dict[str, dict] = {}
        consumer = KafkaConsumer(settings.topics.charges, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False, group_id=None)
        started = last = time.monotonic()
        while time.monotonic() - started < timeout_s and (not latest or time.monotonic() - last < quiet_s):
            for records in consumer.poll(300).values():
                for r in records:
                    latest[r.key.decode()] = json.loads(r.value)
                    last = time.monotonic()
        consumer.close()
        stop.set()
        thread.join(30)

        for enc in sorted(latest):
            bundle = latest[enc]
            print(f"== encounter {enc}, revision {bundle['meta']['versionId']}")
            print(json.dumps(bundle, indent=2, ensure_ascii=False))
        lines = sum(len(b["entry"]) for b in latest.values())
        print(f"== {len(latest)} encounters, {lines} ChargeItems; worker: {worker.stats}", file=sys.stderr)
        return 0 if latest else 1


if __name__ == "__main__":
    sys.exit(main())
