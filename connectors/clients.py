"""The worker's Kafka clients: one consumer in the group, one producer, and the outbox that
knows whether everything produced since the last checkpoint was acknowledged.

Timeouts are sized so that a stop completes within ``shutdown_timeout_s``: a send blocks at
most ``request_timeout_ms`` for metadata or buffer space, a record is given up after
``delivery_timeout_ms`` (then it is a :class:`DeliveryFailed`, and the worker rewinds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError

from connectors.errors import DeliveryFailed, DeliveryPending, WorkerFailed
from connectors.ops import Metrics
from connectors.settings import Settings

# The producer's batch size per partition.  kafka-python wakes its sender thread for every
# batch it starts or fills, and the waking thread then waits for the interpreter lock
# (~1 ms measured): with the 16 KB default, nearly every revision bundle, changelog state
# and events message started a batch of its own.  Batches still leave every linger_ms.
BATCH_BYTES = 512 * 1024


def make_consumer(settings: Settings) -> KafkaConsumer:
    """The group member.  ``auto_offset_reset="none"``: a fetch past a log's end (the broker
    lost data) raises instead of silently starting the partition again from its beginning;
    partitions with no committed offset are positioned by the worker (see ``Assignments``)."""
    return KafkaConsumer(
        **settings.kafka_config(), group_id=settings.group_id, enable_auto_commit=False, auto_offset_reset="none",
        isolation_level="read_committed" if settings.delivery == "exactly-once" else "read_uncommitted",
        session_timeout_ms=settings.session_timeout_ms, heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 3),
        max_poll_interval_ms=settings.max_poll_interval_ms, fetch_max_wait_ms=settings.fetch_max_wait_ms,
        fetch_min_bytes=settings.fetch_min_bytes,
        request_timeout_ms=max(settings.request_timeout_ms, settings.session_timeout_ms + 5000),
    )


def make_reader(settings: Settings) -> KafkaConsumer:
    """A consumer outside the group, for reading the changelog back.  An offset before the
    log's start reads from the start (never from the end: that would skip every state)."""
    return KafkaConsumer(**settings.kafka_config(), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                         isolation_level="read_committed" if settings.delivery == "exactly-once" else "read_uncommitted")


def records_between(reader: KafkaConsumer, start: dict[TopicPartition, int | None], ends: dict[TopicPartition, int],
                    timeout_s: float | None = None) -> Iterator[Any]:
    """Every record of each partition from ``start`` (None: its beginning) up to ``ends``, in
    order, partition by partition.  ``timeout_s``: the most one partition may take (then
    WorkerFailed names it)."""
    for tp, first in start.items():
        if ends[tp] == 0 or (first is not None and first >= ends[tp]):
            continue
        reader.assign([tp])
        if first is None:
            reader.seek_to_beginning(tp)
        else:
            reader.seek(tp, first)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while reader.position(tp) < ends[tp]:
            if deadline is not None and time.monotonic() > deadline:
                raise WorkerFailed(f"reading {tp.topic}[{tp.partition}] did not reach its end within {timeout_s:.0f} s")
            for records in reader.poll(timeout_ms=500).values():
                for r in records:
                    if r.offset >= ends[tp]:
                        break
                    yield r


