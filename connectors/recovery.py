"""State recovery: an owned events partition's local store brought up to its changelog's end.

Runs in the worker's loop, a bounded slice per turn, never inside a rebalance callback: the
events partition stays paused (its records wait) and the worker is not ready until every
owned partition is recovered; input partitions go on being read meanwhile.  A store that
survived on the volume reads only the changelog records after its checkpoint; a new one reads
the whole changelog.

Two checks before reading, each a :class:`DataLoss` (the worker stops; starting encounters
again at revision 1 would publish partial bills under revision numbers already used):
the changelog ends before the store's checkpoint, or the state topic is not the one the store
was filled from (it was deleted and created again).
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer, TopicPartition

from connectors.clients import LogEnds, make_reader
from connectors.errors import DataLoss
from connectors.ops import Metrics
from connectors.settings import Settings
from connectors.state import EncounterState
from connectors.store import PartitionStore, Row, StateStores

log = logging.getLogger("infusion_charges.worker")
STANDING, LAST_RECORD_MS, WAITING = "standing", "last-record-ms", "waiting-medications"  # changelog record headers


def changelog_headers(state: EncounterState) -> list[tuple[str, bytes]]:
    """What a restore needs to index a state without parsing it."""
    headers = [(STANDING, state.standing.encode()), (LAST_RECORD_MS, str(state.last_record_ms).encode())]
    if state.waiting:  # Medication ids are FHIR ids: no comma in them
        headers.append((WAITING, ",".join(state.waiting).encode()))
    return headers


def row_from_record(key: str, value: bytes | None, headers: list[tuple[str, bytes]] | None) -> Row:
    if value is None:
        return Row(key, None)
    found = dict(headers or ())
    if STANDING in found and LAST_RECORD_MS in found:
        waiting = tuple(found[WAITING].decode().split(",")) if found.get(WAITING) else ()
        return Row(key, value, found[STANDING].decode(), int(found[LAST_RECORD_MS]), waiting)
    state = EncounterState.from_bytes(value)  # written before the headers existed
    return Row(key, value, state.standing, state.last_record_ms, tuple(state.waiting))


class Recovery:
    def __init__(self, settings: Settings, stores: StateStores, metrics: Metrics, log_ends: LogEnds):
        self.settings, self.stores, self.metrics, self.log_ends = settings, stores, metrics, log_ends
        self.topic = settings.topics.state
        self._reader: KafkaConsumer | None = None
        self._ends: dict[int, int] = {}  # partition being recovered -> changelog end to reach
        self.topic_id: str | None = None  # the state topic's id, when the broker reports one

    @property
    def pending(self) -> set[int]:
        return set(self._ends)

    def start(self, partitions: list[int]) -> None:
        if not partitions:
            return
        reader = self._reader = self._reader or make_reader(self.settings)
        tps = [TopicPartition(self.topic, p) for p in partitions]
        ends = self.log_ends(tps)
        for tp in tps:
            store = self.stores.open(tp.partition)
            self._check(store, ends[tp])
            self._ends[tp.partition] = ends[tp]
        reader.assign([TopicPartition(self.topic, p) for p in self._ends])
        for p in partitions:
            reader.seek(TopicPartition(self.topic, p), self.stores.open(p).changelog_offset)

    def _check(self, store: PartitionStore, end: int) -> None:
        where = f"{self.topic}[{store.partition}]"
        known = store.meta("topic_id")
        if self.topic_id is not None:
            if known is not None and known != self.topic_id:
                raise DataLoss(f"{where}: the state topic is not the one the local store at {store.path.parent} was "
                               "filled from (it was deleted and created again): if that was intended, delete that "
                               "directory; otherwise the broker lost data")
            store.set_meta("topic_id", self.topic_id)
        if end < store.changelog_offset:
            raise DataLoss(f"{where}: the changelog ends at offset {end}, before the local store's checkpoint "
                           f"{store.changelog_offset}: the broker lost data")

    def step(self, budget_s: float) -> list[int]:
        """Read for at most ``budget_s``; the partitions now recovered."""
        done = [p for p in self._ends if self._caught_up(p)]
        deadline = time.monotonic() + budget_s
        while self._ends.keys() - set(done) and time.monotonic() < deadline:
            assert self._reader is not None
            batch = self._reader.poll(timeout_ms=100, max_records=5000)
            for tp, records in batch.items():
                if tp.partition not in self._ends:
                    continue
                rows = [row_from_record(r.key.decode(), r.value, r.headers) for r in records]
                self.stores.open(tp.partition).restore(rows, records[-1].offset + 1)
                self.metrics.restored.inc(len(rows))
            done = [p for p in self._ends if self._caught_up(p)]
        for p in done:
            self._finish(p)
        return done

    def _caught_up(self, partition: int) -> bool:
        assert self._reader is not None
        return self._reader.position(TopicPartition(self.topic, partition)) >= self._ends[partition]

    def _finish(self, partition: int) -> None:
        store = self.stores.open(partition)
        end = self._ends.pop(partition)
        if end > store.changelog_offset:
            store.restore([], end)  # the tail held only compacted-away offsets or transaction markers
        held = store.load_open()
        log.info("recovered %s[%d] to offset %d: %d open encounters in memory", self.topic, partition, end, held,
                 extra={"partition": partition, "offset": end, "open": held})
        self._reassign()

    def cancel(self, partitions: list[int]) -> None:
        for p in partitions:
            self._ends.pop(p, None)
        self._reassign()

    def _reassign(self) -> None:
        if self._reader is not None:
            self._reader.assign([TopicPartition(self.topic, p) for p in self._ends])

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
