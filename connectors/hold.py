"""The close hold: encounter updates (closes, cancels) wait for the other input partitions.

The feeds arrive on separate topics: without the hold, a backlog's closes overtake their
administrations and every late administration re-codes a closed encounter.  An update is
released to the events topic once every assigned input partition has been read up to its
timestamp (or to its end).  Only *when* a record enters the events topic changes; what is
coded from the events topic stays deterministic.

A partition read to its end vouches for what reached the broker before its end was asked for,
less a grace for what producers stamped earlier but the broker held only later (their linger,
the network, clock skew): ``hold_grace_ms``.  With ``measured`` (setting
``hold_grace_measured``) the grace is the longest delay seen in the last :data:`LAG_WINDOW_S`
seconds from an input record's timestamp to the worker reading it, at most ``hold_grace_ms``
(and ``hold_grace_ms`` while nothing has been read in the window).  That delay includes the
broker's append and the fetch, so it bounds the producer's share from above.  A record delayed
more than the grace releases its close early: the encounter is coded without it and coded
again when it arrives (an extra revision, never a lost charge).

A held update's offset is a floor for its partition's commit: after a crash or a rebalance
it is read again (see :meth:`CloseHold.floors`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from connectors.ops import Metrics
from mapping.collector import Mapped

# While encounter updates are held, input partitions' end offsets are asked for at most this
# often (one small broker request); a held close waits on average half of it.
ENDS_REFRESH_MS = 25
LAG_WINDOW_S = 10  # the measured grace is the longest read delay of the last this many seconds


@dataclass(frozen=True)
class Held:
    timestamp: int  # the input record's timestamp (ms)
    tp: TopicPartition
    offset: int
    mapped: Mapped
    read_at: float  # clock when read (s)


class CloseHold:
    def __init__(self, grace_ms: int, clock: Callable[[], float], metrics: Metrics, measured: bool = False):
        self.grace_ms, self.clock, self.metrics, self.measured = grace_ms, clock, metrics, measured
        self._held: list[Held] = []
        self._input_time: dict[TopicPartition, int] = {}  # timestamp of the last record read
        self._ends: dict[TopicPartition, int] = {}  # input partitions' end offsets, as of _ends_at
        self._ends_at = self._ends_next = float("-inf")
        self._lags: deque[list[int]] = deque()  # [second, longest read delay (ms) in it], oldest first

    def read(self, tp: TopicPartition, timestamp: int) -> None:
        """An input record of ``tp`` with this timestamp was read."""
        self._input_time[tp] = timestamp
        if not self.measured:
            return
        now_ms = int(self.clock() * 1000)
        lag, second = now_ms - timestamp, now_ms // 1000
        lags = self._lags
        if lags and lags[-1][0] == second:
            if lag > lags[-1][1]:
                lags[-1][1] = lag
        else:
            lags.append([second, lag])
            while lags[0][0] <= second - LAG_WINDOW_S:
                lags.popleft()

    def grace(self) -> int:
        """The grace in use (ms): ``grace_ms``, or, measured, the longest read delay of the
        window, at most ``grace_ms``."""
        if not self.measured:
            return self.grace_ms
        now_s = self.clock()
        recent = [lag for second, lag in self._lags if second > now_s - LAG_WINDOW_S]
        return min(self.grace_ms, max(0, max(recent))) if recent else self.grace_ms

    def hold(self, tp: TopicPartition, offset: int, timestamp: int, mapped: Mapped) -> None:
        now = self.clock()
        self.metrics.close_queued_seconds.observe(max(0.0, now - timestamp / 1000))
        self._held.append(Held(timestamp, tp, offset, mapped, now))

    def release(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> list[Mapped]:
        """The held updates every input partition has been read past, in timestamp order.

        A partition read to its end vouches for what was produced before that end was asked
        for.  The end a fetch last reported can be seconds old while the worker works through
        a batch, so the ends are asked for (at most every ENDS_REFRESH_MS while updates are
        held): with stale ends, live traffic let closes overtake their administrations."""
        if not self._held:
            return []
        now = self.clock() * 1000
        if now >= self._ends_next:
            self._ends, self._ends_at, self._ends_next = consumer.end_offsets(partitions), now, now + ENDS_REFRESH_MS
        grace = self.grace()
        self.metrics.hold_grace_seconds.set(grace / 1000)
        settled = self._ends_at - grace  # what producers stamped before this reached the broker by _ends_at
        watermark: float = float("inf")
        for tp in partitions:
            read_to = self._input_time.get(tp, float("-inf"))
            end = self._ends.get(tp)
            if end is not None and consumer.position(tp) >= end:
                read_to = max(read_to, settled)  # caught up as of _ends_at: nothing older can still come
            watermark = min(watermark, read_to)
        ready = sorted((h for h in self._held if h.timestamp <= watermark),
                       key=lambda h: (h.timestamp, h.tp.topic, h.tp.partition, h.offset))
        if not ready:
            return []
        self._held = [h for h in self._held if h.timestamp > watermark]
        released_at = self.clock()
        for h in ready:
            self.metrics.close_held_seconds.observe(max(0.0, released_at - h.read_at))
        return [h.mapped for h in ready]

    def floors(self) -> dict[TopicPartition, int]:
        """Per input partition, the offset of its oldest held update: never commit past it."""
        out: dict[TopicPartition, int] = {}
        for h in self._held:
            out[h.tp] = min(h.offset, out.get(h.tp, h.offset))
        return out

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions revoked or rewound: their held updates are read again from the commit."""
        gone = set(partitions)
        self._held = [h for h in self._held if h.tp not in gone]
        for tp in gone:
            self._input_time.pop(tp, None)
            self._ends.pop(tp, None)

    def __len__(self) -> int:
        return len(self._held)
