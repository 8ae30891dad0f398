"""Step 1: what each documented administration *is* (push, infusion, injection, ...), or why
it produces no administration service at all.

Decisions are table lookups on (route, technique, drug class); the arithmetic is the
push/infusion time threshold, the KVO rate limit, and a stop time derived from a documented
infusion duration or volume / rate (flagged ``derived-stop-time``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum

from coding_core.formulary import BY_REDUCED_NAME, NDC_SYSTEM, Formulary, FormularyEntry, normalize_name
from coding_core.ndc import parse_ndc
from coding_core.model import AdministrationEvent, AdminStatus, DrugClass, Method, PumpType, Route
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
        # 96373 is an intra-arterial *injection*; a therapeutic intra-arterial infusion has no code of its own.
        (Route.INTRA_ARTERIAL, Technique.INFUSION, DrugClass.THERAPEUTIC): Kind.UNLISTED_THERAPEUTIC,
        (Route.OTHER, Technique.PUSH, DrugClass.THERAPEUTIC): Kind.UNLISTED_THERAPEUTIC,
        (Route.OTHER, Technique.INFUSION, DrugClass.THERAPEUTIC): Kind.UNLISTED_THERAPEUTIC,
        (Route.OTHER, Technique.INJECTION, DrugClass.THERAPEUTIC): Kind.UNLISTED_THERAPEUTIC,
    }
)

# Upgrade of a chemo infusion lasting more than 8 hours on a portable/implantable pump.
PROLONGED_PUMP_KIND = {Kind.CHEMO_INFUSION: Kind.CHEMO_PROLONGED_PUMP, Kind.IA_CHEMO_INFUSION: Kind.IA_CHEMO_PROLONGED_PUMP}

# Routes that are never a drug administration service (CODING_RULES: only parenteral routes are).
NOT_PARENTERAL = {
    Route.ORAL: "oral administration is not a drug administration service",
    Route.NON_PARENTERAL: "a non-parenteral route (sublingual, topical, transdermal, inhaled, rectal, ophthalmic, otic, nasal, ...) is not a drug administration service",
}
# Given within a procedure whose own code includes the administration (CPT 62320-62327 epidural,
# 20600-20611 joint, 67028 intravitreal, 51720 bladder instillation, ...).
PROCEDURE_ROUTE = "given within a procedure (epidural, intra-articular, intraocular, intravesical, intradermal, ...): the procedure's own code includes the administration"

# Drug classes that are never a drug-administration service of their own.
NOT_ADMINISTRATION_CLASSES = {
    DrugClass.BLOOD: "blood product: transfusion is not a drug administration service (36430)",
    DrugClass.CONTRAST: "contrast for imaging is not separately billable as drug administration",
}


@dataclass(slots=True)
class Note:
    code: str
    message: str
    administration_ids: tuple[str, ...] = ()  # the administrations it concerns (their lines are flagged)


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
    stop_source: str | None = None  # where the stop time came from when it was derived

    @property
    def timing(self) -> str:
        """Where the stop time came from, and what kind of rate was documented (for explanations)."""
        if self.stop_source is not None:
            stop = f"stop derived from {self.stop_source}"
        elif self.end is not None and self.end == self.start:
            stop = "single documented time"
        else:
            stop = "documented stop"
        e = self.event
        if e.rate_ml_per_h is not None:
            rate = f"volume rate {_fmt(e.rate_ml_per_h)} mL/h"
        elif e.drug_rate is not None:
            rate = f"drug rate {e.drug_rate}"
        else:
            rate = "no usable rate documented"
        return f"{stop}; {rate}"

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
    identified = formulary.identify(event.drug_codings, event.drug_text)
    entry = identified.entry
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
    _classify(c, formulary, profile)
    if entry is None and (c.kind is not None or c.drug_billable):
        _note(c, Note("unknown-drug", f"administration {event.id}: drug '{drug_name}' is not in the formulary; coded conservatively as a therapeutic drug with an unclassified drug line"))
    elif identified.by == BY_REDUCED_NAME:
        _note(c, Note("matched-by-name", f"administration {event.id}: drug identified as {entry.hcpcs} {entry.name} by its name alone "  # type: ignore[union-attr]
                                         "(no code the formulary knows); check the drug before billing"))
    if any(cd.system == NDC_SYSTEM and parse_ndc(cd.code).ambiguous for cd in event.drug_codings):
        _note(c, Note("ndc-not-normalised", f"administration {event.id}: the NDC is 10 digits without hyphens, which fits three "
                                            "layouts; passed on as sent, not in the 11-digit form claims need"))
    return c


def _classify(c: Classified, formulary: Formulary, profile: Profile) -> Classified:
    event, drug_class = c.event, c.drug_class
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
    if route in NOT_PARENTERAL:  # whatever the method says
        return _not_parenteral(c, route, formulary)
    if event.unrecognised:
        for item in event.unrecognised:
            _note(c, Note("needs-review", f"administration {event.id}: {item} is in no vocabulary; no administration service coded (add the code to mapping/vocabulary.py)"))
        return _exclude(c, "route or method code not recognised: needs review", route in _PARENTERAL)
    if route is Route.PROCEDURE:
        _note(c, Note("procedure-route", f"administration {event.id}: {PROCEDURE_ROUTE}; report the procedure"))
        return _exclude(c, PROCEDURE_ROUTE)
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
    if c.end is None and route is not Route.IM:
        _derive_stop(c, profile)

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


_PARENTERAL = frozenset({Route.IV, Route.SC, Route.IM, Route.INTRA_ARTERIAL, Route.OTHER, Route.PROCEDURE})


def _fmt(d: Decimal) -> str:
    return format(d.normalize(), "f")


def _not_parenteral(c: Classified, route: Route, formulary: Formulary) -> Classified:
    """No administration service; a drug line only where the formulary codes the drug for the route."""
    product = formulary.for_route(c.entry, route.value) if c.entry is not None else None
    if product is None:
        return _exclude(c, f"{NOT_PARENTERAL[route]}; no HCPCS code for {c.drug_name} by this route (not charged)", False)
    c.entry, c.drug_key, c.drug_name = product, "hcpcs:" + product.hcpcs, product.name
    if product.note:
        _note(c, Note("route-drug-condition", f"administration {c.id}: {product.hcpcs} {product.note}"))
    return _exclude(c, f"{NOT_PARENTERAL[route]}; drug line {product.hcpcs} only")


def _derive_stop(c: Classified, profile: Profile) -> None:
    """A stop time from a documented infusion duration, else volume / volume rate (CODING_RULES:
    usable, always flagged).  ``derive_stop_time: false`` keeps only hydration's volume / rate."""
    e = c.event
    assert c.start is not None
    if e.method is Method.PUSH or (not profile.derive_stop_time and c.drug_class is not DrugClass.HYDRATION):
        return
    if e.status is AdminStatus.STOPPED:  # charged for the time actually given: the planned time is not it
        if e.infusion_minutes or (e.volume_ml and e.rate_ml_per_h):
            _note(c, Note("missing-stop-time", f"administration {c.id}: stopped before completion with no documented stop time: the stop cannot be derived from the planned duration or volume"))
        return
    if e.infusion_minutes and profile.derive_stop_time:
        c.end = c.start + timedelta(minutes=e.infusion_minutes)
        c.stop_source = f"the documented infusion duration, {e.infusion_minutes} min"
    elif e.volume_ml and e.rate_ml_per_h and e.rate_ml_per_h > 0:
        c.end = c.start + timedelta(minutes=int(e.volume_ml / e.rate_ml_per_h * 60))
        c.stop_source = f"volume {_fmt(e.volume_ml)} mL / rate {_fmt(e.rate_ml_per_h)} mL/h"
    else:
        return
    _note(c, Note("derived-stop-time", f"administration {c.id}: stop time derived from {c.stop_source}; review the line"))


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
    """push / infusion / injection, from the documented method and the measured minutes.

    "Inject" is not "push": an IV administration documented as an injection (or with no method)
    lasting 16 min or more is an infusion.  One documented as a push stays a push (the
    conservative code), with a warning when its times say otherwise."""
    event = c.event
    minutes = c.minutes
    if route is Route.IM:
        return Technique.INJECTION
    if route is Route.SC:
        if event.method is Method.INJECTION or event.method is Method.PUSH:
            _conflict(c, minutes, "an injection" if event.method is Method.INJECTION else "a push", "an injection")
            return Technique.INJECTION
        if minutes is not None and minutes >= THRESHOLDS.infusion_min_minutes:
            return Technique.INFUSION
        if minutes is None and event.method is Method.INFUSION:
            _note(c, Note("missing-stop-time", f"administration {event.id}: subcutaneous infusion with no stop time: not billable as an infusion"))
            c.excluded = "subcutaneous infusion without a stop time"
            return None
        return Technique.INJECTION
    if event.method is Method.INJECTION and route is Route.OTHER:
        return Technique.INJECTION
    if event.method is Method.PUSH:
        _conflict(c, minutes, "a push", "a push")
        if c.end is None:
            c.end = c.start
        return Technique.PUSH
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
    push_plausible = (event.method is not Method.INFUSION and event.rate_ml_per_h is None and event.drug_rate is None
                      and event.infusion_minutes is None)
    if push_plausible:
        _note(c, Note("missing-stop-time", f"administration {event.id}: no stop time; reported as a push (documentation needed for an infusion)"))
        c.end = c.start
        return Technique.PUSH
    _note(c, Note("missing-stop-time", f"administration {event.id}: infusion with no stop time: not billable as an infusion"))
    c.excluded = "infusion without a stop time"
    return None


def _conflict(c: Classified, minutes: int | None, documented: str, coded: str) -> None:
    if minutes is not None and minutes > THRESHOLDS.push_max_minutes:
        _note(c, Note("method-time-conflict", f"administration {c.id}: documented as {documented} but its times are {minutes} min apart; coded as {coded} (the conservative code): review the documentation"))


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
