"""HCPCS Level II drug lines: one line per drug and date of service.

units = total dose that day / HCPCS billing unit, rounded up.  Single-dose containers carry
JW (a separate line for the documented discarded amount) or JZ (nothing discarded) when the
profile asks for it (Medicare since July 2023).  Route and payer drug modifiers come from the
profile.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from zoneinfo import ZoneInfo

from coding_core.classify import Classified, Note, dose_in
from coding_core.formulary import NDC_SYSTEM, normalize_ndc
from coding_core.model import CodedLine, Coding, trusted
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


def drug_lines(classified: list[Classified], profile: Profile, tz: ZoneInfo) -> tuple[list[CodedLine], list[Note]]:
    lines: list[CodedLine] = []
    notes: list[Note] = []
    groups: dict[tuple, list[Classified]] = defaultdict(list)
    for c in classified:
        if not c.drug_billable or c.start is None:
            continue
        hcpcs = c.entry.hcpcs if c.entry is not None else UNCLASSIFIED_DRUG_HCPCS
        route_mod = profile.route_drug_modifiers.get(c.event.route.value)
        groups[(local_date(c.start, tz), hcpcs, c.drug_key, route_mod)].append(c)

    for (day, hcpcs, _key, route_mod), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3] or "")):
        items.sort(key=lambda c: c.event.id)
        ids = tuple(c.event.id for c in items)
        entry = items[0].entry
        ndc = _ndc(items)
        codings = items[0].event.drug_codings
        modifiers = [m for m in (route_mod, *profile.drug_line_modifiers) if m]
        name = items[0].drug_name
        if entry is None:
            lines.append(_line(hcpcs, 1, modifiers, day, ids, name, codings, ndc, "drug.unclassified",
                               f"{name} is not in the formulary: unclassified drug {hcpcs}, 1 unit; NDC and invoice needed"))
            continue
        bu, bu_unit = entry.billing_unit_value, entry.billing_unit
        total = Decimal(0)
        waste = Decimal(0)
        waste_documented = False
        problem: str | None = None
        for c in items:
            dose = c.event.dose
            if dose is None and c.event.volume_ml is not None:
                amount = dose_in(c.event.volume_ml, "mL", bu_unit)
            elif dose is None:
                amount = None
            else:
                amount = dose_in(dose.value, dose.unit, bu_unit)
            if amount is None:
                problem = "missing-dose" if dose is None and c.event.volume_ml is None else "dose-unit-mismatch"
                what = "not documented" if dose is None else f"in {dose.unit} cannot be converted to {bu_unit}"
                notes.append(Note(problem, f"administration {c.event.id}: dose {what}; {hcpcs} billed conservatively"))
                continue
            total += amount
            if c.event.wasted is not None:
                waste_documented = True
                w = dose_in(c.event.wasted.value, c.event.wasted.unit, bu_unit)
                if w is None:
                    notes.append(Note("dose-unit-mismatch", f"administration {c.event.id}: wasted amount in {c.event.wasted.unit} cannot be converted to {bu_unit}"))
                else:
                    waste += w
        units = max(1, _ceil(total / bu)) if total > 0 else 1
        reason = (
            f"{name}: {_fmt(total)} {bu_unit} / {_fmt(bu)} {bu_unit} per unit = {_fmt(total / bu)} -> {units} unit(s), rounded up"
            if total > 0 else f"{name}: dose unknown, 1 unit billed conservatively"
        )
        mods = list(modifiers)
        jw_units = 0
        if profile.jw_jz and entry.single_dose and total > 0:
            if waste > 0:
                jw_units = _ceil((total + waste) / bu) - units
                if jw_units <= 0:
                    reason += f"; discarded {_fmt(waste)} {bu_unit} falls within the rounded-up administered units, no JW line"
            elif not waste_documented or waste == 0:
                mods.append("JZ")
                reason += "; single-dose container, no discarded amount: JZ"
        lines.append(_line(hcpcs, units, mods, day, ids, name, codings, ndc, "drug.administered", reason))
        if jw_units > 0:
            lines.append(_line(hcpcs, jw_units, [*modifiers, "JW"], day, ids, name, codings, ndc, "drug.wasted",
                               f"{name}: discarded {_fmt(waste)} {bu_unit} from single-dose container(s): {jw_units} unit(s) with JW"))
    return lines, notes


def _ndc(items: list[Classified]) -> str | None:
    for c in items:
        if c.event.ndc:
            return normalize_ndc(c.event.ndc)
        for cd in c.event.drug_codings:
            if cd.system == NDC_SYSTEM:
                return normalize_ndc(cd.code)
    return None


def _line(code, units, modifiers, day, ids, name, codings: tuple[Coding, ...], ndc, rule, reason) -> CodedLine:
    return trusted(CodedLine, 
        code=code, system="HCPCS", units=units, modifiers=tuple(modifiers), service_date=day,
        administration_ids=ids, rule=rule, reason=reason, minutes=None, access_site=None,
        drug_name=name, drug_codings=tuple(codings), ndc=ndc, role="drug",
    )
