"""The delivery digest is part of the stored state, so it must not change for the same content.

Each record keeps the deliveries it was built from as ``<MSH-10>#<digest>`` (mapping/collector.py:
``stamped``), and the changelog carries them to whichever worker takes the encounter over,
of this version or the next.  A digest is a SHA-256 over the record's JSON as the models write
it (``model_dump_json``).  If that JSON changed for the same content -- a datetime or Decimal
written differently, a field order changed, a library upgrade -- every delivery re-sent after
the upgrade would read as changed content: an update with a warning, and an encounter's PV1
copy (a "fill" record) would replace the merged encounter instead of filling it.  The values
below were written by this version; a change that breaks them needs a migration, not a new
expectation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from coding_core.model import (
    AdministrationEvent,
    AdminStatus,
    Coding,
    EncounterClass,
    EncounterInfo,
    Method,
    PumpType,
    Quantity,
    Ref,
    Route,
)
from mapping.collector import Mapped, _digest, stamped

EASTERN = ZoneInfo("America/New_York")


def full_administration() -> Mapped:
    event = AdministrationEvent(
        id="ORC-F1.1.1", encounter_id="V100", patient_id="MRN-7", status=AdminStatus.NOT_DONE,
        drug_codings=(Coding(system="http://www.ama-assn.org/go/cpt", code="J2405"),
                      Coding(system="http://hl7.org/fhir/sid/ndc", code="0409-4888-02", display="Ondansetrón 4 mg/2 mL")),
        drug_text='ondansetron "as directed"\nline 2', route=Route.IV, method=Method.INFUSION,
        start=datetime(2026, 3, 8, 6, 30, 0, 125000, tzinfo=UTC),
        end=datetime(2026, 3, 8, 1, 45, tzinfo=EASTERN),
        access_device="PICC-1", body_site="left arm", access_type="picc",
        dose=Quantity(value=Decimal("1.50"), unit="mg"), volume_ml=Decimal("1E+2"), rate_ml_per_h=Decimal("125"),
        drug_rate="5 mg/min", infusion_minutes=90, wasted=Quantity(value=Decimal("0.5"), unit="mg"), kvo=True,
        pump=PumpType.PORTABLE, ndc="00409488802",
        performers=(Ref(resource_type="Practitioner", value="123", authority="HOSP"),),
        identifier=Ref(resource_type="MedicationAdministration", value="F1-1-1", system="urn:infusion-charges:administration"),
        source_warnings=("RXA-3: local time is ambiguous",), unrecognised=("route urn:x|ZZ",),
    )
    return Mapped("administration", event.id, (None, None), administration=event, sources=("C1",))


def least_administration() -> Mapped:
    event = AdministrationEvent(id="ma-1", encounter_id="e-1")
    return Mapped("administration", "ma-1", (2, None), administration=event, sources=("C2",))


def encounter_update() -> Mapped:
    """An ADT update: only the fields it sets are its content (one of them set to None)."""
    info = EncounterInfo(id="V100", status="finished", encounter_class=EncounterClass.EMERGENCY,
                         period_end=datetime(2026, 3, 8, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
                         patient=Ref(resource_type="Patient", value="MRN-7", authority=None))
    return Mapped("encounter", "V100", (None, datetime(2026, 3, 8, 12, 1, tzinfo=UTC)), encounter=info, mode="merge",
                  sources=("C3",))


def whole_encounter() -> Mapped:
    info = EncounterInfo(id="e-1", patient_id="p-1", encounter_class=EncounterClass.AMBULATORY, status="in-progress",
                         period_start=datetime(2026, 3, 8, 9, 0, tzinfo=UTC),
                         location=Ref(resource_type="Location", reference="Location/infusion"), location_code="infusion",
                         account=Ref(resource_type="Account", reference="https://ehr.example/fhir/Account/9"))
    return Mapped("encounter", "e-1", (3, None), encounter=info, sources=("C4",))


PINNED = {
    "full administration": (full_administration, "097c04a9b7f96284"),
    "least administration": (least_administration, "a6c4e6739013be2a"),
    "encounter update": (encounter_update, "7ca8b2ed05702cfc"),
    "whole encounter": (whole_encounter, "ab913ef676e1031a"),
}


def test_the_digest_of_the_same_content_is_the_one_earlier_versions_stored():
    for name, (build, digest) in PINNED.items():
        record = build()
        assert _digest(record) == digest, name
        assert stamped(record).sources == (f"{record.sources[0]}#{digest}",), name


def test_the_digest_follows_the_content():
    """Not a constant: any change of what the record carries changes it."""
    record = full_administration()
    event = record.administration
    changed = [
        event.model_copy(update={"end": event.end + timedelta(minutes=1)}),
        event.model_copy(update={"dose": Quantity(value=Decimal("1.5"), unit="mg")}),  # 1.50 and 1.5: written differently
        event.model_copy(update={"drug_text": event.drug_text + " "}),
        event.model_copy(update={"performers": ()}),
    ]
    digests = {_digest(record), *(_digest(Mapped(record.kind, record.id, record.version, administration=e)) for e in changed)}
    assert len(digests) == 1 + len(changed)
