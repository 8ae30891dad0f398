"""HL7 v2 in: RAS (pharmacy administration) and ADT messages -> the same events as FHIR.

Every HL7 field the product reads is named in :data:`HL7_FIELDS` — one place to look when an
interface team asks "where do you take the access site from?" (``RXR-3``, else ``RXR-2`` +
``RXR-6``).  Reading is done by the lean reader (:mod:`mapping.hl7_er7`); hl7apy
(:mod:`mapping.hl7_reference`) reads the same messages in the differential test, which proves
``extract`` gets the same values from both.  A message is mapped whole or rejected whole with
a :class:`MappingError` naming its control id, segment and field — never a value.

RAS: one administration per RXA; the RXR after a run of RXAs applies to each of them.
RXA-21 action code: A adds, X (no change) is read as A, U replaces the earlier administration,
D deletes it (it is kept as entered-in-error so the encounter's explanation still lists it).
A rate is RXA-6/7 per RXA-12 (``125`` ``mL`` per ``H1``), or RXA-6 in a rate unit in RXA-7
(``10`` ``mL/h``, ``100`` ``mg/min``): a volume per time feeds the arithmetic, a drug per time is
kept as text, and a rate that cannot be read is ignored with a warning (never rejected).
Routes (RXR-1) and methods (RXR-4) are read in the coding system named in component 3 (HL7
tables 0162 / 0165 when it is empty), then by their text.  Numbers and dates are bounded (:data:`MAX_AMOUNT`,
:data:`PLAUSIBLE_YEARS`) so nothing downstream can overflow.
ADT: A01/A04 open, A03 closes (discharge time PV1-45), A11 cancels, A13 reopens, A08/A06/A07
update the patient class.  The trigger is MSH-9.2, else EVN-1 (older senders).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from coding_core.formulary import HCPCS_SYSTEM, NDC_SYSTEM, RXNORM_SYSTEM
from coding_core.model import AdministrationEvent, AdminStatus, Coding, EncounterClass, EncounterInfo, Method, Quantity, Ref
from mapping.collector import FeedCollector, Mapped, stamped
from mapping.errors import MappingError, summarize_validation_errors
from mapping.hl7_er7 import Er7Error, read_segments, split_messages
from mapping.references_out import ADMINISTRATION_SYSTEM
from mapping.vocabulary import (
    PER_HOUR,
    V2_0162,
    V2_0165,
    VOLUME_UNITS,
    Rate,
    access_type,
    end_of_single_time,
    implied_method,
    method_of,
    ndc_of,
    read_rate,
    route_of,
    says_kvo,
    volume_ml,
)


class Segment(Protocol):
    name: str

    def get(self, field: int, component: int = 1, repetition: int = 1) -> str: ...

    def read_many(self, reads: Iterable[tuple[str, int, int]]) -> dict[str, str]: ...

    def repetitions(self, field: int) -> int: ...


# name -> (segment, field, component).  First repetition unless stated in the code.
HL7_FIELDS: dict[str, tuple[str, int, int]] = {
    "message_time": ("MSH", 7, 1), "message_code": ("MSH", 9, 1), "trigger_event": ("MSH", 9, 2),
    "control_id": ("MSH", 10, 1),  # with MSH-3/4: a delivery seen again is a duplicate
    "sending_application": ("MSH", 3, 1), "sending_facility": ("MSH", 4, 1),
    "event_type": ("EVN", 1, 1),  # only in place of an empty MSH-9.2 (see FALLBACKS)
    # Identifier only: names and birth dates are never read.  Of several PID-3 repetitions, the
    # one whose type (PID-3.5) is MR; else the first (see extract).
    "patient_id": ("PID", 3, 1), "patient_id_type": ("PID", 3, 5),
    "patient_authority": ("PID", 3, 4), "account": ("PID", 18, 1), "account_authority": ("PID", 18, 4),
    "point_of_care": ("PV1", 3, 1), "facility": ("PV1", 3, 4),  # the performing location; PV1-3.1 keys the cost centre
    "visit_authority": ("PV1", 19, 4),
    "patient_class": ("PV1", 2, 1), "patient_type": ("PV1", 18, 1),
    "visit_number": ("PV1", 19, 1), "admit_time": ("PV1", 44, 1), "discharge_time": ("PV1", 45, 1),
    "placer_order": ("ORC", 2, 1), "filler_order": ("ORC", 3, 1),
    "give_sub_id": ("RXA", 1, 1), "administration_sub_id": ("RXA", 2, 1),
    "start": ("RXA", 3, 1), "end": ("RXA", 4, 1),
    "drug_code": ("RXA", 5, 1), "drug_text": ("RXA", 5, 2), "drug_system": ("RXA", 5, 3),
    "drug_alt_code": ("RXA", 5, 4), "drug_alt_text": ("RXA", 5, 5), "drug_alt_system": ("RXA", 5, 6),
    "amount": ("RXA", 6, 1), "amount_units": ("RXA", 7, 1),
    "performer": ("RXA", 10, 1), "performer_authority": ("RXA", 10, 9),  # identifier only, never the name
    "notes": ("RXA", 9, 2),
    "per_time_unit": ("RXA", 12, 1),  # present: RXA-6/7 is a rate (e.g. 125 mL per H1)
    "completion_status": ("RXA", 20, 1), "action_code": ("RXA", 21, 1),
    "volume": ("RXA", 23, 1), "volume_units": ("RXA", 24, 1),
    "route": ("RXR", 1, 1), "route_text": ("RXR", 1, 2), "route_system": ("RXR", 1, 3),
    "site": ("RXR", 2, 1), "site_text": ("RXR", 2, 2),
    "device": ("RXR", 3, 1), "device_text": ("RXR", 3, 2),  # the access line: identity of the access site
    "method": ("RXR", 4, 1), "method_text": ("RXR", 4, 2), "method_system": ("RXR", 4, 3),
    "site_modifier": ("RXR", 6, 1),
}
HEADER_SEGMENTS = ("MSH", "EVN", "PID", "PV1")
ORDER_SEGMENTS = ("ORC", "RXA", "RXR")
# name -> the field read in its place when it is empty.  Older ADT senders put the trigger in
# EVN-1 only.  (EVN-1 is withdrawn from v2.8: hl7apy cannot see it there, so extract never
# returns it on its own — only as the trigger of a message whose MSH-9.2 is empty.)
FALLBACKS: dict[str, str] = {"trigger_event": "event_type"}

# HL7 table 0322 completion status; table 0004 patient class.
COMPLETION_STATUS = {"": AdminStatus.COMPLETED, "CP": AdminStatus.COMPLETED, "PA": AdminStatus.STOPPED,
                     "RE": AdminStatus.NOT_DONE, "NA": AdminStatus.NOT_DONE}
PATIENT_CLASS = {"I": EncounterClass.INPATIENT, "O": EncounterClass.AMBULATORY, "R": EncounterClass.AMBULATORY,
                 "E": EncounterClass.EMERGENCY, "B": EncounterClass.AMBULATORY, "P": EncounterClass.OTHER,
                 "N": EncounterClass.OTHER, "U": EncounterClass.OTHER, "C": EncounterClass.OTHER}
OBSERVATION_PATIENT_TYPES = {"OBS", "OBV", "OBSERVATION"}  # PV1-18 values that make "O" an observation stay
CODING_SYSTEMS = {"HPC": HCPCS_SYSTEM, "HCPCS": HCPCS_SYSTEM, "NDC": NDC_SYSTEM, "N0": NDC_SYSTEM,
                  "RXNORM": RXNORM_SYSTEM, "RXN": RXNORM_SYSTEM}
# HL7 table 0206 segment action code -> how the administration is kept (X: no change).
ACTION_MODES = {"A": "versioned", "X": "versioned", "U": "replace", "D": "replace"}
# ADT trigger -> the encounter status it sets (None: an update of the PV1 only, e.g. the class).
ADT_STATUS = {"A01": "in-progress", "A04": "in-progress", "A03": "finished", "A11": "cancelled", "A13": "in-progress",
              "A08": None, "A06": None, "A07": None}  # A06/A07: changed outpatient <-> inpatient
RAS_TRIGGERS = {"O17", "O01", "O02"}
_SAFE_ID = re.compile(r"[^A-Za-z0-9.\-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PER_TIME = re.compile(r"([SMHD])(\d{0,4})")  # RXA-12: unit and count, e.g. H1, M30
SECONDS_PER = {"S": 1, "M": 60, "H": 3600, "D": 86400}
MAX_AMOUNT = Decimal(10) ** 9  # RXA-6 and RXA-23 are below this; anything larger is not a dose
MIN_AMOUNT = Decimal(10) ** -9  # ... and, unless zero, above this
PLAUSIBLE_YEARS = (1900, 2200)  # a time stamp outside these years is a typo, not a care event
_DTM = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?")


# The table regrouped by segment: what ``extract`` reads from each.
_READS: dict[str, tuple[tuple[str, int, int], ...]] = {
    seg: tuple((name, f, c) for name, (s, f, c) in HL7_FIELDS.items() if s == seg) for seg in (*HEADER_SEGMENTS, *ORDER_SEGMENTS)
}
_NO_VALUES: dict[str, dict[str, str]] = {seg: {name: "" for name, _, _ in reads} for seg, reads in _READS.items()}


def _values(segment: Segment | None, seg: str) -> dict[str, str]:
    if segment is None:
        return dict(_NO_VALUES[seg])
    return segment.read_many(_READS[seg])


def extract(segments: Sequence[Segment]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The values of :data:`HL7_FIELDS`: header fields, and one dict per RXA (with its ORC/RXR)."""
    first: dict[str, Segment] = {}
    administrations: list[dict[str, str]] = []
    orc = _values(None, "ORC")
    pending: list[dict[str, str]] = []
    for seg in segments:
        name = seg.name
        if name in HEADER_SEGMENTS:
            first.setdefault(name, seg)
        elif name == "ORC":
            orc, pending = _values(seg, "ORC"), []
        elif name == "RXA":
            values = {**orc, **_values(seg, "RXA"), **_NO_VALUES["RXR"]}
            administrations.append(values)
            pending.append(values)
        elif name == "RXR":
            rxr = _values(seg, "RXR")
            for values in pending:
                values.update(rxr)
            pending = []
    header: dict[str, str] = {}
    for seg_name in HEADER_SEGMENTS:
        header.update(_values(first.get(seg_name), seg_name))
    for name, fallback in FALLBACKS.items():
        value = header.pop(fallback)
        header[name] = header[name] or value
    pid = first.get("PID")
    if pid is not None and header["patient_id_type"].upper() != "MR" and pid.repetitions(3) > 1:
        for rep in range(2, pid.repetitions(3) + 1):  # the medical record number, not an SSN or a driver's licence
            if pid.get(3, 5, rep).strip().upper() == "MR":
                header["patient_id"], header["patient_authority"] = pid.get(3, 1, rep).strip(), pid.get(3, 4, rep).strip()
                header["patient_id_type"] = "MR"
                break
    return header, administrations


