"""``infusion-charges dead-letters list|show|replay``: what the worker set aside, and sending it back.

Every dead letter carries its origin in headers (``source.topic``, ``source.partition``,
``source.offset``), why (``error.type``, ``error.message``) and, unless it was too large, the
message itself.  ``replay`` produces the chosen letters back to their source topic, keyed as
before, with a ``redrive.of`` header naming the dead letter (``<partition>:<offset>``): the
worker treats the message as any other arrival (a record never applied is new; an HL7 message
whose content changed since is an update) and counts re-drives on ``/metrics``.  A letter whose
value was omitted (over ``max_dead_letter_bytes``) is replayed from its source topic, read at
its source offset, while retention keeps it there.

A dead letter is named by its place on the dead-letter topic, ``<partition>:<offset>``.
Nothing here prints a payload unless asked to (``show --payload``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from kafka import KafkaProducer, TopicPartition

from connectors.clients import make_reader, read_topic
from connectors.settings import Settings

REDRIVE_HEADER = "redrive.of"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    error_type: str
    error_message: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    key: bytes | None
    value: bytes | None
    redrive_of: str | None  # this letter is itself a failed re-drive of that letter

    @property
    def name(self) -> str:
        return f"{self.partition}:{self.offset}"

    def summary(self) -> dict[str, object]:
        """What ``list`` shows: origin, time, error type, size -- no payload, no message text."""
        return {
            "id": self.name, "time": datetime.fromtimestamp(self.timestamp_ms / 1000, timezone.utc).isoformat(timespec="seconds"),
            "error_type": self.error_type, "source": f"{self.source_topic}[{self.source_partition}]@{self.source_offset}",
            "bytes": None if self.value is None else len(self.value), **({"redrive_of": self.redrive_of} if self.redrive_of else {}),
        }


def _header(headers: Iterable[tuple[str, bytes]], name: str) -> str | None:
    for k, v in headers or ():
        if k == name:
            return v.decode(errors="replace")
    return None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def read(settings: Settings, timeout_s: float = 30.0) -> Iterator[DeadLetter]:
    """Every letter on the dead-letter topic, partition by partition, from the start to the end
    the topic had when reading began."""
    for r in read_topic(settings, settings.topics.dead_letter, timeout_s):
        h = r.headers
        yield DeadLetter(
            r.partition, r.offset, r.timestamp, _header(h, "error.type") or "unknown", _header(h, "error.message") or "",
            _header(h, "source.topic") or "", _int(_header(h, "source.partition")), _int(_header(h, "source.offset")),
            r.key, r.value, _header(h, REDRIVE_HEADER),
        )


def select(letters: Iterable[DeadLetter], ids: Iterable[str] = (), error_type: str | None = None,
           source_topic: str | None = None) -> list[DeadLetter]:
    wanted = set(ids)
    return [d for d in letters if (not wanted or d.name in wanted) and (error_type is None or d.error_type == error_type)
            and (source_topic is None or d.source_topic == source_topic)]


def _value_from_source(settings: Settings, letter: DeadLetter) -> bytes | None:
    if letter.source_partition is None or letter.source_offset is None:
        return None
    reader = make_reader(settings)
    try:
        tp = TopicPartition(letter.source_topic, letter.source_partition)
        reader.assign([tp])
        reader.seek(tp, letter.source_offset)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=500).values():
                for r in records:
                    if r.offset == letter.source_offset:
                        return r.value
                    if r.offset > letter.source_offset:
                        return None  # compacted or past retention
        return None
    finally:
        reader.close()


@dataclass
class Replayed:
    sent: list[str]
    skipped: list[tuple[str, str]]  # (letter, why)


def replay(settings: Settings, letters: list[DeadLetter], dry_run: bool = False) -> Replayed:
    """Send each letter back to its source topic (keyed as before, with the re-drive header), in
    the order they were dead-lettered across all partitions: a record set aside before a
    correction of it is replayed before the correction, so the correction stays the last word."""
    letters = sorted(letters, key=lambda d: (d.timestamp_ms, d.partition, d.offset))
    done = Replayed([], [])
    producer = None if dry_run else KafkaProducer(**settings.kafka_config(), acks="all", enable_idempotence=True)
    try:
        for d in letters:
            if not d.source_topic:
                done.skipped.append((d.name, "no source.topic header"))
                continue
            value = d.value if d.value is not None else _value_from_source(settings, d)
            if value is None:
                done.skipped.append((d.name, "the message is no longer on its source topic (value omitted from the dead letter)"))
                continue
            if producer is not None:
                producer.send(d.source_topic, key=d.key, value=value, headers=[(REDRIVE_HEADER, d.name.encode())])
            done.sent.append(d.name)
        if producer is not None:
            producer.flush(timeout=settings.request_timeout_ms / 1000)
    finally:
        if producer is not None:
            producer.close()
    return done


def show(letter: DeadLetter, payload: bool) -> str:
    doc: dict[str, object] = {**letter.summary(), "error_message": letter.error_message,
                              "key": letter.key.decode(errors="replace") if letter.key is not None else None}
    if payload:
        doc["value"] = letter.value.decode(errors="replace") if letter.value is not None else None
    return json.dumps(doc, indent=1)
