"""Partitions moving between workers: what the group's callbacks do, and what they leave to the loop.

kafka-python (3.x) runs rebalance callbacks on its IO thread, inside ``poll()``, while the
worker's loop waits for ``poll()`` to return; a blocking consumer call there is refused.  So:

* **revoked**: the checkpoint runs with an awaited commit (``Checkpoint.commit_async``), so
  the next owner starts where this worker stopped; then everything of the revoked partitions
  is forgotten (held updates, batches not sent, states in memory).  If the checkpoint cannot
  finish, nothing past the last commit counts: the next owner repeats it, identically.
* **lost** (evicted from the group): forgotten without a commit -- another worker may own them.
* **assigned**: the partitions are paused and queued; the loop positions them at their
  committed offsets, checks the broker still holds what was committed, recovers the events
  partitions' state (``connectors.recovery``) and resumes them.  Nothing slow runs in the
  callback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition

log = logging.getLogger("infusion_charges.worker")


class Assignments(AsyncConsumerRebalanceListener):
    def __init__(self, consumer: KafkaConsumer, on_revoked: Callable[[set[TopicPartition]], Awaitable[None]],
                 on_lost: Callable[[set[TopicPartition]], None], on_callback: Callable[[], None]):
        self.consumer, self._on_revoked, self._on_lost, self._on_callback = consumer, on_revoked, on_lost, on_callback
        self._lock = threading.Lock()
        self._new: set[TopicPartition] = set()  # assigned, not yet positioned by the loop
        self.owned: set[TopicPartition] = set()
        self.generations = 0  # assignments received

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._on_callback()
        revoked = set(revoked)
        if not revoked:
            return
        try:
            await self._on_revoked(revoked)
        finally:
            self._drop(revoked)

    async def on_partitions_lost(self, lost: Any) -> None:
        self._on_callback()
        lost = set(lost)
        log.warning("evicted from the group: %d partitions lost without a commit", len(lost), extra={"partitions": len(lost)})
        self._on_lost(lost)
        self._drop(lost)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._on_callback()
        assigned = set(assigned)
        if assigned:
            self.consumer.pause(*assigned)
        with self._lock:
            self._new |= assigned
            self.owned |= assigned
            self.generations += 1
        log.info("assigned %d partitions", len(assigned), extra={"partitions": len(assigned)})

    def _drop(self, partitions: set[TopicPartition]) -> None:
        with self._lock:
            self._new -= partitions
            self.owned -= partitions

    def pending(self) -> set[TopicPartition]:
        """Assigned, not yet positioned by the loop."""
        with self._lock:
            return self._new & self.owned

    def positioned(self, partitions: set[TopicPartition]) -> None:
        with self._lock:
            self._new -= partitions

    @property
    def settled(self) -> bool:
        """An assignment has been received and every assigned partition positioned."""
        with self._lock:
            return self.generations > 0 and not self._new