_CONTROL_ID_SHAPE = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_MESSAGE_TYPE_SHAPE = re.compile(r"[A-Z]{3}(\^[A-Z][0-9]{2}(\^[A-Z0-9_]{1,10})?)?")  # e.g. RAS^O17^RAS_O17


class _Fail:
    """Errors naming the message by its control id and type -- each only when it is shaped like
    one (a sender's free text in MSH-9 or MSH-10 is not repeated)."""

    def __init__(self, control_id: str | None, message_type: str | None):
        self.control_id = (control_id if _CONTROL_ID_SHAPE.fullmatch(control_id) else "(control id not shown)") if control_id else None
        self.message_type = (message_type if _MESSAGE_TYPE_SHAPE.fullmatch(message_type) else "(type not shown)") if message_type else None

    def __call__(self, field: str, reason: str) -> MappingError:
        return MappingError(f"{field}: {reason}", record_id=self.control_id, resource_type=self.message_type)


# "RXA-3", "RXA-5.2": how errors and warnings name a field.
LOCATION: dict[str, str] = {name: f"{s}-{f}" + (f".{c}" if c > 1 else "") for name, (s, f, c) in HL7_FIELDS.items()}


@lru_cache(maxsize=64)
def _fixed_offset(offset: str) -> timezone | None:
    """'+0100' / '-0500' -> a fixed-offset zone (shared: a feed uses a handful of offsets)."""
    hours, minutes = int(offset[1:3]), int(offset[3:5])
    if hours > 14 or minutes > 59:
        return None
    return timezone((1 if offset[0] == "+" else -1) * timedelta(hours=hours, minutes=minutes))


