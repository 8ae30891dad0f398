"""``make demo``: the real pipeline over the bundled sample feeds, on the embedded broker.

Starts tansu, starts a worker coding with the sample billing profile
(``samples/profile-billing.yaml`` and its chargemaster), produces the samples (each FHIR
resource and each HL7 message as one Kafka message on its input topic), reads the charges topic
until it is quiet, prints each encounter's latest revision as a table -- one line per
ChargeItem: code, units, modifiers, date, status, revenue code, CDM code, review flags, id --
writes the revisions themselves to ``demo-charges.json`` and shuts everything down.
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

from connectors.broker import embedded_broker
from connectors.settings import Settings, Topics
from connectors.worker import Worker
from mapping.chargeitem_out import EXT_MODIFIER, EXT_REVENUE, EXT_REVIEW_FLAG
from mapping.hl7_er7 import split_messages
from mapping.reference_data import formulary_for, load_formulary, load_profile

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PROFILE = SAMPLES / "profile-billing.yaml"
OUTPUT = Path("demo-charges.json")
COLUMNS = ("code", "units", "modifiers", "date", "status", "revenue", "cdm", "review flags", "id")


def summary(bundle: dict) -> list[str]:
    """One revision as a table: a row per ChargeItem (withdrawn ones too, by their status)."""
    rows = []
    for entry in bundle["entry"]:
        item = entry["resource"]
        ext = item.get("extension", [])
        codes = [c["code"] for c in item["code"]["coding"]]
        rows.append((
            codes[0], str(item["quantity"]["value"]),
            ",".join(e["valueCoding"]["code"] for e in ext if e["url"] == EXT_MODIFIER) or "-",
            item["occurrenceDateTime"], item["status"],
            next((e["valueCoding"]["code"] for e in ext if e["url"] == EXT_REVENUE), "-"),
            codes[1] if len(codes) > 1 else "-",
            ",".join(e["valueCode"] for e in ext if e["url"] == EXT_REVIEW_FLAG) or "-",
            item["id"],
        ))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(COLUMNS)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (COLUMNS, *rows)]


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
        profile = load_profile(PROFILE)
        worker = Worker(settings, formulary_for(profile, load_formulary()), profile)
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

        print(f"== charges coded with profile {profile.name} ({PROFILE.relative_to(SAMPLES.parent)})")
        for enc in sorted(latest):
            bundle = latest[enc]
            print(f"\n== encounter {enc}, revision {bundle['meta']['versionId']}")
            print("\n".join(summary(bundle)))
        OUTPUT.write_text(json.dumps([latest[e] for e in sorted(latest)], indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        lines = sum(len(b["entry"]) for b in latest.values())
        print(f"\n== {len(latest)} encounters, {lines} ChargeItems; the revision Bundles are in {OUTPUT.resolve()}")
        print(f"== worker: {worker.stats}", file=sys.stderr)
        return 0 if latest else 1


if __name__ == "__main__":
    sys.exit(main())
