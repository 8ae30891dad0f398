"""FHIR in: MedicationAdministration and Encounter resources -> coding-core events.

Versions: R4/R4B (``context``, ``effective[x]``, ``medicationCodeableConcept``) are validated
with ``fhir.resources.R4B`` (R4 and R4B are identical for these two resources); R5
(``encounter``, ``occurence[x]`` — spelled that way in R5 — and ``medication`` as a
CodeableReference) with ``fhir.resources`` (R5).  The version is recognised from the R5-only
element names, so mixed feeds work.

Every FHIR element the product reads is named in :data:`FIELD_PATHS` — one place to look when
an interface team asks "where do you take the access site from?".  Code tables (route, method,
status, encounter class, access type) follow it.  Functions here raise
:class:`mapping.errors.MappingError` for a record that cannot be charged; they never log.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from fhir.resources.R4B.encounter import Encounter as EncounterR4
from fhir.resources.R4B.medication import Medication as MedicationR4
from fhir.resources.R4B.medicationadministration import MedicationAdministration as MedicationAdministrationR4
from fhir.resources.encounter import Encounter as EncounterR5
from fhir.resources.medication import Medication as MedicationR5
from fhir.resources.medicationadministration import MedicationAdministration as MedicationAdministrationR5
from pydantic import BaseModel, ValidationError

from coding_core.formulary import NDC_SYSTEM
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
from mapping.collector import FeedCollector, Mapped
from mapping.errors import MappingError, UnreadableSourceError, summarize_validation_errors
from mapping.fhir_bundle import BundleIndex, reference_form, resolved
from mapping.medications import MedicationCodes
from mapping.fhir_shapes import ShapeValidator
from mapping.vocabulary import (
    Rate,
    access_type,
    canonical_system,
    duration_minutes,
    end_of_single_time,
    implied_method,
    method_of,
    ndc_of,
    read_rate,
    route_of,
    says_kvo,
    volume_ml,
)

# Extensions this product defines (documented in docs/input-fhir.md).
EXT_BASE = "https://infusion-charges.dev/fhir/StructureDefinition/"
EXT_ACCESS_TYPE = EXT_BASE + "access-type"  # valueCode: peripheral | picc | central | port
EXT_WASTED = EXT_BASE + "wasted-amount"  # valueQuantity: documented discarded drug amount
EXT_PUMP = EXT_BASE + "pump-type"  # valueCode: portable | implantable
EXT_KVO = EXT_BASE + "keep-vein-open"  # valueBoolean
EXT_INFUSION_DURATION = EXT_BASE + "infusion-duration"  # valueDuration: the documented "infuse over" time
# Extensions on MedicationAdministration.dosage (or the resource) that document how long an
# infusion ran or was to run, as vendors publish them.  Read as valueDuration / valueQuantity
# in a time unit.
INFUSION_DURATION_EXTENSIONS: tuple[str, ...] = (
    EXT_INFUSION_DURATION,
    "https://fhir-ehr.cerner.com/r4/StructureDefinition/infuse-over-time",  # Oracle Health (Cerner) Millennium R4
    "https://fhir-ehr.cerner.com/dstu2/StructureDefinition/infuse-over-time",
)

# Where each event field comes from, per FHIR version.  The mapping code below follows this
# table; tests/test_fhir_in.py checks each row.
FIELD_PATHS: dict[str, dict[str, str]] = {
    "encounter_id": {"R4": "context.reference (Encounter/<id>)", "R5": "encounter.reference (Encounter/<id>)"},
    "patient_id": {"R4": "subject.reference (Patient/<id>)", "R5": "subject.reference (Patient/<id>)"},
    "status": {"R4": "status", "R5": "status"},
    "drug": {
        "R4": "medicationCodeableConcept.coding | medicationReference -> contained Medication.code, else its ingredient codings",
        "R5": "medication.concept.coding | medication.reference -> contained Medication.code, else its ingredient codings",
    },
    "medication_ref": {"R4": "medicationReference (Medication/<id>) neither contained nor in the Bundle: read from the "
                             "Medication reference topic (worker only)", "R5": "medication.reference, the same"},
    "start/end": {"R4": "effectivePeriod.start/end | effectiveDateTime", "R5": "occurencePeriod.start/end | occurenceDateTime"},
    "access_device": {"R4": "device[0].reference (Device/<id>) or .display", "R5": "device[0].reference.reference or .concept"},
    "body_site": {"R4": "dosage.site.coding[0].code or .text", "R5": "dosage.site.coding[0].code or .text"},
    "access_type": {"R4": f"extension {EXT_ACCESS_TYPE}, else words in device display/site text", "R5": "same"},
    "route": {"R4": "dosage.route (SNOMED CT, HL7 v2-0162, v3 RouteOfAdministration, NCI FDA route; display; text)", "R5": "same"},
    "method": {"R4": "dosage.method (SNOMED CT, HL7 v2-0165; display; text)", "R5": "same"},
    "dose": {"R4": "dosage.dose (value + UCUM code or unit)", "R5": "same"},
    "volume_ml": {"R4": "dosage.dose when its unit is a volume", "R5": "same"},
    "rate_ml_per_h": {"R4": "dosage.rateQuantity | dosage.rateRatio in a volume per time (mL/h, mL/min, L/h)", "R5": "same"},
    "drug_rate": {"R4": "dosage.rateQuantity | dosage.rateRatio in a drug amount per time (mg/min, units/h, mcg/kg/min)", "R5": "same"},
    "infusion_minutes": {"R4": "extension " + EXT_INFUSION_DURATION + " (or a vendor's, INFUSION_DURATION_EXTENSIONS) on dosage or the resource", "R5": "same"},
    "unrecognised": {"R4": "dosage.route / dosage.method codes no vocabulary knows (system|code)", "R5": "same"},
    "kvo": {"R4": f"dosage.text or method text containing KVO/TKO/keep vein open, or extension {EXT_KVO}", "R5": "same"},
    "part_of_procedure": {"R4": "partOf -> Procedure/<id>", "R5": "partOf -> Procedure/<id>"},
    "wasted": {"R4": f"extension {EXT_WASTED}", "R5": "same"},
    "pump": {"R4": f"extension {EXT_PUMP}", "R5": "same"},
    "ndc": {"R4": f"drug coding with system {NDC_SYSTEM}", "R5": "same"},
    "performers": {"R4": "performer[].actor (a literal reference to Practitioner, PractitionerRole, Patient, RelatedPerson, "
                         "Device or Organization)", "R5": "performer[].actor.reference"},
    "identifier": {"R4": "none: the charge names MedicationAdministration/<id> (HL7 sends an identifier instead)", "R5": "same"},
    "source_warnings": {"R4": "start/end given as a date without a time of day; a rate that is not a rate", "R5": "same"},
}


# Where each encounter field the charges carry comes from (both versions); tests/test_billing_posting.py
# checks the table names every such field.
ENCOUNTER_PATHS: dict[str, str] = {
    "patient": "subject (a literal reference to a Patient)",
    "location / location_code": "location[0].location (Location/<id>: the id is the cost-centre key)",
    "service_provider": "serviceProvider (Organization)",
    "account": "account[0] (R4 Encounter.account; R5 the same)",
}
PERFORMER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Device", "Organization")

# FHIR MedicationAdministration.status and Encounter.class codes.
STATUS_CODES: dict[str, AdminStatus] = {
    "completed": AdminStatus.COMPLETED, "in-progress": AdminStatus.IN_PROGRESS, "stopped": AdminStatus.STOPPED,
    "on-hold": AdminStatus.ON_HOLD, "not-done": AdminStatus.NOT_DONE,
    "entered-in-error": AdminStatus.ENTERED_IN_ERROR, "unknown": AdminStatus.UNKNOWN,
}
ENCOUNTER_CLASS_CODES: dict[str, EncounterClass] = {
    "amb": EncounterClass.AMBULATORY, "emer": EncounterClass.EMERGENCY, "obsenc": EncounterClass.OBSERVATION,
    "imp": EncounterClass.INPATIENT, "acute": EncounterClass.INPATIENT, "nonac": EncounterClass.INPATIENT,
    "hh": EncounterClass.OTHER, "vr": EncounterClass.OTHER, "prenc": EncounterClass.OTHER,
}
_R5_MA_KEYS = frozenset({"encounter", "occurenceDateTime", "occurencePeriod", "occurenceTiming", "medication", "recorded"})
_R4_MA_KEYS = frozenset({"context", "effectiveDateTime", "effectivePeriod", "medicationCodeableConcept", "medicationReference"})


def fhir_version(data: Mapping[str, Any]) -> str:
    """'R5' or 'R4' (R4/R4B), recognised from version-specific element names."""
    rt = data.get("resourceType")
    if rt == "MedicationAdministration":
        if _R5_MA_KEYS & data.keys():
            return "R5"
        return "R4"
    if rt == "Encounter":
        if "actualPeriod" in data or isinstance(data.get("class"), list):
            return "R5"
        return "R4"
    return "R4"


def map_resource(data: Mapping[str, Any], medication_table: bool = False) -> Mapped | None:
    """Map one resource dict.  None for resource types the product does not use (Patient, ...).
    ``medication_table``: see :func:`map_medication_administration`."""
    rt = data.get("resourceType") if isinstance(data, Mapping) else None
    if rt == "MedicationAdministration":
        event = map_medication_administration(data, medication_table=medication_table)
        return Mapped("administration", event.id, version_of(data), administration=event)
    if rt == "Encounter":
        enc = map_encounter(data)
        return Mapped("encounter", enc.id, version_of(data), encounter=enc)
    if not isinstance(rt, str):
        raise MappingError("not a FHIR resource (no resourceType)")
    return None


def version_of(data: Mapping[str, Any]) -> tuple[int | None, datetime | None]:
    meta = data.get("meta") or {}
    vid = meta.get("versionId")
    version = int(vid) if isinstance(vid, str) and vid.isdigit() else (vid if isinstance(vid, int) else None)
    last = meta.get("lastUpdated")
    updated = None
    if isinstance(last, str):
        try:
            updated = datetime.fromisoformat(last.replace("Z", "+00:00"))
        except ValueError:
            updated = None
    return version, updated


_VALIDATORS: dict[type[BaseModel], ShapeValidator] = {}


def _validate(cls: type[BaseModel], data: Mapping[str, Any], rt: str) -> Any:
    """fhir.resources validation; the mapping reads the result like a model (mapping/fhir_shapes.py)."""
    validator = _VALIDATORS.get(cls) or _VALIDATORS.setdefault(cls, ShapeValidator(cls))
    try:
        return validator.parse(dict(data))
    except ValidationError as e:
        raise MappingError(
            f"invalid {rt}: {summarize_validation_errors(e.errors())}",
            record_id=_id_of(data), resource_type=rt,
        ) from None
    except Exception as e:  # fhir.resources also raises TypeError/ValueError/KeyError (e.g. unknown contained type)
        raise MappingError(f"invalid {rt}: {type(e).__name__}", record_id=_id_of(data), resource_type=rt) from None


def _id_of(data: Mapping[str, Any]) -> str | None:
    """The resource's id for error messages: only when it is a FHIR id (an invalid one may hold
    anything, a name or a birth date)."""
    rid = data.get("id")
    return rid if isinstance(rid, str) and _FHIR_ID.fullmatch(rid) else None


_T = TypeVar("_T")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class _NotAnId(ValueError):
    """A reference to the resource type whose id part is not a FHIR id (control characters, spaces, ...)."""


def _ref_id(ref: Any, resource_type: str) -> str | None:
    """'Encounter/123' -> '123' (also absolute URLs and '/_history/2').  An id that is not a
    FHIR id (it would end up in Kafka keys and references) raises ``_NotAnId``."""
    if ref is None or not getattr(ref, "reference", None):
        return None
    parts = ref.reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == resource_type:
        if not _FHIR_ID.fullmatch(parts[-1]):
            raise _NotAnId(resource_type)
        return parts[-1]
    return None


_LITERAL_REF = re.compile(r"(?:https?://\S+/)?([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?")


def _literal(ref: Any, *types: str) -> Ref | None:
    """A reference kept as the feed sent it, when it resolves outside the message: relative
    (``Practitioner/12``) or absolute, to one of ``types`` (any type when none).  ``urn:uuid:``
    and contained (``#x``) references name nothing a billing system can look up: None."""
    sent = getattr(ref, "reference", None)
    match = _LITERAL_REF.fullmatch(sent) if isinstance(sent, str) else None
    if match is None or (types and match.group(1) not in types):
        return None
    return Ref(resource_type=match.group(1), reference=sent)


def _codings(cc: Any) -> tuple[Coding, ...]:
    """Drug codings; a system given by OID (urn:oid:2.16.840.1.113883.6.88, ...) is read as its URI."""
    if cc is None:
        return ()
    return tuple(
        Coding(system=canonical_system(c.system) or "", code=c.code, display=c.display)
        for c in (cc.coding or [])
        if c.code
    )


def _concept(cc: Any) -> tuple[list[tuple[str | None, str | None, str | None]], str | None]:
    """A CodeableConcept as (system, code, display) triples and its text."""
    if cc is None:
        return [], None
    return [(c.system, c.code, c.display) for c in cc.coding or []], cc.text


def _aware(value: Any) -> datetime | None:
    """FHIR dateTime -> aware datetime; a date-only (partial) value gives no time at all."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    return None


def _partial(value: Any, path: str) -> list[str]:
    """A warning for a time documented as a bare date (it cannot be timed)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return [f"{path} is a date without a time of day; it cannot be used for timing"]
    return []


def _extension(resource: Any, url: str) -> Any:
    for ext in getattr(resource, "extension", None) or []:
        if ext.url == url:
            return ext
    return None


def _quantity(q: Any) -> Quantity | None:
    if q is None or q.value is None:
        return None
    unit = q.code or q.unit
    if not unit:
        return None
    return Quantity(value=Decimal(q.value), unit=unit)


def _rate(dosage: Any) -> Rate:
    """dosage.rateQuantity, or rateRatio (numerator per denominator time), read as a rate."""
    if dosage.rateQuantity is not None:
        q = dosage.rateQuantity
        return read_rate(Decimal(q.value) if q.value is not None else None, q.code or q.unit, "dosage.rateQuantity")
    ratio = dosage.rateRatio
    if ratio is not None and ratio.numerator is not None and ratio.denominator is not None:
        num, den = ratio.numerator, ratio.denominator
        if num.value is None or not den.value:
            return Rate(ignored="dosage.rateRatio has no numerator or denominator value; ignored")
        unit = f"{num.code or num.unit or ''}/{den.code or den.unit or ''}"
        return read_rate(Decimal(num.value) / Decimal(den.value), unit, "dosage.rateRatio")
    return Rate()


def _infusion_minutes(ma: Any) -> tuple[int | None, list[str]]:
    """A documented infusion duration from the extensions in INFUSION_DURATION_EXTENSIONS."""
    for holder, path in ((ma.dosage, "dosage.extension"), (ma, "extension")):
        for ext in (getattr(holder, "extension", None) or []) if holder is not None else []:
            if ext.url not in INFUSION_DURATION_EXTENSIONS:
                continue
            q = ext.valueDuration or ext.valueQuantity
            minutes = duration_minutes(Decimal(q.value) if q is not None and q.value is not None else None,
                                       (q.code or q.unit) if q is not None else None)
            if minutes is None:
                return None, [f"{path} infusion duration is not a positive time in min, h, s or d; ignored"]
            return minutes, []
    return None, []


class _Ingredients:
    """A contained Medication without a code, read by its ingredients' codings (R4
    ``ingredient.itemCodeableConcept``, R5 ``ingredient.item.concept``): the formulary finds
    the drug among them (KCl in a saline base is potassium chloride, a therapeutic drug)."""

    def __init__(self, concepts: list[Any]):
        self.coding = [c for cc in concepts for c in (cc.coding or [])]
        self.text = None


def _medication_code(medication: Any) -> Any:
    """A Medication's code, else its ingredients' codings (None: neither)."""
    if medication.code is not None:
        return medication.code
    concepts = []
    for ing in medication.ingredient or []:
        item = getattr(ing, "itemCodeableConcept", None)
        if item is None and getattr(ing, "item", None) is not None:  # R5: a CodeableReference
            item = ing.item.concept
        if item is not None:
            concepts.append(item)
    return _Ingredients(concepts) if concepts else None


def _contained_code(resource: Any, reference: str | None) -> Any:
    """The code of a contained Medication referenced as '#id', else its ingredients' codings."""
    if not reference or not reference.startswith("#"):
        return None
    for c in resource.contained or []:
        if c.id == reference[1:] and c.get_resource_type() == "Medication":
            return _medication_code(c)
    return None


def map_medication(data: Mapping[str, Any]) -> MedicationCodes:
    """A Medication resource (R4/R4B or R5) of the reference topic."""
    r5 = any(isinstance(i, Mapping) and "item" in i for i in data.get("ingredient") or [])
    medication = _validate(MedicationR5 if r5 else MedicationR4, data, "Medication")
    if not medication.id:
        raise MappingError("Medication has no id: it cannot be referenced", resource_type="Medication")
    code = _medication_code(medication)
    codings = _codings(code)
    if not codings and not (code is not None and code.text):
        raise MappingError("Medication has no code, ingredient code or text: the drug cannot be identified",
                           record_id=medication.id, resource_type="Medication")
    return MedicationCodes(medication.id, codings, code.text if code is not None else None)


def _ids_checked(resource_type: str) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """A mapper whose references must carry FHIR ids: one that does not is a MappingError."""
    def wrap(mapper: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(mapper)
        def mapped(data: Mapping[str, Any], **options: Any) -> _T:
            try:
                return mapper(data, **options)
            except _NotAnId as e:
                raise MappingError(f"a reference to {e} has an id that is not a FHIR id ([A-Za-z0-9-.], 1 to 64)",
                                   record_id=_id_of(data), resource_type=resource_type) from None
        return mapped
    return wrap


@_ids_checked("MedicationAdministration")
def map_medication_administration(data: Mapping[str, Any], medication_table: bool = False) -> AdministrationEvent:
    """``medication_table``: a reference to a Medication by id that the message does not carry
    is left for the reference table (``medication_ref``) instead of failing (the worker)."""
    version = fhir_version(data)
    cls = MedicationAdministrationR5 if version == "R5" else MedicationAdministrationR4
    ma = _validate(cls, data, "MedicationAdministration")
    rid = ma.id
    if not rid:
        raise MappingError("MedicationAdministration has no id: it cannot be deduplicated or traced",
                           resource_type="MedicationAdministration")

    def fail(reason: str) -> MappingError:
        return MappingError(reason, record_id=rid, resource_type="MedicationAdministration")

    status = STATUS_CODES.get((ma.status or "").lower())
    if status is None:
        raise fail("status is not a MedicationAdministration status (" + ", ".join(STATUS_CODES) + ")")

    if version == "R5":
        encounter_ref = ma.encounter
        drug_cc = ma.medication.concept if ma.medication is not None else None
        drug_ref = ma.medication.reference if ma.medication is not None else None
        start_value, period = ma.occurenceDateTime, ma.occurencePeriod
        device = ma.device[0] if ma.device else None
        device_id = _ref_id(device.reference, "Device") if device is not None else None
        device_text = (device.reference.display if device is not None and device.reference is not None else None) or (
            (device.concept.text or (device.concept.coding[0].code if device.concept.coding else None))
            if device is not None and device.concept is not None else None
        )
    else:
        encounter_ref = ma.context
        drug_cc, drug_ref = ma.medicationCodeableConcept, ma.medicationReference
        start_value, period = ma.effectiveDateTime, ma.effectivePeriod
        device = ma.device[0] if ma.device else None
        device_id = _ref_id(device, "Device") if device is not None else None
        device_text = device.display if device is not None else None

    encounter_id = _ref_id(encounter_ref, "Encounter")
    if encounter_id is None:
        path = "encounter" if version == "R5" else "context"
        sent = getattr(encounter_ref, "reference", None)
        if sent:
            raise fail(f"{path} is {reference_form(sent)} to no Encounter in the message (a Bundle entry or Encounter/id): "
                       "the administration cannot be charged to an encounter")
        raise fail(f"no {path} reference to an Encounter: the administration cannot be charged to an encounter")

    medication_ref = None
    if drug_cc is None and drug_ref is not None:
        drug_cc = _contained_code(ma, drug_ref.reference)
        if drug_cc is None and medication_table:
            medication_ref = _ref_id(drug_ref, "Medication")
    drug_codings = _codings(drug_cc)
    drug_text = (drug_cc.text if drug_cc is not None else None) or (drug_ref.display if drug_ref is not None else None)
    if not drug_codings and not drug_text and medication_ref is None:
        sent = drug_ref.reference if drug_ref is not None else None
        if sent:
            path = "medication.reference" if version == "R5" else "medicationReference"
            raise fail(f"{path} is {reference_form(sent)} that resolves to no Medication with a code in the message "
                       "(contained, or a Bundle entry): the drug cannot be identified")
        raise fail("no medication code or text: the drug cannot be identified")

    dosage = ma.dosage
    route = Route.UNKNOWN
    method = Method.UNKNOWN
    dose = body_site = site_text = None
    rate = Rate()
    kvo = False
    unrecognised: list[str] = []
    if dosage is not None:
        route_codings, route_text = _concept(dosage.route)
        route, review = route_of(route_codings, route_text)
        if review:
            unrecognised.append("dosage." + review)
        method, review = method_of(*_concept(dosage.method))
        if review:
            unrecognised.append("dosage." + review)
        if method is Method.UNKNOWN:
            method = implied_method(route_codings)
        dose = _quantity(dosage.dose)
        rate = _rate(dosage)
        if dosage.site is not None:
            site_text = dosage.site.text or next((c.display for c in dosage.site.coding or [] if c.display), None)
            body_site = next((c.code for c in dosage.site.coding or [] if c.code), None) or dosage.site.text
        method_text = dosage.method.text if dosage.method is not None else None
        kvo = says_kvo(dosage.text, method_text)
    kvo_ext = _extension(ma, EXT_KVO)
    if kvo_ext is not None and kvo_ext.valueBoolean is not None:
        kvo = bool(kvo_ext.valueBoolean)

    infusion_minutes, duration_notes = _infusion_minutes(ma)
    prefix = "occurence" if version == "R5" else "effective"
    if period is not None:
        start, end = _aware(period.start), _aware(period.end)
        notes = _partial(period.start, f"{prefix}Period.start") + _partial(period.end, f"{prefix}Period.end")
    else:
        start = _aware(start_value)
        notes = _partial(start_value, f"{prefix}DateTime")
        end = end_of_single_time(start, method, route, infusion_minutes is not None)
    if rate.ignored:
        notes.append(rate.ignored)
    notes += duration_notes

    access_ext = _extension(ma, EXT_ACCESS_TYPE)
    wasted_ext = _extension(ma, EXT_WASTED)
    pump_ext = _extension(ma, EXT_PUMP)
    pump = None
    if pump_ext is not None:
        try:
            pump = PumpType((pump_ext.valueCode or "").lower())
        except ValueError:
            raise fail("extension pump-type value is not portable|implantable") from None
    part_of_procedure = any(_ref_id(p, "Procedure") for p in ma.partOf or [])
    actors = [p.actor.reference if version == "R5" and p.actor is not None else p.actor for p in ma.performer or []]
    performers = tuple(dict.fromkeys(r for a in actors if (r := _literal(a, *PERFORMER_TYPES)) is not None))

    return AdministrationEvent(
        id=rid,
        encounter_id=encounter_id,
        patient_id=_ref_id(ma.subject, "Patient"),
        status=status,
        drug_codings=drug_codings,
        drug_text=drug_text,
        route=route,
        method=method,
        start=start,
        end=end,
        access_device=device_id or device_text,
        body_site=body_site,
        access_type=access_type(access_ext.valueCode if access_ext is not None else None, device_text, device_id, site_text),
        dose=dose,
        volume_ml=volume_ml(dose),
        rate_ml_per_h=rate.ml_per_h,
        drug_rate=rate.drug_rate,
        infusion_minutes=infusion_minutes,
        wasted=_quantity(wasted_ext.valueQuantity) if wasted_ext is not None else None,
        kvo=kvo,
        part_of_procedure=part_of_procedure,
        pump=pump,
        ndc=ndc_of(drug_codings),
        medication_ref=medication_ref,
        performers=performers,
        source_warnings=tuple(notes),
        unrecognised=tuple(unrecognised),
    )


@_ids_checked("Encounter")
def map_encounter(data: Mapping[str, Any]) -> EncounterInfo:
    version = fhir_version(data)
    enc = _validate(EncounterR5 if version == "R5" else EncounterR4, data, "Encounter")
    if not enc.id:
        raise MappingError("Encounter has no id", resource_type="Encounter")
    if version == "R5":
        codes = [c.code for cc in enc.class_fhir or [] for c in cc.coding or [] if c.code]
        period = enc.actualPeriod
    else:
        codes = [enc.class_fhir.code] if enc.class_fhir is not None and enc.class_fhir.code else []
        period = enc.period
    encounter_class = None
    for code in codes:
        encounter_class = ENCOUNTER_CLASS_CODES.get(code.lower())
        if encounter_class is not None:
            break
    if codes and encounter_class is None:
        encounter_class = EncounterClass.OTHER
    location = next((loc.location for loc in enc.location or [] if loc.location is not None), None)
    location_ref = _literal(location, "Location")
    return EncounterInfo(
        id=enc.id,
        patient_id=_ref_id(enc.subject, "Patient"),
        patient=_literal(enc.subject, "Patient"),
        location=location_ref,
        location_code=_ref_id(location, "Location") if location_ref is not None else None,
        service_provider=_literal(enc.serviceProvider, "Organization"),
        account=next((r for a in enc.account or [] if (r := _literal(a, "Account")) is not None), None),
        encounter_class=encounter_class,
        status=enc.status,
        period_start=_aware(period.start) if period is not None else None,
        period_end=_aware(period.end) if period is not None else None,
    )


# --- reading files: single resource, Bundle, NDJSON -------------------------------------


def iter_json_document(text: str, source: str) -> Iterator[tuple[str, Any]]:
    """(position, resource dict) for a JSON file holding one resource or a Bundle.

    A file that is not JSON at all raises :class:`UnreadableSourceError` naming the position.
    """
    if not text.strip():
        raise UnreadableSourceError("file is empty", source=source)
    try:
        doc = strict_loads(text)
    except json.JSONDecodeError as e:
        raise UnreadableSourceError(f"not JSON: {e.msg}", source=source, position=f"line {e.lineno} column {e.colno}") from None
    except StrictJsonError as e:
        raise UnreadableSourceError(str(e), source=source) from None
    except (RecursionError, ValueError):  # nesting deeper than the parser goes; an integer of thousands of digits
        raise UnreadableSourceError("not JSON this product reads: nested too deeply or a number too long", source=source) from None
    yield from _iter_document(doc, source, "")


class StrictJsonError(ValueError):
    """JSON the product refuses although a plain parser reads it."""


class DuplicateKey(StrictJsonError):
    """A JSON object with the same key twice: which one counts is not defined (RFC 8259), and a
    repeated "status" could flip whether a dose is billed."""


class ControlCharacter(StrictJsonError):
    """A string holding a control character (escaped, as ``\\u0000``): FHIR strings allow tab,
    CR and LF only, and such a value would reach Kafka keys and published references."""


_KEY_SHAPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise DuplicateKey(f"not JSON this product reads: the key {key if _KEY_SHAPE.fullmatch(key) else '(not shown)'} "
                           "appears twice in one object")
    return d


# json.loads refuses raw control characters in strings; escaped ones it decodes.
_ESCAPED_CONTROL = re.compile(r"\\u00(?:0[0-8bBcCeEfF]|1[0-9a-fA-F])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def strict_loads(text: str) -> Any:
    """json.loads refusing duplicate keys (``DuplicateKey``) and control characters in strings
    (``ControlCharacter``, naming the element path)."""
    doc = json.loads(text, object_pairs_hook=_no_duplicates)
    if _ESCAPED_CONTROL.search(text):
        path = _control_path(doc, "")
        if path is not None:
            raise ControlCharacter(f"not JSON this product reads: {path or 'the document'} holds a control character "
                                   "(FHIR strings allow tab, CR and LF only)")
    return doc


def _control_path(value: Any, path: str) -> str | None:
    """The path of the first string (or key) with a control character, else None."""
    if isinstance(value, str):
        return path if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            if _CONTROL.search(k):
                return f"{path}.(key not shown)".lstrip(".")
            found = _control_path(v, f"{path}.{k if _KEY_SHAPE.fullmatch(k) else '(key not shown)'}".lstrip("."))
            if found is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _control_path(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def iter_ndjson(text: str, source: str) -> Iterator[tuple[str, Any]]:
    """(position, resource dict or MappingError) per line of NDJSON (a line may hold a Bundle).

    Each line stands alone: a bad line is yielded as a MappingError for the caller to report
    and the following lines are still read.  A file in which no line is JSON is unreadable.
    """
    parsed: list[tuple[str, Any]] = []
    good = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        pos = f"line {lineno}"
        try:
            parsed.append((pos, strict_loads(line)))
            good += 1
        except json.JSONDecodeError as e:
            parsed.append((pos, MappingError(f"not JSON: {e.msg} at column {e.colno}", source=source, position=pos)))
        except StrictJsonError as e:
            parsed.append((pos, MappingError(str(e), source=source, position=pos)))
            good += 1
        except (RecursionError, ValueError):
            parsed.append((pos, MappingError("not JSON this product reads: nested too deeply or a number too long",
                                             source=source, position=pos)))
    if not parsed:
        raise UnreadableSourceError("file is empty", source=source)
    if good == 0:
        raise UnreadableSourceError("no line is JSON: not an NDJSON file", source=source, position=parsed[0][0])
    for pos, doc in parsed:
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            yield from _iter_document(doc, source, f"{pos} ")
        else:
            yield pos, doc


def _iter_document(doc: Any, source: str, prefix: str) -> Iterator[tuple[str, Any]]:
    if not isinstance(doc, dict):
        raise UnreadableSourceError("JSON document is not a FHIR resource or Bundle", source=source, position=prefix.strip() or None)
    if doc.get("resourceType") == "Bundle":
        entries = doc.get("entry") or []
        index = BundleIndex(entries if isinstance(entries, list) else [])
        for i, entry in enumerate(entries):
            pos = f"{prefix}entry[{i}]"
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if resource is None:
                yield pos, MappingError("Bundle entry has no resource", source=source, position=pos)
            else:
                yield pos, resolved(entry, index)
        return
    yield prefix.strip() or "resource", doc


def add_resource(collector: FeedCollector, data: Any, *, source: str, position: str) -> None:
    """Map one record read from a FHIR file into the collector; errors are kept, not raised."""
    if isinstance(data, MappingError):
        collector.reject(data, source=source, position=position)
        return
    if not isinstance(data, Mapping):
        collector.reject(MappingError("record is not a JSON object"), source=source, position=position)
        return
    try:
        mapped = map_resource(data)
    except MappingError as e:
        collector.reject(e, source=source, position=position)
        return
    collector.offer(mapped)