def parse_time(value: str, tz: ZoneInfo, field: str, fail: _Fail, notes: list[str]) -> datetime | None:
    """HL7 DTM -> aware datetime.  No offset: local to the site, DST-aware, with a warning when
    the local time is ambiguous (clocks back) or does not exist (clocks forward)."""
    if not value:
        return None
    m = _DTM.fullmatch(value)
    if m is None:
        raise fail(field, "not an HL7 timestamp (YYYYMMDDHHMM[SS][+/-ZZZZ])")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    if not PLAUSIBLE_YEARS[0] <= int(year) <= PLAUSIBLE_YEARS[1]:
        raise fail(field, f"not a plausible date (years {PLAUSIBLE_YEARS[0]} to {PLAUSIBLE_YEARS[1]})")
    if hour is None:
        notes.append(f"{field} has no time of day; it cannot be used for timing")
        try:
            date(int(year), int(month or 1), int(day or 1))
        except ValueError:
            raise fail(field, "not a valid date") from None
        return None
    try:
        naive = datetime(int(year), int(month), int(day), int(hour), int(minute or 0), int(second or 0),
                         int((frac or "0").ljust(6, "0")[:6]))
    except ValueError:
        raise fail(field, "not a valid date and time") from None
    if offset:
        fixed = _fixed_offset(offset)
        if fixed is None:
            raise fail(field, "UTC offset out of range")
        return naive.replace(tzinfo=fixed)
    early, late = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    offset = early.utcoffset()
    if offset != late.utcoffset():
        exists = early.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) == naive
        if exists:
            notes.append(f"{field}: local time is ambiguous (clocks went back); the first occurrence was used")
        else:
            notes.append(f"{field}: local time does not exist (clocks went forward); read with the offset before the change")
    # A fixed offset: zone-aware datetimes in a fold or gap compare unequal to everything (PEP 495).
    assert offset is not None
    return naive.replace(tzinfo=timezone(offset))


