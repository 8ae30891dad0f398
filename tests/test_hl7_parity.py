"""Parity: the same encounter sent as FHIR and as HL7 v2 is coded to identical lines."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest

from coding_core.engine import code_encounter
from coding_core.formulary import HCPCS_SYSTEM
from coding_core.profile import Profile
from mapping.collector import FeedCollector
from mapping.fhir_in import add_resource
from mapping.hl7_in import add_hl7_text
from mapping.reference_data import load_formulary
from tests.hl7_builders import message, msh, orc, pid, pv1, rxa, rxr

TZ = ZoneInfo("America/New_York")
SNOMED_ROUTE = {"IV": "47625008", "SC": "34206005", "IM": "78421000"}


@dataclass
class Admin:
    """One administration, written once, rendered as FHIR and as HL7."""

    filler: str
    code: str
    text: str
    start: str  # "2026-11-02T09:00"
    end: str | None
    amount: str | None = None
    units: str | None = None
    route: str = "IV"
    method: str | None = None  # v2-0165 code
    device: str | None = "PORT1"
    site: str | None = None
    rate_ml_h: str | None = None
    status: str = "completed"


def hl7_time(local: str, local_offsets: bool) -> str:
    digits = local.replace("-", "").replace("T", "").replace(":", "")
    return digits if local_offsets else digits + "-0500"


def as_fhir(visit: str, cls: str, admins: list[Admin]) -> list[dict]:
    out: list[dict] = [{"resourceType": "Encounter", "id": visit, "status": "finished", "class": {"code": cls},
                        "subject": {"reference": "Patient/MRN1"}}]
    for a in admins:
        dosage: dict = {"route": {"coding": [{"system": "http://snomed.info/sct", "code": SNOMED_ROUTE[a.route]}]}}
        if a.method:
            dosage["method"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0165", "code": a.method}]}
        if a.amount:
            dosage["dose"] = {"value": float(a.amount), "unit": a.units, "code": a.units}
        if a.rate_ml_h:
            dosage["rateQuantity"] = {"value": float(a.rate_ml_h), "unit": "mL/h", "code": "mL/h"}
        if a.site:
            dosage["site"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0163", "code": a.site}]}
        res = {
            "resourceType": "MedicationAdministration", "id": f"{a.filler}-0-1", "status": a.status,
            "medicationCodeableConcept": {"coding": [{"system": HCPCS_SYSTEM, "code": a.code, "display": a.text}], "text": a.text},
            "subject": {"reference": "Patient/MRN1"}, "context": {"reference": f"Encounter/{visit}"}, "dosage": dosage,
        }
        if a.end is None:
            res["effectiveDateTime"] = a.start + ":00-05:00"
        else:
            res["effectivePeriod"] = {"start": a.start + ":00-05:00", "end": a.end + ":00-05:00"}
        if a.device:
            res["device"] = [{"reference": f"Device/{a.device}"}]
        out.append(res)
    return out


def as_hl7(visit: str, patient_class: str, admins: list[Admin], local_offsets: bool, **pv1_extra: str) -> str:
    status = {"completed": "CP", "not-done": "NA", "stopped": "PA"}
    segs = [msh("C1", time="20261102080000"), pid("MRN1"), pv1(visit, patient_class, **pv1_extra)]
    for a in admins:
        segs.append(orc(filler=a.filler))
        given = ({"amount": a.rate_ml_h, "units": "mL", "f12": "H1", "f23": a.amount or "", "f24": a.units or ""} if a.rate_ml_h
                 else {"amount": a.amount or "", "units": a.units or ""})  # a rate in RXA-6/7/12, its volume in RXA-23/24
        segs.append(rxa(hl7_time(a.start, local_offsets), hl7_time(a.end, local_offsets) if a.end else "",
                        code=a.code, text=a.text, status=status[a.status], **given))
        segs.append(rxr(a.route, a.site or "", a.device or "", a.method or ""))
    return message(*segs)


ONCOLOGY = [
    Admin("F1", "J7030", "NS 1000", "2026-11-02T08:30", "2026-11-02T14:00", "1000", "mL", rate_ml_h="180"),
    Admin("F2", "J2405", "ondansetron", "2026-11-02T09:00", None, "8", "mg", method="IVP"),
    Admin("F3", "J1100", "dexamethasone", "2026-11-02T09:05", "2026-11-02T09:20", "12", "mg"),
    Admin("F4", "J9312", "rituximab", "2026-11-02T09:30", "2026-11-02T13:52", "700", "mg"),
    Admin("F5", "J9217", "leuprolide", "2026-11-02T14:10", None, "7.5", "mg", route="SC", device=None),
    Admin("F6", "J2405", "ondansetron", "2026-11-02T10:10", None, "4", "mg", method="IVP", status="not-done"),
]
OVERNIGHT = [
    Admin("G1", "J7030", "NS 1000", "2026-11-03T21:00", "2026-11-04T02:00", "1000", "mL", device="PIV9"),
    Admin("G2", "J7030", "NS 1000", "2026-11-04T02:00", "2026-11-04T06:10", "1000", "mL", device="PIV9"),
    Admin("G3", "J2270", "morphine", "2026-11-03T23:15", None, "4", "mg", route="IM", device=None),
]
TWO_SITES = [
    Admin("H1", "J1745", "infliximab", "2026-11-05T10:00", "2026-11-05T12:05", "400", "mg", device="PIVL"),
    Admin("H2", "J1200", "diphenhydramine", "2026-11-05T09:45", None, "50", "mg", method="IVP", device=None, site="RA"),
    Admin("H3", "J0696", "ceftriaxone", "2026-11-05T12:10", "2026-11-05T12:50", "1000", "mg", device="PIVL"),
]


def coded(collector: FeedCollector):
    formulary, profile = load_formulary(), Profile()
    assert collector.errors == []
    return {enc_id: code_encounter(info, events, formulary, profile) for enc_id, (info, events) in collector.by_encounter().items()}


@pytest.mark.parametrize("local_offsets", [False, True], ids=["offsets", "local-times"])
@pytest.mark.parametrize(
    ("admins", "fhir_class", "hl7_class", "pv1_extra"),
    [
        (ONCOLOGY, "AMB", "O", {}),
        (OVERNIGHT, "OBSENC", "O", {"f18": "OBS"}),
        (TWO_SITES, "EMER", "E", {}),
        (ONCOLOGY, "IMP", "I", {}),
    ],
    ids=["oncology", "overnight-observation", "two-sites", "inpatient"],
)
def test_fhir_and_hl7_give_identical_lines(admins, fhir_class, hl7_class, pv1_extra, local_offsets):
    fhir = FeedCollector()
    for i, resource in enumerate(as_fhir("V1", fhir_class, admins)):
        add_resource(fhir, resource, source="fhir", position=str(i))
    hl7 = FeedCollector()
    add_hl7_text(hl7, as_hl7("V1", hl7_class, admins, local_offsets, **pv1_extra), source="hl7", tz=TZ)

    a, b = coded(fhir)["V1"], coded(hl7)["V1"]
    assert a.lines, "the scenario must produce lines"
    assert a.lines == b.lines
    assert a.warnings == b.warnings and a.exclusions == b.exclusions
