"""Where each owned partition is read from.

* Newly assigned partitions (paused by the rebalance callback) start at their committed
  offsets, after a check that the broker still holds them: a committed offset past a log's end
  is :class:`DataLoss` (the broker lost records this group had read), one before its start
  means records expired unread (logged, read from the start).  Partitions with nothing
  committed are read from their start.  Events partitions then recover their state
  (``connectors.recovery``) before they are resumed; input partitions resume at once.
* A rewind puts every positioned partition back at its committed offset.
* A fetch outside the log is judged the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from connectors.checkpoint import Checkpoint
from connectors.clients import LogEnds
from connectors.errors import DataLoss
from connectors.ops import Metrics
from connectors.rebalance import Assignments
from connectors.recovery import Recovery

log = logging.getLogger("infusion_charges.worker")


class Positions:
    def __init__(self, events_topic: str, consumer: KafkaConsumer, assignments: Assignments, checkpoint: Checkpoint,
                 recovery: Recovery, log_ends: LogEnds, metrics: Metrics):
        self.events_topic, self.consumer, self.assignments, self.checkpoint = events_topic, consumer, assignments, checkpoint
        self.recovery, self.log_ends, self.metrics = recovery, log_ends, metrics

    def positioned(self) -> list[TopicPartition]:
        return sorted(self.assignments.owned - self.assignments.pending())

    def position_new(self) -> None:
        new = self.assignments.pending()  # until positioned: on an error, tried again next turn
        if not new:
            return
        tps = sorted(new)
        committed = {tp: self.consumer.committed(tp) for tp in tps}
        begin, end = self.consumer.beginning_offsets(tps), self.log_ends(tps)
        for tp in tps:
            offset = committed[tp]
            if offset is not None and offset > end[tp]:
                raise DataLoss(f"{tp.topic}[{tp.partition}]: the committed offset {offset} is past the log's end {end[tp]}: "
                               "the broker lost data")
            if offset is None or offset < begin[tp]:
                if offset is not None:
                    self._expired(tp, offset, begin[tp])
                self.consumer.seek(tp, begin[tp])
            else:
                self.consumer.seek(tp, offset)
            self.checkpoint.committed[tp] = offset
        self.recovery.start([tp.partition for tp in tps if tp.topic == self.events_topic])
        self.metrics.recovering.set(len(self.recovery.pending))
        self.consumer.resume(*[tp for tp in tps if tp.topic != self.events_topic])
        self.assignments.positioned(new)

    def back_to_commits(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            offset = self.checkpoint.committed.get(tp)
            if offset is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)

    def out_of_range(self, positions: dict[Any, int]) -> None:
        tps = list(positions)
        begin, end = self.consumer.beginning_offsets(tps), self.log_ends(tps)
        for tp, offset in positions.items():
            if offset > end[tp]:
                raise DataLoss(f"{tp.topic}[{tp.partition}]: offset {offset} is past the log's end {end[tp]}: the broker lost data")
            if offset < begin[tp]:
                self._expired(tp, offset, begin[tp])
            self.consumer.seek(tp, begin[tp])

    def _expired(self, tp: TopicPartition, offset: int, begin: int) -> None:
        log.error("%s[%d]: %d records expired before they were read (offsets %d to %d)", tp.topic, tp.partition,
                  begin - offset, offset, begin - 1, extra={"topic": tp.topic, "partition": tp.partition, "records": begin - offset})
