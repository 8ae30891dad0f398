"""The pipeline worker: the loop that ties the rooms together.

    input topics --intake (map, hold closes)--> events topic --processor (state, code)--> charges
                                                                 \\--checkpoint--> changelog, local store, offsets

One consumer in the group reads the input topics and the internal events topic; one producer
writes everything.  Each turn of the loop: position newly assigned partitions, recover state
a slice at a time, poll, hand each record to its side, release held closes, send events, tick
once a second, checkpoint every ``commit_interval_ms``.

The rooms, each with its own module: ``intake`` (input side), ``hold`` (the close hold),
``processor`` (events side, poison isolation), ``checkpoint`` (the commit protocol: the one
place offsets are committed), ``store`` (local state), ``recovery`` (state recovery),
``rebalance`` (partitions moving), ``positions`` (where each partition is read from), ``ticker`` (idle close, retention, gauges), ``topics``
(created and checked at start), ``clients`` (Kafka clients, delivery ledger), ``errors`` (what
the worker does about each error), ``dead_letters``, ``medications`` (the Medication reference
table every worker reads whole).

Delivery is at-least-once with deterministic outputs (or exactly-once with Kafka
transactions): see ``connectors.checkpoint``.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

from kafka import TopicPartition
from kafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError

from coding_core.formulary import Formulary
from coding_core.profile import Profile
from connectors.checkpoint import Checkpoint
from connectors.clients import LogEnds, Outbox, make_consumer, make_producer
from connectors.dead_letters import DeadLetters
from connectors.errors import DeliveryFailed, Interrupted, WorkerFailed, classify, describe
from connectors.hold import CloseHold
from connectors.intake import Intake
from connectors.medications import MedicationTable
from connectors.ops import Metrics, OpsServer
from connectors.positions import Positions
from connectors.processor import EncounterProcessor
from connectors.rebalance import Assignments
from connectors.recovery import Recovery
from connectors.settings import Settings, site_profile
from connectors.store import StateStores
from connectors.ticker import Ticker
from connectors.topics import prepare_topics

log = logging.getLogger("infusion_charges.worker")
RECOVERY_SLICE_S = 0.2  # state recovery per loop turn, so the loop keeps polling (and heartbeating)
BACKOFF_S = (0.5, 30.0)  # first and longest wait after an error ridden out


def tune_gc() -> None:
    """For a worker process, once set up: fewer, cheaper cyclic garbage collections.

    The worker allocates several hundred short-lived objects per record (parsed resources,
    events, ChargeItems) over a heap of long-lived ones (libraries, models, encounter states).
    With Python's defaults a collection runs after every 700 new container objects and the
    older generations are walked often; on the benchmark's FHIR feed that was ~15 % of the
    worker's CPU.  ``gc.freeze`` moves what exists at start-up out of the collector's sight,
    and a larger first-generation threshold lets most records' garbage die by reference
    counting before a collection looks at it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


