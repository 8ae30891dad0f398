"""Coded lines out as a readable table for coders (``infusion-charges code --explain``)."""

from __future__ import annotations

import textwrap

from coding_core.model import CodedLine, CodingResult, EncounterInfo
from coding_core.profile import Profile
from coding_core.revenue_codes import revenue_code

COLUMNS = ("code", "units", "modifiers", "date", "minutes", "revenue", "review flags", "rule", "reason")
REASON_WIDTH = 100


def _flags(line: CodedLine, result: CodingResult) -> str:
    """The review flags the ChargeItem carries: the warnings about the line's administrations."""
    ids = set(line.administration_ids)
    return ",".join(dict.fromkeys(w.code for w in result.warnings if ids.intersection(w.administration_ids))) or "-"


def explain(result: CodingResult, encounter: EncounterInfo, profile: Profile | None = None) -> str:
    profile = profile or Profile()
    cls = encounter.encounter_class.value if encounter.encounter_class else "class not given"
    head = f"Encounter {result.encounter_id} ({cls}, {result.setting.value} setting, formulary {result.formulary_version})"
    rows = [
        (
            ln.code, str(ln.units), ",".join(ln.modifiers) or "-", ln.service_date.isoformat(),
            "-" if ln.minutes is None else str(ln.minutes), revenue_code(ln.code, profile) or "-", _flags(ln, result),
            ln.rule, ln.reason,
        )
        for ln in result.lines
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