def _decimal(value: str, field: str, fail: _Fail) -> Decimal | None:
    if not value:
        return None
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise fail(field, "not a number") from None
    if not d.is_finite() or d < 0:
        raise fail(field, "not a non-negative number")
    if d >= MAX_AMOUNT or (d and d < MIN_AMOUNT):
        raise fail(field, f"out of range (0, or {MIN_AMOUNT:.0E} to below {MAX_AMOUNT:.0E})")
    return d


_TIME_WORDS = {unit.upper(): PER_HOUR[unit] for unit in PER_HOUR}  # RXA-12 spelled as a word: "min", "h"


def _per_time_unit(units: str) -> bool:
    """Is RXA-7 an amount per time ("mL/h", "mg/min", "mcg/kg/min"), not a dose ("mg/kg")?"""
    return "/" in units and units.replace(" ", "").lower().rsplit("/", 1)[1] in PER_HOUR


def _rate(amount: Decimal | None, units: str, per_time: str) -> Rate:
    """RXA-6/7 per RXA-12 (or RXA-6 in a rate unit in RXA-7) -> a :class:`Rate`; never raises."""
    where = LOCATION["per_time_unit"] if per_time else LOCATION["amount_units"]
    if not per_time:
        return read_rate(amount, units, where)
    per = _PER_TIME.fullmatch(per_time.upper())
    if per is not None and int(per.group(2) or 1) > 0:
        hours = Decimal(SECONDS_PER[per.group(1)] * int(per.group(2) or 1)) / Decimal(3600)
    elif per_time.upper() in _TIME_WORDS:
        hours = 1 / _TIME_WORDS[per_time.upper()]
    else:
        return Rate(ignored=f"{where} is not a time unit (S/M/H/D<n>); the rate is ignored")
    if amount is None:
        return Rate(ignored=f"{where} is given without an amount in RXA-6; the rate is ignored")
    return read_rate(amount / hours, f"{units}/h", where)


