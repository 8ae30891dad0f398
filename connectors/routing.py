"""Stage 1 of the pipeline: one input message (FHIR or HL7 v2 bytes) -> mapped records.

Pure: no Kafka here.  The worker sends each record to the events topic keyed by its
encounter, and the original message to the dead-letter topic when any part of it failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from mapping.collector import Mapped
from mapping.errors import MappingError
from mapping.fhir_in import iter_json_document, map_resource
from mapping.hl7_er7 import split_messages
from mapping.hl7_in import map_message


@dataclass
class Routed:
    records: list[Mapped] = field(default_factory=list)
    errors: list[MappingError] = field(default_factory=list)
    ignored: int = 0


def _decode(value: bytes | None, allow_latin1: bool) -> str:
    if value is None:
        raise MappingError("empty message (no value)")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        if allow_latin1:
            return value.decode("latin-1")
        raise MappingError(f"not UTF-8 (byte {e.start})") from None


def route_fhir(value: bytes | None, tz: ZoneInfo) -> Routed:
    """A FHIR resource or Bundle per message."""
    out = Routed()
    try:
        for position, resource in iter_json_document(_decode(value, allow_latin1=False), "message"):
            if isinstance(resource, MappingError):
                out.errors.append(resource)
                continue
            if not isinstance(resource, dict):
                out.errors.append(MappingError("record is not a JSON object", position=position))
                continue
            try:  # a Medication named by id and not carried is read from the reference table at coding
                mapped = map_resource(resource, medication_table=True)
            except MappingError as e:
                out.errors.append(e.located(position=position))
                continue
            if mapped is None:
                out.ignored += 1
            else:
                out.records.append(mapped)
    except MappingError as e:  # the whole message is unreadable
        out.errors.append(e)
    return out


def route_hl7(value: bytes | None, tz: ZoneInfo) -> Routed:
    """One or more HL7 v2 messages per Kafka message (MLLP framing tolerated)."""
    out = Routed()
    try:
        text = _decode(value, allow_latin1=True)
    except MappingError as e:
        out.errors.append(e)
        return out
    found = False
    for n, message in split_messages(text):
        found = True
        try:
            records = map_message(message, tz)
        except MappingError as e:
            out.errors.append(e.located(position=f"message {n}"))
            continue
        out.records.extend(records)
        out.ignored += not records
    if not found:
        out.errors.append(MappingError("no HL7 message in the value"))
    return out


Router = Callable[[bytes | None, ZoneInfo], Routed]
