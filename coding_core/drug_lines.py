"""HCPCS Level II drug lines: one line per drug and date of service.

units = total dose that day / HCPCS billing unit, rounded up.  Where the line has an NDC and the
formulary its package unit, the line carries the NDC quantity (:func:`_ndc_quantities`); a line
whose administrations name different NDCs reports the first, without a quantity (``mixed-ndc``).
Single-dose containers carry JW (a separate line for the documented discarded amount) or JZ (nothing discarded) when the
profile asks for it (Medicare since July 2023).  Route and payer drug modifiers come from the
profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from coding_core.classify import Classified, Note, dose_in
from coding_core.formulary import NDC_SYSTEM
from coding_core.ndc import NdcUnit, normalize_ndc
from coding_core.model import CodedLine, coded_line
from coding_core.profile import Profile
from coding_core.rules import UNCLASSIFIED_DRUG_HCPCS
from coding_core.timing import local_date


@dataclass
class _Group:
    items: list[Classified] = field(default_factory=list)


def _ceil(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_CEILING))


def _fmt(d: Decimal) -> str:
    return format(d.normalize(), "f")


def drug_lines(classified: list[Classified], profile: Profile, tz: ZoneInfo,
               day_of: Callable[[datetime], date] | None = None,
               undated_day: date | None = None) -> tuple[list[CodedLine], list[Note]]:
    """``day_of``: the local date of an instant in ``tz`` (e.g. a per-encounter cache).
    ``undated_day``: the date of service for a drug given with no documented time (the
    encounter's first date); without one, such a drug gets a warning instead of a line."""
    lines: list[CodedLine] = []
    notes: list[Note] = []
    route_mods = profile.route_drug_modifiers
    groups: dict[tuple[Any, ...], list[Classified]] = {}
    for c in classified:
        if not c.drug_billable:
            continue
        start = c.start
        entry = c.entry
        hcpcs = entry.hcpcs if entry is not None else UNCLASSIFIED_DRUG_HCPCS
        if start is not None:
            day = day_of(start) if day_of is not None else local_date(start, tz)
        elif undated_day is not None:
            day = undated_day
            notes.append(Note("drug-dated-from-encounter", f"administration {c.id}: no time documented; its drug line {hcpcs} is dated on the encounter's first date of service, {day.isoformat()}", (c.id,)))
        else:
            notes.append(Note("drug-not-dated", f"administration {c.id}: no time documented and no date for the encounter: drug {hcpcs} cannot be dated and is not billed; documentation needed", (c.id,)))
            continue
        # Without route modifiers every group's route modifier is None: the 3-tuple sorts the same.
        key = (day, hcpcs, c.drug_key, route_mods.get(c.event.route.value)) if route_mods else (day, hcpcs, c.drug_key)
        group = groups.get(key)
        if group is None:
            groups[key] = [c]
        else:
            group.append(c)

    ordered = (sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3] or "")) if route_mods
               else sorted(groups.items()))  # keys are unique: the lists are never compared
    line_mods = profile.drug_line_modifiers
    mods_by_route: dict[str | None, tuple[str, ...]] = {}  # route modifier -> the line's modifiers
    jw_jz = profile.jw_jz
    for gkey, items in ordered:
        day, hcpcs = gkey[0], gkey[1]
        route_mod: str | None = gkey[3] if route_mods else None
        if len(items) > 1:
            items.sort(key=_by_id)
            ids = tuple([c.id for c in items])
        else:
            ids = (items[0].id,)
        first = items[0]
        entry = first.entry
        ndcs = _ndcs(items)
        ndc = ndcs[0] if ndcs else None
        codings = first.event.drug_codings
        modifiers = mods_by_route.get(route_mod)
        if modifiers is None:
            modifiers = mods_by_route[route_mod] = tuple([m for m in (route_mod, *line_mods) if m])
        name = first.drug_name
        if entry is None:
            lines.append(coded_line(hcpcs, "HCPCS", 1, modifiers, day, ids, "drug.unclassified",
                                    f"{name} is not in the formulary: unclassified drug {hcpcs}, 1 unit; NDC and invoice needed",
                                    None, None, name, codings, ndc, "drug"))
            continue
        bu, bu_unit = entry.billing_unit_value, entry.billing_unit
        total = _ZERO
        waste = _ZERO
        waste_documented = False
        for c in items:
            event = c.event
            dose = event.dose
            if dose is None:
                volume = event.volume_ml
                amount = dose_in(volume, "mL", bu_unit) if volume is not None else None
            else:
                amount = dose_in(dose.value, dose.unit, bu_unit)
            if amount is None:
                problem = "missing-dose" if dose is None and event.volume_ml is None else "dose-unit-mismatch"
                what = "not documented" if dose is None else f"in {dose.unit} cannot be converted to {bu_unit}"
                notes.append(Note(problem, f"administration {c.id}: dose {what}; {hcpcs} billed conservatively", (c.id,)))
                continue
            total += amount
            wasted = event.wasted
            if wasted is not None:
                waste_documented = True
                w = dose_in(wasted.value, wasted.unit, bu_unit)
                if w is None:
                    notes.append(Note("dose-unit-mismatch", f"administration {c.id}: wasted amount in {wasted.unit} cannot be converted to {bu_unit}", (c.id,)))
                else:
                    waste += w
        mods = modifiers
        jw_units = 0
        if total > 0:
            per_unit = total / bu
            units = max(1, int(per_unit.to_integral_value(rounding=ROUND_CEILING)))  # _ceil, inlined
            bu_text = _bu_text(bu)
            # ``{d.normalize():f}`` is ``_fmt(d)``, inlined (hot)
            reason = f"{name}: {total.normalize():f} {bu_unit} / {bu_text} {bu_unit} per unit = {per_unit.normalize():f} -> {units} unit(s), rounded up"
            if jw_jz and entry.single_dose:
                if waste > 0:
                    jw_units = _ceil((total + waste) / bu) - units
                    if jw_units <= 0:
                        mods = (*modifiers, "JZ")
                        reason += (f"; discarded {_fmt(waste)} {bu_unit} falls within the rounded-up administered units:"
                                   " no JW line, JZ (no billable unit discarded)")
                elif not waste_documented or waste == 0:
                    mods = (*modifiers, "JZ")
                    reason += "; single-dose container, no discarded amount: JZ"
        else:
            units = 1
            reason = f"{name}: dose unknown, 1 unit billed conservatively"
        unit_text = f"{_bu_text(bu)} {bu_unit}"  # ChargeItem.quantity.unit: "10 mg", "250 mL"
        package = entry.ndc_unit_for(ndc) if ndc and len(ndcs) == 1 else None
        if len(ndcs) > 1:
            notes.append(Note("mixed-ndc", f"{name} {hcpcs} on {day.isoformat()}: {len(ndcs)} different NDCs on one line; "
                                           "the first is reported, with no NDC quantity", ids))
        given_q, waste_q = _ndc_quantities(total, waste, jw_units > 0, package)
        lines.append(coded_line(hcpcs, "HCPCS", units, mods, day, ids, "drug.administered", reason, None, None, name, codings, ndc, "drug",
                                unit_text, *given_q))
        if jw_units > 0:
            lines.append(coded_line(hcpcs, "HCPCS", jw_units, (*modifiers, "JW"), day, ids, "drug.wasted",
                                    f"{name}: discarded {_fmt(waste)} {bu_unit} from single-dose container(s): {jw_units} unit(s) with JW",
                                    None, None, name, codings, ndc, "drug", unit_text, *waste_q))
    return lines, notes


