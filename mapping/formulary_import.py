"""Crosswalk rows merged into a formulary, and the versioned formulary file written.

What a row may do (each rule one function below):

* a site row (``code_system,code,hcpcs,...``) adds an NDC or RxNorm code to the entry with that
  HCPCS -- the class, billing unit and single-dose flag it gives must agree with the entry --
  or, for a HCPCS the formulary does not have, creates the entry (name, billing unit and class
  required: the class is a coding decision only a site can make);
* a CMS row adds its NDC to the entry with its HCPCS, when its dosage is that entry's billing
  unit.  A row for a HCPCS the formulary does not have is skipped (reported once per HCPCS).

One NDC crosswalked to several HCPCS (CMS gives every saline bag J7030, J7040 and J7050) stays
on one entry -- a code names one drug -- chosen by ``container_rank``: the HCPCS whose billing
unit is one container of the NDC (BILLUNITS, units per container, closest to 1 and not below
it; if every one is below 1, the largest), ties broken by BILLUNITSPKG the same way, then by
code.  BILLUNITSPKG alone cannot decide: it counts a carton of 24 bags, and CMS rounds it up to
1 for every single 250 mL bag.  The other rows are reported, not applied.

A row is applied whole or not at all.  Site files are applied before CMS files (a site's
decisions first), each kind in command-line order; a code one entry already claims cannot be
given to another.  NDCs are stored in the 11-digit 5-4-2 hyphenated form.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from coding_core.formulary import Formulary, FormularyEntry, normalize_name
from coding_core.model import DrugClass
from coding_core.ndc import hyphenated, parse_ndc
from mapping.crosswalk import CMS_ASP, SITE, Crosswalk, Row
from mapping.reference_data import BUNDLED_FORMULARY, ReferenceDataError, formulary_from_text

APPLIED, ROW_ERROR, NOT_IN_FORMULARY, LEFT = "applied", "error", "not-in-formulary", "left"
SKIPPED = (ROW_ERROR, NOT_IN_FORMULARY)  # rows not applied because of what they say
NOT_IN_FORMULARY_TEXT = "HCPCS not in the formulary: give it a class with a site row"

# Billing-unit words as crosswalks write them -> the formulary's unit.
UNITS = {
    "mg": "mg", "mcg": "mcg", "ug": "mcg", "g": "g", "gm": "g", "gram": "g", "ml": "mL", "cc": "mL", "meq": "mEq",
    "unit": "units", "units": "units", "iu": "units", "usp unit": "units", "usp units": "units", "each": "each", "ea": "each",
}
_AMOUNT = re.compile(r"(?:up to )?(\d[\d,]*(?:\.\d+)?|\.\d+) ?(.+)")
FLAGS = {"true": True, "yes": True, "y": True, "1": True, "false": False, "no": False, "n": False, "0": False}
_HCPCS = re.compile(r"[A-Z]\d{4}|\d{4}[0-9A-Z]")
_RXCUI = re.compile(r"\d{1,10}")


class Invalid(ValueError):
    """A value that does not read as its column's kind of value."""


class RowError(Exception):
    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column, self.message = column, message


@dataclass(frozen=True)
class Outcome:
    row: Row
    kind: str  # APPLIED, ROW_ERROR, NOT_IN_FORMULARY, LEFT
    column: str = ""
    message: str = ""
    hcpcs: str = ""
    ndc: str = ""  # LEFT: the NDC, and the HCPCS row it was kept on
    kept: str = ""


# --- values -------------------------------------------------------------------------------

def read_unit(text: str) -> tuple[Decimal, str]:
    """"10 MG" -> (10, "mg"); "UP TO 1000 CC" -> (1000, "mL")."""
    m = _AMOUNT.fullmatch(" ".join(text.split()).lower())
    if m is None or m.group(2) not in UNITS:
        raise Invalid(f"'{text}' is not an amount and unit such as '10 mg' or '1000 mL'")
    return Decimal(m.group(1).replace(",", "")), UNITS[m.group(2)]


def entry_unit(e: FormularyEntry) -> tuple[Decimal, str]:
    return e.billing_unit_value, UNITS.get(e.billing_unit.lower(), e.billing_unit)


