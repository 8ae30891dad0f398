"""PHI probe: recognisable fake PHI planted in every field of FHIR and HL7 v2 inputs, in turn,
never reaches the worker's logs (any level), its metrics, its dead letters' headers and error
messages, or the ``code`` command's stderr.

Each probe is one base input (a full FHIR resource, a Bundle, an HL7 RAS or ADT message) with
one element replaced: every leaf of every FHIR resource by a free-text value, an id-shaped
value, a date, a number and an object; every object given an unknown key and every list an
extra item; every HL7 field (and one past the last) and every component of it by free text, an
id, a date, a structured value, control characters and escapes; every segment line replaced by
free text or a "LAST, FIRST" name, and followed by either or by a Z-segment.  Probes are also
sent with a second fault (FHIR free-text and id values with an invalid status, every HL7 probe
with an unreadable line) so that the error paths that name the record are taken with the
marker in place.

The probes go through the worker's real input and events sides (``connectors.intake``,
``connectors.processor``, ``connectors.dead_letters`` with the real ``Outbox`` over a fake
producer: no broker; each input also carries a ``redrive.of`` header holding markers) and
through ``infusion-charges code``; those that plant the encounter's id also through a coding
core that fails, and unreadable events records through the events side.  Not checked: the
dead letters' values (the original message, kept for re-drive) and the ChargeItems published
(they carry patient and encounter references by design).  The one place a planted value may
show is the record's own id -- a FHIR resource's ``id``, an HL7 message's MSH-10 -- and only
when it is shaped like an id: errors are keyed by it (docs/commands.md).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kafka import TopicPartition

from coding_core.profile import Profile
from connectors.cli import main
from connectors.clients import Outbox
from connectors.dead_letters import DeadLetters
from connectors.hold import CloseHold
from connectors.intake import RECORDS, Intake
from connectors.ops import JsonFormatter, Metrics
from connectors.processor import IDLE_CLOSE, EncounterProcessor
from connectors.redrive import REDRIVE_HEADER
from connectors.settings import Settings
from connectors.store import StateStores
from mapping.hl7_er7 import split_messages
from mapping.reference_data import load_formulary
from tests.hl7_builders import msh, segment
from tests.test_fhir_in import SCT, V2_0165, r4, r5

TZ = ZoneInfo("America/New_York")

# --- the markers ----------------------------------------------------------------------------

NAME, MRN, BIRTH, BIRTH_HL7, PHONE = "ZZPHINAME", "MRNZZ9931", "1931-11-22", "19311122", "555-0193"
TEXT = f"{NAME}, JANE {BIRTH} {MRN} 931 ZZPHI STREET {PHONE}"  # free text: a name, birth date, MRN, address, phone
HL7_TEXT = f"{NAME} JANE {BIRTH_HL7} {MRN} 931 ZZPHI STREET {PHONE}"  # the same without HL7 delimiters
ODD_KEY = f"{NAME} {BIRTH}"  # an object key that is not shaped like an element name
# Any of these in an output is a leak: "ZZP" also catches a marker cut to a segment-name's 3 letters.
LEAK = re.compile(r"ZZP|MRNZZ|19311122|1931-11-22|555-0193", re.IGNORECASE)
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CONTROL_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")


@dataclass(frozen=True)
class Probe:
    name: str  # base, where the marker was planted, which value
    feed: str  # "fhir" | "hl7"
    text: str
    shown_id: str | None = None  # the marker is the record's own id, shaped like one: errors may name the record by it


def leaks(text: str, shown_id: str | None = None) -> list[str]:
    """The markers in ``text`` -- apart from ``shown_id`` where an error names its record."""
    if shown_id:
        text = re.sub(rf"(/|: |^){re.escape(shown_id)}(?=: )", r"\1<record id>", text, flags=re.MULTILINE)
    return LEAK.findall(text)


# --- FHIR bases and probes ------------------------------------------------------------------

EXT = "https://infusion-charges.dev/fhir/StructureDefinition/"
UCUM = "http://unitsofmeasure.org"
V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def rich_r4() -> dict[str, Any]:
    """An R4 administration with every element the product reads and many it does not."""
    return r4(
        meta={"versionId": "2", "lastUpdated": "2026-03-02T11:00:00Z", "source": "urn:ehr:pharmacy",
              "tag": [{"system": "urn:tag", "code": "t1"}]},
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">rituximab 700 mg</div>'},
        identifier=[{"system": "urn:oid:2.16.840.1.113883.3.1", "value": "adm-1", "type": {"text": "administration"}}],
        instantiates=["http://example.org/protocols/r-chop"],
        partOf=[{"reference": "Procedure/proc-1", "display": "chemotherapy"}],
        statusReason=[{"text": "given as ordered"}],
        category={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medication-admin-category", "code": "outpatient"}],
                  "text": "outpatient"},
        subject={"reference": "Patient/p-1", "display": "Doe, Jane", "identifier": {"system": "urn:mrn", "value": "mrn-1"}},
        context={"reference": "Encounter/e-1", "display": "infusion visit"},
        supportingInformation=[{"reference": "Observation/o-1", "display": "weight 70 kg"}],
        performer=[{"function": {"text": "administering nurse"}, "actor": {"reference": "Practitioner/pr-1", "display": "Nurse Smith"}}],
        reasonCode=[{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C83.30"}], "text": "lymphoma"}],
        request={"reference": "MedicationRequest/rq-1"},
        note=[{"authorString": "RN Smith", "time": "2026-03-02T10:45:00-05:00", "text": "tolerated well"}],
        eventHistory=[{"reference": "Provenance/pv-1"}],
        extension=[
            {"url": EXT + "access-type", "valueCode": "port"},
            {"url": EXT + "wasted-amount", "valueQuantity": {"value": 10, "unit": "mg", "code": "mg", "system": UCUM}},
            {"url": EXT + "pump-type", "valueCode": "portable"},
            {"url": EXT + "keep-vein-open", "valueBoolean": False},
        ],
        dosage={
            "text": "700 mg over 100 min",
            "site": {"coding": [{"system": SCT, "code": "368209003", "display": "right upper arm"}], "text": "right upper arm"},
            "route": {"coding": [{"system": SCT, "code": "47625008", "display": "intravenous"}], "text": "IV"},
            "method": {"coding": [{"system": V2_0165, "code": "IVP", "display": "IV push"}], "text": "infusion"},
            "dose": {"value": 700, "unit": "mg", "code": "mg", "system": UCUM},
            "rateQuantity": {"value": 175, "unit": "mL/h", "code": "mL/h", "system": UCUM},
            "extension": [{"url": EXT + "infusion-duration", "valueDuration": {"value": 100, "unit": "min", "code": "min", "system": UCUM}}],
        },
    )


def contained_r4() -> dict[str, Any]:
    """An R4 administration of a contained Medication read by its ingredients, given at one time."""
    res = r4(medicationReference={"reference": "#med1", "display": "potassium chloride in saline"},
             contained=[{"resourceType": "Medication", "id": "med1", "ingredient": [
                 {"itemCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "8591",
                                                      "display": "KCl"}]},
                  "strength": {"numerator": {"value": 20, "unit": "meq"}, "denominator": {"value": 1000, "unit": "mL"}}}]}],
             effectiveDateTime="2026-03-02T09:00:00-05:00")
    del res["medicationCodeableConcept"], res["effectivePeriod"]
    res["dosage"] = {"dose": {"value": 1000, "unit": "mL"},
                     "rateRatio": {"numerator": {"value": 125, "unit": "mL"}, "denominator": {"value": 1, "unit": "h"}},
                     "extension": [{"url": "https://fhir-ehr.cerner.com/r4/StructureDefinition/infuse-over-time",
                                    "valueQuantity": {"value": 8, "unit": "h"}}]}
    return res


def rich_r5() -> dict[str, Any]:
    return r5(note=[{"authorString": "RN Smith", "text": "tolerated well"}],
              performer=[{"actor": {"reference": {"reference": "Practitioner/pr-1", "display": "Nurse Smith"}}}],
              reason=[{"concept": {"text": "lymphoma"}}],
              device=[{"concept": {"text": "peripheral IV left hand", "coding": [{"system": SCT, "code": "19923001"}]}}])


def encounter_r4() -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": "e-1", "status": "finished",
            "identifier": [{"system": "urn:visit", "value": "V1"}],
            "class": {"system": V3_ACT, "code": "AMB", "display": "ambulatory"},
            "type": [{"text": "infusion visit"}],
            "subject": {"reference": "Patient/p-1", "display": "Doe, Jane"},
            "participant": [{"individual": {"reference": "Practitioner/pr-1", "display": "Dr Who"}}],
            "period": {"start": "2026-03-02T08:00:00-05:00", "end": "2026-03-02T12:00:00-05:00"},
            "reasonCode": [{"text": "lymphoma"}],
            "hospitalization": {"admitSource": {"text": "home"}, "dischargeDisposition": {"text": "home"}},
            "location": [{"location": {"reference": "Location/l-1", "display": "Infusion center bay 3"}}],
            "serviceProvider": {"reference": "Organization/o-1", "display": "General Hospital"}}


def encounter_r5() -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": "e-1", "status": "completed",
            "class": [{"coding": [{"system": V3_ACT, "code": "AMB"}]}],
            "subject": {"reference": "Patient/p-1", "display": "Doe, Jane"},
            "actualPeriod": {"start": "2026-03-02T08:00:00-05:00", "end": "2026-03-02T12:00:00-05:00"}}


def bundle() -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "id": "b-1",
            "entry": [{"fullUrl": "urn:uuid:0b0b0b0b-0000-4000-8000-000000000001", "resource": r4()},
                      {"fullUrl": "urn:uuid:0b0b0b0b-0000-4000-8000-000000000002", "resource": encounter_r4()}]}


FHIR_BASES = {"r4": rich_r4, "r4-contained": contained_r4, "r5": rich_r5, "encounter-r4": encounter_r4,
              "encounter-r5": encounter_r5, "bundle": bundle}
LEAF_VALUES: tuple[tuple[str, Any], ...] = (("text", TEXT), ("id", MRN), ("date", BIRTH), ("number", int(BIRTH_HL7)),
                                            ("object", {ODD_KEY: TEXT}))


def nodes(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every element of a JSON document with its path, the document itself first."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from nodes(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from nodes(v, (*path, i))


def planted(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


def _own_id(doc: dict[str, Any], path: tuple[Any, ...]) -> bool:
    """Is ``path`` a record's own id (the resource's, or a Bundle entry's resource's)?"""
    if doc.get("resourceType") == "Bundle":
        return len(path) == 4 and path[0] == "entry" and path[2:] == ("resource", "id")
    return path == ("id",)


def _second_fault(doc: dict[str, Any]) -> dict[str, Any]:
    """The same document with an invalid status too: the error then names the record."""
    doc = copy.deepcopy(doc)
    targets = [e.get("resource") for e in doc.get("entry", []) if isinstance(e, dict)] if doc.get("resourceType") == "Bundle" else [doc]
    for t in targets:
        if isinstance(t, dict):
            t["status"] = "not-a-status"
    return doc


def fhir_probes() -> list[Probe]:
    out = []
    for base_name, make in FHIR_BASES.items():
        base = make()
        for path, node in nodes(base):
            if not path:
                continue
            where = f"{base_name}:{'.'.join(map(str, path))}"
            if isinstance(node, dict):
                variants = [("text", TEXT), ("key", {**node, ODD_KEY: MRN})]
            elif isinstance(node, list):
                variants = [("text", TEXT), ("item", [*node, TEXT])]
            else:
                variants = list(LEAF_VALUES)
            for tag, value in variants:
                doc = planted(base, path, value)
                shown = value if _own_id(base, path) and isinstance(value, str) and _FHIR_ID.fullmatch(value) else None
                out.append(Probe(f"{where}={tag}", "fhir", json.dumps(doc), shown))
                if tag in ("text", "id") and path[-1] != "status":  # at status the marker is the invalid status
                    out.append(Probe(f"{where}={tag}+bad-status", "fhir", json.dumps(_second_fault(doc)), shown))
    ma = json.dumps(r4())
    raw = [  # documents that are not JSON, or not JSON this product reads
        ("duplicate-odd-key", '{"resourceType": "MedicationAdministration", "%s": 1, "%s": 2}' % (ODD_KEY, ODD_KEY)),
        ("duplicate-status", ma[:-1] + ', "status": "%s"}' % TEXT),
        ("unterminated", '{"resourceType": "MedicationAdministration", "id": "%s' % TEXT),
        ("garbage", f"{TEXT} {{"),
        ("string", json.dumps(TEXT)),
        ("list", json.dumps([TEXT, MRN])),
        ("bundle-entry", json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [TEXT, {"resource": TEXT}, {"fullUrl": MRN}]})),
        ("huge-number", '{"resourceType": "MedicationAdministration", "id": "%s", "x": %s}' % (TEXT, "7" * 5000)),
        ("deep", "[" * 5000 + json.dumps(TEXT) + "]" * 5000),
        ("no-resource-type", json.dumps({"id": MRN, "name": TEXT})),
    ]
    out += [Probe(f"raw:{tag}", "fhir", text) for tag, text in raw]
    return out


# --- HL7 bases and probes ---------------------------------------------------------------------

def ras() -> list[str]:
    """A RAS^O17 with the fields the product reads and the PHI-bearing ones it never reads."""
    return [
        msh("MSG1"),
        segment("EVN", {1: "O17", 2: "20261102093000", 5: "nurse1^Smith^Ann"}),
        segment("PID", {1: "1", 2: "ext-1", 3: "MRN1^^^HOSP^MR", 4: "alt-1", 5: "DOE^JANE^Q", 6: "ROE^MARY", 7: "19700101", 8: "F",
                        11: "1 MAIN ST^^TOWN^ST^12345", 13: "^PRN^PH^^^555^0100", 18: "ACCT1", 19: "123-45-6789"}),
        segment("PV1", {1: "1", 2: "O", 3: "INF^BAY3^1", 7: "1234^WHO^DOCTOR", 18: "OBS", 19: "V1^^^HOSP^VN",
                        44: "20261102080000", 45: "20261102120000"}),
        segment("ORC", {1: "RE", 2: "P1", 3: "F1", 9: "20261102085000", 12: "1234^WHO^DOCTOR"}),
        segment("RXA", {1: "0", 2: "1", 3: "202611020900", 4: "202611021040",
                        5: "J9312^rituximab^HPC^00000-0000-00^rituximab 10 mg/mL^NDC", 6: "700", 7: "mg", 9: "^tolerated well",
                        10: "nurse1^Smith^Ann", 11: "^^^INF", 12: "H1", 20: "CP", 21: "A", 23: "250", 24: "mL"}),
        segment("RXR", {1: "IV^intravenous^HL70162", 2: "RA^right arm", 3: "PORT1^Implanted port", 4: "IVP^IV push^HL70165",
                        6: "upper"}),
        segment("NTE", {1: "1", 3: "patient comment"}),
    ]


def adt() -> list[str]:
    return [
        msh("ADT1", message="ADT^A03^ADT_A03"),
        segment("EVN", {1: "A03", 2: "20261102120000", 5: "clerk1^Jones^Bo"}),
        segment("PID", {1: "1", 3: "MRN1^^^HOSP^MR", 5: "DOE^JANE", 7: "19700101", 11: "1 MAIN ST^^TOWN^ST^12345"}),
        segment("PV1", {1: "1", 2: "O", 7: "1234^WHO^DOCTOR", 19: "V1^^^HOSP^VN", 44: "20261102080000", 45: "20261102120000"}),
    ]


HL7_BASES = {"ras": ras, "adt": adt}
HL7_VALUES: tuple[tuple[str, str], ...] = (
    ("text", HL7_TEXT), ("id", MRN), ("date", BIRTH_HL7), ("structured", f"{NAME}^JANE^^^{BIRTH_HL7}~{MRN}^^^HOSP^MR"),
    ("control", f"{NAME}\x01{MRN}"), ("escaped", f"{NAME}\\F\\X\\X0D\\{MRN}"),
)
SHORT_NAME = f"ZZP, JANE {BIRTH_HL7}"  # "LAST, FIRST": a line whose first three letters look like a Z-segment's name
BROKEN_LINE = "this line is not a segment"  # the second fault: the message cannot be read


def _shown_control_id(value: str) -> str | None:
    first = value.split("~")[0].split("^")[0]
    return first if _CONTROL_ID.fullmatch(first) else None


def hl7_probes() -> list[Probe]:
    out = []

    def add(name: str, lines: list[str], shown: str | None = None) -> None:
        out.append(Probe(name, "hl7", "\r".join(lines), shown))
        out.append(Probe(name + "+unreadable", "hl7", "\r".join([*lines, BROKEN_LINE]), shown))

    for base_name, make in HL7_BASES.items():
        segs = make()
        for i, seg in enumerate(segs):
            fields = seg.split("|")
            name = fields[0]
            for idx in range(1, len(fields) + 1):  # every field, and one past the last
                number = idx + 1 if name == "MSH" else idx  # MSH-1 is the separator: index 1 holds MSH-2
                current = fields[idx] if idx < len(fields) else ""
                components = current.split("^") if current else []
                variants = list(HL7_VALUES)
                if len(components) > 1:
                    variants += [(f"component{c + 1}", "^".join([*components[:c], HL7_TEXT, *components[c + 1:]]))
                                 for c in range(len(components))]
                for tag, value in variants:
                    changed = [*fields, *[""] * (idx + 1 - len(fields))]
                    changed[idx] = value
                    lines = list(segs)
                    lines[i] = "|".join(changed)
                    shown = _shown_control_id(value) if (name, number) == ("MSH", 10) else None
                    add(f"{base_name}:{name}-{number}={tag}", lines, shown)
            for tag, line in (("free-text", HL7_TEXT), ("short-name", SHORT_NAME)):
                add(f"{base_name}:{name}={tag}", [*segs[:i], line, *segs[i + 1:]])
                add(f"{base_name}:{name}+{tag}", [*segs[:i + 1], line, *segs[i + 1:]])
            add(f"{base_name}:{name}+z-segment", [*segs[:i + 1], f"ZPH|{HL7_TEXT}|{MRN}", *segs[i + 1:]])
        # a field separator that is a letter or digit: no field can be read, MSH-10 included
        header = segs[0].split("|")
        header[9] = MRN
        for sep in ("Q", "8"):
            add(f"{base_name}:MSH-1={sep}", [sep.join(header), *segs[1:]])
        add(f"{base_name}:MSH-1=free-text", ["MSH" + HL7_TEXT, *segs[1:]])
    return out


PROBES = {"fhir": fhir_probes(), "hl7": hl7_probes()}


# --- the worker's rooms, in process ------------------------------------------------------------

class FakeProducer:
    """kafka-python's producer as the Outbox uses it: every record kept."""

    def __init__(self) -> None:
        self.sent: list[SimpleNamespace] = []

    def send(self, topic: str, *, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> Any:
        self.sent.append(SimpleNamespace(topic=topic, key=key, value=value, headers=list(headers or [])))
        return SimpleNamespace(failed=lambda: False, is_done=True)


class FakeConsumer:
    """What the close hold asks of the consumer: every input partition read to its end."""

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}

    def position(self, tp: TopicPartition) -> int:
        return 0


