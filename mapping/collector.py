"""A feed's records collected for coding: deduplicated by id, in arrival order.

Both mappers (FHIR, HL7 v2) hand :class:`Mapped` records to :class:`FeedCollector`, which
decides what a record arriving again means: a duplicate, a newer version, an update or a
delete (see ``Mapped.mode``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from coding_core.model import AdministrationEvent, EncounterInfo
from mapping.errors import MappingError


@dataclass(frozen=True)
class Mapped:
    """One mapped record: an administration or an encounter, with its version for dedupe."""

    kind: str  # "administration" | "encounter"
    id: str
    version: tuple[int | None, datetime | None]
    administration: AdministrationEvent | None = None
    encounter: EncounterInfo | None = None
    # "versioned": replaces the held record only when newer (FHIR; HL7 adds);
    # "replace": replaces it unless it was sent before it (HL7 RXA-21 U update / D delete);
    # "merge": sets only the fields it carries (HL7 ADT encounter updates);
    # "fill": sets only fields still unknown (the PV1 copied into an HL7 RAS message).
    mode: str = "versioned"
    # The deliveries (HL7 MSH-10 control ids) this record was built from: the same delivery
    # again is a duplicate whatever its timestamp says (an engine may re-stamp MSH-7 on resend).
    sources: tuple[str, ...] = ()

    def key(self) -> str:
        """The encounter this record belongs to (the partitioning key downstream)."""
        if self.administration is not None:
            return self.administration.encounter_id
        return self.id

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data; ``from_json`` reads it back, and ``to_json`` of that
        gives the same data again (the state store keeps a new record in the form it came in)."""
        version, updated = self.version
        return {
            "kind": self.kind, "id": self.id, "mode": self.mode,
            "version": [version, updated.isoformat() if updated else None],
            # Fields at their defaults are left out: a record that uses no field newer than a
            # running worker's stays readable by it during a rolling upgrade (it refuses unknown
            # fields, and takes missing ones as their defaults).
            "administration": self.administration.model_dump(mode="json", exclude_defaults=True) if self.administration else None,
            "encounter": self.encounter.model_dump(mode="json", exclude_unset=self.mode in ("merge", "fill"))
            if self.encounter else None,
            **({"sources": list(self.sources)} if self.sources else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Mapped:
        version, updated = d["version"]
        return cls(
            d["kind"], d["id"], (version, datetime.fromisoformat(updated) if updated else None),
            administration=AdministrationEvent.model_validate(d["administration"]) if d["administration"] else None,
            encounter=EncounterInfo.model_validate(d["encounter"]) if d["encounter"] else None,
            mode=d["mode"], sources=tuple(d.get("sources") or ()),
        )


def is_newer(candidate: tuple[int | None, datetime | None], current: tuple[int | None, datetime | None]) -> bool:
    """Does a re-sent record replace the one we hold?  versionId decides, else lastUpdated;
    with neither, a repeat is a duplicate."""
    (cv, cu), (ov, ou) = candidate, current
    if cv is not None and ov is not None and cv != ov:
        return cv > ov
    if cu is not None and ou is not None and cu != ou:
        if cu.tzinfo is None or ou.tzinfo is None:
            return False
        return cu > ou
    return False


def resolve(held: Mapped | None, incoming: Mapped) -> tuple[Mapped, str]:
    """What to keep when ``incoming`` arrives for a record id already holding ``held``, and
    what happened: "added", "merged", "replaced" or "duplicate" (``held`` kept).  The one rule
    for repeats, shared by the command line and the pipeline's state store."""
    if held is None:
        return incoming, "added"
    if incoming.sources and set(incoming.sources) <= set(held.sources):
        return held, "duplicate"  # a delivery already applied to this record
    kept, outcome = _resolve_content(held, incoming)
    if incoming.sources:
        seen = tuple(dict.fromkeys((*held.sources, *kept.sources, *incoming.sources)))[-MAX_SOURCES:]
        if seen != kept.sources:
            kept = replace(kept, sources=seen)
    return kept, outcome


MAX_SOURCES = 64  # deliveries remembered per record


def _resolve_content(held: Mapped, incoming: Mapped) -> tuple[Mapped, str]:
    if incoming.mode in ("merge", "fill") and held.encounter is not None and incoming.encounter is not None:
        fields = incoming.encounter.model_fields_set - {"id"}
        older = is_newer(held.version, incoming.version)  # an update sent before the one we hold
        if incoming.mode == "fill" or older:
            fields = {k for k in fields if getattr(held.encounter, k) is None}
        update = {k: getattr(incoming.encounter, k) for k in fields}
        version = held.version if older or incoming.version == (None, None) else incoming.version
        return replace(held, version=version, encounter=held.encounter.model_copy(update=update)), "merged"
    if (incoming.mode == "replace" and not is_newer(held.version, incoming.version)) or is_newer(incoming.version, held.version):
        return incoming, "replaced"
    return held, "duplicate"


@dataclass
class FeedCollector:
    """Administrations and encounters in arrival order, deduplicated by resource id."""

    administrations: dict[str, Mapped] = field(default_factory=dict)
    encounters: dict[str, Mapped] = field(default_factory=dict)
    errors: list[MappingError] = field(default_factory=list)
    duplicates: int = 0
    replaced: int = 0
    ignored: int = 0

    def reject(self, error: MappingError, *, source: str, position: str) -> None:
        self.errors.append(error.located(source=source, position=position))

    def offer(self, mapped: Mapped | None) -> None:
        """A mapped record, or None for a record of a kind the product does not use."""
        if mapped is None:
            self.ignored += 1
        else:
            self.add(mapped)

    def add(self, mapped: Mapped) -> None:
        store = self.administrations if mapped.kind == "administration" else self.encounters
        kept, outcome = resolve(store.get(mapped.id), mapped)
        store[mapped.id] = kept
        if outcome == "replaced":
            self.replaced += 1
        elif outcome == "duplicate":
            self.duplicates += 1

    def by_encounter(self) -> dict[str, tuple[EncounterInfo, list[AdministrationEvent]]]:
        """Encounter id -> (encounter info, its administrations in arrival order)."""
        grouped: dict[str, list[AdministrationEvent]] = {}
        for m in self.administrations.values():
            assert m.administration is not None
            grouped.setdefault(m.administration.encounter_id, []).append(m.administration)
        out: dict[str, tuple[EncounterInfo, list[AdministrationEvent]]] = {}
        for enc_id, events in grouped.items():
            held = self.encounters.get(enc_id)
            if held is not None and held.encounter is not None:
                info = held.encounter
                if info.patient_id is None:
                    info = info.model_copy(update={"patient_id": events[0].patient_id})
            else:
                info = EncounterInfo(id=enc_id, patient_id=next((e.patient_id for e in events if e.patient_id), None))
            out[enc_id] = (info, events)
        return out