def show_unit(unit: tuple[Decimal, str]) -> str:
    return f"{unit[0]} {unit[1]}"


def read_class(text: str) -> DrugClass:
    try:
        return DrugClass(text.strip().lower())
    except ValueError:
        raise Invalid(f"'{text}' is not a drug class ({', '.join(c.value for c in DrugClass)})") from None


def read_flag(text: str) -> bool:
    if text.lower() not in FLAGS:
        raise Invalid(f"'{text}' is not true or false")
    return FLAGS[text.lower()]


def read_ndc(text: str) -> str:
    ndc = parse_ndc(text)
    if ndc.ambiguous:
        raise Invalid(f"NDC '{text}' is 10 digits without hyphens, which fits three layouts: write it hyphenated "
                      "(4-4-2, 5-3-2 or 5-4-1) or in 11 digits")
    if ndc.eleven is None:
        raise Invalid(f"'{text}' is not an NDC (10 digits hyphenated 4-4-2, 5-3-2 or 5-4-1, or 11 digits)")
    return hyphenated(ndc.eleven)


def read_rxcui(text: str) -> str:
    if not _RXCUI.fullmatch(text):
        raise Invalid(f"'{text}' is not an RxNorm code (digits)")
    return text


def read_hcpcs(text: str) -> str:
    if not _HCPCS.fullmatch(text.upper()):
        raise Invalid(f"'{text}' is not a HCPCS code")
    return text.upper()