def _rooms(tmp_path: Any) -> SimpleNamespace:
    settings = Settings(state_dir=tmp_path, metrics_port=None)
    stats = {k: 0 for k in ("input", "events", "dead_letters", "revisions", "coding_failures", "revisions_too_large", "blocked")}
    metrics, producer = Metrics(), FakeProducer()
    outbox = Outbox(lambda: producer, metrics, transactional=False, stuck_after_s=60)
    dead = DeadLetters(settings.topics.dead_letter, settings.max_dead_letter_bytes, outbox, metrics, stats)
    intake = Intake(settings, TZ, outbox, dead, CloseHold(settings.hold_grace_ms, lambda: 100.0, metrics), stats)
    processor = EncounterProcessor(settings, load_formulary(), Profile(), StateStores(tmp_path, settings.topics.state), outbox,
                                   dead, metrics, stats, lambda: 100.0)
    return SimpleNamespace(settings=settings, metrics=metrics, producer=producer, intake=intake, processor=processor)


def _record(topic: str, value: bytes, timestamp: int, key: bytes | None = None, headers: list | None = None) -> SimpleNamespace:
    # one partition and offset for all: no number in a header or log line can look like a marker
    return SimpleNamespace(topic=topic, partition=0, offset=7, timestamp=timestamp, key=key, value=value, headers=headers or [])


