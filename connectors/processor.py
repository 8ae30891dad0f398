"""The events side: each events record into its encounter's state; a state that is due is coded
and its revision bundle published on the charges topic.

Poison stays with its encounter.  A coding defect dead-letters the triggering record and the
encounter is coded again by its next record.  An encounter that cannot be written -- its
revision over ``max_revision_bytes``, or its state over ``max_state_bytes`` at the checkpoint
-- is blocked: the records that made it so are dead-lettered with the reason, so are any
records for it later (``EncounterBlocked``), a metric and an ERROR log name it by a safe id,
and every other encounter goes on.  A blocked encounter keeps its last written state and the
revision last published; ``infusion-charges recode --reopen`` re-admits it.  A ``recode``
command (connectors/recode.py) codes a held encounter again: a revision only if its lines changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from coding_core.formulary import BY_CODE, Formulary, system_label
from coding_core.profile import Profile
from connectors.clients import Outbox
from connectors.codec import event_json, loads, published_json
from connectors.dead_letters import DeadLetters
from connectors.intake import RECORDS
from connectors.ops import Metrics, safe_id
from connectors.recode import RECODE, REOPEN
from connectors.recovery import changelog_headers
from connectors.settings import Settings
from connectors.state import EncounterState
from connectors.store import PartitionStore, Row, StateStores
from mapping.collector import Mapped
from mapping.medications import Medications

log = logging.getLogger("infusion_charges.worker")
IDLE_CLOSE = "idle_close_basis_ms"  # an events-topic control record: {IDLE_CLOSE: ms, "encounter": id}


class EncounterProcessor:
    def __init__(self, settings: Settings, formulary: Formulary, profile: Profile, stores: StateStores, outbox: Outbox,
                 dead_letters: DeadLetters, metrics: Metrics, stats: dict[str, int], clock: Callable[[], float]):
        self.settings, self.formulary, self.profile, self.stores = settings, formulary, profile, stores
        self.outbox, self.dead_letters, self.metrics, self.stats, self.clock = outbox, dead_letters, metrics, stats, clock
        # The records that changed each encounter since the last checkpoint: dead-lettered if
        # its state then turns out too large to write.
        self._changed_by: dict[tuple[int, str], list[tuple[Any, dict[str, Any] | None]]] = {}
        self.medications: Medications | None = None  # the reference table (connectors/medications.py), set by the worker

    # --- one events record ------------------------------------------------------------

    def handle(self, record: Any) -> None:
        self.stats["events"] += 1
        try:
            doc = loads(record.value)
            if IDLE_CLOSE in doc:
                self._apply_idle_close(record, str(doc["encounter"]), int(doc[IDLE_CLOSE]))
                return
            docs = doc[RECORDS] if RECORDS in doc else [doc]  # one record: the format before batching
            if not isinstance(docs, list):
                raise TypeError("records is not a list")
        except Exception as e:
            self.dead_letters.send(record, type(e).__name__, "unreadable event")
            return
        for doc in docs:
            self._apply_record(record, doc)

    def _apply_record(self, record: Any, doc: Any) -> None:
        try:
            mapped = Mapped.from_json(doc)
        except Exception as e:
            self.dead_letters.send(record, type(e).__name__, "unreadable event", value=event_json(doc))
            return
        if mapped.kind == RECODE:
            self._recode(record, mapped)
            return
        store = self.stores.open(record.partition)
        key = mapped.key()
        state = store.get(key) or EncounterState(encounter_id=key)
        # the event's JSON is what the state stores for a new record: no need to write it out again
        outcome = state.apply(mapped, record.timestamp, as_json=doc)
        self.metrics.records.labels(outcome).inc()
        if outcome == "added" and mapped.administration is not None and mapped.administration.medication_ref is None:
            event = mapped.administration  # (one naming a Medication by id is the table's: counted if coded without it)
            if self.formulary.identify(event.drug_codings, event.drug_text).by != BY_CODE:
                self.metrics.unknown_drugs.labels(system_label(event.drug_codings)).inc()
        if outcome == "retired":
            self.dead_letters.send(record, "ArrivedAfterRetention",
                                   f"encounter {safe_id(key)} is past its {self.settings.retention_days}-day retention window; "
                                   "the record was not applied (code the encounter offline from its source records: docs/operations.md)",
                                   value=event_json(doc))
            return
        if outcome == "blocked":
            self.dead_letters.send(record, "EncounterBlocked", f"encounter {safe_id(key)} is blocked ({state.blocked}); "
                                   "the record was not applied", value=event_json(doc))
            return
        if outcome not in ("duplicate", "outdated"):
            store.put(key, state)
            self._changed_by.setdefault((record.partition, key), []).append((record, doc))
        self._code_if_due(store, state, record, doc)

    def _recode(self, record: Any, command: Mapped) -> None:
        """``infusion-charges recode``: code the encounter again with today's formulary and
        profile; a revision only if its lines changed.  ``reopen`` re-admits a blocked one."""
        store = self.stores.open(record.partition)
        key = command.id
        state = store.get(key)
        if state is None or state.retired:
            outcome = "recode-unknown" if state is None else "recode-retired"
            self.metrics.records.labels(outcome).inc()
            log.warning("recode of encounter %s: %s", safe_id(key), "not held" if state is None else "retired: its records are gone",
                        extra={"encounter": safe_id(key), "outcome": outcome})
            return
        if state.blocked is not None:
            if command.mode != REOPEN:
                self.metrics.records.labels("recode-blocked").inc()
                log.warning("recode of encounter %s: blocked; recode --reopen re-admits it", safe_id(key), extra={"encounter": safe_id(key)})
                return
            state = state.model_copy(update={"blocked": None})
            log.info("encounter %s re-admitted", safe_id(key), extra={"encounter": safe_id(key)})
        self.metrics.records.labels("recode").inc()
        state.dirty = True
        state.recoded_ms = record.timestamp  # the re-code's enteredDate: the command's record time, the same on replay
        store.put(key, state)
        self._changed_by.setdefault((record.partition, key), [])
        self._code_if_due(store, state, record)

    # --- Medications arriving in the reference table -----------------------------------------

    def medications_arrived(self, medication_ids: set[str], partitions: set[int], record: Any = None) -> int:
        """Code again every encounter of these (recovered) partitions coded without one of these
        Medications; how many.  A partition still recovering is checked when it is done."""
        recoded = 0
        for partition, store in self.stores.items():
            if partition not in partitions:
                continue
            keys = dict.fromkeys(store.waiting(medication_ids))
            keys.update((k, None) for k, s in store.in_memory() if set(s.waiting) & medication_ids)
            for key in keys:
                recoded += self._recode_waiting(store, partition, key, medication_ids, record)
        return recoded

    def recheck_waiting(self, partitions: set[int]) -> int:
        """After a partition's state was recovered (or a rewind): its encounters waiting for a
        Medication the table now holds are coded again; how many."""
        held = self.medications
        if held is None:
            return 0
        recoded = 0
        for partition in partitions:
            store = self.stores.get(partition)
            if store is None:
                continue
            arrived = {m for m in store.waiting_medications() if held.holds(m)}  # no look at the topic per id
            for key in store.waiting(arrived) if arrived else ():
                recoded += self._recode_waiting(store, partition, key, arrived, None)
        return recoded

    def _recode_waiting(self, store: PartitionStore, partition: int, key: str, arrived: set[str], record: Any) -> int:
        state = store.get(key)
        if state is None or state.retired or state.blocked is not None or not set(state.waiting) & arrived:
            return 0
        self.metrics.records.labels("medication-arrived").inc()
        log.info("encounter %s: a Medication it names arrived; coding it again", safe_id(key), extra={"encounter": safe_id(key)})
        state.dirty = True
        store.put(key, state)
        self._changed_by.setdefault((partition, key), [])
        # What a failure names: the encounter on the events topic (no record asked for this coding).
        where = record if record is not None else SimpleNamespace(
            topic=self.settings.topics.events, partition=partition, offset=-1, timestamp=0, key=key.encode(), value=None, headers=[])
        self._code_if_due(store, state, where)
        return 1

    def _apply_idle_close(self, record: Any, encounter_id: str, basis_ms: int) -> None:
        store = self.stores.open(record.partition)
        state = store.get(encounter_id)
        if state is not None and state.idle_close(basis_ms):
            store.put(encounter_id, state)
            self._code_if_due(store, state, record)

    def _code_if_due(self, store: PartitionStore, state: EncounterState, record: Any, doc: Any = None) -> None:
        if not state.due():
            return
        published = state.revision, state.published
        key = state.encounter_id
        try:
            with self.metrics.coding_seconds.time():
                bundle = state.code(self.formulary, self.profile, self.medications)
        except Exception as e:  # a defect must not stop the worker nor block the partition behind it
            # The encounter stays as it was published (nothing withdrawn), is no longer due
            # (no retry loop), and is coded again when its next record arrives.
            store.put(key, state)
            self.stats["coding_failures"] += 1
            self.metrics.coding_failures.inc()
            log.error("coding failed for encounter %s: %s", safe_id(key), type(e).__name__,
                      extra={"encounter": safe_id(key), "error_type": type(e).__name__})
            self.dead_letters.send(record, "CodingError", f"coding encounter {safe_id(key)} raised {type(e).__name__}",
                                   value=None if doc is None else event_json(doc))
            return
        store.put(key, state)
        if bundle is None:
            return
        value = published_json(bundle)
        limit = self.settings.max_revision_bytes
        if len(value) > limit:
            state.revision, state.published = published  # as last published
            self.stats["revisions_too_large"] += 1
            changed = self._changed_by.get((store.partition, key), [])
            changed[:] = [c for c in changed if c[0] is not record or c[1] is not doc]  # dead-lettered here, not again
            self._block(store, key, state, f"revision {state.revision + 1} is {len(value)} bytes, over max_revision_bytes {limit}",
                        "RevisionTooLarge", [(record, doc)], keep_records=True)
            return
        self.stats["revisions"] += 1
        self.metrics.revisions.inc()
        for code in state.warning_codes:
            self.metrics.warnings.labels(code).inc()
        entries = [e["resource"] for e in bundle["entry"]]
        withdrawn = sum(1 for r in entries if r.get("status") == "entered-in-error")
        log.info("encounter %s: revision %d published (%d lines, %d withdrawn, %d warnings)", safe_id(key), state.revision,
                 len(entries) - withdrawn, withdrawn, len(state.warning_codes),
                 extra={"encounter": safe_id(key), "revision": state.revision, "lines": len(entries) - withdrawn,
                        "withdrawn": withdrawn, "warnings": len(state.warning_codes)})
        self.metrics.close_to_charge_seconds.observe(max(0.0, self.clock() - state.last_record_ms / 1000))
        headers = [("encounter-id", key.encode()), ("revision", str(state.revision).encode())]
        self.outbox.send(self.settings.topics.charges, key=key.encode(), value=value, headers=headers)

    # --- the checkpoint's part ----------------------------------------------------------

    def changelog(self) -> list[tuple[int, Row, list[tuple[str, bytes]]]]:
        """The states changed since the last checkpoint, as changelog records (partition, row,
        headers); a state too large to write blocks its encounter instead."""
        out: list[tuple[int, Row, list[tuple[str, bytes]]]] = []
        limit = self.settings.max_state_bytes
        for partition, store in self.stores.items():
            for key, state in store.take_dirty().items():
                if state is None:
                    out.append((partition, Row(key, None), []))
                    continue
                value = state.to_bytes()
                if len(value) > limit:
                    reason = f"state of {len(value)} bytes (compressed), over max_state_bytes {limit}"
                    triggers = self._changed_by.get((partition, key), [])
                    state = self._block(store, key, state, reason, "StateTooLarge", triggers, keep_records=False)
                    value = state.to_bytes()
                    if len(value) > limit:  # even the last written state with today's lines: keep the lines
                        self._strip_records(store, key, state, reason, triggers)
                        state = state.model_copy(update={"records": {}})
                        store.keep(key, state)
                        value = state.to_bytes()
                out.append((partition, Row(key, value, state.standing, state.last_record_ms, tuple(state.waiting)),
                            changelog_headers(state)))
        self._changed_by.clear()
        return out

    def _block(self, store: PartitionStore, key: str, state: EncounterState, reason: str, error_type: str,
               triggers: list[tuple[Any, dict[str, Any] | None]], keep_records: bool) -> EncounterState:
        """Block the encounter; dead-letter the records that made it unwritable."""
        first = state.blocked is None
        blocked = state.model_copy(update={"blocked": reason}) if keep_records else state.blocked_copy(reason, store.last_written(key))
        if keep_records:
            store.put(key, blocked)  # written at the next checkpoint
        else:
            store.keep(key, blocked)  # being written now, in place of the state that does not fit
        if first:
            self.stats["blocked"] += 1
            self.metrics.encounters_blocked_total.inc()
            log.error("encounter %s blocked: %s", safe_id(key), error_type,
                      extra={"encounter": safe_id(key), "error_type": error_type, "partition": store.partition})
        for record, doc in triggers:
            self.dead_letters.send(record, error_type, f"encounter {safe_id(key)}: {reason}; the encounter is blocked "
                                   "(later records for it are dead-lettered as EncounterBlocked)",
                                   value=None if doc is None else event_json(doc))
        return blocked

    def _strip_records(self, store: PartitionStore, key: str, state: EncounterState, reason: str,
                       triggers: list[tuple[Any, dict[str, Any] | None]]) -> None:
        """The records a blocked state cannot keep, dead-lettered: nothing of it is dropped."""
        where = triggers[0][0] if triggers else SimpleNamespace(topic=self.settings.topics.events, partition=store.partition,
                                                                offset=-1, key=key.encode(), value=None)
        for doc in state.records.values():
            self.dead_letters.send(where, "StateTooLarge", f"encounter {safe_id(key)}: {reason}; a record it held, dropped from its "
                                   "blocked state", value=event_json(doc))

    def clear(self) -> None:
        self._changed_by.clear()