def read_amount(text: str) -> Decimal:
    try:
        amount = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise Invalid(f"'{text}' is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise Invalid(f"'{text}' is not a positive number")
    return amount


def value(row: Row, column: str, read: Callable[[str], Any]) -> Any:
    text = row.get(column)
    if not text:
        raise RowError(column, "is empty")
    try:
        return read(text)
    except Invalid as e:
        raise RowError(column, str(e)) from None


@dataclass(frozen=True)
class CodeSystem:
    field: str  # the FormularyEntry field holding such codes
    kind: str  # what a claim on it is called
    read: Callable[[str], str]


# A site row's code_system -> where its code goes.
CODE_SYSTEMS = {
    "NDC": CodeSystem("ndc", "NDC", read_ndc),
    "RXNORM": CodeSystem("rxnorm", "RxNorm code", read_rxcui),
}
NDC = CODE_SYSTEMS["NDC"]


@dataclass(frozen=True)
class Attribute:
    """A site-row column that must agree with the entry the row adds a code to."""

    column: str
    read: Callable[[str], Any]
    of: Callable[[FormularyEntry], Any]
    show: Callable[[Any], str]


ATTRIBUTES = (
    Attribute("drug_class", read_class, lambda e: e.drug_class, lambda v: str(v.value)),
    Attribute("billing_unit", read_unit, entry_unit, show_unit),
    Attribute("single_dose", read_flag, lambda e: e.single_dose, lambda v: str(v).lower()),
)
NEW_ENTRY_NEEDS = ("name", "billing_unit", "drug_class")


# --- the formulary being built ----------------------------------------------------------------

def _claim_keys(e: FormularyEntry) -> list[tuple[str, str]]:
    """The codes and names an entry claims (its NDCs already in the one form ``_normalised`` gives)."""
    return [*((NDC.kind, c) for c in e.ndc), *((CODE_SYSTEMS["RXNORM"].kind, c) for c in e.rxnorm),
            *(("name", normalize_name(n)) for n in (e.name, *e.synonyms))]


def _normalised(e: FormularyEntry) -> FormularyEntry:
    """NDCs in the 11-digit hyphenated form, code lists sorted (a loaded formulary's NDCs all have one)."""
    ndc = sorted({hyphenated(parse_ndc(c).eleven or c) for c in e.ndc})
    return e.model_copy(update={"ndc": tuple(ndc), "rxnorm": tuple(sorted(set(e.rxnorm))),
                                "local_codes": tuple(sorted(set(e.local_codes)))})


class Draft:
    """The formulary being built: entries by HCPCS and the entry each code and name belongs to."""

    def __init__(self, entries: Iterable[FormularyEntry]):
        self.entries: dict[str, FormularyEntry] = {}
        self.claims: dict[tuple[str, str], str] = {}
        self.added: Counter[str] = Counter()
        for e in entries:
            self._put(_normalised(e))

    def _put(self, e: FormularyEntry) -> None:
        self.entries[e.hcpcs.upper()] = e
        for key in _claim_keys(e):
            self.claims.setdefault(key, e.hcpcs)

    def get(self, hcpcs: str) -> FormularyEntry | None:
        return self.entries.get(hcpcs.upper())

    def check_free(self, kind: str, key: str, hcpcs: str, column: str) -> None:
        owner = self.claims.get((kind, key))
        if owner is not None and owner != hcpcs:
            raise RowError(column, f"{kind} '{key}' is already claimed by {owner} ({self.entries[owner.upper()].name})")

    def add_code(self, hcpcs: str, system: CodeSystem, code: str) -> None:
        e = self.entries[hcpcs.upper()]
        codes = getattr(e, system.field)
        if code not in codes:
            self._put(e.model_copy(update={system.field: tuple(sorted((*codes, code)))}))
            self.added[system.field] += 1

    def create(self, e: FormularyEntry) -> None:
        self._put(e)
        self.added["drugs"] += 1

    def result(self) -> list[FormularyEntry]:
        return [self.entries[k] for k in sorted(self.entries)]


# --- site rows ------------------------------------------------------------------------------------

def _new_entry(draft: Draft, hcpcs: str, row: Row, said: dict[str, Any]) -> FormularyEntry:
    for column in NEW_ENTRY_NEEDS:
        if not row.get(column):
            raise RowError(column, f"is empty, and {hcpcs} is not in the formulary: a new drug needs "
                                   f"{', '.join(NEW_ENTRY_NEEDS)}")
    draft.check_free("name", normalize_name(row.get("name")), hcpcs, "name")
    unit_value, unit = said["billing_unit"]
    return FormularyEntry(hcpcs=hcpcs, name=row.get("name"), drug_class=said["drug_class"], billing_unit_value=unit_value,
                          billing_unit=unit, single_dose=said.get("single_dose", False))


def _check_agrees(entry: FormularyEntry, said: dict[str, Any]) -> None:
    for a in ATTRIBUTES:
        if a.column in said and said[a.column] != a.of(entry):
            raise RowError(a.column, f"says {a.show(said[a.column])}, but {entry.hcpcs} ({entry.name}) has "
                                     f"{a.show(a.of(entry))}")


def apply_site_row(draft: Draft, row: Row) -> Outcome:
    try:
        hcpcs = value(row, "hcpcs", read_hcpcs)
        system = CODE_SYSTEMS.get(value(row, "code_system", str).upper())
        if system is None:
            raise RowError("code_system", f"'{row.get('code_system')}' is not one of {', '.join(CODE_SYSTEMS)}")
        code = value(row, "code", system.read)
        said = {a.column: value(row, a.column, a.read) for a in ATTRIBUTES if row.get(a.column)}
        entry = draft.get(hcpcs)
        new = entry is None
        if entry is None:
            entry = _new_entry(draft, hcpcs, row, said)
        else:
            _check_agrees(entry, said)
        draft.check_free(system.kind, code, entry.hcpcs, "code")
    except RowError as e:
        return Outcome(row, ROW_ERROR, e.column, e.message)
    if new:
        draft.create(entry)
    draft.add_code(entry.hcpcs, system, code)
    return Outcome(row, APPLIED, hcpcs=entry.hcpcs)


# --- CMS rows ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CmsRow:
    row: Row
    hcpcs: str
    ndc: str  # 11 digits, hyphenated 5-4-2
    bill_units: Decimal  # HCPCS billing units in one container (a bag, a vial)
    bill_units_pkg: Decimal  # ... in the whole NDC package (a carton of containers)


def _cms_row(row: Row) -> CmsRow:
    return CmsRow(row, value(row, "hcpcs", str.upper), value(row, "ndc", read_ndc),
                  value(row, "bill_units", read_amount), value(row, "bill_units_pkg", read_amount))


def container_rank(r: CmsRow) -> tuple[Any, ...]:
    """Sort key: the first of an NDC's rows is the HCPCS it is kept on (see the module docstring)."""
    return (r.bill_units < 1, abs(r.bill_units - 1), r.bill_units_pkg < 1, abs(r.bill_units_pkg - 1), r.hcpcs)


def _apply_cms_row(draft: Draft, r: CmsRow) -> Outcome:
    entry = draft.get(r.hcpcs)
    if entry is None:
        return Outcome(r.row, NOT_IN_FORMULARY, "hcpcs", NOT_IN_FORMULARY_TEXT, r.hcpcs)
    try:
        dosage = value(r.row, "dosage", read_unit)
        if dosage != entry_unit(entry):
            raise RowError("dosage", f"says {show_unit(dosage)}, but {entry.hcpcs} ({entry.name}) is billed per "
                                     f"{show_unit(entry_unit(entry))}")
        draft.check_free(NDC.kind, r.ndc, entry.hcpcs, "ndc")
    except RowError as e:
        return Outcome(r.row, ROW_ERROR, e.column, e.message, r.hcpcs)
    draft.add_code(entry.hcpcs, NDC, r.ndc)
    return Outcome(r.row, APPLIED, hcpcs=entry.hcpcs)


def _left(r: CmsRow, kept: CmsRow) -> Outcome:
    def said(c: CmsRow) -> str:
        return f"{c.hcpcs} (line {c.row.line}, BILLUNITS {c.bill_units})"
    return Outcome(r.row, LEFT, "ndc", said(r), r.hcpcs, r.ndc, said(kept))


def apply_cms_rows(draft: Draft, rows: Sequence[Row]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    groups: dict[str, list[CmsRow]] = {}
    for row in rows:
        try:
            r = _cms_row(row)
        except RowError as e:
            hcpcs = row.get("hcpcs").upper()
            if hcpcs and draft.get(hcpcs) is None:  # a row for a drug the formulary does not have: its values do not matter
                outcomes.append(Outcome(row, NOT_IN_FORMULARY, "hcpcs", NOT_IN_FORMULARY_TEXT, hcpcs))
            else:
                outcomes.append(Outcome(row, ROW_ERROR, e.column, e.message, hcpcs))
            continue
        groups.setdefault(r.ndc, []).append(r)
    for group in groups.values():
        kept = min(group, key=container_rank)
        outcomes += [_apply_cms_row(draft, r) if r.hcpcs == kept.hcpcs else _left(r, kept) for r in group]
    return sorted(outcomes, key=lambda o: o.row.line)


# --- the import as a whole ---------------------------------------------------------------------------

def _apply_site_rows(draft: Draft, rows: Sequence[Row]) -> list[Outcome]:
    return [apply_site_row(draft, row) for row in rows]


# Layout -> how its rows are applied.
APPLY: dict[str, Callable[[Draft, Sequence[Row]], list[Outcome]]] = {
    SITE.name: _apply_site_rows,
    CMS_ASP.name: apply_cms_rows,
}


@dataclass
class Imported:
    entries: list[FormularyEntry]
    outcomes: list[Outcome]
    added: Counter[str] = field(default_factory=Counter)

    def count(self, *kinds: str) -> int:
        return sum(1 for o in self.outcomes if o.kind in kinds)


def import_crosswalks(base: Formulary, crosswalks: Sequence[Crosswalk]) -> Imported:
    draft = Draft(base.entries)
    outcomes: list[Outcome] = []
    for xw in sorted(crosswalks, key=lambda c: c.layout.rank):
        outcomes += APPLY[xw.layout.name](draft, xw.rows)
    return Imported(draft.result(), outcomes, draft.added)


# --- the formulary file -------------------------------------------------------------------------------

ALWAYS_WRITTEN = ("single_dose",)  # written even at their default, as the bundled file does


def entry_json(e: FormularyEntry) -> dict[str, Any]:
    full = e.model_dump(mode="json")
    trimmed = e.model_dump(mode="json", exclude_defaults=True)
    out = {k: full[k] for k in FormularyEntry.model_fields if k in trimmed or k in ALWAYS_WRITTEN}
    if "routes" in out:
        out["routes"] = {route: e.routes[route].model_dump(mode="json", exclude_defaults=True) for route in sorted(e.routes)}
    return out


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Base:
    formulary: Formulary
    name: str
    sha256: str
    source: Any  # the base file's own "source"


def read_base(path: str | None) -> Base:
    """The formulary imported onto: the bundled one, or the file at ``path``."""
    if path is None:
        data, name = (resources.files("coding_core") / "data" / "formulary.json").read_bytes(), BUNDLED_FORMULARY
    else:
        name = path
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ReferenceDataError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ReferenceDataError(f"{name}: not UTF-8 text") from None
    formulary = formulary_from_text(text, name)
    return Base(formulary, name if path is None else Path(path).name, hashlib.sha256(data).hexdigest(),
                json.loads(text).get("source"))


def default_version(base: Base, crosswalks: Sequence[Crosswalk]) -> str:
    digest = hashlib.sha256(b"".join(c.data for c in crosswalks)).hexdigest()
    return f"{base.formulary.version}+{digest[:8]}"


def formulary_text(base: Base, crosswalks: Sequence[Crosswalk], imported: Imported, version: str | None) -> str:
    """The formulary file.  When the crosswalks change nothing and no version is asked for, it is
    the base as it was (same version and source): importing a file again changes nothing."""
    drugs = [entry_json(e) for e in imported.entries]
    unchanged = drugs == [entry_json(e) for e in Draft(base.formulary.entries).result()]
    if unchanged and version is None:
        return dumps({"version": base.formulary.version, "source": base.source, "drugs": drugs})
    source = {
        "base": {"file": base.name, "version": base.formulary.version, "sha256": base.sha256},
        "crosswalks": [{"file": c.name, "layout": c.layout.name, "sha256": c.sha256} for c in crosswalks],
    }
    return dumps({"version": version or default_version(base, crosswalks), "source": source, "drugs": drugs})


def write_formulary(text: str, path: str) -> Formulary:
    """Check ``text`` as ``--formulary`` would load it, then replace ``path`` with it in one step."""
    formulary = formulary_from_text(text, path)
    target = Path(path)
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return formulary


# --- the report ---------------------------------------------------------------------------------------

def report_lines(imported: Imported) -> list[str]:
    """One line per row error and per row left to another HCPCS; one per HCPCS not in the
    formulary (a full CMS file has thousands of such rows), at its first row."""
    groups: dict[tuple[str, str, str], list[Outcome]] = {}
    for o in imported.outcomes:
        if o.kind in (NOT_IN_FORMULARY, LEFT):
            groups.setdefault((o.kind, o.row.file, o.hcpcs if o.kind == NOT_IN_FORMULARY else o.ndc), []).append(o)
    lines: list[str] = []
    for o in imported.outcomes:
        if o.kind == ROW_ERROR:
            lines.append(f"error: {o.row.where(o.column)}: {o.message}")
            continue
        rows = groups.get((o.kind, o.row.file, o.hcpcs if o.kind == NOT_IN_FORMULARY else o.ndc), [])
        if not rows or rows[0] is not o:
            continue
        if o.kind == LEFT:
            lines.append(f"note: {o.row.where('ndc')}: NDC {o.ndc} is crosswalked to several HCPCS codes: kept on {o.kept}, "
                         f"whose billing unit fits one container best; not added to {', '.join(r.message for r in rows)}")
        else:
            more = f" ({_n(len(rows) - 1, 'more row')}, to line {rows[-1].row.line})" if len(rows) > 1 else ""
            lines.append(f"skipped: {o.row.where('hcpcs')}: {o.hcpcs}: {NOT_IN_FORMULARY_TEXT}{more}")
    return lines


def summary(imported: Imported) -> str:
    errors, missing = imported.count(ROW_ERROR), imported.count(NOT_IN_FORMULARY)
    added = imported.added
    return (f"formulary import: {_n(len(imported.outcomes), 'row')} read, {imported.count(APPLIED)} applied, "
            f"{errors + missing} skipped ({_n(errors, 'row error')}, {missing} for HCPCS not in the formulary), "
            f"{imported.count(LEFT)} left to another HCPCS of the same NDC; {_n(added['ndc'], 'NDC')}, "
            f"{_n(added['rxnorm'], 'RxNorm code')} and {_n(added['drugs'], 'drug')} added")


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
