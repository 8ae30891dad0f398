"""Mapping errors: what was wrong, where, and with which record — never the record's content.

Interface teams need the file/topic, the position and the resource id to find a bad record;
billing data (names, MRNs, birth dates) must not reach logs or dead-letter reasons, so an
error carries field *paths* and short reasons, never input values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any


class MappingError(ValueError):
    """One record could not be mapped.  The rest of its file or topic is still processed."""

    def __init__(
        self,
        reason: str,
        *,
        source: str | None = None,
        position: str | None = None,
        record_id: str | None = None,
        resource_type: str | None = None,
    ) -> None:
        self.reason = reason
        self.source = source
        self.position = position
        self.record_id = record_id
        self.resource_type = resource_type
        super().__init__(self.describe())

    def located(self, *, source: str | None = None, position: str | None = None) -> MappingError:
        """The same error with its location filled in by the caller that knows it."""
        return type(self)(
            self.reason,
            source=self.source or source,
            position=self.position or position,
            record_id=self.record_id,
            resource_type=self.resource_type,
        )

    def describe(self) -> str:
        where = ", ".join(p for p in (self.source, self.position) if p)
        what = "/".join(p for p in (self.resource_type, self.record_id) if p)
        parts = [p for p in (where, what) if p]
        return ": ".join((*parts, self.reason))

    def as_dict(self) -> dict[str, str | None]:
        """For dead-letter headers and structured logs (ids and positions only)."""
        return {
            "reason": self.reason,
            "source": self.source,
            "position": self.position,
            "record_id": self.record_id,
            "resource_type": self.resource_type,
        }


class UnreadableSourceError(MappingError):
    """A whole file (or message) is unreadable: not JSON/NDJSON/HL7 at all, or missing."""


_ELEMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")


def _shown(part: Any) -> str:
    """A location part as written, unless it is not shaped like an element name: an unknown key
    is the sender's text (it can be a name or a birth date)."""
    if isinstance(part, int) or _ELEMENT.fullmatch(str(part)):
        return str(part)
    return "(key not shown)"


def summarize_validation_errors(errors: Iterable[Mapping[str, Any]], limit: int = 5) -> str:
    """pydantic ``ValidationError.errors()`` -> "dosage.dose.value: Input should be ..." without inputs."""
    parts: list[str] = []
    errors = list(errors)
    for e in errors[:limit]:
        loc = ".".join(_shown(x) for x in e.get("loc", ()) if x != "__root__") or "(resource)"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)