def read_topic(settings: Settings, topic: str, timeout_s: float) -> Iterator[Any]:
    """Every record of ``topic``, from its beginning to the end it had when reading began."""
    reader, log_ends = make_reader(settings), LogEnds(settings)
    try:
        partitions = reader.partitions_for_topic(topic)
        if partitions is None:
            raise WorkerFailed(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        yield from records_between(reader, dict.fromkeys(tps), log_ends(tps), timeout_s)
    finally:
        reader.close()
        log_ends.close()


class LogEnds:
    """Partitions' log end offsets as a fetch reports them (the high watermark), not only as
    ListOffsets does: the embedded tansu broker answers ListOffsets with its last batch's base
    offset + 1, which would make a restore stop inside the last batch and a committed offset
    look past the end.  On Kafka both agree and the fetch adds one round trip."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._reader: KafkaConsumer | None = None

    def __call__(self, tps: list[TopicPartition], timeout_s: float = 10.0) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        reader = self._reader = self._reader or make_reader(self.settings)
        listed = reader.end_offsets(tps)
        reader.assign(tps)
        for tp in tps:
            reader.seek(tp, listed[tp])
        deadline = time.monotonic() + timeout_s
        while any(reader.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"no fetch answer for {len(tps)} partitions within {timeout_s:.0f} s")
            reader.poll(timeout_ms=50, max_records=1)
        ends = {tp: max(listed[tp], reader.highwater(tp) or 0) for tp in tps}
        reader.assign([])
        return ends

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def make_producer(settings: Settings) -> KafkaProducer:
    txn: dict[str, Any] = {}
    if settings.delivery == "exactly-once":
        # Stable per worker instance (fencing of a zombie after restart): give each pod its own client_id.
        txn = {"transactional_id": f"{settings.group_id}-{settings.client_id}"}
    largest = max(1_048_576, settings.max_revision_bytes, settings.max_dead_letter_bytes, settings.max_state_bytes)
    return KafkaProducer(**settings.kafka_config(), acks="all", enable_idempotence=True, linger_ms=settings.linger_ms,
                         batch_size=BATCH_BYTES, max_request_size=largest + 65_536,
                         request_timeout_ms=settings.request_timeout_ms, max_block_ms=settings.request_timeout_ms,
                         delivery_timeout_ms=max(settings.delivery_timeout_ms, settings.request_timeout_ms + settings.linger_ms),
                         **txn)


class Outbox:
    """Every record the worker produces goes through :meth:`send`; :meth:`settle` says whether
    all of them were acknowledged.  ``flush()`` alone is not enough: it returns when sends
    have *finished*, failed ones included.

    A record neither acknowledged nor failed long after ``delivery_timeout_ms`` means the
    producer itself is stuck (seen after a broker pause: the idempotent producer could not
    recover its sequence numbers): that is a :class:`DeliveryFailed` too, and :meth:`renew`
    replaces the producer before the work is repeated."""

    def __init__(self, make: Callable[[], KafkaProducer], metrics: Metrics, transactional: bool, stuck_after_s: float):
        self.make, self.metrics, self.transactional, self.stuck_after_s = make, metrics, transactional, stuck_after_s
        self.producer = make()
        self._futures: list[Any] = []
        self._waiting_since: float | None = None  # when the oldest record not yet settled was sent
        self.in_transaction = False

    def send(self, topic: str, *, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> Any:
        if self.transactional and not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True
        try:
            future = self.producer.send(topic, key=key, value=value, partition=partition, headers=headers)
        except KafkaTimeoutError as e:  # no metadata or buffer space within max_block_ms
            raise DeliveryFailed(1, e) from None
        self._futures.append(future)
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        self.metrics.produced.labels(topic).inc()
        return future

    def settle(self, timeout_s: float) -> None:
        """Wait for every record sent so far.  DeliveryPending: some are still in flight (ask
        again later); DeliveryFailed: one was not acknowledged (the caller rewinds)."""
        pending = False
        if not self.transactional:
            try:
                self.producer.flush(timeout=timeout_s)
            except KafkaTimeoutError:
                pending = True
        failed = [f for f in self._futures if f.failed()]
        if failed:  # whatever is still in flight, the work since the last commit is repeated
            self._futures, self._waiting_since = [], None
            raise DeliveryFailed(len(failed), failed[0].exception)
        if pending:
            if self._waiting_since is not None and time.monotonic() - self._waiting_since > self.stuck_after_s:
                self._futures, self._waiting_since = [], None
                raise DeliveryFailed(1, KafkaTimeoutError(f"records neither acknowledged nor failed after {self.stuck_after_s:.0f} s"))
            raise DeliveryPending(f"records still in flight after {timeout_s:.0f} s")
        self._futures = [f for f in self._futures if not f.is_done]
        self._waiting_since = None if not self._futures else self._waiting_since

    def renew(self) -> None:
        """A new producer in place of one that may be stuck (records in flight are given up:
        the work that made them is repeated)."""
        try:
            self.producer.close(timeout=0)
        except Exception:
            pass
        self.producer = self.make()
        self._futures, self._waiting_since, self.in_transaction = [], None, False
        if self.transactional:
            self.producer.init_transactions()

    def forget(self, wait_s: float) -> None:
        """Before a rewind or after partitions left: what is in flight is waited for (up to
        ``wait_s``), so that it cannot land after the next owner's records, then no longer
        counts (it is produced again)."""
        if self.in_transaction:
            try:
                self.producer.abort_transaction()
            except Exception:
                pass
            finally:
                self.in_transaction = False
        elif self._futures:
            try:
                self.producer.flush(timeout=wait_s)
            except KafkaTimeoutError:
                pass  # still in flight: the caller logs it
        self._futures, self._waiting_since = [], None

    def commit_transaction(self, offsets: dict[Any, Any], group_metadata: Any) -> None:
        """exactly-once: this batch's results, changelog records and offsets, atomically."""
        if offsets and not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True
        if not self.in_transaction:
            return
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, group_metadata)
            self.producer.commit_transaction()  # raises unless every record of it was acknowledged
            self._futures, self._waiting_since = [], None
        except Exception as e:
            try:
                self.producer.abort_transaction()  # the batch will be consumed again
            except Exception:
                pass  # the commit's failure is the one to act on
            raise DeliveryFailed(1, e) from e
        finally:
            self.in_transaction = False