def _coded(system: str, code: str) -> list[tuple[str | None, str | None, str | None]]:
    return [(system or None, code, None)] if code else []


def _table(system: str, field_table: str) -> str | None:
    """The table a CWE's code is read in: its component 3 when named, else the field's HL7 table."""
    return None if system else field_table


def _codings(v: dict[str, str]) -> tuple[Coding, ...]:
    out = []
    for code, text, system in (("drug_code", "drug_text", "drug_system"), ("drug_alt_code", "drug_alt_text", "drug_alt_system")):
        if v[code]:
            sys_name = v[system].upper()
            uri = CODING_SYSTEMS.get(sys_name) or f"urn:local:{v[system] or 'unspecified'}"
            out.append(Coding(system=uri, code=v[code], display=v[text] or None))
    return tuple(out)


def _administration_id(raw: str) -> str:
    """A FHIR-safe id from ORC-3-RXA-1-RXA-2.  When characters had to be replaced, a digest of
    the original keeps distinct orders distinct ('F_1/2' and 'F-1-2' are different orders)."""
    safe = _SAFE_ID.sub("-", raw)
    if safe == raw and len(raw) <= 64:
        return raw
    return f"{safe[:55]}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


def _administration(header: dict[str, str], v: dict[str, str], tz: ZoneInfo, fail: _Fail, sent: datetime | None) -> Mapped:
    order = v["filler_order"] or v["placer_order"]
    if not order:
        raise fail("ORC-3/ORC-2", "no order number: the administration cannot be identified")
    for name in ("performer", "performer_authority"):
        if _CONTROL.search(v[name]):  # it would end up in FHIR identifiers
            raise fail(LOCATION[name], "contains control characters")
    admin_id = _administration_id(f"{order}-{v['give_sub_id'] or '0'}-{v['administration_sub_id'] or '1'}")
    status = COMPLETION_STATUS.get(v["completion_status"].upper())
    if status is None:
        raise fail(LOCATION["completion_status"], "not a completion status (HL7 table 0322: CP, PA, RE, NA)")
    action = v["action_code"].upper() or "A"
    if action not in ACTION_MODES:
        raise fail(LOCATION["action_code"], "not an action code (HL7 table 0206: A, U, D, X)")
    if action == "D":
        status = AdminStatus.ENTERED_IN_ERROR
    codings = _codings(v)
    if not codings and not v["drug_text"]:
        raise fail(LOCATION["drug_code"], "no administered code or text: the drug cannot be identified")

    notes: list[str] = []
    unrecognised: list[str] = []
    start = parse_time(v["start"], tz, LOCATION["start"], fail, notes)
    route, review = route_of(_coded(v["route_system"], v["route"]), v["route_text"] or None, _table(v["route_system"], V2_0162))
    if review:
        unrecognised.append("RXR-1 " + review.removeprefix("route "))
    method, review = method_of(_coded(v["method_system"], v["method"]), v["method_text"] or None, _table(v["method_system"], V2_0165))
    if review:
        unrecognised.append("RXR-4 " + review.removeprefix("method "))
    if method is Method.UNKNOWN:
        method = implied_method(_coded(v["route_system"], v["route"]))
    end = parse_time(v["end"], tz, LOCATION["end"], fail, notes) if v["end"] else end_of_single_time(start, method, route)

    amount = _decimal(v["amount"], LOCATION["amount"], fail)
    units = v["amount_units"]
    dose = None
    rate = Rate()
    rate_unit = _per_time_unit(units)
    if v["per_time_unit"] or rate_unit:  # RXA-6/7 is a rate ("125" "mL" per "H1", "10" "mL/h"), not a dose
        rate = _rate(amount, units, v["per_time_unit"])
        if rate.ignored:
            notes.append(rate.ignored)
    if rate.ml_per_h is None and rate.drug_rate is None and amount is not None and units and not rate_unit:
        dose = Quantity(value=amount, unit=units)  # no usable rate: RXA-6/7 is read as the dose
    volume = _decimal(v["volume"], LOCATION["volume"], fail)
    vol_ml = volume * VOLUME_UNITS[v["volume_units"].lower()] if volume is not None and v["volume_units"].lower() in VOLUME_UNITS else volume_ml(dose)

    site = " ".join(p for p in (v["site"], v["site_modifier"]) if p) or None
    device = v["device"] or v["device_text"] or None
    event = AdministrationEvent(
        id=admin_id,
        encounter_id=header["visit_number"],
        patient_id=header["patient_id"] or None,
        status=status,
        drug_codings=codings,
        drug_text=v["drug_text"] or None,
        route=route,
        method=method,
        start=start,
        end=end,
        access_device=device,
        body_site=site,
        access_type=access_type(None, v["device_text"], v["device"], v["site_text"]),
        dose=dose,
        volume_ml=vol_ml,
        rate_ml_per_h=rate.ml_per_h,
        drug_rate=rate.drug_rate,
        kvo=says_kvo(v["notes"], v["method_text"]),
        ndc=ndc_of(codings),
        performers=(Ref(resource_type="Practitioner", value=v["performer"], authority=v["performer_authority"] or None),)
        if v["performer"] else (),
        identifier=Ref(resource_type="MedicationAdministration", value=admin_id, system=ADMINISTRATION_SYSTEM),
        source_warnings=tuple(notes),
        unrecognised=tuple(unrecognised),
    )
    return stamped(Mapped("administration", admin_id, (None, sent), administration=event, mode=ACTION_MODES[action],
                          sources=_delivery(header)))


