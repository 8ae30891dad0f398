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


def hyphenated(eleven: str) -> str:
    """00338004904 -> 00338-0049-04."""
    return f"{eleven[:5]}-{eleven[5:9]}-{eleven[9:]}"
