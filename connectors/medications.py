"""The reference table of Medications: a compacted topic every worker reads in full.

Kafka Streams' GlobalKTable: the topic (``topics.fhir_medications``, key = the Medication id,
value = a FHIR Medication, no value = deleted) is not shared out by the group.  Each worker
assigns itself every partition, reads it to its end before it consumes anything (restored on
start: the table lives in memory only), then keeps reading it between batches.  An
administration that names a Medication by id (``Medication/<id>`` outside its message) is
completed from the table when its encounter is coded (mapping/medications.py), and that coding
first reads the table to the end the log has then, so a Medication produced before the close is
never missed.  A Medication that arrives after an encounter was coded without it is what
``EncounterState.waiting`` remembers: the processor codes such encounters again (a new revision
when their lines change).  A record that is not a usable Medication is dead-lettered with the
reason and counted; the worker keeps reading.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from connectors.clients import LogEnds, make_reader
from connectors.dead_letters import DeadLetters
from connectors.errors import WorkerFailed
from connectors.ops import Metrics
from connectors.settings import Settings
from mapping.errors import MappingError
from mapping.fhir_in import StrictJsonError, map_medication, strict_loads
from mapping.medications import MedicationCodes

log = logging.getLogger("infusion_charges.worker")
SETTLE_TIMEOUT_S = 5.0  # the most one coding waits for the topic
SETTLE_BACKOFF_S = 30.0  # after that, codings use what is held for this long
# Between batches the topic is polled at most this often: a poll costs ~150 µs even when
# nothing arrived, and the worker turns up to a few hundred times a second under light load.
# A coding that needs a Medication the table lacks still reads the topic to its end first.
POLL_INTERVAL_S = 0.1


class MedicationTable:
    def __init__(self, settings: Settings, metrics: Metrics, dead_letters: DeadLetters):
        self.settings, self.metrics, self.dead_letters = settings, metrics, dead_letters
        self.topic = settings.topics.fhir_medications
        self._by_id: dict[str, MedicationCodes] = {}
        self._reader: Any = None
        self._log_ends: LogEnds | None = None
        self._tps: list[TopicPartition] = []
        self._retry_at = float("-inf")  # after a failed settle: when codings may wait for the topic again
        self._arrived: set[str] = set()  # ids changed since the last poll(), however they were read
        self._next_poll = float("-inf")  # when poll() next reads the topic

    def __len__(self) -> int:
        return len(self._by_id)

    def holds(self, medication_id: str) -> bool:
        return medication_id in self._by_id

    def get(self, medication_id: str) -> MedicationCodes | None:
        """The Medication; one the table does not hold yet is looked for to the log's current
        end first, so a close is coded with every Medication produced before it.  While the
        topic cannot be read, codings use what is held (the encounter then waits, and is coded
        again when the Medication arrives) and no coding waits for it again for a while."""
        found = self._by_id.get(medication_id)
        if found is None and time.monotonic() >= self._retry_at:
            try:
                self.settle(SETTLE_TIMEOUT_S)
            except (WorkerFailed, KafkaError) as e:
                self._retry_at = time.monotonic() + SETTLE_BACKOFF_S
                log.warning("the Medication reference topic could not be read to its end: %s", type(e).__name__,
                            extra={"error_type": type(e).__name__})
            found = self._by_id.get(medication_id)
        return found

    def start(self, timeout_s: float) -> None:
        """Assign every partition and read them to their ends (the restore)."""
        reader = self._reader = make_reader(self.settings)
        partitions = reader.partitions_for_topic(self.topic)
        if partitions is None:
            raise WorkerFailed(f"the Medication reference topic {self.topic} does not exist")
        self._tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        reader.assign(self._tps)
        reader.seek_to_beginning(*self._tps)
        self._log_ends = LogEnds(self.settings)
        self.settle(timeout_s)
        self._arrived.clear()  # nothing was coded before: no encounter waits for these
        log.info("medication table read: %d medications", len(self._by_id), extra={"medications": len(self._by_id)})

    def settle(self, timeout_s: float = 10.0) -> None:
        """Read to the end each partition's log has now."""
        if self._reader is None or self._log_ends is None:
            return
        ends = self._log_ends(self._tps)
        deadline = time.monotonic() + timeout_s
        while any(self._reader.position(tp) < ends[tp] for tp in self._tps):
            if time.monotonic() > deadline:
                raise WorkerFailed(f"the Medication reference topic {self.topic} was not read to its end within {timeout_s:.0f} s")
            self._apply(self._reader.poll(timeout_ms=100))

    def poll(self) -> set[str]:
        """Read what arrived (at most every POLL_INTERVAL_S), without waiting; the ids changed
        since the last poll (read here or by a coding's settle)."""
        now = time.monotonic()
        if self._reader is not None and now >= self._next_poll:
            self._next_poll = now + POLL_INTERVAL_S
            self._apply(self._reader.poll(timeout_ms=0))
        arrived, self._arrived = self._arrived, set()
        return arrived

    def _apply(self, batch: dict[Any, list[Any]]) -> None:
        for records in batch.values():
            for record in records:
                medication_id = self._read(record)
                if medication_id is not None:
                    self._arrived.add(medication_id)

    def _read(self, record: Any) -> str | None:
        if record.value is None:  # a tombstone: the Medication is gone
            key = record.key.decode("utf-8", "replace") if record.key else None
            if key is None or self._by_id.pop(key, None) is None:
                return None
            self.metrics.medications.labels("deleted").inc()
            return key
        try:
            try:
                data = strict_loads(record.value.decode("utf-8"))
            except StrictJsonError as e:
                raise MappingError(str(e)) from None
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise MappingError("not JSON this product reads (UTF-8 JSON, not nested too deeply)") from None
            if not isinstance(data, dict) or data.get("resourceType") != "Medication":
                raise MappingError("not a FHIR Medication (resourceType)")
            medication = map_medication(data)
        except MappingError as e:
            self.metrics.medications.labels("rejected").inc()
            self.dead_letters.send(record, "MappingError", str(e))
            return None
        key = record.key.decode("utf-8", "replace") if record.key else None
        if key != medication.id:  # compaction keeps one record per key: a key that is not the id keeps stale copies
            self.metrics.medications.labels("rejected").inc()
            self.dead_letters.send(record, "MappingError", "Medication record key is not the Medication's id (compaction and "
                                   "deletion go by key)")
            return None
        outcome = "updated" if medication.id in self._by_id else "added"
        if self._by_id.get(medication.id) == medication:
            return None
        self._by_id[medication.id] = medication
        self.metrics.medications.labels(outcome).inc()
        return medication.id

    def close(self) -> None:
        for client in (self._reader, self._log_ends):
            if client is not None:
                client.close()
        self._reader = self._log_ends = None
