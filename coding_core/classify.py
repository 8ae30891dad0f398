"""Step 1: what each documented administration *is* (push, infusion, injection, ...), or why
it produces no administration service at all.

Decisions are table lookups on (route, technique, drug class); the only arithmetic is the
push/infusion time threshold and the hydration stop time derived from volume / rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum

from coding_core.formulary import Formulary, FormularyEntry, normalize_name
from coding_core.model import AdministrationEvent, DrugClass, Method, PumpType, Route
from coding_core.profile import Profile
from coding_core.rules import THRESHOLDS, Kind
from coding_core.timing import Interval, whole_minutes


class Technique(StrEnum):
    PUSH = "push"
    INFUSION = "infusion"
    INJECTION = "injection"


# (route, technique, drug class) -> kind.  Missing combinations are "not a drug administration service".
_CHEMO = (DrugClass.CHEMO, DrugClass.CHEMO_HORMONAL)
KIND_TABLE: dict[tuple[Route, Technique, DrugClass], Kind] = {}
for _c in _CHEMO:
    KIND_TABLE[(Route.IV, Technique.INFUSION, _c)] = Kind.CHEMO_INFUSION
    KIND_TABLE[(Route.IV, Technique.PUSH, _c)] = Kind.CHEMO_PUSH
    KIND_TABLE[(Route.INTRA_ARTERIAL, Technique.PUSH, _c)] = Kind.IA_CHEMO_PUSH
    KIND_TABLE[(Route.INTRA_ARTERIAL, Technique.INFUSION, _c)] = Kind.IA_CHEMO_INFUSION
    KIND_TABLE[(Route.OTHER, Technique.PUSH, _c)] = Kind.UNLISTED_CHEMO
    KIND_TABLE[(Route.OTHER, Technique.INFUSION, _c)] = Kind.UNLISTED_CHEMO
    KIND_TABLE[(Route.OTHER, Technique.INJECTION, _c)] = Kind.UNLISTED_CHEMO
    KIND_TABLE[(Route.SC, Technique.INFUSION, _c)] = Kind.UNLISTED_CHEMO
for _r in (Route.SC, Route.IM):
    KIND_TABLE[(_r, Technique.INJECTION, DrugClass.CHEMO)] = Kind.CHEMO_INJECTION
    KIND_TABLE[(_r, Technique.INJECTION, DrugClass.CHEMO_HORMONAL)] = Kind.CHEMO_HORMONAL_INJECTION
    KIND_TABLE[(_r, Technique.INJECTION, DrugClass.THERAPEUTIC)] = Kind.THERAPEUTIC_INJECTION
KIND_TABLE.update(
    {
        (Route.IV, Technique.INFUSION, DrugClass.THERAPEUTIC): Kind.THERAPEUTIC_INFUSION,
        (Route.IV, Technique.PUSH, DrugClass.THERAPEUTIC): Kind.THERAPEUTIC_PUSH,
        (Route.IV, Technique.INFUSION, DrugClass.HYDRATION): Kind.HYDRATION,
        (Route.SC, Technique.INFUSION, DrugClass.THERAPEUTIC): Kind.SC_INFUSION,
        (Route.SC, Technique.INFUSION, DrugClass.HYDRATION): Kind.SC_INFUSION,
        (Route.INTRA_ARTERIAL, Technique.PUSH, DrugClass.THERAPEUTIC): Kind.IA_THERAPEUTIC,
        (Route.INTRA_ARTERIAL, Technique.INFUSION, DrugClass.THERAPEUTIC): Kind.IA_THERAPEUTIC,
        (Route.OTHER, Technique.PUSH, DrugClass.THERAPEUTIC): Kind.UNLISTED_THERAPEUTIC,
        (Route.OTHER, Technique.INFUSION, DrugClass.THERAPEUTIC): Kind.UNLISTED_THERAPEUTIC,
        (Route.OTHER, Technique.INJECTION, DrugClass.THERAPEUTIC): Kind.UNLISTED_THERAPEUTIC,
    }
)

# Upgrade of a chemo infusion lasting more than 8 hours on a portable/implantable pump.
PROLONGED_PUMP_KIND = {Kind.CHEMO_INFUSION: Kind.CHEMO_PROLONGED_PUMP, Kind.IA_CHEMO_INFUSION: Kind.IA_CHEMO_PROLONGED_PUMP}

# Drug classes that are never a drug-administration service of their own.
NOT_ADMINISTRATION_CLASSES = {
    DrugClass.BLOOD: "blood product: transfusion is not a drug administration service (36430)",
    DrugClass.CONTRAST: "contrast for imaging is not separately billable as drug administration",
}


@dataclass(slots=True)
class Note:
    code: str
    message: str


@dataclass(slots=True)
class Classified:
    """An administration after step 1.  ``kind`` is None when it yields no service."""

    event: AdministrationEvent
    entry: FormularyEntry | None
    drug_class: DrugClass
    drug_key: str
    drug_name: str
    kind: Kind | None = None
    start: datetime | None = None
    end: datetime | None = None
    excluded: str | None = None  # reason it yields no administration service
    warnings: list[Note] = field(default_factory=list)  # add with ``_note`` (may be the shared empty _NO_NOTES)
    drug_billable: bool = True  # does it produce a drug (HCPCS) line?
    id: str = ""  # event.id
    site: str | None = None  # event.access_site, computed once

    @property
    def minutes(self) -> int | None:
        if self.start is None or self.end is None:
            return None
        return whole_minutes(self.start, self.end)

    @property
    def interval(self) -> Interval | None:
        if self.start is None or self.end is None:
            return None
        return (self.start, self.end)


def drug_identity(event: AdministrationEvent, entry: FormularyEntry | None) -> tuple[str, str]:
    """(key, display name): same key = same drug for sequential/same-drug rules."""
    if entry is not None:
        return f"hcpcs:{entry.hcpcs}", entry.name
    for c in sorted(event.drug_codings, key=lambda c: (c.system, c.code)):
        return f"{c.system}|{c.code}", c.display or event.drug_text or c.code
    if event.drug_text:
        return f"text:{normalize_name(event.drug_text)}", event.drug_text
    return f"unknown:{event.id}", "unidentified drug"


def _route(event: AdministrationEvent, drug_class: DrugClass) -> tuple[Route, Note | None]:
    if event.route is not Route.UNKNOWN:
        return event.route, None
    looks_iv = (
        event.method in (Method.PUSH, Method.INFUSION, Method.FLUSH)
        or event.rate_ml_per_h is not None
        or drug_class is DrugClass.HYDRATION
        or event.access_device is not None
    )
    if looks_iv:
        return Route.IV, Note("missing-route", f"administration {event.id}: route not documented; IV assumed from method/rate/access")
    return Route.UNKNOWN, None


def classify_at(event: AdministrationEvent, start: datetime | None, formulary: Formulary, profile: Profile) -> Classified:
    """Classify one administration; ``start`` is its start already converted to UTC (``to_utc``)."""
    entry = formulary.lookup(event.drug_codings, event.drug_text)
    if entry is not None:
        drug_key, drug_name = "hcpcs:" + entry.hcpcs, entry.name
        drug_class = entry.drug_class
    else:
        drug_key, drug_name = drug_identity(event, entry)
        drug_class = DrugClass.THERAPEUTIC
    end = event.end
    if end is not None:
        end = end.astimezone(timezone.utc)
    c = Classified(event, entry, drug_class, drug_key, drug_name, None, start, end, None, _NO_NOTES, True, event.id, event.access_site)
    if entry is None:
        _note(c, Note("unknown-drug", f"administration {event.id}: drug '{drug_name}' is not in the formulary; coded conservatively as a therapeutic drug with an unclassified drug line"))

    method = event.method
    if method is Method.FLUSH:
        if (event.access_type or "").lower() == "port":
            c.kind = Kind.PORT_IRRIGATION
            c.drug_billable = False
            return c
        return _exclude(c, "line flush: bundled, not a drug administration service", False)
    if event.kvo:
        return _exclude(c, "keep-vein-open (KVO/TKO) rate: not hydration, bundled", False)
    if drug_class in NOT_ADMINISTRATION_CLASSES:
        return _exclude(c, NOT_ADMINISTRATION_CLASSES[drug_class])
    if event.part_of_procedure:
        return _exclude(c, "given as part of a procedure (e.g. procedural sedation): integral to it, not separately billable as drug administration")
    if method is Method.PUMP_REFILL:
        c.kind = Kind.PUMP_REFILL_IMPLANTABLE if event.pump is PumpType.IMPLANTABLE else Kind.PUMP_REFILL_PORTABLE
        return c

    route = event.route
    if route is Route.UNKNOWN:
        route, note = _route(event, drug_class)
        if note:
            _note(c, note)
    if route is Route.UNKNOWN:
        _note(c, Note("missing-route", f"administration {event.id}: route not documented; no administration service coded"))
        return _exclude(c, "route not documented")
    if c.start is None:
        _note(c, Note("missing-start-time", f"administration {event.id}: no start time; no administration service coded"))
        return _exclude(c, "no start time documented")
    if c.end is not None and c.end < c.start:
        _note(c, Note("stop-before-start", f"administration {event.id}: stop time precedes start time; stop time ignored"))
        c.end = None

    if (
        c.end is None
        and drug_class is DrugClass.HYDRATION
        and event.volume_ml
        and event.rate_ml_per_h
        and event.rate_ml_per_h > 0
    ):
        hours = event.volume_ml / event.rate_ml_per_h
        c.end = c.start + timedelta(minutes=int(hours * 60))
        _note(c, Note("stop-time-derived", f"administration {event.id}: hydration stop time derived from volume {event.volume_ml} mL / rate {event.rate_ml_per_h} mL/h"))

    if drug_class is DrugClass.HYDRATION and route in (Route.IV, Route.SC):
        if event.method is Method.PUSH:
            return _exclude(c, "fluid given as a push is a flush, not hydration", False)
        if event.rate_ml_per_h is not None and event.rate_ml_per_h <= profile.kvo_max_rate_ml_per_h:
            return _exclude(c, f"rate {event.rate_ml_per_h} mL/h is keep-vein-open (<= {profile.kvo_max_rate_ml_per_h} mL/h), not hydration", False)

    technique = _technique(c, route)
    if technique is None:
        return c  # excluded inside _technique
    kind = KIND_TABLE.get((route, technique, drug_class))
    if kind is None:
        return _exclude(c, f"{drug_class.value} by {route.value} {technique} is not a drug administration service")
    if kind in PROLONGED_PUMP_KIND and event.pump is not None:
        m = c.minutes  # None: started on the pump, stop not documented (see _technique)
        if m is None or m >= THRESHOLDS.prolonged_pump_min_minutes:
            kind = PROLONGED_PUMP_KIND[kind]
    c.kind = kind
    return c


_NO_NOTES: list[Note] = []  # shared "no warnings": never appended to (see _note)


def _note(c: Classified, note: Note) -> None:
    if c.warnings is _NO_NOTES:
        c.warnings = [note]
    else:
        c.warnings.append(note)


def _exclude(c: Classified, reason: str, drug_line: bool = True) -> Classified:
    c.excluded = reason
    c.drug_billable = drug_line
    return c


def _technique(c: Classified, route: Route) -> Technique | None:
    """push / infusion / injection, from the documented method and the measured minutes."""
    event = c.event
    if route in (Route.SC, Route.IM):
        if route is Route.SC and event.method is Method.INFUSION and c.minutes is not None and c.minutes >= THRESHOLDS.infusion_min_minutes:
            return Technique.INFUSION
        return Technique.INJECTION
    if event.method is Method.INJECTION and route is Route.OTHER:
        return Technique.INJECTION
    if event.method is Method.PUSH:
        return Technique.PUSH
    minutes = c.minutes
    if minutes is not None:
        if c.drug_class is DrugClass.HYDRATION:
            return Technique.INFUSION  # its own >= 31 min threshold is applied on summed time
        return Technique.PUSH if minutes <= THRESHOLDS.push_max_minutes else Technique.INFUSION
    # No stop time.
    if c.drug_class is DrugClass.HYDRATION:
        _note(c, Note("missing-stop-time", f"administration {event.id}: hydration with no stop time and no volume/rate to derive one: not billable"))
        c.excluded = "hydration without a stop time"
        return None
    if event.pump is not None:  # an infusion on a pump is never a push
        if KIND_TABLE.get((route, Technique.INFUSION, c.drug_class)) in PROLONGED_PUMP_KIND:
            _note(c, Note("missing-stop-time", f"administration {event.id}: chemotherapy started on a {event.pump.value} pump with no stop time: reported as the initiation of a prolonged infusion; document the stop time"))
            return Technique.INFUSION  # upgraded to the prolonged pump code by the caller
        _note(c, Note("missing-stop-time", f"administration {event.id}: infusion on a pump with no stop time: not billable as an infusion"))
        c.excluded = "infusion on a pump without a stop time"
        return None
    push_plausible = event.method is not Method.INFUSION and event.rate_ml_per_h is None
    if push_plausible:
        _note(c, Note("missing-stop-time", f"administration {event.id}: no stop time; reported as a push (documentation needed for an infusion)"))
        return Technique.PUSH
    _note(c, Note("missing-stop-time", f"administration {event.id}: infusion with no stop time: not billable as an infusion"))
    c.excluded = "infusion without a stop time"
    return None


def dose_in(quantity_value: Decimal, unit: str, target_unit: str) -> Decimal | None:
    """Convert a dose to the billing unit's unit; None when not convertible."""
    u, t = _canon_unit(unit), _canon_unit(target_unit)
    if u is None or t is None:
        return None
    (fu, du), (ft, dt) = u, t
    if du != dt:
        return None
    return quantity_value * fu / ft


