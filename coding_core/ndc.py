"""National Drug Codes as feeds send them, and the 11-digit form claims use.

An NDC is 10 digits in three segments, labeler-product-package, laid out 4-4-2, 5-3-2 or
5-4-1.  Claims (837I drug lines, Medicaid and 340B) carry it as 11 digits, 5-4-2, made by a
leading zero in the short segment.  Hyphenated, every layout converts to exactly one 11-digit
form; 11 digits (hyphenated 5-4-2 or not) already are that form.  Ten digits without hyphens
fit all three layouts: such an NDC is kept as sent, its three possible 11-digit forms are
what the formulary tries (a drug is identified when exactly one of them is known), and the
line says so (``ndc-not-normalised``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

class NdcUnit(BaseModel):
    """How an NDC is counted on a claim: the unit qualifier and how much of the drug one such
    unit holds, in the formulary entry's billing-unit measure (rituximab 10 mg/mL: ``ML``, 10
    (mg); a 50 mg vial counted in vials: ``UN``, 50).  ``package``: the amount in one package
    when the claim counts whole packages opened (a 1000 mL bag: ``ML``, 1, package 1000)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    qualifier: Literal["UN", "ML", "GR", "F2", "ME"]  # unit, millilitre, gram, international unit, milligram
    amount: Decimal = Field(gt=0)  # of the drug in one such unit, in the entry's billing-unit measure
    package: Decimal | None = Field(default=None, gt=0)  # in one package, when whole packages are counted (bags)


LAYOUTS = ((4, 4, 2), (5, 3, 2), (5, 4, 1))  # the 10-digit layouts; 5-4-2 is the 11-digit form
_WIDTHS = (5, 4, 2)


@dataclass(frozen=True)
class Ndc:
    sent: str
    eleven: str | None  # the 5-4-2 11-digit form; None when ambiguous or not an NDC
    candidates: tuple[str, ...]  # the 11-digit forms it may be: one, three (10 digits unhyphenated) or none

    @property
    def ambiguous(self) -> bool:
        return self.eleven is None and bool(self.candidates)


def parse_ndc(code: str) -> Ndc:
    text = code.strip()
    parts = text.split("-")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        widths = tuple(len(p) for p in parts)
        if widths in LAYOUTS or widths == _WIDTHS:
            eleven = "".join(p.zfill(w) for p, w in zip(parts, _WIDTHS, strict=True))
            return Ndc(code, eleven, (eleven,))
        return Ndc(code, None, ())
    digits = re.sub(r"[\s*]", "", text)
    if digits.isdigit() and len(digits) == 11:
        return Ndc(code, digits, (digits,))
    if digits.isdigit() and len(digits) == 10:
        return Ndc(code, None, ("0" + digits, digits[:5] + "0" + digits[5:], digits[:9] + "0" + digits[9:]))
    return Ndc(code, None, ())


def normalize_ndc(code: str) -> str:
    """The 11-digit form where there is exactly one, else the NDC as sent."""
    return parse_ndc(code).eleven or code.strip()


def ndc_keys(value: dict[str, NdcUnit]) -> dict[str, NdcUnit]:
    """``ndc_units`` keyed by the 11-digit form (sent in any layout that has exactly one)."""
    out = {}
    for key, unit in value.items():
        eleven = parse_ndc(key).eleven
        if eleven is None:
            raise ValueError("ndc_units keys are NDCs with one 11-digit form (00338-0049-04, 00338004904, 0338-0049-04)")
        out[eleven] = unit
    return out


def hyphenated(eleven: str) -> str:
    """00338004904 -> 00338-0049-04."""
    return f"{eleven[:5]}-{eleven[5:9]}-{eleven[9:]}"
