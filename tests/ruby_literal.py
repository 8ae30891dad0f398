"""Read the JSON examples out of a vendor's documentation source, where they are Ruby literals.

Oracle Health (Cerner) publishes its FHIR examples as Ruby constants (``NAME ||= { 'key': value,
... }``).  The files are kept exactly as published in ``tests/data/real/``; this reader turns a
constant back into the JSON the documentation site shows: single- and double-quoted strings
(adjacent ones, joined by a trailing backslash, are one string), ``'key':`` and ``'key' =>``
pairs, arrays, numbers, ``true``/``false``/``nil`` and references to constants defined earlier.
"""

from __future__ import annotations

import re
from typing import Any

_CONSTANT = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*\|\|=\s*", re.MULTILINE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Reader:
    def __init__(self, text: str, constants: dict[str, Any]):
        self.text, self.i, self.constants = text, 0, constants

    def skip(self) -> None:
        t = self.text
        while self.i < len(t):
            if t[self.i].isspace():
                self.i += 1
            elif t[self.i] == "#":
                self.i = t.index("\n", self.i) if "\n" in t[self.i:] else len(t)
            elif t.startswith("\\\n", self.i):  # a line continuation between adjacent strings
                self.i += 2
            else:
                return

    def value(self) -> Any:
        self.skip()
        c = self.text[self.i]
        if c == "{":
            return self.mapping()
        if c == "[":
            return self.array()
        if c in "'\"":
            return self.strings()
        number = _NUMBER.match(self.text, self.i)
        if number:
            self.i = number.end()
            return float(number.group()) if "." in number.group() else int(number.group())
        name = _NAME.match(self.text, self.i)
        if name is None:
            raise ValueError(f"unexpected {c!r} at {self.i}")
        self.i = name.end()
        word = name.group()
        return {"true": True, "false": False, "nil": None}[word] if word in ("true", "false", "nil") else self.constants[word]

    def strings(self) -> str:
        parts = [self.string()]
        while True:
            save = self.i
            self.skip()
            if self.i < len(self.text) and self.text[self.i] in "'\"" and self.text[save:self.i].strip() in ("", "\\"):
                parts.append(self.string())
            else:
                self.i = save
                return "".join(parts)

    def string(self) -> str:
        quote, t = self.text[self.i], self.text
        self.i += 1
        out = []
        while t[self.i] != quote:
            if t[self.i] == "\\" and t[self.i + 1] in (quote, "\\"):
                out.append(t[self.i + 1])
                self.i += 2
            else:
                out.append(t[self.i])
                self.i += 1
        self.i += 1
        return "".join(out)

    def mapping(self) -> dict[str, Any]:
        self.i += 1
        out: dict[str, Any] = {}
        while True:
            self.skip()
            if self.text[self.i] == "}":
                self.i += 1
                return out
            key = self.strings()
            self.skip()
            if self.text.startswith("=>", self.i):
                self.i += 2
            elif self.text[self.i] == ":":
                self.i += 1
            else:
                raise ValueError(f"expected ':' or '=>' at {self.i}")
            out[key] = self.value()
            self.skip()
            if self.text[self.i] == ",":
                self.i += 1

    def array(self) -> list[Any]:
        self.i += 1
        out: list[Any] = []
        while True:
            self.skip()
            if self.text[self.i] == "]":
                self.i += 1
                return out
            out.append(self.value())
            self.skip()
            if self.text[self.i] == ",":
                self.i += 1


def ruby_constants(text: str) -> dict[str, Any]:
    """Every ``NAME ||= literal`` of a Ruby file, in order, as JSON-ready data."""
    constants: dict[str, Any] = {}
    for m in _CONSTANT.finditer(text):
        constants[m.group(1)] = _Reader(text[m.end():], constants).value()
    return constants
