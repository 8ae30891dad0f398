"""The pipeline worker: input topics -> events (keyed by encounter) -> state -> ChargeItems.

One consumer in the group reads the input topics and the internal events topic:

* input record: mapped (``connectors.routing``); the mapped records go to the events topic
  keyed by their encounter id, so one encounter's history is in one partition, in order --
  one events message per encounter per poll batch (a replayed backlog brings an encounter's
  administrations together: one send and one fetch for them all instead of one each);
  anything that failed goes, as the original bytes, to the dead-letter topic with the reason
  in headers.
* events record: applied to the encounter's state (``connectors.state``); when the encounter
  is due, it is coded and a revision bundle is published on the charges topic.  The state is
  written to the compacted changelog, partition = the events partition, so a worker assigned
  that partition later restores it before consuming.

Offsets are committed in one place, :meth:`Worker._checkpoint`, and only after everything the
processed records produced is acknowledged: results first, then the changelog, then offsets.
A crash at any point therefore repeats work, never skips it, and the repeat is identical
(deterministic ids and revisions from the restored state): at-least-once with deterministic
outputs.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from coding_core.formulary import Formulary
from coding_core.profile import Profile
from connectors.routing import Router, route_fhir, route_hl7
from connectors.settings import Settings, site_profile
from connectors.ops import Metrics, OpsServer
from connectors.state import EncounterState, Lifecycle
from mapping.collector import Mapped

log = logging.getLogger("infusion_charges.worker")
MINUTE_MS, DAY_MS = 60_000, 86_400_000
IDLE_CLOSE = "idle_close_basis_ms"  # an events-topic control record: {IDLE_CLOSE: ms, "encounter": id}
RECORDS = "records"  # an events-topic message: {RECORDS: [mapped record, ...]}, one encounter's, in order
# While encounter updates are held, input partitions' end offsets are asked for at most this
# often (one small broker request); a held close waits on average half of it.
ENDS_REFRESH_MS = 25
RECORDS_PER_EVENT = 200  # at most this many mapped records in one events message (~200 KB) ...
# ... and at most this many bytes, unless one record alone is larger: Kafka refuses a message
# over the topic's max.message.bytes (1 MB by default), and the worker would stop on it after
# every restart.  Feeds with long texts make records of tens of KB.
EVENT_BYTES = 512 * 1024
# The producer's batch size per partition.  kafka-python wakes its sender thread for every
# batch it starts or fills, and the waking thread then waits for the interpreter lock
# (~1 ms measured): with the 16 KB default, nearly every revision bundle, changelog state
# and events message started a batch of its own.  Batches still leave every linger_ms.
BATCH_BYTES = 512 * 1024


class DeliveryError(RuntimeError):
    """A record the worker produced was not acknowledged by the broker (after the producer's
    own retries).  The worker stops without committing offsets past it: a restarted worker
    reads the same input again (at-least-once), nothing is skipped."""


class StateTooLarge(DeliveryError):
    """An encounter's changelog state is over ``max_state_bytes``: it cannot be written, and
    committing past its records would lose them at the next restart.  The worker stops
    before committing; raise ``max_state_bytes`` (and the state topic's max.message.bytes)."""


def tune_gc() -> None:
    """For a worker process, once set up: fewer, cheaper cyclic garbage collections.

    The worker allocates several hundred short-lived objects per record (parsed resources,
    events, ChargeItems) over a heap of long-lived ones (libraries, models, encounter states).
    With Python's defaults a collection runs after every 700 new container objects and the
    older generations are walked often; on the benchmark's FHIR feed that was ~15 % of the
    worker's CPU.
    ``gc.freeze`` moves what exists at start-up out of the collector's sight, and a larger
    first-generation threshold lets most records' garbage die by reference counting before a
    collection looks at it.  Memory is still freed by reference counting as before; only
    cycles wait a little longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def ensure_topics(settings: Settings) -> None:
    """Create the topics the worker needs when they are missing (internal ones co-partitioned)."""
    t = settings.topics
    wanted = {
        t.events: {}, t.charges: {}, t.dead_letter: {},
        t.state: {"cleanup.policy": "compact", "max.message.bytes": str(settings.max_state_bytes + 65_536)},
        **{name: {} for name in t.inputs()},
    }
    admin = KafkaAdminClient(**settings.kafka_config())
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=cfg)
               for name, cfg in wanted.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
    finally:
        admin.close()


class Worker:
    def __init__(self, settings: Settings, formulary: Formulary, profile: Profile, clock: Callable[[], float] = time.time):
        self.settings, self.formulary, self.clock = settings, formulary, clock
        self.profile = site_profile(settings, profile)  # one time zone for HL7 times and dates of service
        self.tz = ZoneInfo(self.profile.timezone)
        t = settings.topics
        self.routers: dict[str, Router] = {t.fhir_administrations: route_fhir, t.fhir_encounters: route_fhir,
                                           t.hl7_ras: route_hl7, t.hl7_adt: route_hl7}
        self.stores: dict[int, dict[str, EncounterState]] = {}  # events partition -> encounter -> state
        self._dirty_states: dict[tuple[int, str], EncounterState | None] = {}  # to write to the changelog
        self._offsets: dict[TopicPartition, int] = {}  # next offset after the last processed record
        self._committed: dict[TopicPartition, int] = {}  # last committed offsets
        # Encounter updates (closes, cancels) held until the other input partitions have been
        # read up to their time: (timestamp, input partition, offset, record, clock when read).
        # See _release.
        self._held: list[tuple[int, TopicPartition, int, Mapped, float]] = []
        # Mapped records on their way to the events topic, by encounter, in order (see _flush_events).
        self._outgoing: dict[str, list[bytes]] = {}
        self._input_time: dict[TopicPartition, int] = {}  # timestamp of the last record read
        self._close_requested: dict[tuple[int, str], int] = {}  # idle-close events sent, by basis
        self._ends: dict[TopicPartition, int] = {}  # input partitions' end offsets, as of _ends_at
        self._ends_at = self._ends_next = float("-inf")
        self.stats = {"input": 0, "events": 0, "dead_letters": 0, "revisions": 0, "coding_failures": 0}
        self.metrics = Metrics()
        self.ready = False  # partitions assigned and their state restored (/readyz)
        self.ops: OpsServer | None = None
        kafka = settings.kafka_config()
        self.transactional = settings.delivery == "exactly-once"
        self._in_transaction = False
        txn: dict[str, Any] = {}
        if self.transactional:
            # Stable per worker instance (fencing of a zombie after restart): give each pod its own client_id.
            txn = {"transactional_id": f"{settings.group_id}-{settings.client_id}", "enable_idempotence": True}
        self.producer = KafkaProducer(**kafka, acks="all", linger_ms=settings.linger_ms, retries=10, batch_size=BATCH_BYTES,
                                      max_request_size=max(1_048_576, settings.max_revision_bytes, settings.max_dead_letter_bytes,
                                                           settings.max_state_bytes) + 65_536, **txn)
        self._sent: list[Any] = []  # futures of the records produced since the last checkpoint
        self._delivery_failed: DeliveryError | None = None
        self.consumer = KafkaConsumer(
            **kafka, group_id=settings.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed" if self.transactional else "read_uncommitted",
            session_timeout_ms=settings.session_timeout_ms, heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 3),
            max_poll_interval_ms=settings.max_poll_interval_ms, fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )

    # --- running ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set; then finish the batch in hand, commit and close."""
        if self.settings.metrics_port is not None:
            self.ops = OpsServer(self.settings.metrics_port, self.metrics, lambda: self.ready).start()
        ensure_topics(self.settings)
        if self.transactional:
            self.producer.init_transactions()
        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                worker.ready = False
                try:
                    worker._checkpoint()
                except DeliveryError:
                    pass  # recorded: run() stops as soon as this poll returns (kafka-python would wrap it)
                # held updates of revoked inputs: uncommitted, so the next owner reads them again
                gone = set(revoked)
                worker._held = [h for h in worker._held if h[1] not in gone]
                for tp in gone:
                    worker._offsets.pop(tp, None)
                    worker._committed.pop(tp, None)
                    worker._input_time.pop(tp, None)
                for tp in revoked:
                    if tp.topic == worker.settings.topics.events:
                        worker.stores.pop(tp.partition, None)
                        worker._close_requested = {k: v for k, v in worker._close_requested.items() if k[0] != tp.partition}

            def on_partitions_assigned(self, assigned: Any) -> None:
                for tp in assigned:
                    if tp.topic == worker.settings.topics.events:
                        worker.stores[tp.partition] = worker._restore(tp.partition)
                worker.metrics.rebalances.inc()
                worker.ready = True
                log.info("assigned %d partitions", len(assigned), extra={"partitions": len(assigned)})

        t = self.settings.topics
        self.consumer.subscribe([*t.inputs(), t.events], listener=Listener())
        log.info("worker started: group %s", self.settings.group_id)
        next_tick = next_checkpoint = time.monotonic()
        try:
            while not stop.is_set():
                batch = self.consumer.poll(timeout_ms=200, max_records=2000)
                if self._delivery_failed is not None:
                    raise self._delivery_failed
                for tp, records in batch.items():
                    self.metrics.consumed.labels(tp.topic).inc(len(records))
                    for record in records:
                        self._handle(record)
                    self._offsets[tp] = records[-1].offset + 1
                self._release()
                self._flush_events()
                now = time.monotonic()
                if now >= next_tick:
                    self._tick()
                    next_tick = now + 1.0
                # Checkpoints cost broker round trips (flush, flush, commit): batch them.  A crash
                # replays at most one interval, with identical results.
                if now >= next_checkpoint or not batch:
                    self._checkpoint()
                    next_checkpoint = now + self.settings.commit_interval_ms / 1000
        finally:
            try:
                self._checkpoint()
            finally:
                self.ready = False
                self.consumer.close()
                self.producer.close()
                if self.ops is not None:
                    self.ops.stop()
                log.info("worker stopped", extra=self.stats)

    # --- one record ---------------------------------------------------------------------

    def _handle(self, record: Any) -> None:
        if record.topic == self.settings.topics.events:
            self.stats["events"] += 1
            self._apply(record)
        else:
            self.stats["input"] += 1
            self._route(record)

    def _route(self, record: Any) -> None:
        size = len(record.value) if record.value is not None else 0
        if size > self.settings.max_message_bytes:
            self._dead_letter(record, "OversizedMessage", f"{size} bytes exceeds max_message_bytes {self.settings.max_message_bytes}")
            return
        try:
            routed = self.routers[record.topic](record.value, self.tz)
        except Exception as e:  # a defect must not stop the worker or lose the message
            self._dead_letter(record, type(e).__name__, "unexpected error while mapping")
            return
        tp = TopicPartition(record.topic, record.partition)
        self._input_time[tp] = record.timestamp
        for mapped in routed.records:
            if mapped.kind == "encounter":
                now = self.clock()
                self.metrics.close_queued_seconds.observe(max(0.0, now - record.timestamp / 1000))
                self._held.append((record.timestamp, tp, record.offset, mapped, now))
            else:
                self._forward(mapped)
        if routed.errors:
            self._dead_letter(record, "MappingError", " | ".join(str(e) for e in routed.errors))

    def _forward(self, mapped: Mapped) -> None:
        self._outgoing.setdefault(mapped.key(), []).append(_event_json(mapped.to_json()))

    def _flush_events(self) -> None:
        """Send the forwarded records: per encounter, in the order they were forwarded, at most
        RECORDS_PER_EVENT records and EVENT_BYTES bytes to a message."""
        head, tail = b'{"' + RECORDS.encode() + b'":[', b"]}"
        for key, docs in self._outgoing.items():
            chunk: list[bytes] = []
            size = 0
            for doc in docs:
                if chunk and (len(chunk) == RECORDS_PER_EVENT or size + len(doc) > EVENT_BYTES):
                    self._send(self.settings.topics.events, key=key.encode(), value=head + b",".join(chunk) + tail)
                    chunk, size = [], 0
                chunk.append(doc)
                size += len(doc) + 1
            self._send(self.settings.topics.events, key=key.encode(), value=head + b",".join(chunk) + tail)
        self._outgoing.clear()

    def _release(self) -> None:
        """Forward held encounter updates once every assigned input partition has been read up
        to their timestamp (or to its end).  The feeds arrive on separate topics: without this, a
        backlog's closes overtake their administrations and every late administration re-codes
        a closed encounter.  Only *when* a record enters the events topic changes; what is coded
        from the events topic stays deterministic."""
        if not self._held:
            return
        inputs = set(self.settings.topics.inputs())
        partitions = [tp for tp in self.consumer.assignment() if tp.topic in inputs]
        # A partition read to its end vouches for what was produced before that end was asked
        # for.  The end a fetch last reported can be seconds old while the worker works through
        # a batch, so the ends are asked for (at most every ENDS_REFRESH_MS while updates are held):
        # with stale ends, live traffic let closes overtake their administrations (partial bills).
        now = self.clock() * 1000
        if now >= self._ends_next:
            self._ends, self._ends_at, self._ends_next = self.consumer.end_offsets(partitions), now, now + ENDS_REFRESH_MS
        settled = self._ends_at - self.settings.hold_grace_ms  # producers' clocks may run a little ahead
        watermark: float = float("inf")
        for tp in partitions:
            read_to = self._input_time.get(tp, float("-inf"))
            end = self._ends.get(tp)
            if end is not None and self.consumer.position(tp) >= end:
                read_to = max(read_to, settled)  # caught up as of _ends_at: nothing older can still come
            watermark = min(watermark, read_to)
        ready = sorted((h for h in self._held if h[0] <= watermark), key=lambda h: (h[0], h[1].topic, h[1].partition, h[2]))
        if ready:
            self._held = [h for h in self._held if h[0] > watermark]
            released_at = self.clock()
            for _, _, _, mapped, read_at in ready:
                self.metrics.close_held_seconds.observe(max(0.0, released_at - read_at))
                self._forward(mapped)

    def _dead_letter(self, record: Any, error_type: str, message: str, value: bytes | None = None) -> None:
        """``record`` to the dead-letter topic (or ``value`` in its place: the one mapped record
        of an events message that failed), the reason in headers.  Bytes over
        ``max_dead_letter_bytes`` are left out; the headers say so and where they stay."""
        self.stats["dead_letters"] += 1
        self.metrics.dead_lettered.labels(record.topic).inc()
        headers = [
            ("source.topic", record.topic.encode()), ("source.partition", str(record.partition).encode()),
            ("source.offset", str(record.offset).encode()), ("error.type", error_type.encode()),
            ("error.message", message[:4000].encode()),
        ]
        if value is None:
            value = record.value
        limit = self.settings.max_dead_letter_bytes
        if value is not None and len(value) > limit:
            headers.append(("value.omitted", f"{len(value)} bytes, over max_dead_letter_bytes {limit}: "
                                             "read the message at source.topic, source.partition, source.offset".encode()))
            value = None
        self._send(self.settings.topics.dead_letter, key=record.key, value=value, headers=headers)
        log.warning("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, error_type,
                    extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "error_type": error_type})

    def _apply(self, record: Any) -> None:
        try:
            doc = _loads(record.value)
            if IDLE_CLOSE in doc:
                self._apply_idle_close(record, str(doc["encounter"]), int(doc[IDLE_CLOSE]))
                return
            docs = doc[RECORDS] if RECORDS in doc else [doc]  # one record: the format before batching
            if not isinstance(docs, list):
                raise TypeError("records is not a list")
        except Exception as e:
            self._dead_letter(record, type(e).__name__, "unreadable event")
            return
        for doc in docs:
            self._apply_record(record, doc)

    def _apply_record(self, record: Any, doc: Any) -> None:
        """One mapped record of an events message: into its encounter's state, then code if due."""
        try:
            mapped = Mapped.from_json(doc)
        except Exception as e:
            self._dead_letter(record, type(e).__name__, "unreadable event", value=_event_json(doc))
            return
        store = self.stores.setdefault(record.partition, {})
        key = mapped.key()
        state = store.get(key) or EncounterState(encounter_id=key)
        store[key] = state
        # the event's JSON is what the state stores for a new record: no need to write it out again
        outcome = state.apply(mapped, record.timestamp, as_json=doc)
        if outcome == "retired":
            self._dead_letter(record, "ArrivedAfterRetention",
                              f"encounter {key} is past its {self.settings.retention_days}-day retention window; "
                              "the record was not applied (re-code the encounter by hand)", value=_event_json(doc))
            return
        if outcome != "duplicate":
            self._dirty_states[(record.partition, key)] = state
        self._code_if_due(record.partition, state, record, doc)

    def _apply_idle_close(self, record: Any, encounter_id: str, basis_ms: int) -> None:
        state = self.stores.setdefault(record.partition, {}).get(encounter_id)
        self._close_requested.pop((record.partition, encounter_id), None)
        if state is not None and state.idle_close(basis_ms):
            self._dirty_states[(record.partition, encounter_id)] = state
            self._code_if_due(record.partition, state, record)

    def _code_if_due(self, partition: int, state: EncounterState, record: Any = None, doc: Any = None) -> None:
        if not state.due():
            return
        published = state.revision, state.published
        try:
            with self.metrics.coding_seconds.time():
                bundle = state.code(self.formulary, self.profile)
        except Exception as e:  # a defect must not stop the worker nor block the partition behind it
            # The encounter stays as it was published (nothing withdrawn), is no longer due
            # (no retry loop), and is coded again when its next record arrives.
            self._dirty_states[(partition, state.encounter_id)] = state
            self.stats["coding_failures"] += 1
            self.metrics.coding_failures.inc()
            log.error("coding failed for encounter %s: %s", state.encounter_id, type(e).__name__,
                      extra={"encounter_id": state.encounter_id, "error_type": type(e).__name__})
            if record is not None:
                self._dead_letter(record, "CodingError", f"coding encounter {state.encounter_id} raised {type(e).__name__}",
                                  value=None if doc is None else _event_json(doc))
            return
        self._dirty_states[(partition, state.encounter_id)] = state
        if bundle is None:
            return
        value = _json(bundle)
        if len(value) > self.settings.max_revision_bytes:
            # Kafka would refuse it: leave the encounter as last published (no retry loop; the
            # next record of the encounter, once the limit is raised, publishes it).
            state.revision, state.published = published
            self.stats["revisions_too_large"] = self.stats.get("revisions_too_large", 0) + 1
            log.error("revision of encounter %s not published: %d bytes", state.encounter_id, len(value),
                      extra={"encounter_id": state.encounter_id, "bytes": len(value)})
            if record is not None:
                self._dead_letter(record, "RevisionTooLarge",
                                  f"revision {state.revision + 1} of encounter {state.encounter_id} is {len(value)} bytes, "
                                  f"over max_revision_bytes {self.settings.max_revision_bytes}: not published "
                                  "(raise the charges topic's max.message.bytes and max_revision_bytes)",
                                  value=None if doc is None else _event_json(doc))
            return
        self.stats["revisions"] += 1
        self.metrics.revisions.inc()
        self.metrics.close_to_charge_seconds.observe(max(0.0, self.clock() - state.last_record_ms / 1000))
        headers = [("encounter-id", state.encounter_id.encode()), ("revision", str(state.revision).encode())]
        self._send(self.settings.topics.charges, key=state.encounter_id.encode(), value=value, headers=headers)

    def _tick(self) -> None:
        now_ms = int(self.clock() * 1000)
        idle_ms = self.settings.idle_close_minutes * MINUTE_MS
        retention_ms = self.settings.retention_days * DAY_MS
        forget_ms = self.settings.retired_memory_days * DAY_MS
        for partition, store in self.stores.items():
            for key, state in list(store.items()):
                if state.idle_close_due(now_ms, idle_ms) and self._close_requested.get((partition, key)) != state.last_record_ms:
                    # Through the events topic, behind the encounter's records: a replay after a
                    # crash meets the close at the same place in the history and decides the same.
                    self._close_requested[(partition, key)] = state.last_record_ms
                    self._send(self.settings.topics.events, key=key.encode(), partition=partition,
                               value=_event_json({IDLE_CLOSE: state.last_record_ms, "encounter": key}))
                if state.expired(now_ms, retention_ms) and not state.due():
                    state.retire()  # a small marker: late records are refused, not re-billed from scratch
                    self._dirty_states[(partition, key)] = state
                elif state.retired and now_ms - state.last_record_ms > forget_ms:
                    del store[key]
                    self._dirty_states[(partition, key)] = None  # tombstone
        held = [s for store in self.stores.values() for s in store.values() if not s.retired]
        self.metrics.encounters_held.set(len(held))
        self.metrics.encounters_open.set(sum(1 for s in held if s.lifecycle is Lifecycle.OPEN))
        self._measure_lag()

    def _measure_lag(self) -> None:
        lag: dict[str, int] = {}
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - self.consumer.position(tp))
        for topic, value in lag.items():
            self.metrics.consumer_lag.labels(topic).set(value)

    # --- state and offsets ----------------------------------------------------------------

    def _send(self, topic: str, **kwargs: Any) -> None:
        if self.transactional and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True
        self._sent.append(self.producer.send(topic, **kwargs))
        self.metrics.produced.labels(topic).inc()

    def _check_delivered(self) -> None:
        """After a flush: every record produced since the last checkpoint was acknowledged, or
        DeliveryError (and no offset is committed by this worker again)."""
        failed = [f for f in self._sent if f.failed()]
        self._sent = [f for f in self._sent if not f.is_done]
        if failed and self._delivery_failed is None:
            self._delivery_failed = DeliveryError(
                f"{len(failed)} produced record(s) not acknowledged ({type(failed[0].exception).__name__}); "
                "stopping without committing their input")
        if self._delivery_failed is not None:
            raise self._delivery_failed

    def _checkpoint(self) -> None:
        """The one place offsets are committed.

        at-least-once: results, then the changelog, then the offsets, each acknowledged first.
        exactly-once: results, changelog and offsets in one Kafka transaction.
        A record the broker did not acknowledge stops the worker (DeliveryError) before any
        offset past it is committed."""
        if self._delivery_failed is not None:
            raise self._delivery_failed
        self._flush_events()
        if not self.transactional:
            self.producer.flush()
            self._check_delivered()
        for (partition, key), state in self._dirty_states.items():
            value = state.to_bytes() if state is not None else None
            if value is not None and len(value) > self.settings.max_state_bytes:
                self._delivery_failed = StateTooLarge(
                    f"the state of encounter {key} is {len(value)} bytes (compressed), over max_state_bytes "
                    f"{self.settings.max_state_bytes}: stopping without committing its input")
                raise self._delivery_failed
            self._send(self.settings.topics.state, key=key.encode(), value=value, partition=partition)
        self._dirty_states.clear()
        # Never commit past a held encounter update: after a crash it must be read again.
        held_from: dict[TopicPartition, int] = {}
        for _, tp, offset, *_ in self._held:
            held_from[tp] = min(offset, held_from.get(tp, offset))
        target = {tp: min(offset, held_from.get(tp, offset)) for tp, offset in self._offsets.items()}
        offsets = {tp: OffsetAndMetadata(o, None, -1) for tp, o in target.items() if self._committed.get(tp) != o}
        self._committed.update(target)
        if not self.transactional:
            self.producer.flush()
            self._check_delivered()
            if offsets:
                self.consumer.commit(offsets)
            return
        if offsets and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True
        if not self._in_transaction:
            return
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
            self.producer.commit_transaction()  # raises unless every record of it was acknowledged
            self._sent.clear()
        except Exception:
            self.producer.abort_transaction()  # the batch will be consumed again
            raise
        finally:
            self._in_transaction = False

    def _restore(self, partition: int) -> dict[str, EncounterState]:
        """Read the changelog partition to its end: the states of the encounters it holds."""
        tp = TopicPartition(self.settings.topics.state, partition)
        reader = KafkaConsumer(**self.settings.kafka_config(), enable_auto_commit=False, group_id=None,
                               isolation_level="read_committed" if self.transactional else "read_uncommitted")
        store: dict[str, EncounterState] = {}
        try:
            reader.assign([tp])
            reader.seek_to_beginning(tp)
            end = reader.end_offsets([tp])[tp]
            while reader.position(tp) < end:
                for records in reader.poll(timeout_ms=500).values():
                    for r in records:
                        key = r.key.decode()
                        if r.value is None:
                            store.pop(key, None)
                        else:
                            store[key] = EncounterState.from_bytes(r.value)
        finally:
            reader.close()
        log.info("restored %d encounter states from %s[%d]", len(store), tp.topic, partition)
        return store


_EVENT_ENCODER = json.JSONEncoder(separators=(",", ":"))
_SORTED_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


# orjson writes these documents 3x faster than the standard library (a bundle: ~350 -> ~105 µs;
# see the README's Performance section).  It refuses integers beyond 64 bits, which a feed can
# send (a FHIR versionId of 30 digits is a valid id): such documents go through the standard
# library.  orjson also reads ~2.5x faster (an events record: ~24 -> ~9 µs), but it reads an
# integer beyond 64 bits as a float and refuses what the standard library accepts (NaN, 1e400,
# lone surrogates): a document with a run of 19 digits or more, or one orjson refuses, is read
# by the standard library, so every document reads as ``json.loads`` reads it.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def _event_json(doc: Any) -> bytes:
    """Internal events: compact, in the mapper's own key order."""
    try:
        return orjson.dumps(doc)
    except TypeError:
        return _EVENT_ENCODER.encode(doc).encode()


def _json(doc: Any) -> bytes:
    """Published documents: compact, keys sorted (the same inputs give the same bytes)."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _SORTED_ENCODER.encode(doc).encode()


def _loads(value: bytes) -> Any:
    if _LONG_DIGITS.search(value) is None:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            pass  # the standard library's verdict, and its error
    return json.loads(value)
