"""Once a second: idle closes, retention, and the gauges.

* An outpatient encounter whose feed has been silent for ``idle_close_minutes`` gets an
  idle-close event through the events topic, behind the encounter's records: a replay after a
  crash meets the close at the same place in the history and decides the same.
* A closed, discarded or blocked encounter silent for ``retention_days`` is retired to a small
  marker (late records are refused, not re-billed from scratch); a marker is forgotten after
  ``retired_memory_days``.
* An open encounter quiet for ``QUIET_MS`` lets go of its parsed records (kept for coding).
* Gauges: encounters held, open and blocked; consumer lag per topic.
"""

from __future__ import annotations

from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from connectors.clients import Outbox
from connectors.codec import event_json
from connectors.ops import Metrics
from connectors.processor import IDLE_CLOSE
from connectors.settings import Settings
from connectors.store import StateStores

MINUTE_MS, DAY_MS = 60_000, 86_400_000
# An open encounter silent this long lets go of its parsed records (memory: see the chart's
# sizing guide); they are parsed again if it is coded.
QUIET_MS = 10 * MINUTE_MS


class Ticker:
    def __init__(self, settings: Settings, stores: StateStores, outbox: Outbox, metrics: Metrics, clock: Callable[[], float]):
        self.settings, self.stores, self.outbox, self.metrics, self.clock = settings, stores, outbox, metrics, clock
        self._close_requested: dict[tuple[int, str], int] = {}  # idle-close events sent, by basis

    def tick(self, consumer: KafkaConsumer, recovered: set[int], positioned: list[TopicPartition]) -> None:
        now_ms = int(self.clock() * 1000)
        s = self.settings
        idle_ms, retention_ms, forget_ms = s.idle_close_minutes * MINUTE_MS, s.retention_days * DAY_MS, s.retired_memory_days * DAY_MS
        counts: dict[str, int] = {}
        for partition, store in self.stores.items():
            if partition not in recovered:
                continue
            for key, state in store.in_memory():
                if now_ms - state.last_record_ms > QUIET_MS:
                    state.release_parsed()
                if state.idle_close_due(now_ms, idle_ms) and self._close_requested.get((partition, key)) != state.last_record_ms:
                    self._close_requested[(partition, key)] = state.last_record_ms
                    self.outbox.send(s.topics.events, key=key.encode(), partition=partition,
                                     value=event_json({IDLE_CLOSE: state.last_record_ms, "encounter": key}))
            for key in store.stale(now_ms - retention_ms, ("closed", "discarded", "blocked")):
                state = store.get(key)
                if state is not None and state.expired(now_ms, retention_ms) and not state.due():
                    state.retire()
                    store.put(key, state)
            for key in store.stale(now_ms - forget_ms, ("retired",)):
                state = store.get(key)
                if state is not None and state.retired and now_ms - state.last_record_ms > forget_ms:
                    store.delete(key)
            for standing, n in store.counts().items():
                counts[standing] = counts.get(standing, 0) + n
        self.metrics.encounters_held.set(sum(n for standing, n in counts.items() if standing != "retired"))
        self.metrics.encounters_open.set(counts.get("open", 0))
        self.metrics.encounters_blocked.set(counts.get("blocked", 0))
        self._measure_lag(consumer, positioned)

    def _measure_lag(self, consumer: KafkaConsumer, positioned: list[TopicPartition]) -> None:
        """Over the partitions the loop has positioned (asking another's position makes the
        client look for every missing one, and fail on a partition just assigned)."""
        lag: dict[str, int] = {}
        for tp in positioned:
            high = consumer.highwater(tp)
            position = consumer.position(tp) if high is not None else None
            if high is not None and position is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - position)
        for topic, value in lag.items():
            self.metrics.consumer_lag.labels(topic).set(value)

    def forget(self, partitions: set[int]) -> None:
        self._close_requested = {k: v for k, v in self._close_requested.items() if k[0] not in partitions}
