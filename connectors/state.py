"""What the pipeline knows about one encounter, and the decisions made from it.

Pure and deterministic: the worker feeds records (with their Kafka timestamps) and idle-close
events from the events topic; this module says when to code, produces the revision to publish, and serialises itself for the
compacted changelog topic (key = encounter id) so any worker can take the encounter over.
No wall clock is read here: idle close and retention are decided on record timestamps and the
``now_ms`` the worker passes in.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, Field, PrivateAttr

from coding_core.engine import code_encounter
from coding_core.formulary import Formulary
from coding_core.model import AdministrationEvent, EncounterClass, EncounterInfo
from coding_core.profile import Profile
from mapping.chargeitem_out import EXT_FORMULARY, revision_bundle, to_charge_items
from mapping.collector import Mapped, resolve
from mapping.medications import Medications, with_medications

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Changelog states larger than this are zlib-compressed (level 1: JSON states shrink 8-11x at
# ~3 µs per KB).  Every checkpoint writes each changed encounter's whole state to the changelog
# and the local store: compressed, the changelog carries ~9x fewer bytes for the same worker CPU
# (the local store's writes shrink by about what compressing costs; docs/performance.md).
COMPRESS_FROM_BYTES = 1024
CLOSING_STATUSES = {"finished", "completed"}  # FHIR R4 / R5 Encounter.status; HL7 A03
DISCARDING_STATUSES = {"cancelled", "entered-in-error"}  # FHIR; HL7 A11


class Lifecycle(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    DISCARDED = "discarded"


class EncounterState(BaseModel):
    encounter_id: str
    records: dict[str, dict[str, Any]] = Field(default_factory=dict)  # "kind:id" -> stored record
    idle_closed: bool = False
    last_record_ms: int = 0
    dirty: bool = False  # changed since the last coding
    revision: int = 0
    published: dict[str, dict[str, Any]] = Field(default_factory=dict)  # ChargeItem id -> resource
    # Past its retention window: records and charges forgotten, the revision kept, so that a
    # record arriving now is refused (see apply) instead of starting the encounter again at
    # revision 1 with a partial bill that would overwrite the published one.
    retired: bool = False
    # Blocked: its state could not be written (too large for the changelog); the reason.
    # Records for it are dead-lettered until an operator re-admits it.  What is kept is the
    # last state that was written, with the revision last published.
    blocked: str | None = None
    # Medications (ids) the last coding named and the reference table did not hold: the
    # encounter is coded again when one arrives (connectors/medications.py).
    waiting: list[str] = Field(default_factory=list)
    # When ``infusion-charges recode`` last asked for this encounter (its command's record time):
    # the enteredDate of the charges it codes.  Any record taken after it clears it (its
    # revision is dated from the record again).
    recoded_ms: int | None = None
    # Parsed views of ``records`` (not serialised; rebuilt after a change or a restore).
    _parsed: dict[str, Mapped] = PrivateAttr(default_factory=dict)
    _view: tuple[EncounterInfo, list[AdministrationEvent]] | None = PrivateAttr(default=None)
    _warning_codes: tuple[str, ...] = PrivateAttr(default=())  # the last coding's warnings (for metrics)

    def __eq__(self, other: object) -> bool:  # the serialised state, not the parse caches
        return isinstance(other, EncounterState) and self.model_dump() == other.model_dump()

    # --- records ------------------------------------------------------------------------

    def apply(self, mapped: Mapped, timestamp_ms: int, as_json: dict[str, Any] | None = None) -> str:
        """Take one mapped record; returns the outcome ("added", "replaced", "merged", "duplicate",
        "outdated", or "retired": the encounter is past its retention window and the record was
        not taken).
        ``as_json``: the record's ``to_json`` form when the caller has it already (the events
        topic carries it): a record not held yet is stored as it came instead of written out
        again (``Mapped.from_json`` then ``to_json`` gives the same data back)."""
        if self.retired:
            return "retired"
        if self.blocked is not None:
            return "blocked"
        key = f"{mapped.kind}:{mapped.id}"
        held = self._held(key)
        kept, outcome = resolve(held, mapped)
        if outcome not in ("duplicate", "outdated"):
            stored = as_json if held is None and as_json is not None else kept.to_json()  # held is None: kept is mapped
            if stored != self.records.get(key):
                self.records[key] = stored
                caches = self.__pydantic_private__  # see _held
                caches["_parsed"][key] = kept
                caches["_view"] = None
                self.dirty = True
                self.recoded_ms = None  # the feed spoke: its revision is dated from the record
                if self.idle_closed and mapped.kind == "encounter":
                    self.idle_closed = False  # the feed spoke: its status decides again
        self.last_record_ms = max(self.last_record_ms, timestamp_ms)
        return outcome

    def _held(self, key: str) -> Mapped | None:
        if key not in self.records:
            return None
        # The parse caches are pydantic private attributes: read by name (``self._parsed``),
        # each costs ~1.9 µs (a failed attribute lookup, then pydantic's __getattr__); through
        # the slot that holds them, ~0.1 µs.  The lifecycle asks for the encounter record
        # after every record applied.
        parsed_by_key = self.__pydantic_private__["_parsed"]
        parsed = parsed_by_key.get(key)
        if parsed is None:
            parsed = parsed_by_key[key] = Mapped.from_json(self.records[key])
        return parsed

    def _views(self) -> tuple[EncounterInfo, list[AdministrationEvent]]:
        view = self.__pydantic_private__["_view"]  # see _held
        if view is None:
            events = [m.administration for k in self.records if k.startswith("administration:")
                      if (m := self._held(k)) is not None and m.administration is not None]
            held = self._held(f"encounter:{self.encounter_id}")
            info = held.encounter if held is not None and held.encounter is not None else EncounterInfo(id=self.encounter_id)
            if info.patient_id is None:
                info = info.model_copy(update={"patient_id": next((e.patient_id for e in events if e.patient_id), None)})
            view = self._view = (info, events)
        return view

    def release_parsed(self) -> bool:
        """Let go of the parsed administrations (kept for coding; ~60 % of an open encounter's
        memory) while the encounter is quiet: they are parsed again from the stored JSON if it
        is coded.  The encounter record stays parsed (the lifecycle asks for it).  True if
        anything was released."""
        key = f"encounter:{self.encounter_id}"
        caches = self.__pydantic_private__  # see _held: asked of every quiet open encounter every second
        parsed = caches["_parsed"]
        if caches["_view"] is None and (not parsed or (len(parsed) == 1 and key in parsed)):
            return False
        caches["_parsed"] = {k: v for k, v in parsed.items() if k == key}
        caches["_view"] = None
        return True

    def encounter(self) -> EncounterInfo:
        return self._views()[0]

    def _encounter_record(self) -> EncounterInfo | None:
        """The feed's own Encounter record, without building the coding views (the lifecycle
        is asked after every record; rebuilding the views each time made an encounter of n
        administrations cost O(n^2))."""
        held = self._held(f"encounter:{self.encounter_id}")
        return held.encounter if held is not None else None

    def administrations(self) -> list[AdministrationEvent]:
        return list(self._views()[1])

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        return self._lifecycle(self._encounter_record())

    def _lifecycle(self, record: EncounterInfo | None) -> Lifecycle:
        """The lifecycle given the feed's own Encounter record (``_encounter_record``)."""
        status = ((record.status if record is not None else None) or "").lower()
        if status in DISCARDING_STATUSES:
            return Lifecycle.DISCARDED
        if status in CLOSING_STATUSES or self.idle_closed:
            return Lifecycle.CLOSED
        return Lifecycle.OPEN

    def idle_close_due(self, now_ms: int, idle_close_ms: int) -> bool:
        """Has an outpatient encounter's feed been silent for ``idle_close_ms``?  The worker
        then sends an idle-close event through the events topic (see :meth:`idle_close`), so
        the close takes its place in the encounter's history and a replay decides the same."""
        if now_ms - self.last_record_ms < idle_close_ms or self.retired or self.blocked is not None:
            return False  # the time first: asked of every open encounter every second
        record = self._encounter_record()
        if self._lifecycle(record) is not Lifecycle.OPEN:
            return False
        return record is None or record.encounter_class is not EncounterClass.INPATIENT  # inpatients wait for discharge

    def idle_close(self, basis_ms: int) -> bool:
        """Apply an idle-close event decided when the last record was at ``basis_ms``: it closes
        the encounter only if nothing arrived since (a record in between wins).  True if closed."""
        if self.retired or self.lifecycle is not Lifecycle.OPEN or self.last_record_ms != basis_ms:
            return False
        record = self._encounter_record()
        if record is not None and record.encounter_class is EncounterClass.INPATIENT:
            return False
        self.idle_closed = True
        return True

    def expired(self, now_ms: int, retention_ms: int) -> bool:
        """Closed, discarded or blocked, and silent for longer than the retention window: retire it."""
        return not self.retired and (self.blocked is not None or self.lifecycle is not Lifecycle.OPEN) \
            and now_ms - self.last_record_ms > retention_ms

    def retire(self) -> None:
        """Forget the records and charges; keep the id, the revision and the last record time."""
        self.records, self.published, self.retired, self.dirty, self.idle_closed = {}, {}, True, False, False
        self.blocked = None
        self._parsed, self._view = {}, None

    # --- coding -------------------------------------------------------------------------

    def due(self) -> bool:
        return self.dirty and not self.retired and self.blocked is None and (self.lifecycle is not Lifecycle.OPEN)

    @property
    def standing(self) -> str:
        """What the local state store indexes an encounter by: ``open``, ``closed``,
        ``discarded``, ``retired`` or ``blocked``."""
        if self.retired:
            return "retired"
        if self.blocked is not None:
            return "blocked"
        return self.lifecycle.value

    def blocked_copy(self, reason: str, last_written: EncounterState | None) -> EncounterState:
        """This encounter blocked: the last state written to the changelog (records it holds
        are safe), with this state's revision and published lines (so no revision number is
        used twice) and its last record time."""
        base = last_written if last_written is not None else EncounterState(encounter_id=self.encounter_id)
        return base.model_copy(update={"blocked": reason, "revision": self.revision, "published": self.published,
                                       "last_record_ms": self.last_record_ms, "dirty": False})

    def code(self, formulary: Formulary, profile: Profile, medications: Medications | None = None) -> dict[str, Any] | None:
        """Code the encounter; the revision bundle to publish, or None when nothing changed.
        ``medications``: the reference table, for administrations that name a Medication by id.

        A discarded encounter withdraws whatever was published for it."""
        self.dirty = False
        items: list[dict[str, Any]] = []
        self.waiting = []
        if self.lifecycle is Lifecycle.CLOSED:
            events = self.administrations()
            if any(e.medication_ref for e in events):
                events, missing = with_medications(events, medications)
                self.waiting = sorted(missing)
            result = code_encounter(self.encounter(), events, formulary, profile)
            self._warning_codes = tuple(w.code for w in result.warnings)
            entered = _EPOCH + timedelta(milliseconds=self.recoded_ms) if self.recoded_ms else None
            items = to_charge_items(result, self.encounter(), profile, events, entered)
        if self._same_charges(items):
            return None  # the same charges (coded under another formulary version, perhaps): nothing to publish
        self.revision += 1
        bundle = revision_bundle(self.encounter_id, self.revision, items, self.published,
                                 {"formulary": str(formulary.version), "profile": profile.name}, profile.fhir_base_url)
        self.published = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
        return bundle

    def _same_charges(self, items: list[dict[str, Any]]) -> bool:
        """Are ``items`` the live published charges, as billed (:func:`_as_billed`)?  The ids
        are compared first: a first coding (nothing published) or a changed set of lines is
        told apart without copying any item."""
        coded = {i["id"]: i for i in items}
        live = [k for k, v in self.published.items() if v.get("status") != "entered-in-error"]
        return len(coded) == len(live) and all(
            k in coded and _as_billed(coded[k]) == _as_billed(self.published[k]) for k in live)

    @property
    def warning_codes(self) -> tuple[str, ...]:
        """The codes of the warnings of the last coding (one per warning)."""
        return self._warning_codes

    # --- changelog --------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """JSON, zlib-compressed when larger than COMPRESS_FROM_BYTES (:meth:`from_bytes` tells
        them apart by the first byte, so either form reads back whatever the setting was)."""
        # Every field is JSON-native (str, int, bool, None, lists and dicts of them): orjson over
        # the fields writes what model_dump_json() writes, ~2.6x faster (a 45 KB state: ~360 ->
        # ~135 µs).  What orjson refuses (an integer beyond 64 bits: a feed's versionId may
        # be one) goes through pydantic.  Key order is the (deterministic) order the records
        # were taken in, and survives a restore.
        try:
            data = orjson.dumps({name: getattr(self, name) for name in _FIELDS})
        except TypeError:
            data = self.model_dump_json().encode()
        return zlib.compress(data, 1) if len(data) > COMPRESS_FROM_BYTES else data

    @classmethod
    def from_bytes(cls, data: bytes) -> EncounterState:
        return cls.model_validate_json(data if data[:1] == b"{" else zlib.decompress(data))


_FIELDS = tuple(EncounterState.model_fields)


def _as_billed(item: dict[str, Any]) -> dict[str, Any]:
    """A ChargeItem without the formulary version it was coded under and when it was entered:
    a re-coding that changes only those is not a new revision."""
    extensions = item.get("extension")
    if "enteredDate" in item:
        item = {k: v for k, v in item.items() if k != "enteredDate"}
    if not extensions or not any(e.get("url") == EXT_FORMULARY for e in extensions):
        return item
    return {**item, "extension": [e for e in extensions if e.get("url") != EXT_FORMULARY]}
