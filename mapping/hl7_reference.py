"""The reference HL7 v2 reader: hl7apy parses the message; values are read from its tree.

Far slower than :mod:`mapping.hl7_er7` (a RAS message takes milliseconds), so it is not on
the hot path: it is the oracle of the differential test (``tests/test_hl7_differential.py``)
and the baseline of ``benchmarks/bench_hl7.py``.  It exposes the same ``Segment`` interface
(``name``, ``get``, ``repetitions``) so ``mapping.hl7_in.extract`` cannot tell them apart.
Encoding characters and escape sequences are resolved by the shared functions of
:mod:`mapping.hl7_er7` (hl7apy keeps escape sequences as sent).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hl7apy.parser import parse_message

from mapping.hl7_er7 import HL7_NULL, Encoding, Er7Error, encoding_of, unescape


def _position(name: str | None, order: int) -> int:
    """hl7apy names positional children ``CE_3``/``RXA_5``; base types (``ST``) are in order."""
    if name and "_" in name:
        tail = name.rsplit("_", 1)[1]
        if tail.isdigit():
            return int(tail)
    return order


def _raw(element: Any) -> str:
    """The value as sent: hl7apy's ``to_er7`` re-escapes sequences it does not know (``\\X41\\``)."""
    datatype = getattr(element, "value", None)
    raw = getattr(datatype, "value", None)
    return raw if isinstance(raw, str) else str(element.to_er7())


class ApySegment:
    __slots__ = ("name", "_fields", "_enc")

    def __init__(self, segment: Any, enc: Encoding):
        self.name = segment.name
        self._enc = enc
        self._fields: dict[int, list[Any]] = {}
        for child in segment.children:
            # Fields beyond the version's definition come without a name, and hl7apy does not
            # keep their position: the reference reader cannot see them (the lean one can).
            if child.name:
                self._fields.setdefault(_position(child.name, 0), []).append(child)

    def get(self, field: int, component: int = 1, repetition: int = 1) -> str:
        reps = self._fields.get(field)
        if not reps or repetition > len(reps):
            return ""
        element = reps[repetition - 1]
        if self.name == "MSH" and field <= 2:
            return str(element.to_er7())
        components = {_position(c.name, i): c for i, c in enumerate(element.children, start=1)}
        comp = components.get(component)
        if comp is None:
            return ""
        subs = getattr(comp, "children", None)
        value = _raw(subs[0]) if subs else _raw(comp)
        if value == HL7_NULL:
            return ""
        return unescape(str(value), self._enc)

    def read_many(self, reads: Iterable[tuple[str, int, int]]) -> dict[str, str]:
        return {name: self.get(field, component).strip() for name, field, component in reads}

    def repetitions(self, field: int) -> int:
        return len(self._fields.get(field, ()))


def read_segments_reference(message: str) -> list[ApySegment]:
    enc = encoding_of(message.split("\r", 1)[0])
    try:
        parsed = parse_message(message, find_groups=False)
    except Exception as e:  # hl7apy raises a zoo of exception types; all mean "cannot parse"
        raise Er7Error(f"hl7apy cannot parse the message ({type(e).__name__})") from None
    return [ApySegment(s, enc) for s in parsed.children]