class Worker:
    def __init__(self, settings: Settings, formulary: Formulary, profile: Profile, clock: Callable[[], float] = time.time):
        self.settings, self.clock = settings, clock
        profile = site_profile(settings, profile)  # one time zone for HL7 times and dates of service
        self.stats = {"input": 0, "events": 0, "dead_letters": 0, "revisions": 0, "coding_failures": 0,
                      "revisions_too_large": 0, "blocked": 0, "rewinds": 0}
        self.metrics = Metrics()
        self.ops: OpsServer | None = None
        if settings.metrics_port is not None:  # bound first: a busy port is said before the clients wait for a broker
            try:
                self.ops = OpsServer(settings.metrics_port, self.metrics, lambda: self.ready, alive=self.alive)
            except OSError as e:
                raise WorkerFailed(f"metrics_port {settings.metrics_port}: cannot listen ({e.strerror})") from None
        self.consumer = make_consumer(settings)
        self.outbox = Outbox(lambda: make_producer(settings), self.metrics, settings.delivery == "exactly-once",
                             stuck_after_s=(settings.delivery_timeout_ms + 2 * settings.request_timeout_ms) / 1000)
        self.dead_letters = DeadLetters(settings.topics.dead_letter, settings.max_dead_letter_bytes, self.outbox, self.metrics, self.stats)
        self.hold = CloseHold(settings.hold_grace_ms, clock, self.metrics, settings.hold_grace_measured)
        self.intake = Intake(settings, ZoneInfo(profile.timezone), self.outbox, self.dead_letters, self.hold, self.stats)
        self.stores = StateStores(settings.state_dir, settings.topics.state)
        self.processor = EncounterProcessor(settings, formulary, profile, self.stores, self.outbox, self.dead_letters,
                                            self.metrics, self.stats, clock)
        self.medications = self.processor.medications = MedicationTable(settings, self.metrics, self.dead_letters)
        self.log_ends = LogEnds(settings)
        self.recovery = Recovery(settings, self.stores, self.metrics, self.log_ends)
        self.checkpoint = Checkpoint(settings, self.consumer, self.outbox, self.intake, self.hold, self.processor, self.stores)
        self.ticker = Ticker(settings, self.stores, self.outbox, self.metrics, clock)
        self.assignments = Assignments(self.consumer, self._revoked, self._lost, self._turned)
        self.positions = Positions(settings.topics.events, self.consumer, self.assignments, self.checkpoint, self.recovery,
                                   self.log_ends, self.metrics)
        self._turned_at = time.monotonic()
        self._closing = False
        self._rewind_due = False  # set by an error; done at the start of the next turn
        self._renew_producer = False  # with it: the producer failed a record, or is stuck

    @property
    def producer(self) -> Any:
        return self.outbox.producer

    # --- health ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Partitions assigned and positioned, their state recovered (/readyz)."""
        return not self._closing and self.assignments.settled and not self.recovery.pending

    def alive(self) -> bool:
        """The loop has turned within ``liveness_timeout_s`` (/healthz)."""
        return time.monotonic() - self._turned_at < self.settings.liveness_timeout_s

    def _turned(self) -> None:
        self._turned_at = time.monotonic()

    # --- running ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set; then finish the batch in hand, commit and close, within
        ``shutdown_timeout_s``.  A fatal error is raised (after closing, without committing)."""
        if self.ops is not None:
            self.ops.start()
        clean = False
        try:
            topics = prepare_topics(self.settings)
            self.recovery.topic_id = topics[self.settings.topics.state].topic_id
            if self.outbox.transactional:
                self.producer.init_transactions()
            self.medications.start(self.settings.bootstrap_timeout_ms / 1000 + 60)  # before any encounter is coded
            t = self.settings.topics
            self.consumer.subscribe([*t.inputs(), t.events], listener=self.assignments)
            log.info("worker started: group %s", self.settings.group_id)
            self._loop(stop)
            clean = True
        finally:
            self._shutdown(clean)

    def _loop(self, stop: threading.Event) -> None:
        wait = BACKOFF_S[0]
        next_tick = next_checkpoint = time.monotonic()
        timeout_s = self.settings.request_timeout_ms / 1000
        while not stop.is_set():
            self._turned()
            try:
                if self._rewind_due:
                    self._rewind()
                got = self._turn()
                now = time.monotonic()
                if now >= next_tick:
                    self.ticker.tick(self.consumer, self._recovered(), self.positions.positioned())
                    next_tick = now + 1.0
                # Checkpoints cost broker round trips (flush, flush, commit): batch them.  A crash
                # replays at most one interval, with identical results.
                if now >= next_checkpoint or not got:
                    self.checkpoint.commit(timeout_s)
                    next_checkpoint = now + self.settings.commit_interval_ms / 1000
                    wait = BACKOFF_S[0]
            except Exception as e:
                action = classify(e)
                if action == "fatal":
                    raise
                cause = e.cause if isinstance(e, Interrupted) else e
                self.metrics.kafka_errors.labels(action, type(cause).__name__).inc()
                log.warning("%s: %s", "repeating the work since the last commit" if action == "rewind" else "retrying",
                            describe(cause), extra={"error_type": type(cause).__name__, "action": action, "wait_s": wait})
                if action == "rewind":
                    self._rewind_due = True  # on the next turn, inside this same handling
                    self._renew_producer = self._renew_producer or isinstance(cause, DeliveryFailed)
                stop.wait(wait)
                # never so long that the group takes the partitions away for not polling
                wait = min(wait * 2, BACKOFF_S[1], self.settings.max_poll_interval_ms / 3000)

    def _turn(self) -> bool:
        self.positions.position_new()
        if self.recovery.pending:
            done = self.recovery.step(RECOVERY_SLICE_S)
            owned = self.assignments.owned
            self.consumer.resume(*[tp for p in done if (tp := TopicPartition(self.settings.topics.events, p)) in owned])
            self.metrics.recovering.set(len(self.recovery.pending))
            if done:
                self.processor.recheck_waiting(set(done))
        arrived = self.medications.poll()
        if arrived:
            self.processor.medications_arrived(arrived, self._recovered())
        self.metrics.medications_held.set(len(self.medications))
        try:
            batch = self.consumer.poll(timeout_ms=200, max_records=2000)
        except NoOffsetForPartitionError as e:
            # Partitions with nothing committed: those just assigned are positioned on the next
            # turn; any other was never read by this group, so from its beginning.
            pending = self.assignments.pending()
            for tp in (e.args[0] if e.args and isinstance(e.args[0], (set, dict, list)) else ()):
                if tp not in pending:
                    self.hold.forget([tp])  # every seek forgets what the hold knows of the position
                    self.consumer.seek_to_beginning(tp)
            return True
        except OffsetOutOfRangeError as e:
            out = e.args[0] if e.args and isinstance(e.args[0], dict) else {}
            self.hold.forget(out)
            self.positions.out_of_range(out)
            return True
        events = self.settings.topics.events
        try:
            for tp, records in batch.items():
                self.metrics.consumed.labels(tp.topic).inc(len(records))
                handle = self.processor.handle if tp.topic == events else self.intake.handle
                for record in records:
                    handle(record)
                self.checkpoint.advance(tp, records[-1].offset + 1)
        except Exception as e:  # part of a batch handled: only a rewind makes it whole again
            raise Interrupted(e) from e
        inputs = set(self.settings.topics.inputs())
        paused = self.consumer.paused()
        self.intake.release(self.consumer, [tp for tp in self.assignments.owned if tp.topic in inputs and tp not in paused])
        self.intake.flush()
        return bool(batch)

    def _recovered(self) -> set[int]:
        events = self.settings.topics.events
        return {tp.partition for tp in self.assignments.owned if tp.topic == events} - self.recovery.pending

    # --- partitions arriving, leaving, and rewinding ------------------------------------------

    def _revocation_budget_s(self) -> float:
        """What a revocation may block kafka-python's IO loop for (it drives the heartbeats):
        a fifth of the session timeout per wait (a checkpoint waits at most three times, and a
        failed one once more for what is in flight)."""
        return min(self.settings.request_timeout_ms, self.settings.session_timeout_ms / 5) / 1000

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        """On kafka-python's IO thread, the loop waiting in poll()."""
        try:
            if not self._closing:
                await self.checkpoint.commit_async(self._revocation_budget_s())
        except Exception as e:
            log.warning("checkpoint on revocation incomplete (%s): the next owner repeats the work since the last commit",
                        describe(e), extra={"error_type": type(e).__name__})
            self._forget_all_uncommitted(self._revocation_budget_s())
        self._forget(revoked)

    def _lost(self, lost: set[TopicPartition]) -> None:
        self._forget_all_uncommitted(self._revocation_budget_s())
        self._forget(lost)

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = set(partitions)
        self.hold.forget(partitions)
        self.checkpoint.forget(partitions)
        gone = {tp.partition for tp in partitions if tp.topic == self.settings.topics.events}
        self.recovery.cancel(sorted(gone))
        self.ticker.forget(gone)
        for p in gone:
            self.stores.close(p)

    def _forget_all_uncommitted(self, wait_s: float) -> None:
        """Nothing since the last commit counts any more; what is still in flight is waited for
        first (up to ``wait_s``), so that it cannot land after the next owner's records."""
        self.outbox.forget(wait_s)
        self.intake.clear()
        self.processor.clear()
        self.checkpoint.clear()

    def _rewind(self) -> None:
        """An in-process restart: every owned partition back to its committed offset, state
        back from the local store and the changelog's tail.  Idempotent: if it fails midway
        (the broker away), the next turn does it again from the start."""
        self._forget_all_uncommitted(self.settings.request_timeout_ms / 1000)
        if self._renew_producer:
            self.outbox.renew()
            self._renew_producer = False
        owned = self.positions.positioned()
        self.hold.forget(owned)
        self.positions.back_to_commits(owned)
        again = [tp for tp in owned if tp.topic == self.settings.topics.events]
        for tp in again:
            store = self.stores.get(tp.partition)
            if store is not None:
                store.forget_memory()
        self.ticker.forget({tp.partition for tp in again})
        if again:
            self.consumer.pause(*again)
            self.recovery.start([tp.partition for tp in again])
        self._rewind_due = False
        self.stats["rewinds"] += 1

    # --- stopping -------------------------------------------------------------------------------

    def _shutdown(self, clean: bool) -> None:
        """Within ``shutdown_timeout_s``: a last checkpoint (only after a clean stop: after an
        error nothing more may be committed), then the clients close."""
        deadline = time.monotonic() + self.settings.shutdown_timeout_s

        def left(share: float = 1.0) -> float:
            return max(0.5, (deadline - time.monotonic()) * share)

        try:
            if clean and self.assignments.settled:
                try:
                    self.checkpoint.commit(min(left(0.4), self.settings.request_timeout_ms / 1000))
                except Exception as e:
                    log.warning("last checkpoint incomplete (%s): the next owner repeats the work since the last commit",
                                describe(e), extra={"error_type": type(e).__name__})
            self._closing = True
            # What is still in flight lands (or is given up) before the group hands the
            # partitions on, never after the next owner's records.
            self.outbox.forget(left(0.3))
            self.consumer.close(timeout_ms=int(left(0.5) * 1000))
            self.producer.close(timeout=left())
        finally:
            self._closing = True
            self.recovery.close()
            self.medications.close()
            self.log_ends.close()
            self.stores.close_all()
            if self.ops is not None:
                self.ops.stop()
            log.info("worker stopped", extra=self.stats)
