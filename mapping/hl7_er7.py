"""HL7 v2 ER7 text: framing, segments, fields and escapes — the lean reader of the fast path.

Reads only what it is asked for: a segment is split into fields once; repetitions,
components and sub-components are split on access.  :mod:`mapping.hl7_reference` reads the
same messages with hl7apy; ``tests/test_hl7_differential.py`` proves both give the same
values field by field.

Tolerates what interface engines send: MLLP framing bytes, a UTF-8 byte order mark,
``\\r``, ``\\n`` or ``\\r\\n`` segment separators (and a bare ``\\n`` inside free text when
the separator is ``\\r``), batch envelopes (FHS/BHS/BTS/FTS), non-default encoding characters,
escape sequences, repeated fields, Z-segments and trailing empty fields.

An error never quotes the text: a line that is not a segment is named by its position.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

MLLP_START, MLLP_END = "\x0b", "\x1c"
BOM = "\ufeff"
_CR_SPLIT = re.compile(r"\r\n|\r")
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
_KNOWN_NAMES = frozenset({"MSH", "EVN", "PID", "PD1", "PV1", "PV2", "ORC", "RXA", "RXR", "RXO", "RXE", "RXC", "TQ1", "OBX", "NTE", "AL1"})
# Batch and file envelopes: headers and trailers around messages, not messages.
ENVELOPE_NAMES = frozenset({"FHS", "BHS", "BTS", "FTS"})
HL7_NULL = '""'  # an explicit null: "delete the value" — carries no value for us


class Er7Error(ValueError):
    """The text is not an HL7 v2 message this reader can split (reason, segment, field)."""

    def __init__(self, reason: str, segment: str | None = None, field: int | None = None):
        self.reason, self.segment, self.field = reason, segment, field
        where = f"{segment}-{field}: " if segment and field else f"{segment}: " if segment else ""
        super().__init__(f"{where}{reason}")


@dataclass(frozen=True)
class Encoding:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


DEFAULT_ENCODING = Encoding()


def split_messages(text: str) -> Iterator[tuple[int, str]]:
    """(1-based message number, message text with ``\\r`` separators) for a file or stream.

    A new message starts at every MSH segment; MLLP framing bytes, byte order marks, blank
    lines and batch envelope segments (FHS/BHS/BTS/FTS) are dropped.  Text before the first MSH
    is yielded as its own (bad) message so it is reported.
    """
    current: list[str] = []
    n = 0
    for line in _lines(text):
        if _is_envelope(line):
            continue
        if line.startswith("MSH") and current:
            n += 1
            yield n, "\r".join(current)
            current = []
        current.append(line)
    if current:
        yield n + 1, "\r".join(current)


def _lines(text: str) -> Iterator[str]:
    """The non-blank segment lines of a file or stream.

    With ``\\r`` separators (the standard), a bare ``\\n`` is a segment break only when what
    follows looks like a segment; otherwise it is a line break typed into free text (NTE) and
    is kept in the field as a space.  Without any ``\\r``, ``\\n`` is the separator.
    """
    text = text.removeprefix(BOM).replace(MLLP_START + BOM, MLLP_START)
    text = text.replace(MLLP_START, "\n").replace(MLLP_END, "\n")
    if "\r" not in text:
        yield from (line for line in text.split("\n") if line.strip())
        return
    fs = DEFAULT_ENCODING.field
    for chunk in _CR_SPLIT.split(text):
        line = ""
        for part in chunk.split("\n"):
            if not part.strip():
                continue
            if line and not _starts_segment(part, fs):
                line = f"{line} {part}"
                continue
            if line:
                yield line
            line = part
            if line.startswith("MSH") and len(line) > 3:
                fs = line[3]
        if line:
            yield line


def _starts_segment(line: str, fs: str) -> bool:
    """Does a line after a bare ``\\n`` begin a segment: MSH, or a segment name (known, Z- or any
    other, e.g. DG1, IN1) and the field separator?  Free text cannot hold a bare field separator
    (it is escaped as ``\\F\\``), so a typed line break is never taken for a segment."""
    name = line[:3]
    if name == "MSH":
        return True
    return _SEGMENT_NAME.fullmatch(name) is not None and (len(line) == 3 or line[3] == fs)


def _is_envelope(line: str) -> bool:
    return line[:3] in ENVELOPE_NAMES and (len(line) == 3 or not line[3].isalnum())


def encoding_of(msh: str) -> Encoding:
    """Encoding characters from ``MSH|^~\\&|`` (MSH-1 and MSH-2)."""
    if not msh.startswith("MSH") or len(msh) < 8:
        raise Er7Error("message does not start with an MSH segment", "MSH")
    fs = msh[3]
    end = msh.find(fs, 4)
    chars = msh[4:end] if end != -1 else msh[4:]
    if len(chars) < 2 or fs.isalnum() or len(set(chars + fs)) != len(chars) + 1 or any(c.isalnum() or c.isspace() for c in chars):
        raise Er7Error("invalid encoding characters", "MSH", 2)
    padded = chars + "\0" * (4 - len(chars)) if len(chars) < 4 else chars
    return Encoding(fs, padded[0], padded[1], padded[2], padded[3])


@lru_cache(maxsize=32)
def _escape_pattern(esc: str) -> re.Pattern[str]:
    e = re.escape(esc)
    return re.compile(f"{e}([^{e}]*){e}")


def unescape(value: str, enc: Encoding) -> str:
    """Resolve HL7 escape sequences: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\X..\\ hex, \\.br\\; highlighting
    (\\H\\ \\N\\) and unknown sequences are dropped."""
    if enc.escape not in value or enc.escape == "\0":
        return value
    table = {"F": enc.field, "S": enc.component, "T": enc.subcomponent, "R": enc.repetition, "E": enc.escape,
             "H": "", "N": "", ".br": "\n"}

    def sub(m: re.Match[str]) -> str:
        seq = m.group(1)
        if seq in table:
            return table[seq]
        if seq[:1] == "X" and len(seq) > 1 and len(seq) % 2 == 1:
            try:
                return bytes.fromhex(seq[1:]).decode("latin-1")
            except ValueError:
                return ""
        return ""

    return _escape_pattern(enc.escape).sub(sub, value)


class Segment:
    """One segment split into fields; values are read by (field, component, repetition)."""

    __slots__ = ("name", "_fields", "_enc", "_offset", "_components", "_plain")

    def __init__(self, text: str, enc: Encoding):
        self._fields = text.split(enc.field)
        self.name = self._fields[0]
        self._enc = enc
        # MSH-1 is the field separator itself, so MSH field n is at index n - 1.
        self._offset = 1 if self.name == "MSH" else 0
        self._components: dict[int, list[str]] = {}  # first repetition, split once
        # No escape and no sub-component character anywhere (most segments): a component is
        # its own first sub-component with nothing to unescape (see _clean).
        self._plain = self._offset == 0 and enc.escape not in text and enc.subcomponent not in text

    def _split(self, field: int, repetition: int) -> list[str]:
        """The components of one repetition of a field ([] when absent)."""
        if self._offset and field <= 2:  # MSH-1/MSH-2 are not split
            return [self._enc.field if field == 1 else self._fields[1]]
        if repetition == 1:
            comps = self._components.get(field)
            if comps is None:
                i = field - self._offset
                raw = self._fields[i] if i < len(self._fields) else ""
                comps = self._components[field] = raw.split(self._enc.repetition, 1)[0].split(self._enc.component) if raw else []
            return comps
        i = field - self._offset
        reps = self._fields[i].split(self._enc.repetition) if i < len(self._fields) and self._fields[i] else []
        return reps[repetition - 1].split(self._enc.component) if repetition <= len(reps) else []

    def _clean(self, component: str) -> str:
        """First sub-component, HL7 null as empty, escapes resolved."""
        enc = self._enc
        value = component.split(enc.subcomponent, 1)[0] if enc.subcomponent in component else component
        if value == HL7_NULL:
            return ""
        return unescape(value, enc) if enc.escape in value else value

    def get(self, field: int, component: int = 1, repetition: int = 1) -> str:
        comps = self._split(field, repetition)
        if self._offset and field <= 2:
            return comps[0]
        return self._clean(comps[component - 1]) if component <= len(comps) else ""

    def read_many(self, reads: Iterable[tuple[str, int, int]]) -> dict[str, str]:
        """{name: stripped value} for (name, field, component) of the first repetition."""
        out = {}
        if not self._plain:
            for name, field, component in reads:
                comps = self._split(field, 1)
                out[name] = self._clean(comps[component - 1]).strip() if component <= len(comps) else ""
            return out
        cached = self._components  # _split and _clean, inlined for a plain segment (hot)
        for name, field, component in reads:
            comps = cached.get(field)
            if comps is None:
                comps = self._split(field, 1)
            if component <= len(comps):
                value = comps[component - 1]
                out[name] = "" if value == HL7_NULL else value.strip()
            else:
                out[name] = ""
        return out

    def repetitions(self, field: int) -> int:
        i = field - self._offset
        if i >= len(self._fields) or not self._fields[i]:
            return 0
        return self._fields[i].count(self._enc.repetition) + 1


def read_segments(message: str) -> list[Segment]:
    """The lean reader: split a message (``\\r``-separated) into segments."""
    lines = message.split("\r")
    enc = encoding_of(lines[0])
    segments = []
    for position, line in enumerate(lines, start=1):
        name = line[:3]
        if _SEGMENT_NAME.fullmatch(name) is None or (len(line) > 3 and line[3] != enc.field):
            # Name known segments only: an unknown line may be free text (a patient's name), and
            # so may a Z-name ("ZHU, WEI") or a known name running on into a word ("PIDGEON").
            named = name in _KNOWN_NAMES and not line[3:4].isalnum()
            raise Er7Error(f"not an HL7 segment (segment {position})", name if named else None)
        segments.append(Segment(line, enc))
    return segments
