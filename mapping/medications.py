"""Administrations that name a Medication by id (FHIR ``Medication/<id>`` outside the message),
completed from the reference table of Medications when their encounter is coded.

The table (connectors/medications.py) is read from a compacted topic; this module only says
what an administration becomes with it: the Medication's codes and text in place of the
reference, or, while the table does not hold it, the administration as sent (its reference's
display, if any, is the only name: an unknown drug, coded conservatively) and the id noted as
missing, so the encounter is coded again when the Medication arrives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from coding_core.model import AdministrationEvent, Coding
from mapping.vocabulary import ndc_of


@dataclass(frozen=True)
class MedicationCodes:
    """What the reference table keeps of a Medication: its codes (or its ingredients')."""

    id: str
    codings: tuple[Coding, ...]
    text: str | None


class Medications(Protocol):
    def get(self, medication_id: str) -> MedicationCodes | None: ...

    def holds(self, medication_id: str) -> bool:
        """Held now, without looking at the topic."""
        ...


def with_medications(events: Iterable[AdministrationEvent], medications: Medications | None) -> tuple[list[AdministrationEvent], set[str]]:
    """The events with their referenced Medications read in; the ids the table did not hold."""
    out: list[AdministrationEvent] = []
    missing: set[str] = set()
    for e in events:
        found = medications.get(e.medication_ref) if medications is not None and e.medication_ref else None
        if found is not None:
            e = e.model_copy(update={"drug_codings": found.codings, "drug_text": found.text or e.drug_text, "ndc": ndc_of(found.codings)})
        elif e.medication_ref:
            missing.add(e.medication_ref)
        out.append(e)
    return out, missing
