"""Drug crosswalks (CSV files) read into rows, whatever layout they come in.

Two layouts, each recognised by its header row (``LAYOUTS``; rows above the header are a
preamble and are skipped):

* ``cms-asp``: CMS's quarterly ASP NDC-HCPCS crosswalk as published (section 508 CSV): a
  preamble, then ``_2026_CODE,Short Description,LABELER NAME,NDC2,Drug Name,HCPCS dosage,PKG
  SIZE,PKG QTY,BILLUNITS,BILLUNITSPKG`` with trailing empty columns.  The HCPCS column is named
  after the year (``_2026_CODE``), or ``HCPCS`` / ``HCPCS Code`` in other years' files.
* ``site``: ``code_system,code,hcpcs,name,billing_unit,drug_class,single_dose`` -- a site's own
  coding decisions (NDC or RxNorm code -> HCPCS, and the class of a drug new to the formulary).

Reading checks only that a file is text and has a known header; what the rows say is judged
by ``mapping.formulary_import``.  A file that cannot be read raises ``CrosswalkError``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Tried in order: CMS publishes Windows-1252 (a no-break space in a drug name is byte A0).
ENCODINGS = ("utf-8-sig", "cp1252")


class CrosswalkError(ValueError):
    """A crosswalk file that cannot be read, or is not in a known layout: nothing is imported."""


@dataclass(frozen=True)
class Column:
    key: str  # the name the importer uses
    header: str  # the header cell it is recognised by: a regular expression, case and spacing ignored
    required: bool = True


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    columns: tuple[Column, ...]
    rank: int  # files are applied by rank, then in command-line order: coding decisions first

    def match(self, cells: list[str]) -> dict[str, int] | None:
        """Column key -> index when ``cells`` is this layout's header row, else None."""
        found: dict[str, int] = {}
        for i, cell in enumerate(cells):
            text = " ".join(cell.split()).lower()
            for col in self.columns:
                if col.key not in found and re.fullmatch(col.header, text):
                    found[col.key] = i
                    break
        return found if all(c.key in found for c in self.columns if c.required) else None


CMS_ASP = Layout("cms-asp", "CMS ASP NDC-HCPCS crosswalk", (
    Column("hcpcs", r"_\d{4}_code|hcpcs|hcpcs code|hcpcs level ii code.*"),
    Column("ndc", r"ndc2?"),
    Column("dosage", r"hcpcs (code )?dosage"),
    Column("bill_units", r"billunits"),
    Column("bill_units_pkg", r"billunitspkg"),
    Column("description", r"short description.*", required=False),
    Column("labeler", r"labeler name", required=False),
    Column("drug_name", r"drug name", required=False),
    Column("pkg_size", r"pkg size", required=False),
    Column("pkg_qty", r"pkg qty", required=False),
), rank=1)

SITE = Layout("site", "site crosswalk", (
    Column("code_system", r"code_system"),
    Column("code", r"code"),
    Column("hcpcs", r"hcpcs"),
    Column("name", r"name", required=False),
    Column("billing_unit", r"billing_unit", required=False),
    Column("drug_class", r"drug_class", required=False),
    Column("single_dose", r"single_dose", required=False),
), rank=0)

# The one place a crosswalk layout is registered.
LAYOUTS = (SITE, CMS_ASP)


@dataclass(frozen=True)
class Row:
    """One data row: its values by column key (stripped; "" when absent), and where it is."""

    file: str
    line: int  # the line the row starts on (a quoted value may span lines)
    values: dict[str, str]
    headers: dict[str, str]  # column key -> the header cell as written in the file

    def get(self, key: str) -> str:
        return self.values.get(key, "")

    def where(self, key: str) -> str:
        return f"{self.file}, line {self.line}, column {self.headers.get(key, key)}"


@dataclass(frozen=True)
class Crosswalk:
    path: str
    sha256: str
    layout: Layout
    rows: tuple[Row, ...]
    data: bytes

    @property
    def name(self) -> str:
        return Path(self.path).name


def _decode(data: bytes, path: str) -> str:
    for encoding in ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CrosswalkError(f"{path}: not UTF-8 or Windows-1252 text")


def _records(text: str, path: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of every CSV record."""
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    try:
        for cells in reader:
            yield line, cells
            line = reader.line_num + 1
    except csv.Error as e:
        raise CrosswalkError(f"{path}, line {reader.line_num}: not CSV: {e}") from None


def parse_crosswalk(data: bytes, path: str) -> Crosswalk:
    records = _records(_decode(data, path), path)
    for _, cells in records:
        for layout in LAYOUTS:
            index = layout.match(cells)
            if index is not None:
                headers = {k: cells[i].strip() for k, i in index.items()}
                rows = tuple(
                    Row(path, line, {k: cells[i].strip() if i < len(cells) else "" for k, i in index.items()}, headers)
                    for line, cells in records if any(c.strip() for c in cells))
                return Crosswalk(path, hashlib.sha256(data).hexdigest(), layout, rows, data)
    known = "; ".join(f"{layout.title}: {', '.join(c.key for c in layout.columns if c.required)}" for layout in LAYOUTS)
    raise CrosswalkError(f"{path}: no header row of a known crosswalk layout ({known})")


def read_crosswalk(path: str) -> Crosswalk:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CrosswalkError(f"{path}: no such file") from None
    except OSError as e:
        raise CrosswalkError(f"{path}: cannot read: {e.strerror}") from None
    return parse_crosswalk(data, path)
