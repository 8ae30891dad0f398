"""The input side: feed messages mapped and forwarded to the events topic.

Each input record is mapped (``connectors.routing``); its records go to the events topic keyed
by their encounter id, so one encounter's history is in one partition, in order -- one events
message per encounter per poll batch (a replayed backlog brings an encounter's administrations
together: one send and one fetch for them all instead of one each).  Encounter updates wait
in the close hold first (``connectors.hold``).  Anything that failed goes, as the original
bytes, to the dead-letter topic with the reason.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from kafka import KafkaConsumer, TopicPartition

from connectors.clients import Outbox
from connectors.codec import event_json
from connectors.dead_letters import DeadLetters
from connectors.hold import CloseHold
from connectors.redrive import REDRIVE_HEADER
from connectors.routing import Router, route_fhir, route_hl7
from connectors.settings import Settings
from mapping.collector import Mapped

RECORDS = "records"  # an events-topic message: {RECORDS: [mapped record, ...]}, one encounter's, in order
RECORDS_PER_EVENT = 200  # at most this many mapped records in one events message (~200 KB) ...
# ... and at most this many bytes, unless one record alone is larger: Kafka refuses a message
# over the topic's max.message.bytes (1 MB by default), and the worker would stop on it after
# every restart.  Feeds with long texts make records of tens of KB.
EVENT_BYTES = 512 * 1024


class Intake:
    def __init__(self, settings: Settings, tz: ZoneInfo, outbox: Outbox, dead_letters: DeadLetters, hold: CloseHold,
                 stats: dict[str, int]):
        self.settings, self.tz, self.outbox, self.dead_letters, self.hold, self.stats = settings, tz, outbox, dead_letters, hold, stats
        t = settings.topics
        self.routers: dict[str, Router] = {t.fhir_administrations: route_fhir, t.fhir_encounters: route_fhir,
                                           t.hl7_ras: route_hl7, t.hl7_adt: route_hl7}
        self._outgoing: dict[str, list[bytes]] = {}  # mapped records on their way, by encounter, in order

    def handle(self, record: Any) -> None:
        self.stats["input"] += 1
        if record.headers and any(k == REDRIVE_HEADER for k, _ in record.headers):
            self.stats["redriven"] = self.stats.get("redriven", 0) + 1
            self.dead_letters.metrics.redriven.labels(record.topic).inc()
        size = len(record.value) if record.value is not None else 0
        if size > self.settings.max_message_bytes:
            self.dead_letters.send(record, "OversizedMessage", f"{size} bytes exceeds max_message_bytes {self.settings.max_message_bytes}")
            return
        try:
            routed = self.routers[record.topic](record.value, self.tz)
        except Exception as e:  # a defect must not stop the worker or lose the message
            self.dead_letters.send(record, type(e).__name__, "unexpected error while mapping")
            return
        tp = TopicPartition(record.topic, record.partition)
        self.hold.read(tp, record.offset, record.timestamp)
        for mapped in routed.records:
            if mapped.kind == "encounter":
                self.hold.hold(tp, record.offset, record.timestamp, mapped)
            else:
                self.forward(mapped)
        if routed.errors:
            self.dead_letters.send(record, "MappingError", " | ".join(str(e) for e in routed.errors))

    def forward(self, mapped: Mapped) -> None:
        self._outgoing.setdefault(mapped.key(), []).append(event_json(mapped.to_json()))

    def release(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        for mapped in self.hold.release(consumer, partitions):
            self.forward(mapped)

    def flush(self) -> None:
        """Send the forwarded records: per encounter, in the order they were forwarded, at most
        RECORDS_PER_EVENT records and EVENT_BYTES bytes to a message."""
        head, tail = b'{"' + RECORDS.encode() + b'":[', b"]}"
        topic = self.settings.topics.events
        empty = len(head) + len(tail)
        for key, docs in self._outgoing.items():
            chunk: list[bytes] = []
            size = empty  # the message's length so far: head, records and their commas, tail
            for doc in docs:
                if chunk and (len(chunk) == RECORDS_PER_EVENT or size + 1 + len(doc) > EVENT_BYTES):
                    self.outbox.send(topic, key=key.encode(), value=head + b",".join(chunk) + tail)
                    chunk, size = [], empty
                size += len(doc) + (1 if chunk else 0)
                chunk.append(doc)
            self.outbox.send(topic, key=key.encode(), value=head + b",".join(chunk) + tail)
        self._outgoing.clear()

    def clear(self) -> None:
        """A rewind: records not yet sent are mapped again from the input."""
        self._outgoing.clear()
