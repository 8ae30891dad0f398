"""A feed's records collected for coding: deduplicated by id, in arrival order.

Both mappers (FHIR, HL7 v2) hand :class:`Mapped` records to :class:`FeedCollector`, which
decides what a record arriving again means: a duplicate, a newer version, an update or a
delete (see ``Mapped.mode``).
"""

from __future__ import annotations

import hashlib
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


def order(candidate: tuple[int | None, datetime | None], current: tuple[int | None, datetime | None]) -> int:
    """Which of two versions of a record is newer: 1 the candidate, -1 the current, 0 neither says.

    ``meta.versionId`` first (a versioned record beats one without), then ``meta.lastUpdated``
    (HL7: MSH-7) the same way.  0: the caller decides by content and arrival order."""
    (cv, cu), (ov, ou) = candidate, current
    if cv is not None and ov is not None and cv != ov:
        return 1 if cv > ov else -1
    if (cv is None) != (ov is None):
        return 1 if cv is not None else -1
    if cu is not None and ou is not None and cu != ou and cu.tzinfo is not None and ou.tzinfo is not None:
        return 1 if cu > ou else -1
    if (cu is None) != (ou is None) and cv is None:
        return 1 if cu is not None else -1
    return 0


def is_newer(candidate: tuple[int | None, datetime | None], current: tuple[int | None, datetime | None]) -> bool:
    return order(candidate, current) > 0


RESENT_WITH_CHANGES = "the same delivery (MSH-10 control id) was received again with different content: read as an update"


def resolve(held: Mapped | None, incoming: Mapped) -> tuple[Mapped, str]:
    """What to keep when ``incoming`` arrives for a record id already holding ``held``, and
    what happened: "added", "merged", "replaced", "duplicate" (the same content again: ``held``
    kept) or "outdated" (an older version arriving late: ``held`` kept).  The one rule for
    repeats, shared by the command line and the pipeline's state store.

    Same id, no version to tell them apart: identical content is a duplicate, changed content
    the next version (arrival order).  An HL7 delivery seen before (its MSH-10) is a duplicate
    when its content is the same, an update (with a warning) when it is not."""
    if incoming.sources and not all("#" in d for d in incoming.sources):
        incoming = stamped(incoming)  # the mappers stamp their records; one read back from an older worker may not be
    if held is None:
        return incoming, "added"
    if not incoming.sources:
        return _resolve_content(held, incoming)
    before, arriving = _deliveries(held.sources), _deliveries(incoming.sources)
    if all(d in before for d in arriving):
        if all(before[d] in (None, digest) for d, digest in arriving.items()):
            return held, "duplicate"  # a delivery already applied to this record, as it was then
        # The same delivery with other content (a mapping fix, a corrected re-send): an update.
        incoming = _with_warning(replace(incoming, version=held.version, mode="replace"), RESENT_WITH_CHANGES)
    kept, outcome = _resolve_content(held, incoming)
    merged = {**before, **_deliveries(kept.sources), **arriving}
    seen = tuple(f"{d}#{digest}" if digest else d for d, digest in merged.items())[-MAX_SOURCES:]
    if seen != kept.sources:
        kept = replace(kept, sources=seen)
    return kept, outcome


def stamped(m: Mapped) -> Mapped:
    """The record with each delivery stamped with a digest of the content it carried
    ("<id>#<digest>"): the same delivery again is a duplicate only if it carries the same."""
    digest = _digest(m)
    sources = tuple(f"{d}#{digest}" for d in _deliveries(m.sources))
    # Every field copied, as dataclasses.replace does, at about half its cost (hot in HL7 mapping)
    return Mapped(**{**m.__dict__, "sources": sources})


def _deliveries(sources: tuple[str, ...]) -> dict[str, str | None]:
    """delivery id -> digest of what it carried (None: remembered before digests were kept)."""
    out: dict[str, str | None] = {}
    for s in sources:
        delivery, _, digest = s.partition("#")
        out[delivery] = digest or None
    return out


def _digest(m: Mapped) -> str:
    if m.administration is not None:
        body = m.administration.model_dump_json()
    elif m.encounter is not None:
        body = m.encounter.model_dump_json(exclude_unset=m.mode in ("merge", "fill"))
    else:
        body = ""
    return hashlib.sha256(body.encode()).hexdigest()[:16]


MAX_SOURCES = 64  # deliveries remembered per record


def _same_content(a: Mapped, b: Mapped) -> bool:
    if a.kind != b.kind or a.mode != b.mode:
        return False
    if a.administration is not None or b.administration is not None:
        return a.administration == b.administration
    if a.encounter is None or b.encounter is None:
        return a.encounter is b.encounter
    if a.mode in ("merge", "fill"):  # an update carries only the fields it sets
        return all(getattr(a.encounter, k) == getattr(b.encounter, k) for k in b.encounter.model_fields_set)
    return a.encounter == b.encounter


def _with_warning(m: Mapped, warning: str) -> Mapped:
    if m.administration is None or warning in m.administration.source_warnings:
        return m
    event = m.administration.model_copy(update={"source_warnings": (*m.administration.source_warnings, warning)})
    return replace(m, administration=event)


def _resolve_content(held: Mapped, incoming: Mapped) -> tuple[Mapped, str]:
    if incoming.mode in ("merge", "fill") and held.encounter is not None and incoming.encounter is not None:
        fields = incoming.encounter.model_fields_set - {"id"}
        older = is_newer(held.version, incoming.version)  # an update sent before the one we hold
        if incoming.mode == "fill" or older:
            fields = {k for k in fields if getattr(held.encounter, k) is None}
        update = {k: getattr(incoming.encounter, k) for k in fields}
        version = held.version if older or incoming.version == (None, None) else incoming.version
        return replace(held, version=version, encounter=held.encounter.model_copy(update=update)), "merged"
    newer = order(incoming.version, held.version)
    if incoming.mode == "replace" and newer >= 0:  # HL7 RXA-21 U / D: replaces unless sent before it
        return incoming, "replaced"
    if newer > 0:
        return incoming, "replaced"
    if newer < 0:
        return held, "outdated"
    if _same_content(held, incoming):
        return held, "duplicate"
    return incoming, "replaced"  # changed content and nothing to say which is newer: arrival order


@dataclass
class FeedCollector:
    """Administrations and encounters in arrival order, deduplicated by resource id."""

    administrations: dict[str, Mapped] = field(default_factory=dict)
    encounters: dict[str, Mapped] = field(default_factory=dict)
    errors: list[MappingError] = field(default_factory=list)
    duplicates: int = 0
    replaced: int = 0
    outdated: int = 0
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
        elif outcome == "outdated":
            self.outdated += 1

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

