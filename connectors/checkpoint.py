"""The checkpoint: the one place offsets are committed.

at-least-once, in this order, each step acknowledged before the next:

1. the results of the records processed (events messages, revisions, dead letters);
2. the changelog: every encounter state changed since the last checkpoint;
3. the local state store: those states and the changelog offset after them, one transaction;
4. the consumed offsets -- never past a held encounter update (``connectors.hold``).

exactly-once: steps 1, 2 and 4 in one Kafka transaction, then step 3.

A crash at any point therefore repeats work, never skips it, and the repeat is identical
(deterministic ids and revisions from the recovered state).  A record the broker did not
acknowledge is a :class:`DeliveryFailed` before any offset past it is committed; records
still in flight at the flush timeout are a :class:`DeliveryPending`: the same checkpoint is
tried again on a later turn, offsets still uncommitted.

The worker's loop runs the checkpoint on its own thread (:meth:`Checkpoint.commit`).  On a
revocation it runs on kafka-python's IO thread, inside the rebalance, where a blocking commit
is refused: :meth:`Checkpoint.commit_async` awaits the commit on that thread's event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

from connectors.clients import Outbox
from connectors.hold import CloseHold
from connectors.intake import Intake
from connectors.processor import EncounterProcessor
from connectors.settings import Settings
from connectors.store import Row, StateStores


class Checkpoint:
    def __init__(self, settings: Settings, consumer: KafkaConsumer, outbox: Outbox, intake: Intake, hold: CloseHold,
                 processor: EncounterProcessor, stores: StateStores):
        self.settings, self.consumer, self.outbox, self.intake, self.hold = settings, consumer, outbox, intake, hold
        self.processor, self.stores = processor, stores
        self.processed: dict[TopicPartition, int] = {}  # next offset after the last processed record
        self.committed: dict[TopicPartition, int | None] = {}  # as known to be committed (None: nothing yet)
        self._unsaved: list[tuple[int, Row, Any]] = []  # changelog records sent, not yet in the local store

    def advance(self, tp: TopicPartition, next_offset: int) -> None:
        self.processed[tp] = next_offset

    # --- the protocol -----------------------------------------------------------------

    def commit(self, timeout_s: float) -> None:
        offsets = self._prepare(timeout_s)
        if offsets:
            self.consumer.commit(offsets, timeout_ms=int(timeout_s * 1000))
            self._committed(offsets)

    async def commit_async(self, timeout_s: float) -> None:
        """On kafka-python's IO thread.  Its public ``commit_async`` returns the coordinator
        lookup's future when the coordinator is unknown (the commit's own result is dropped),
        so the coroutine ``commit()`` runs on that thread is awaited instead: it finds the
        coordinator, retries what is retriable and raises on failure, within the timeout.
        (A private name: constraints.txt pins the kafka-python version it exists in, and the
        rebalance tests run through it.)"""
        offsets = self._prepare(timeout_s)
        if offsets:
            await self.consumer._coordinator._commit_offsets_sync_async(offsets, timeout_ms=int(timeout_s * 1000))
            self._committed(offsets)

    def _prepare(self, timeout_s: float) -> dict[TopicPartition, OffsetAndMetadata]:
        """Steps 1-3; the offsets step 4 commits (exactly-once: committed already)."""
        self.intake.flush()
        if not self.outbox.transactional:
            self.outbox.settle(timeout_s)  # 1
            # A changelog a previous attempt sent is acknowledged now: into the local store
            # before anything new is taken, so a state blocked now starts from what was written.
            self._save_local()
        for partition, row, headers in self.processor.changelog():  # 2
            future = self.outbox.send(self.settings.topics.state, key=row.key.encode(), value=row.value,
                                      partition=partition, headers=headers)
            self._unsaved.append((partition, row, future))
        offsets = self._due()
        if self.outbox.transactional:
            self.outbox.commit_transaction(offsets, self.consumer.group_metadata())
            self._save_local()  # 3
            self._committed(offsets)
            return {}
        self.outbox.settle(timeout_s)
        self._save_local()  # 3
        return offsets

    def _due(self) -> dict[TopicPartition, OffsetAndMetadata]:
        floors = self.hold.floors()
        target = {tp: min(offset, floors.get(tp, offset)) for tp, offset in self.processed.items()}
        return {tp: OffsetAndMetadata(o, None, -1) for tp, o in target.items() if self.committed.get(tp) != o}

    def _committed(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, meta in offsets.items():
            self.committed[tp] = meta.offset

    def _save_local(self) -> None:
        by_partition: dict[int, tuple[list[Row], int]] = {}
        for partition, row, future in self._unsaved:
            rows, end = by_partition.get(partition, ([], 0))
            rows.append(row)
            by_partition[partition] = (rows, max(end, future.value.offset + 1))
        self._unsaved = []
        for partition, (rows, end) in by_partition.items():
            store = self.stores.get(partition)
            if store is not None:
                store.save(rows, end)  # evicts too
        for partition, store in self.stores.items():
            if partition not in by_partition:
                store.evict()

    # --- partitions moving ------------------------------------------------------------

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Revoked, lost or rewound: nothing of theirs is committed by this worker any more."""
        for tp in partitions:
            self.processed.pop(tp, None)
            self.committed.pop(tp, None)
        gone = {tp.partition for tp in partitions if tp.topic == self.settings.topics.events}
        self._unsaved = [u for u in self._unsaved if u[0] not in gone]

    def clear(self) -> None:
        self.processed.clear()
        self._unsaved = []
