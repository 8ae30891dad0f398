"""Vocabulary shared by the FHIR and HL7 v2 mappers: one table per concept.

Keys are lower-case codes (SNOMED CT, HL7 v2 tables 0162/0165, FHIR) or words as they appear
in feeds.  An interface team adding a local code adds it here, and both feeds learn it.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from coding_core.formulary import NDC_SYSTEM
from coding_core.model import Coding, Method, Quantity, Route

# Codes (any system) and words -> normalised values.  Lower-case keys.
ROUTE_CODES: dict[str, Route] = {
    "47625008": Route.IV, "iv": Route.IV, "intravenous": Route.IV, "intravenous route": Route.IV,
    "34206005": Route.SC, "sc": Route.SC, "sq": Route.SC, "subcut": Route.SC, "subcutaneous": Route.SC,
    "subcutaneous route": Route.SC,
    "78421000": Route.IM, "im": Route.IM, "intramuscular": Route.IM, "intramuscular route": Route.IM,
    "58100008": Route.INTRA_ARTERIAL, "ia": Route.INTRA_ARTERIAL, "intra-arterial": Route.INTRA_ARTERIAL,
    "intraarterial": Route.INTRA_ARTERIAL, "intra-arterial route": Route.INTRA_ARTERIAL,
    "37161004": Route.OTHER, "26643006": Route.OTHER, "po": Route.OTHER, "oral": Route.OTHER, "oral route": Route.OTHER,
    "it": Route.OTHER, "intrathecal": Route.OTHER, "72607000": Route.OTHER, "intravesical": Route.OTHER,
    "ip": Route.OTHER, "intraperitoneal": Route.OTHER, "38239002": Route.OTHER,
    "id": Route.OTHER, "intradermal": Route.OTHER, "372464004": Route.OTHER,
}
METHOD_CODES: dict[str, Method] = {
    "ivp": Method.PUSH, "push": Method.PUSH, "iv push": Method.PUSH, "bolus": Method.PUSH, "422145002": Method.PUSH,
    "ivpb": Method.INFUSION, "piggyback": Method.INFUSION, "infuse": Method.INFUSION, "infusion": Method.INFUSION,
    "drip": Method.INFUSION, "pf": Method.INFUSION, "perfuse": Method.INFUSION, "14542004": Method.INFUSION,
    "inject": Method.INJECTION, "injection": Method.INJECTION, "129326001": Method.INJECTION,
    "flush": Method.FLUSH, "line flush": Method.FLUSH, "ir": Method.FLUSH, "irrigate": Method.FLUSH,
    "pump refill": Method.PUMP_REFILL, "refill": Method.PUMP_REFILL,
}
# Words in a device display or site text that name the kind of vascular access.
ACCESS_TYPE_WORDS: tuple[tuple[str, str], ...] = (
    ("picc", "picc"), ("port", "port"), ("mediport", "port"), ("port-a-cath", "port"),
    ("central", "central"), ("cvc", "central"), ("hickman", "central"),
    ("peripheral", "peripheral"), ("piv", "peripheral"),
)
KVO_WORDS = re.compile(r"\b(kvo|tko|keep[ -]vein[ -]open|to keep open)\b", re.IGNORECASE)

# Rate and volume units -> factor to mL/h and mL.
VOLUME_UNITS: dict[str, Decimal] = {"ml": Decimal(1), "cc": Decimal(1), "l": Decimal(1000)}
TIME_UNITS_PER_HOUR: dict[str, Decimal] = {"h": Decimal(1), "hr": Decimal(1), "hour": Decimal(1), "min": Decimal(60)}

def volume_ml(q: Quantity | None) -> Decimal | None:
    if q is None:
        return None
    factor = VOLUME_UNITS.get(q.unit.strip().lower())
    return q.value * factor if factor is not None else None


def access_type(explicit: str | None, *texts: str | None) -> str | None:
    if explicit:
        return explicit.lower()
    for text in texts:
        if not text:
            continue
        words = re.findall(r"[a-z][a-z-]*", text.lower())
        for word, kind in ACCESS_TYPE_WORDS:
            if word in words:
                return kind
    return None


def end_of_single_time(start: datetime | None, method: Method, route: Route) -> datetime | None:
    """A single documented time is a complete record of a push or an SC/IM injection; for
    anything else it is a start without a stop (the coding core then warns)."""
    if method is Method.PUSH or route in (Route.SC, Route.IM):
        return start
    return None


def says_kvo(*texts: str | None) -> bool:
    """Does any free text document a keep-vein-open / to-keep-open rate?"""
    return any(KVO_WORDS.search(t) for t in texts if t)


def ndc_of(codings: tuple[Coding, ...]) -> str | None:
    return next((c.code for c in codings if c.system == NDC_SYSTEM), None)