def _encounter(header: dict[str, str], trigger: str | None, tz: ZoneInfo, fail: _Fail) -> Mapped:
    fields: dict[str, object] = {"id": header["visit_number"]}
    fields["identifier"] = Ref(resource_type="Encounter", value=header["visit_number"], authority=header["visit_authority"] or None)
    if header["patient_id"]:
        fields["patient_id"] = header["patient_id"]
        fields["patient"] = Ref(resource_type="Patient", value=header["patient_id"], authority=header["patient_authority"] or None)
    if header["point_of_care"]:
        fields["location_code"] = header["point_of_care"]
        fields["location"] = Ref(resource_type="Location", value=header["point_of_care"], authority=header["facility"] or None)
    if header["account"]:
        fields["account"] = Ref(resource_type="Account", value=header["account"], authority=header["account_authority"] or None)
    pclass = header["patient_class"].upper()
    if pclass:
        cls = PATIENT_CLASS.get(pclass, EncounterClass.OTHER)
        if cls is EncounterClass.AMBULATORY and header["patient_type"].upper() in OBSERVATION_PATIENT_TYPES:
            cls = EncounterClass.OBSERVATION
        fields["encounter_class"] = cls
    notes: list[str] = []
    if trigger in ADT_STATUS:
        if ADT_STATUS[trigger] is not None:
            fields["status"] = ADT_STATUS[trigger]
        if trigger == "A03":
            fields["period_end"] = parse_time(header["discharge_time"], tz, LOCATION["discharge_time"], fail, notes)
        elif trigger == "A13":
            fields["period_end"] = None
        if header["admit_time"]:
            fields["period_start"] = parse_time(header["admit_time"], tz, LOCATION["admit_time"], fail, notes)
    info = EncounterInfo(**fields)  # type: ignore[arg-type]
    if not trigger:  # the PV1 copied into a RAS only fills gaps: ADT is the authority
        return Mapped("encounter", info.id, (None, None), encounter=info, mode="fill")
    # Messages can reach us out of order (several partitions); MSH-7 orders them, so a
    # late-arriving older A04 cannot reopen an encounter a newer A03 closed (same for RXA-21 U/D).
    sent = parse_time(header["message_time"], tz, LOCATION["message_time"], fail, [])
    return stamped(Mapped("encounter", info.id, (None, sent), encounter=info, mode="merge", sources=_delivery(header)))


