"""HL7 v2 ER7 text: framing, segments, fields and escapes — the lean reader of the fast path.

Reads only what it is asked for: a segment is split into fields once; repetitions,
components and sub-components are split on access.  :mod:`mapping.hl7_reference` reads the
same messages with hl7apy; ``tests/test_hl7_differential.py`` proves both give the same
values field by field.

Tolerates what interface engines send: MLLP framing bytes, ``\\r``, ``\\n`` or ``\\r\\n``
segment separators, non-default encoding characters, escape sequences, repeated fields,
Z-segments and trailing empty fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

MLLP_START, MLLP_END = "\x0b", "\x1c"
_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
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

    A new message starts at every MSH segment; MLLP framing bytes and blank lines are
    dropped.  Text before the first MSH is yielded as its own (bad) message so it is reported.
    """
    text = text.replace(MLLP_START, "\n").replace(MLLP_END, "\n")
    current: list[str] = []
    n = 0
    for line in _SEGMENT_SPLIT.split(text):
        if not line.strip():
            continue
        if line.startswith("MSH") and current:
            n += 1
            yield n, "\r".join(current)
            current = []
        current.append(line)
    if current:
        yield n + 1, "\r".join(current)


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

    __slots__ = ("name", "_fields", "_enc", "_offset")

    def __init__(self, text: str, enc: Encoding):
        self._fields = text.split(enc.field)
        self.name = self._fields[0]
        self._enc = enc
        # MSH-1 is the field separator itself, so MSH field n is at index n - 1.
        self._offset = 1 if self.name == "MSH" else 0

    def get(self, field: int, component: int = 1, repetition: int = 1) -> str:
        if self._offset and field <= 2:
            return self._enc.field if field == 1 else self._fields[1]
        i = field - self._offset
        if i >= len(self._fields):
            return ""
        raw = self._fields[i]
        if not raw:
            return ""
        enc = self._enc
        reps = raw.split(enc.repetition)
        if repetition > len(reps):
            return ""
        comps = reps[repetition - 1].split(enc.component)
        if component > len(comps):
            return ""
        value = comps[component - 1].split(enc.subcomponent, 1)[0]
        if value == HL7_NULL:
            return ""
        return unescape(value, enc)

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
    for line in lines:
        name = line[:3]
        if not _SEGMENT_NAME.fullmatch(name) or (len(line) > 3 and line[3] != enc.field):
            raise Er7Error("not an HL7 segment", name if _SEGMENT_NAME.fullmatch(name) else None)
        segments.append(Segment(line, enc))
    return segments
