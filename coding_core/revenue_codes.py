"""UB-04 revenue codes per charge line: common OPPS practice, overridable per code or range.

A hospital claim (837I / UB-04) puts each line under a revenue code, the department or kind of
service (NUBC revenue codes).  The defaults below are what hospital billing commonly does for
this product's lines; a site's chargemaster may differ, so the profile's ``revenue_codes`` (by
code or range, e.g. ``{"96360-96379": "0260", "J7030": "0258"}``) win, the narrowest range
first.

| lines | revenue code | NUBC description |
|---|---|---|
| 96360-96379 hydration, therapeutic/prophylactic/diagnostic infusions and injections | 0260 | IV therapy, general |
| 96401-96406 chemotherapy by injection (SC/IM, intralesional) | 0331 | chemotherapy administration, injected |
| 96409-96549 other chemotherapy administration (IV push and infusion, intra-arterial, pump, ...) | 0335 | chemotherapy administration, IV |
| 96521-96523 pump refill and port irrigation | 0260 | IV therapy, general |
| J7030-J7131 IV solutions (saline, lactated Ringer's, dextrose) | 0258 | IV solutions |
| P9010-P9099 blood products | 0390 | blood storage and processing |
| other HCPCS drug lines (J, Q, C codes) | 0636 | drugs requiring detailed coding |
"""

from __future__ import annotations

from coding_core.profile import Profile

# (first, last, revenue code): narrower rows before the ranges they sit in.
DEFAULTS: tuple[tuple[str, str, str], ...] = (
    ("96521", "96523", "0260"),
    ("96360", "96379", "0260"),
    ("96401", "96406", "0331"),
    ("96409", "96549", "0335"),
    ("J7030", "J7131", "0258"),
    ("P9010", "P9099", "0390"),
    ("A0000", "Z9999", "0636"),  # any other HCPCS Level II code
)


def _span(key: str) -> tuple[str, str]:
    first, _, last = key.partition("-")
    return first, last or first


def _within(code: str, first: str, last: str) -> bool:
    return len(code) == len(first) == len(last) and first <= code <= last


def revenue_code(code: str, profile: Profile) -> str | None:
    """The line's revenue code; None for a code no row covers (an unlisted CPT code outside
    these ranges is left to the billing system).  Answers are remembered per set of overrides
    (a profile's are fixed: it is frozen)."""
    overrides = profile.revenue_codes
    key = tuple(overrides.items())
    known = _ANSWERS.get(key)
    if known is None:
        if len(_ANSWERS) >= 64:
            _ANSWERS.clear()
        known = _ANSWERS[key] = {}
    if code in known:
        return known[code]
    rows = _narrowest_first([(*_span(k), v) for k, v in overrides.items()])
    upper = code.upper()
    answer = next((revenue for first, last, revenue in (*rows, *DEFAULTS) if _within(upper, first, last)), None)
    if len(known) < 10_000:
        known[code] = answer
    return answer


_ANSWERS: dict[tuple[tuple[str, str], ...], dict[str, str | None]] = {}  # overrides -> code -> revenue code


def _narrowest_first(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Single codes, then ranges from the narrowest (same-length codes compare as strings)."""
    def width(row: tuple[str, str, str]) -> tuple[int, str]:
        first, last, _ = row
        if first == last:
            return (0, first)
        digits = "".join(ch for ch in first if ch.isdigit()), "".join(ch for ch in last if ch.isdigit())
        return (1 + int(digits[1] or 0) - int(digits[0] or 0), first)
    return sorted(rows, key=width)
