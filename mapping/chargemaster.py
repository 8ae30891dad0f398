"""The site's chargemaster (CDM): read from CSV, and its prices as FHIR ChargeItemDefinitions.

CSV, one row per charge, header required (column order free, further columns refused)::

    code,modifiers,cdm_code,description,revenue_code,unit_price
    96365,,30010365,IV infusion initial hour,0260,412.00
    J9312,,25019312,rituximab 10 mg,0636,98.40
    J9312,JW,25019313,rituximab 10 mg discarded,0636,98.40

``modifiers`` are separated by spaces; a line takes its code's row whose modifiers are all on
the line, the most of them first (a 340B ``J9312 TB JW`` line takes the ``JW`` row; a row without
modifiers serves the rest).  ``revenue_code`` and ``unit_price`` may be empty; priced rows need
the chargemaster's ``version``.

A line's price is not copied onto each ChargeItem (``priceOverride`` means a price that departs
from the definition): each priced row is a ChargeItemDefinition, published once with
``infusion-charges chargemaster`` (a transaction Bundle of PUTs, safe to post again), and each
line names it in ``definitionCanonical`` as ``<url>|<version>``.  A new CDM version is a new
set of definitions; lines coded before keep naming the version they were priced under.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from coding_core.formulary import HCPCS_SYSTEM
from coding_core.profile import CdmItem, Profile
from mapping.errors import summarize_validation_errors
from mapping.vocabulary import CPT_SYSTEM

COLUMNS = ("code", "modifiers", "cdm_code", "description", "revenue_code", "unit_price")
REQUIRED = ("code", "cdm_code", "description")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ChargemasterError(ValueError):
    """A chargemaster file that cannot be used; the message names the row and column, never a value."""


def read_chargemaster(text: str, name: str) -> tuple[CdmItem, ...]:
    """The rows of a CDM CSV file; ``name`` (the file) is used in error messages."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = [h.strip() for h in reader.fieldnames or ()]
    if not header:
        raise ChargemasterError(f"{name}: empty file: the header row ({','.join(COLUMNS)}) is missing")
    if len(set(header)) != len(header):
        raise ChargemasterError(f"{name}: header: a column is named twice")
    # Positions, not names: a file without its header row would otherwise echo its first row.
    unknown = [str(i) for i, h in enumerate(header, start=1) if h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing:
        raise ChargemasterError(f"{name}: header: " + "; ".join(
            ([f"unknown column(s) at position {', '.join(unknown)}"] if unknown else []) +
            ([f"missing {', '.join(missing)}"] if missing else [])) + f" (columns: {', '.join(COLUMNS)})")
    items = []
    seen: dict[tuple[str, frozenset[str]], int] = {}
    for n, row in enumerate(reader, start=2):
        if None in row:
            raise ChargemasterError(f"{name}: row {n}: more cells than the header has columns")
        cells = {k.strip(): (v or "").strip() for k, v in row.items()}
        if not any(cells.values()):
            continue
        for column, value in cells.items():
            if _CONTROL.search(value):
                raise ChargemasterError(f"{name}: row {n}, column {column}: contains control characters")
        item = _item(cells, f"{name}: row {n}")
        key = (item.code, frozenset(item.modifiers))
        if key in seen:
            raise ChargemasterError(f"{name}: row {n}: a second row for its code with the same modifiers (row {seen[key]})")
        seen[key] = n
        items.append(item)
    if not items:
        raise ChargemasterError(f"{name}: no rows")
    return tuple(items)


def _item(cells: dict[str, str], where: str) -> CdmItem:
    price: Decimal | None = None
    if cells.get("unit_price"):
        try:
            price = Decimal(cells["unit_price"].replace(",", ""))
        except InvalidOperation:
            raise ChargemasterError(f"{where}: unit_price: not a number") from None
    data: dict[str, Any] = {
        "code": cells["code"].upper(), "cdm_code": cells["cdm_code"], "description": cells["description"],
        "modifiers": tuple(m.upper() for m in re.split(r"[\s,;:]+", cells.get("modifiers", "")) if m),
        "revenue_code": cells.get("revenue_code") or None, "unit_price": price,
    }
    try:
        return CdmItem.model_validate(data)
    except ValidationError as e:
        raise ChargemasterError(f"{where}: {summarize_validation_errors(e.errors())}") from None


def definition_base(profile: Profile) -> str | None:
    cdm = profile.chargemaster
    return (cdm.definition_base or profile.fhir_base_url) if cdm is not None else None


def definition_id(item: CdmItem, version: str | None) -> str:
    """The ChargeItemDefinition's id: the CDM code and version (both limited to FHIR id
    characters).  Each CDM version is its own resource, so ``url|version`` keeps resolving to the
    price a line was coded under after the next version is posted."""
    did = f"cdm-{item.cdm_code}" + (f"-{version}" if version else "")
    return did if len(did) <= 64 else f"{did[:47]}-{hashlib.sha256(did.encode()).hexdigest()[:16]}"


def definition_url(base: str, item: CdmItem) -> str:
    """The canonical URL, the same in every CDM version."""
    return f"{base}/ChargeItemDefinition/cdm-{item.cdm_code}"


def definition_canonical(profile: Profile, item: CdmItem) -> str | None:
    """``<base>/ChargeItemDefinition/cdm-<code>|<version>``; None for an unpriced row."""
    base = definition_base(profile)
    if item.unit_price is None or base is None:
        return None
    cdm = profile.chargemaster
    assert cdm is not None
    url = definition_url(base, item)
    return f"{url}|{cdm.version}" if cdm.version else url


def definitions_bundle(profile: Profile) -> dict[str, Any]:
    """Every priced row as a ChargeItemDefinition, in a transaction Bundle of PUTs (validated)."""
    from fhir.resources.R4B.bundle import Bundle

    cdm = profile.chargemaster
    if cdm is None:
        raise ChargemasterError("the profile has no chargemaster")
    base = definition_base(profile)
    entries = []
    for item in _priced(cdm.items):
        assert base is not None  # the profile refuses priced rows without one
        did = definition_id(item, cdm.version)
        resource: dict[str, Any] = {
            "resourceType": "ChargeItemDefinition",
            "id": did,
            "url": definition_url(base, item),
            **({"version": cdm.version} if cdm.version else {}),
            "title": item.description,
            "status": "active",
            "code": {"coding": [{"system": cdm.system, **({"version": cdm.version} if cdm.version else {}), "code": item.cdm_code,
                                 "display": item.description},
                                {"system": CPT_SYSTEM if item.code[0].isdigit() else HCPCS_SYSTEM, "code": item.code}]},
            "propertyGroup": [{"priceComponent": [{"type": "base", "amount": {"value": float(item.unit_price), "currency": cdm.currency}}]}],
        }
        if item.modifiers:
            resource["applicability"] = [{"description": "with modifier(s) " + " ".join(item.modifiers)}]
        entries.append({"fullUrl": f"{base}/ChargeItemDefinition/{did}", "resource": resource,
                        "request": {"method": "PUT", "url": f"ChargeItemDefinition/{did}"}})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    Bundle.model_validate(bundle)
    return bundle


def _priced(items: Sequence[CdmItem]) -> list[CdmItem]:
    return [i for i in items if i.unit_price is not None]