_UNIT_TABLE: dict[str, tuple[Decimal, str]] = {
    "mcg": (Decimal("0.001"), "mass"), "ug": (Decimal("0.001"), "mass"), "µg": (Decimal("0.001"), "mass"),
    "mg": (Decimal(1), "mass"), "g": (Decimal(1000), "mass"), "gm": (Decimal(1000), "mass"),
    "ml": (Decimal(1), "volume"), "cc": (Decimal(1), "volume"), "l": (Decimal(1000), "volume"),
    "meq": (Decimal(1), "meq"),
    "units": (Decimal(1), "units"), "unit": (Decimal(1), "units"), "u": (Decimal(1), "units"),
    "iu": (Decimal(1), "units"), "[iu]": (Decimal(1), "units"), "[u]": (Decimal(1), "units"),
    "each": (Decimal(1), "each"), "ea": (Decimal(1), "each"), "vial": (Decimal(1), "each"),
}


_CANON_CACHE: dict[str, tuple[Decimal, str] | None] = {}
_CANON_CACHE_MAX = 1024


def _canon_unit(unit: str) -> tuple[Decimal, str] | None:
    try:
        return _CANON_CACHE[unit]
    except KeyError:
        pass
    canon = _UNIT_TABLE.get(unit.strip().lower().replace("{", "").replace("}", ""))
    if len(_CANON_CACHE) < _CANON_CACHE_MAX:
        _CANON_CACHE[unit] = canon
    return canon
