"""Synthetic but realistic feeds for the benchmark and the chaos test.

Each encounter: 5-30 administrations through one or two access lines over a clinic day
(hydration, chemotherapy and therapeutic infusions, pushes, SC/IM injections), then a close
(FHIR Encounter ``finished`` or HL7 ``ADT^A03``).  Deterministic for a given seed.  No real
patient data: ids are counters.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from coding_core.formulary import HCPCS_SYSTEM
from connectors.settings import Topics

EST = timezone(timedelta(hours=-5))

# code, name, dose, unit, technique, (min, max) minutes
DRUGS = [
    ("J7030", "normal saline 1000 mL", "1000", "mL", "infusion", (60, 300)),
    ("J9312", "rituximab", "700", "mg", "infusion", (90, 300)),
    ("J9045", "carboplatin", "450", "mg", "infusion", (30, 60)),
    ("J9267", "paclitaxel", "175", "mg", "infusion", (60, 180)),
    ("J0696", "ceftriaxone", "1000", "mg", "infusion", (20, 45)),
    ("J1100", "dexamethasone", "12", "mg", "infusion", (10, 20)),
    ("J2405", "ondansetron", "8", "mg", "push", (0, 0)),
    ("J1200", "diphenhydramine", "25", "mg", "push", (0, 0)),
    ("J1885", "ketorolac", "30", "mg", "push", (0, 0)),
    ("J9217", "leuprolide", "7.5", "mg", "sc", (0, 0)),
    ("J2270", "morphine", "4", "mg", "im", (0, 0)),
]
ROUTES = {"infusion": ("47625008", "IV"), "push": ("47625008", "IV"), "sc": ("34206005", "SC"), "im": ("78421000", "IM")}


@dataclass(frozen=True)
class Admin:
    id: str
    code: str
    name: str
    dose: str
    unit: str
    technique: str
    start: datetime
    end: datetime
    device: str | None


def encounter_admins(rng: random.Random, enc: str, day: datetime, low: int = 5, high: int = 30) -> list[Admin]:
    t = day + timedelta(minutes=rng.randint(0, 120))
    devices = [f"{enc}-port"] + ([f"{enc}-piv"] if rng.random() < 0.3 else [])
    out = []
    for i in range(rng.randint(low, high)):
        code, name, dose, unit, technique, (lo, hi) = rng.choice(DRUGS)
        minutes = rng.randint(lo, hi)
        device = None if technique in ("sc", "im") else rng.choice(devices)
        out.append(Admin(f"{enc}-a{i}", code, name, dose, unit, technique, t, t + timedelta(minutes=minutes), device))
        t += timedelta(minutes=rng.randint(1, 25))
    return out


def _fhir_admin(enc: str, patient: str, a: Admin) -> dict:
    snomed, _ = ROUTES[a.technique]
    dosage: dict = {"route": {"coding": [{"system": "http://snomed.info/sct", "code": snomed}]},
                    "dose": {"value": float(a.dose), "unit": a.unit, "code": a.unit}}
    if a.technique == "push":
        dosage["method"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0165", "code": "IVP"}]}
    res: dict = {"resourceType": "MedicationAdministration", "id": a.id, "status": "completed",
           "medicationCodeableConcept": {"coding": [{"system": HCPCS_SYSTEM, "code": a.code, "display": a.name}], "text": a.name},
           "subject": {"reference": f"Patient/{patient}"}, "context": {"reference": f"Encounter/{enc}"},
           "effectivePeriod": {"start": a.start.isoformat(), "end": a.end.isoformat()}, "dosage": dosage}
    if a.device:
        res["device"] = [{"reference": f"Device/{a.device}"}]
    return res


def _hl7_time(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S-0500")


def _hl7_ras(enc: str, patient: str, n: int, admins: list[Admin], sent: datetime) -> str:
    segs = [f"MSH|^~\\&|MAR|SYN|CHG|SYN|{_hl7_time(sent)}||RAS^O17^RAS_O17|{enc}-m{n}|P|2.5.1",
            f"PID|1||{patient}^^^SYN^MR", f"PV1|1|O|INF^1^1||||||||||||||||{enc}^^^SYN^VN"]
    for a in admins:
        _, v2 = ROUTES[a.technique]
        method = "IVP" if a.technique == "push" else ("IVPB" if a.technique == "infusion" else "")
        device = f"{a.device}^access line" if a.device else ""
        segs.append(f"ORC|RE|{a.id}|{a.id}")
        segs.append(f"RXA|0|1|{_hl7_time(a.start)}|{_hl7_time(a.end)}|{a.code}^{a.name}^HPC|{a.dose}|{a.unit}|||||||||||||CP|A")
        segs.append(f"RXR|{v2}||{device}|{method}")
    return "\r".join(segs)


def _hl7_adt(enc: str, patient: str, trigger: str, sent: datetime, extra: str = "") -> str:
    return "\r".join([f"MSH|^~\\&|ADT|SYN|CHG|SYN|{_hl7_time(sent)}||ADT^{trigger}|{enc}-{trigger}|P|2.5.1",
                      f"EVN|{trigger}|{_hl7_time(sent)}", f"PID|1||{patient}^^^SYN^MR",
                      f"PV1|1|O|INF^1^1||||||||||||||||{enc}^^^SYN^VN{extra}"])


def generate(n_encounters: int, fmt: str, topics: Topics, seed: int = 1, low: int = 5, high: int = 30,
             prefix: str = "") -> list[tuple[str, bytes | None, bytes]]:
    """(topic, key, value) messages for ``n_encounters`` encounters in ``fmt`` "fhir" or "hl7";
    each encounter's close comes after its administrations."""
    rng = random.Random(seed)
    day = datetime(2026, 11, 2, 7, 0, tzinfo=EST)
    out: list[tuple[str, bytes | None, bytes]] = []
    for e in range(n_encounters):
        enc, patient = f"{prefix}{fmt}-enc-{seed}-{e}", f"{prefix}pat-{seed}-{e}"
        key = enc.encode()
        admins = encounter_admins(rng, enc, day + timedelta(days=e % 20), low, high)
        last = max(a.end for a in admins)
        if fmt == "fhir":
            for a in admins:
                out.append((topics.fhir_administrations, a.id.encode(), json.dumps(_fhir_admin(enc, patient, a)).encode()))
            close = {"resourceType": "Encounter", "id": enc, "status": "finished", "class": {"code": "AMB"},
                     "subject": {"reference": f"Patient/{patient}"}}
            out.append((topics.fhir_encounters, key, json.dumps(close).encode()))
        else:
            out.append((topics.hl7_adt, key, _hl7_adt(enc, patient, "A04", admins[0].start - timedelta(minutes=5)).encode()))
            for n, start in enumerate(range(0, len(admins), 3)):
                group = admins[start:start + 3]
                out.append((topics.hl7_ras, key, _hl7_ras(enc, patient, n, group, max(a.end for a in group)).encode()))
            discharge = "|" * 26 + _hl7_time(last + timedelta(minutes=10))
            out.append((topics.hl7_adt, key, _hl7_adt(enc, patient, "A03", last + timedelta(minutes=15), discharge).encode()))
    return out


def offline_charges(messages: list[tuple[str, bytes | None, bytes]], topics: Topics, timezone_name: str = "America/New_York"):
    """What the offline path gives for the same messages: encounter -> ChargeItems (the oracle
    of the chaos test and the benchmark's correctness check)."""
    from zoneinfo import ZoneInfo

    from coding_core.engine import code_encounter
    from coding_core.profile import Profile
    from connectors.routing import route_fhir, route_hl7
    from mapping.chargeitem_out import to_charge_items
    from mapping.collector import FeedCollector
    from mapping.reference_data import load_formulary

    tz = ZoneInfo(timezone_name)
    collector = FeedCollector()
    for topic, _, value in messages:
        routed = (route_hl7 if topic in (topics.hl7_ras, topics.hl7_adt) else route_fhir)(value, tz)
        for record in routed.records:
            collector.offer(record)
    formulary, profile = load_formulary(), Profile()
    return {enc: to_charge_items(code_encounter(info, events, formulary, profile), info, profile, events)
            for enc, (info, events) in collector.by_encounter().items()}
