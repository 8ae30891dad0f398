"""Coded lines out as a readable table for coders (``infusion-charges code --explain``)."""

from __future__ import annotations

import textwrap

from collections.abc import Iterable

from coding_core.model import AdministrationEvent, CodingResult, EncounterInfo
from coding_core.profile import Profile
from mapping.chargeitem_out import billing_of

COLUMNS = ("code", "units", "modifiers", "date", "minutes", "revenue", "cdm", "review flags", "rule", "reason")
REASON_WIDTH = 100


def explain(result: CodingResult, encounter: EncounterInfo, profile: Profile | None = None,
            events: Iterable[AdministrationEvent] = ()) -> str:
    """The lines as a table; revenue code, chargemaster code and review flags as the ChargeItems carry them."""
    profile = profile or Profile()
    bills = billing_of(result, encounter, profile, events)
    cls = encounter.encounter_class.value if encounter.encounter_class else "class not given"
    head = f"Encounter {result.encounter_id} ({cls}, {result.setting.value} setting, formulary {result.formulary_version})"
    rows = [
        (
            ln.code, str(ln.units), ",".join(ln.modifiers) or "-", ln.service_date.isoformat(),
            "-" if ln.minutes is None else str(ln.minutes), bill.revenue or "-", bill.row.cdm_code if bill.row else "-",
            ",".join(bill.flags) or "-", ln.rule, ln.reason,
        )
        for ln, bill in zip(result.lines, bills, strict=True)
    ]
    out = [head, "=" * len(head)]
    if rows:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(COLUMNS[:-1])]
        indent = sum(widths) + 2 * len(widths)

        def fmt(cells: tuple[str, ...]) -> list[str]:
            fixed = "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths, strict=True))
            reason = textwrap.wrap(cells[-1], REASON_WIDTH) or [""]
            return [f"{fixed}  {reason[0]}".rstrip()] + [" " * indent + r for r in reason[1:]]

        out += fmt(COLUMNS)
        out.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
        for r in rows:
            out += fmt(r)
    else:
        out.append("no charge lines")
    if result.warnings:
        out.append("warnings:")
        out += [f"  ! {w.code}: {w.message}" for w in result.warnings]
    if result.exclusions:
        out.append("not charged:")
        out += [f"  - {x.administration_id}: {x.reason}" for x in result.exclusions]
    return "\n".join(out) + "\n"

