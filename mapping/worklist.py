"""The drugs a formulary misses in a feed: what a pharmacist adds to the site crosswalk.

Each distinct drug of the administrations read (the same codes, or without codes the same
name) is counted once per administration, in two lists: drugs the formulary does not identify
at all, and drugs it identifies only by their name reduced to the ingredient (coded, but
flagged ``matched-by-name`` and worth a code).  One line per drug, most administrations first:
``<count>\\t<system>|<code>[,<system>|<code>...]\\t<display or text>`` (the reduced-name list
adds a fourth column: the entry it was taken for).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from coding_core.formulary import BY_REDUCED_NAME, Formulary, FormularyEntry, normalize_name
from coding_core.model import AdministrationEvent

NO_CODE = "-"


@dataclass
class Drug:
    codes: str  # "system|code,system|code", or NO_CODE
    label: str  # the text or first display as sent
    count: int = 0
    entry: FormularyEntry | None = None  # the entry a reduced name was taken for

    def line(self) -> str:
        taken_for = f"\t{self.entry.hcpcs} {self.entry.name}" if self.entry is not None else ""
        return f"{self.count}\t{self.codes}\t{self.label}{taken_for}"


@dataclass
class Worklist:
    unknown: list[Drug]
    by_reduced_name: list[Drug]
    administrations: int

    def lines(self) -> list[str]:
        out: list[str] = []
        for title, drugs in (("not in the formulary", self.unknown),
                             ("identified only by a reduced name (give them a code)", self.by_reduced_name)):
            out.append(f"# {title}: {_n(len(drugs), 'drug')}, {_n(sum(d.count for d in drugs), 'administration')}")
            out += [d.line() for d in drugs]
        return out

    def summary(self, version: str) -> str:
        return (f"{_n(self.administrations, 'administration')} read: {_n(len(self.unknown), 'drug')} not in formulary "
                f"{version}, {len(self.by_reduced_name)} identified only by a reduced name")


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _label(event: AdministrationEvent) -> str:
    return event.drug_text or next((c.display for c in event.drug_codings if c.display), "")


def _key(event: AdministrationEvent, entry: FormularyEntry | None) -> tuple[str, str, str]:
    """The same codes are the same drug; without codes, the same name (and, by a reduced name, the same entry)."""
    codes = ",".join(f"{c.system}|{c.code}" for c in sorted(event.drug_codings, key=lambda c: (c.system, c.code)))
    hcpcs = entry.hcpcs if entry is not None else ""
    return (codes, "", hcpcs) if codes else (NO_CODE, normalize_name(_label(event)), hcpcs)


def _ranked(drugs: dict[tuple[str, str, str], Drug]) -> list[Drug]:
    return sorted(drugs.values(), key=lambda d: (-d.count, d.codes, d.label))


def worklist(events: Iterable[AdministrationEvent], formulary: Formulary) -> Worklist:
    unknown: dict[tuple[str, str, str], Drug] = {}
    reduced: dict[tuple[str, str, str], Drug] = {}
    n = 0
    for event in events:
        n += 1
        found = formulary.identify(event.drug_codings, event.drug_text)
        if found.entry is None:
            table = unknown
        elif found.by == BY_REDUCED_NAME:
            table = reduced
        else:
            continue
        key = _key(event, found.entry)
        drug = table.setdefault(key, Drug(key[0], _label(event), entry=found.entry))
        drug.count += 1
    return Worklist(_ranked(unknown), _ranked(reduced), n)