def _delivery(header: dict[str, str]) -> tuple[str, ...]:
    """The message's identity for duplicate deliveries: its control id (MSH-10), qualified by
    the sending application and facility (MSH-3/MSH-4) when present."""
    control = header["control_id"]
    if not control:
        return ()
    sender = "^".join(p for p in (header["sending_application"], header["sending_facility"]) if p)
    return (f"hl7:{sender}|{control}",)


def map_message(message: str, tz: ZoneInfo) -> list[Mapped]:
    """One HL7 message -> its records (the encounter update first).  Raises MappingError only."""
    try:
        header, administrations = extract(read_segments(message))
    except Er7Error as e:
        raise MappingError(str(e), record_id=_control_id_of(message)) from None
    fail = _Fail(header["control_id"], "^".join(p for p in (header["message_code"], header["trigger_event"]) if p))
    try:
        return _map(header, administrations, tz, fail)
    except MappingError:
        raise
    except ValidationError as e:  # a value the event model refuses, e.g. an empty id
        raise fail("message", summarize_validation_errors(e.errors())) from None
    except (ArithmeticError, ValueError) as e:  # a safety net (OverflowError is an ArithmeticError)
        raise fail("message", f"a number or date out of range ({type(e).__name__})") from None


def _control_id_of(message: str) -> str | None:
    """MSH-10 by plain splitting, to name a message the readers could not split -- as
    :class:`_Fail` names it: only when it is shaped like a control id."""
    first = message.split("\r", 1)[0]
    if not first.startswith("MSH") or len(first) < 4 or first[3].isalnum():  # no field separator: no fields
        return None
    fields = first.split(first[3])
    return _Fail(fields[9].strip() if len(fields) > 9 else None, None).control_id


def _map(header: dict[str, str], administrations: list[dict[str, str]], tz: ZoneInfo, fail: _Fail) -> list[Mapped]:
    code, trigger = header["message_code"].upper(), header["trigger_event"].upper()
    if code not in ("RAS", "ADT"):
        raise fail("MSH-9", "not a RAS or ADT message")
    if code == "RAS" and trigger and trigger not in RAS_TRIGGERS:
        raise fail("MSH-9.2", "not a RAS administration trigger (O17, O01, O02)")
    if code == "ADT" and trigger not in ADT_STATUS:
        return []  # other ADT events carry nothing the coding needs
    if not header["visit_number"]:
        raise fail("PV1-19", "no visit number: the encounter cannot be identified")
    for name in ("visit_number", "patient_id", "patient_authority", "visit_authority", "account", "account_authority",
                 "point_of_care", "facility"):
        if _CONTROL.search(header[name]):  # it would end up in Kafka keys and FHIR references
            raise fail(LOCATION[name], "contains control characters")
    records = [_encounter(header, trigger if code == "ADT" else None, tz, fail)]
    if code == "RAS":
        if not administrations:
            raise fail("RXA", "a RAS message without an RXA segment administers nothing")
        sent = parse_time(header["message_time"], tz, LOCATION["message_time"], fail, [])
        given = [_administration(header, v, tz, fail, sent) for v in administrations]
        if len({m.id for m in given}) != len(given):
            # Told apart by position, an RXA-21 U or D naming the sub-ids could not say which it
            # corrects: rejected whole, not guessed (a guess could charge a dose twice).
            raise fail("RXA-1/RXA-2", "two administrations of one order share the same sub-ids: they cannot be told apart")
        records += given
    return records


def add_hl7_text(collector: FeedCollector, text: str, *, source: str, tz: ZoneInfo) -> None:
    """Every message of an HL7 file or stream into the collector; a bad message is reported
    (with its number and control id) and the next one is read."""
    for n, message in split_messages(text):
        position = f"message {n}"
        try:
            records = map_message(message, tz)
        except MappingError as e:
            collector.reject(e, source=source, position=position)
            continue
        if not records:
            collector.offer(None)
        for record in records:
            collector.offer(record)
