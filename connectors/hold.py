"""The close hold: encounter updates (closes, cancels) wait for the other input partitions.

The feeds arrive on separate topics: without the hold, a backlog's closes overtake their
administrations and every late administration re-codes a closed encounter.  An update is
released to the events topic once every assigned input partition has been read up to its
timestamp (or to its end).  Only *when* a record enters the events topic changes; what is
coded from the events topic stays deterministic.

A partition read to its end vouches for what reached the broker before its end was asked for,
less a grace for what producers stamped earlier but the broker held only later (their linger,
the network, clock skew): ``hold_grace_ms``.  With ``measured`` (setting
``hold_grace_measured``) the grace is that lateness as observed: a record read at an offset the
partition's end had not reached when it was asked for at time E, stamped before E, was late by
at least E minus its timestamp.  The grace is the largest such lateness of the last
:data:`LAG_WINDOW_S` seconds, at most ``hold_grace_ms``; it is ``hold_grace_ms`` while no end
was asked for in the window, and for the first ``hold_grace_ms`` of asking after such a quiet
window (a record late by less than that has shown itself by then).  A record later than the grace releases its close early: the
encounter is coded without it and coded again when it arrives (an extra revision, never a lost
charge).

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
LAG_WINDOW_S = 10  # the measured grace is the largest lateness of the last this many seconds


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
        # A lower bound of each input partition's position: past every record read and every
        # position the consumer reported.  A partition is forgotten here when it is revoked or
        # lost and before the worker seeks it (a rewind, out of range, no committed offset); a
        # newly assigned one starts unknown.  So a partition whose bound has reached its end
        # is caught up without asking the consumer (~8 µs a partition, each turn something is
        # held).
        self._read_past: dict[TopicPartition, int] = {}
        self._ends_at = self._ends_next = float("-inf")
        # Measured grace: per partition, (end offset, when it was answered (ms)) of the end
        # queries of the window, ends ascending; and per second of the window the largest
        # lateness observed (ms), oldest first.
        self._asked: dict[TopicPartition, deque[tuple[int, float]]] = {}
        self._late: deque[list[int]] = deque()
        self._asked_last = float("-inf")  # when an end was last asked for (ms)
        self._observing_since = float("inf")  # since when ends have been asked for without a quiet window (ms)

    def read(self, tp: TopicPartition, offset: int, timestamp: int) -> None:
        """An input record of ``tp`` at ``offset`` with this timestamp was read."""
        self._input_time[tp] = timestamp
        if offset >= self._read_past.get(tp, 0):
            self._read_past[tp] = offset + 1
        if not self.measured:
            return
        asked = self._asked.get(tp)
        if not asked:
            return
        while len(asked) > 1 and asked[1][0] <= offset:
            asked.popleft()  # a later query the record was not in either says more
        end, at = asked[0]
        if end <= offset and timestamp < at:  # stamped before the query, not in the log then
            self._observe(int(at - timestamp))

    def _observe(self, lateness: int) -> None:
        second = int(self.clock())
        late = self._late
        if late and late[-1][0] == second:
            late[-1][1] = max(late[-1][1], lateness)
        else:
            late.append([second, lateness])
            while late[0][0] <= second - LAG_WINDOW_S:
                late.popleft()

    def _asked_now(self, ends: dict[TopicPartition, int], at: float) -> None:
        if at - self._asked_last > LAG_WINDOW_S * 1000:
            self._observing_since = at  # after a quiet window: lateness is unknown again
        self._asked_last = at
        for tp, end in ends.items():
            asked = self._asked.setdefault(tp, deque())
            if asked and asked[-1][0] > end:
                asked.clear()  # the log was truncated (a topic deleted and created again): start over
            if asked and asked[-1][0] == end:
                asked[-1] = (end, at)  # the end has not moved: the newer time says more
            else:
                asked.append((end, at))
            while asked and asked[0][1] < at - LAG_WINDOW_S * 1000:
                asked.popleft()

    def grace(self) -> int:
        """The grace in use (ms): ``grace_ms``, or, measured, the largest lateness observed in
        the window, at most ``grace_ms`` (``grace_ms`` while no end was asked for in it)."""
        if not self.measured:
            return self.grace_ms
        now_s = self.clock()
        if self._asked_last < (now_s - LAG_WINDOW_S) * 1000 or now_s * 1000 - self._observing_since < self.grace_ms:
            return self.grace_ms  # nothing observed lately, or not for as long as the setting: the setting
        recent = [lateness for second, lateness in self._late if second > now_s - LAG_WINDOW_S]
        return min(self.grace_ms, max(recent, default=0))

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
            if self.measured:  # a record not in these ends was not in the log when they were answered
                self._asked_now(self._ends, self.clock() * 1000)
        grace = self.grace()
        self.metrics.hold_grace_seconds.set(grace / 1000)
        settled = self._ends_at - grace  # what producers stamped before this reached the broker by _ends_at
        watermark: float = float("inf")
        for tp in partitions:
            read_to = self._input_time.get(tp, float("-inf"))
            end = self._ends.get(tp)
            if end is not None and self._position_reached(consumer, tp, end):
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

    def _position_reached(self, consumer: KafkaConsumer, tp: TopicPartition, end: int) -> bool:
        if self._read_past.get(tp, 0) >= end:
            return True
        position = self._read_past[tp] = consumer.position(tp)
        return position >= end

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
            self._read_past.pop(tp, None)
            self._ends.pop(tp, None)
            self._asked.pop(tp, None)

    def __len__(self) -> int:
        return len(self._held)