def _run_worker(rooms: SimpleNamespace, probe: Probe, timestamp: int) -> tuple[list[SimpleNamespace], list[SimpleNamespace]]:
    """One probe through the input side, then its events through the events side, the
    encounter closed and coded: the events messages and the dead letters it caused."""
    t = rooms.settings.topics
    topics = (t.fhir_administrations, t.fhir_encounters) if probe.feed == "fhir" else (t.hl7_ras, t.hl7_adt)
    sent_before = len(rooms.producer.sent)
    topic = topics[timestamp // 1000 % 2]  # administrations and encounters topics in turn (the same reader)
    # marked as a re-drive, by a header holding the markers too: a dead letter copies that header
    headers = [(REDRIVE_HEADER, f"{NAME} {MRN}".encode()), ("patient", MRN.encode())]
    rooms.intake.handle(_record(topic, probe.text.encode(), timestamp, key=MRN.encode(), headers=headers))
    rooms.intake.release(FakeConsumer(), [TopicPartition(topic, 0)])
    rooms.intake.flush()
    events = [r for r in rooms.producer.sent[sent_before:] if r.topic == t.events]
    for r in events:
        rooms.processor.handle(_record(t.events, r.value, timestamp, key=r.key))
        basis = json.dumps({IDLE_CLOSE: timestamp, "encounter": r.key.decode()}).encode()
        rooms.processor.handle(_record(t.events, basis, timestamp, key=r.key))
    rooms.processor.changelog()
    return events, [r for r in rooms.producer.sent[sent_before:] if r.topic == t.dead_letter]


def _count(metrics: Metrics) -> float:
    """Encounters coded so far."""
    (family,) = metrics.coding_seconds.collect()
    return next(s.value for s in family.samples if s.name.endswith("_count"))


def _log_lines(records: list[logging.LogRecord]) -> Iterator[str]:
    as_json, plain = JsonFormatter(), logging.Formatter("%(levelname)s %(name)s %(message)s")
    for r in records:
        yield as_json.format(r)
        yield plain.format(r)  # with the traceback, if any


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record at every level, from every logger but kafka-python's (not in play: no broker)."""
    kafka = logging.getLogger("kafka")
    level = kafka.level
    kafka.setLevel(logging.CRITICAL + 1)
    with caplog.at_level(logging.DEBUG):
        yield caplog
    kafka.setLevel(level)


# --- the probes ------------------------------------------------------------------------------------

def test_the_probes_plant_the_markers_in_every_element_and_field():
    fhir, hl7 = PROBES["fhir"], PROBES["hl7"]
    planted_at = {p.name.split("=")[0] for p in [*fhir, *hl7]}
    for base_name, make in FHIR_BASES.items():
        for path, _ in nodes(make()):
            if path:
                assert f"{base_name}:{'.'.join(map(str, path))}" in planted_at
    for base_name, make in HL7_BASES.items():
        for seg in make():
            name, width = seg.split("|")[0], len(seg.split("|")) - (0 if seg.startswith("MSH") else 1)
            for number in range(2 if name == "MSH" else 1, width + 1):
                assert f"{base_name}:{name}-{number}" in planted_at
    assert all(LEAK.search(p.text) for p in [*fhir, *hl7])
    assert leaks(f"x: {NAME}") and leaks(f"a, {BIRTH_HL7[:4]}-11-22") and leaks("ZZP: not an HL7 segment")
    assert leaks(f"message 1: RAS^O17/{MRN}: MSH-9", MRN) == [] and leaks(f"message 1: {MRN}: RXA-3: {MRN}x", MRN) == ["MRNZZ"]


@pytest.mark.parametrize("feed", ["fhir", "hl7"])
def test_no_marker_reaches_the_worker_logs_metrics_or_dead_letter_headers(feed, tmp_path, all_logs):
    rooms = _rooms(tmp_path)
    found: list[str] = []
    probes = PROBES[feed]
    dead_lettered = taken = coded = 0
    for n, probe in enumerate(probes):
        all_logs.clear()
        before = _count(rooms.metrics)
        events, letters = _run_worker(rooms, probe, timestamp=1_000_000 + n * 1000)
        dead_lettered += bool(letters)
        taken += bool(events)
        coded += _count(rooms.metrics) > before
        for letter in letters:
            for key, value in letter.headers:  # the value is the message itself, for re-drive: not checked
                shown = probe.shown_id if key == "error.message" else None
                if hits := leaks(value.decode("utf-8", "replace"), shown):
                    found.append(f"{probe.name}: dead-letter header {key}: {hits}: {value[:300]!r}")
        for line in _log_lines(all_logs.records):
            if hits := leaks(line):
                found.append(f"{probe.name}: log: {hits}: {line[:300]}")
    metrics = rooms.metrics.render().decode()
    if hits := leaks(metrics):
        found.append(f"metrics: {hits}")
    assert not found, f"{len(found)} leaks, e.g.:\n" + "\n".join(found[:25])
    # the probes were refused, taken and coded: the error paths and the coding were reached (a
    # marker where the product reads nothing maps to the record held already: not coded again)
    print(f"{len(probes)} probes: {dead_lettered} dead-lettered, {taken} taken, {coded} coded")
    assert dead_lettered > len(probes) / 4 and taken > len(probes) / 10 and coded > 25


def _code(paths: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    return main(["code", *paths], io.StringIO(), err), err.getvalue()


def _cli_batches(feed: str, tmp_path: Any) -> Iterator[tuple[list[Probe], str]]:
    """The probes in files for ``code``: many to a file where each keeps its own line (NDJSON)
    or message (HL7), one to a file where it would not (the raw FHIR texts, also as .json)."""
    probes = PROBES[feed]
    if feed == "fhir":
        lined = [p for p in probes if not p.name.startswith("raw:")]
        path = tmp_path / "probes.ndjson"
        path.write_text("\n".join(p.text for p in lined) + "\n")
        yield lined, str(path)
        for i, p in enumerate(x for x in probes if x.name.startswith("raw:")):
            path = tmp_path / f"probe{i}.json"
            path.write_text(p.text)
            yield [p], str(path)
            path = tmp_path / f"probe{i}.ndjson"
            path.write_text(p.text)
            yield [p], str(path)
        return
    one = [p.text.startswith("MSH") and [m for _, m in split_messages(p.text)] == [p.text] for p in probes]
    batched = [p for p, ok in zip(probes, one) if ok]
    alone = [p for p, ok in zip(probes, one) if not ok]
    path = tmp_path / "probes.hl7"
    path.write_bytes("\r".join(p.text for p in batched).encode("latin-1"))
    yield batched, str(path)
    for i, p in enumerate(alone):
        path = tmp_path / f"probe{i}.hl7"
        path.write_bytes(p.text.encode("latin-1"))
        yield [p], str(path)


@pytest.mark.parametrize("feed", ["fhir", "hl7"])
def test_no_marker_reaches_the_code_command_stderr(feed, tmp_path, all_logs):
    found: list[str] = []
    rejected = 0
    for probes, path in _cli_batches(feed, tmp_path):
        status, err = _code([path])
        assert status in (0, 1, 2) and "Traceback" not in err
        rejected += err.count("rejected: ")
        unit = "line" if path.endswith(".ndjson") else "message"
        for line in err.splitlines():
            at = re.search(rf", {unit} (\d+)", line)
            probe = probes[int(at.group(1)) - 1] if at and len(probes) > 1 else probes[0] if len(probes) == 1 else None
            if hits := leaks(line, probe.shown_id if probe else None):
                found.append(f"{probe.name if probe else path}: stderr: {hits}: {line[:300]}")
        for line in _log_lines(all_logs.records):
            if hits := leaks(line):
                found.append(f"{path}: log: {hits}: {line[:300]}")
        all_logs.clear()
    assert not found, f"{len(found)} leaks, e.g.:\n" + "\n".join(found[:25])
    assert rejected > len(PROBES[feed]) / 4


ENCOUNTER_KEYS = re.compile(r"(context|encounter)\.reference=|encounter-r\d:id=|entry\.1\.resource\.id=|PV1-19=")


@pytest.mark.parametrize("feed", ["fhir", "hl7"])
def test_a_coding_defect_names_the_encounter_on_stderr_only_by_an_id(feed, tmp_path, monkeypatch):
    """The markers planted where the encounter's id comes from, coded by a coding core that fails:
    the command names the encounter, by its id only when that is shaped like one (an HL7 visit
    number may be free text)."""
    def defect(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a defect")

    monkeypatch.setattr("connectors.cli.code_encounter", defect)
    probes = [p for p in PROBES[feed] if ENCOUNTER_KEYS.search(p.name) and "+" not in p.name]
    assert len(probes) >= 10
    found, failed = [], 0
    for i, probe in enumerate(probes):
        path = tmp_path / (f"probe{i}.ndjson" if feed == "fhir" else f"probe{i}.hl7")
        path.write_text(probe.text)
        _, err = _code([str(path)])
        failed += "coding failed" in err
        named = re.sub(rf"Encounter/{_FHIR_ID.pattern}: coding failed", "Encounter/<id>: coding failed", err)
        if hits := leaks(named):
            found.append(f"{probe.name}: stderr: {hits}: {err[:300]}")
    assert not found, "\n".join(found[:25])
    assert failed >= 5  # most FHIR probes here are refused: a reference must carry a FHIR id


def test_no_marker_reaches_logs_or_dead_letters_from_unreadable_events(tmp_path, all_logs):
    """The events side refuses what it cannot read (a defect or a foreign producer on the events
    topic) without repeating it."""
    rooms = _rooms(tmp_path)
    events = rooms.settings.topics.events
    good = json.loads(_run_worker(rooms, Probe("r4", "fhir", json.dumps(r4())), 1_000)[0][0].value)[RECORDS][0]
    bad = [
        TEXT.encode(), json.dumps(TEXT).encode(), json.dumps({RECORDS: TEXT}).encode(), json.dumps({RECORDS: [TEXT]}).encode(),
        json.dumps({RECORDS: [{**good, "kind": TEXT}]}).encode(), json.dumps({RECORDS: [{**good, "id": MRN, "version": TEXT}]}).encode(),
        json.dumps({RECORDS: [{**good, "administration": {**good["administration"], "status": TEXT}}]}).encode(),
        json.dumps({RECORDS: [{**good, "administration": {**good["administration"], "start": BIRTH + "T" + TEXT}}]}).encode(),
        json.dumps({IDLE_CLOSE: TEXT, "encounter": MRN}).encode(), json.dumps({IDLE_CLOSE: 5, "encounter": {NAME: MRN}}).encode(),
    ]
    for value in bad:
        rooms.processor.handle(_record(events, value, 2_000, key=MRN.encode()))
    letters = [r for r in rooms.producer.sent if r.topic == rooms.settings.topics.dead_letter]
    assert len(letters) > len(bad) / 2
    found = [f"header {k}: {v!r}" for r in letters for k, v in r.headers if leaks(v.decode("utf-8", "replace"))]
    found += [line for line in _log_lines(all_logs.records) if leaks(line)]
    found += leaks(rooms.metrics.render().decode())
    assert not found, "\n".join(map(str, found[:25]))