_ZERO = Decimal(0)
# _fmt of billing-unit values.  _fmt depends only on the value (normalize), except for the sign of
# zero, and a zero billing unit never gets here (the division above raises).
_BU_TEXT: dict[Decimal, str] = {}


_THOUSANDTH = Decimal("0.001")


def _bu_text(bu: Decimal) -> str:
    """``_fmt`` of a billing-unit value, remembered (a formulary has a few dozen)."""
    text = _BU_TEXT.get(bu)
    if text is None:
        text = _fmt(bu)
        if len(_BU_TEXT) < 1024:
            _BU_TEXT[bu] = text
    return text


_NO_QUANTITY: tuple[Decimal | None, str | None] = (None, None)


def _ndc_quantities(given: Decimal, waste: Decimal, jw_line: bool, package: NdcUnit | None
                    ) -> tuple[tuple[Decimal | None, str | None], tuple[Decimal | None, str | None]]:
    """The NDC quantity (and qualifier) of the administered line and of its JW line.

    Measured drugs (mL, g, IU, mg): each line's amount ÷ the amount in one NDC unit, to three
    decimals.  Counted containers -- vials (``UN``) or whole packages (``package``: a bag) -- are
    the containers opened, ceil((given + discarded) ÷ container): all on the administered line,
    or, with a JW line, the discarded share on it (three decimals) and the rest on the
    administered line, so the two add up to the containers opened."""
    if package is None or given <= 0:
        return _NO_QUANTITY, _NO_QUANTITY
    qualifier = package.qualifier
    waste_q = _round3(waste / package.amount) if jw_line else None
    container = package.package if package.package is not None else (package.amount if qualifier == "UN" else None)
    if container is None:
        return (_round3(given / package.amount), qualifier), ((waste_q, qualifier) if waste_q is not None else _NO_QUANTITY)
    opened = Decimal(_ceil((given + waste) / container)) * container / package.amount
    if waste_q is None:
        return (_plain(opened), qualifier), _NO_QUANTITY
    return (_plain(opened - waste_q), qualifier), (waste_q, qualifier)


def _round3(q: Decimal) -> Decimal:
    return _plain(q.quantize(_THOUSANDTH, rounding=ROUND_HALF_UP))


def _plain(q: Decimal) -> Decimal:
    """Without trailing zeros or an exponent: 70.000 -> 70, 2.520 -> 2.52."""
    return Decimal(int(q)) if q == q.to_integral_value() else q.normalize()


def _by_id(c: Classified) -> str:
    return c.id


def _ndcs(items: list[Classified]) -> list[str]:
    """The distinct NDCs of a line's administrations (11-digit where there is one form), in order."""
    found: dict[str, None] = {}
    for c in items:
        if c.event.ndc:
            found[normalize_ndc(c.event.ndc)] = None
            continue
        for cd in c.event.drug_codings:
            if cd.system == NDC_SYSTEM:
                found[normalize_ndc(cd.code)] = None
                break
    return list(found)
