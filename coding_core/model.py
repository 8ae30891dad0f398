"""Typed contract between the mapping layer and the coding core.

Mappers (FHIR, HL7 v2) produce :class:`AdministrationEvent` and :class:`EncounterInfo`;
the coding core turns them into a :class:`CodingResult` of :class:`CodedLine`.  Nothing
here knows about FHIR classes, Kafka or files: plain values only.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_M = TypeVar("_M", bound=BaseModel)


class Route(StrEnum):
    """What the coding core needs to know of a route (the vocabularies in ``mapping.vocabulary``
    map every code they know onto one of these)."""

    IV = "iv"
    SC = "sc"
    IM = "im"
    INTRA_ARTERIAL = "ia"
    OTHER = "other"  # another parenteral route: intrathecal, intraperitoneal, intraosseous, ...
    # Given within a procedure coded outside 96360–96549 (epidural, intra-articular, intraocular,
    # intravesical, intradermal, ...): no administration service; the drug line stays.
    PROCEDURE = "procedure"
    ORAL = "oral"  # not a drug administration service; a drug line only for an oral HCPCS code
    NON_PARENTERAL = "non-parenteral"  # sublingual, topical, transdermal, inhaled, rectal, ...: no service
    UNKNOWN = "unknown"  # not documented
    UNRECOGNISED = "unrecognised"  # documented with a code no vocabulary knows: needs review


class Method(StrEnum):
    """How the drug was given, as documented (not as coded)."""

    PUSH = "push"
    INFUSION = "infusion"
    INJECTION = "injection"
    FLUSH = "flush"
    PUMP_REFILL = "pump-refill"
    OTHER = "other"  # a technique that is neither injection nor infusion (chew, inhale, apply, ...)
    UNKNOWN = "unknown"  # not documented, or documented as a generic verb ("administer", "give")
    UNRECOGNISED = "unrecognised"  # documented with a code no vocabulary knows: needs review


class AdminStatus(StrEnum):
    COMPLETED = "completed"
    IN_PROGRESS = "in-progress"
    STOPPED = "stopped"
    ON_HOLD = "on-hold"
    NOT_DONE = "not-done"
    ENTERED_IN_ERROR = "entered-in-error"
    UNKNOWN = "unknown"


class EncounterClass(StrEnum):
    AMBULATORY = "AMB"
    EMERGENCY = "EMER"
    OBSERVATION = "OBSENC"
    INPATIENT = "IMP"
    OTHER = "OTHER"


class Setting(StrEnum):
    FACILITY = "facility"
    PROFESSIONAL = "professional"


class DrugClass(StrEnum):
    CHEMO = "chemo"
    CHEMO_HORMONAL = "chemo-hormonal"
    THERAPEUTIC = "therapeutic"
    HYDRATION = "hydration"
    # Not drug-administration services of their own (see CODING_RULES "Never billable"):
    BLOOD = "blood"  # transfusion products; hydration around them is not billable
    CONTRAST = "contrast"  # contrast for imaging


class PumpType(StrEnum):
    PORTABLE = "portable"
    IMPLANTABLE = "implantable"


class Coding(BaseModel):
    model_config = _FROZEN
    system: str
    code: str
    display: str | None = None


class Quantity(BaseModel):
    model_config = _FROZEN
    value: Decimal
    unit: str

    @field_validator("value")
    @classmethod
    def _finite(cls, v: Decimal) -> Decimal:
        if not v.is_finite():
            raise ValueError("quantity must be finite")
        return v


class Ref(BaseModel):
    """Who or what a charge refers to, as the feed named it: a FHIR literal reference
    (``reference``: ``Practitioner/12``, an absolute URL) or, from HL7 v2, an identifier and the
    authority that assigned it (PID-3.4, PV1-19.4, XCN-9); the output maps the authority to a URI."""

    model_config = _FROZEN
    resource_type: str  # Patient, Encounter, Practitioner, Location, Organization, Account, ...
    reference: str | None = None
    value: str | None = None
    authority: str | None = None
    system: str | None = None  # an identifier system this product assigns (not the feed's authority)


class AdministrationEvent(BaseModel):
    """One documented administration, normalised.  Times are timezone-aware."""

    model_config = _FROZEN

    id: str
    encounter_id: str
    patient_id: str | None = None
    status: AdminStatus = AdminStatus.COMPLETED
    drug_codings: tuple[Coding, ...] = ()
    drug_text: str | None = None
    route: Route = Route.UNKNOWN
    method: Method = Method.UNKNOWN
    start: datetime | None = None
    end: datetime | None = None
    # Vascular access identity: the device (line) when documented, else the body site.
    access_device: str | None = None
    body_site: str | None = None
    # Kind of access when documented: "peripheral", "picc", "central", "port" (implanted).
    access_type: str | None = None
    dose: Quantity | None = None
    volume_ml: Decimal | None = None
    rate_ml_per_h: Decimal | None = None
    # A rate that is not a volume per time (mg/min, units/h, mcg/kg/min), as documented: shown
    # in the explanation, never used for arithmetic.
    drug_rate: str | None = None
    # A documented infusion duration ("infuse over"), in minutes: a source for the stop time.
    infusion_minutes: int | None = None
    wasted: Quantity | None = None
    kvo: bool = False
    part_of_procedure: bool = False
    pump: PumpType | None = None
    ndc: str | None = None
    # The id of a Medication the record names but does not carry (FHIR ``Medication/<id>``
    # outside the message): its codes come from the reference table when the encounter is
    # coded (connectors/medications.py), and until then the drug is unknown.
    medication_ref: str | None = None
    # What the mapper noticed about the source record (e.g. an ambiguous local time); the
    # coding core reports each as a "source-data" warning on the encounter.
    # Who gave it (FHIR performer.actor; HL7 RXA-10) and, from HL7, the administration's own
    # identifier (a FHIR-sourced administration is MedicationAdministration/<id>).
    performers: tuple[Ref, ...] = ()
    identifier: Ref | None = None
    source_warnings: tuple[str, ...] = ()
    # Codes no vocabulary recognised, as "<field> <system>|<code>" (never display text): each
    # becomes a needs-review warning, and the administration gets no administration line.
    unrecognised: tuple[str, ...] = ()

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and (v.tzinfo is None or v.utcoffset() is None):
            raise ValueError("administration times must carry a UTC offset")
        return v

    @property
    def access_site(self) -> str | None:
        """Identity of the vascular access: device first, else body site."""
        if self.access_device:
            return f"device:{self.access_device}"
        if self.body_site:
            return f"site:{self.body_site}"
        return None


class EncounterInfo(BaseModel):
    model_config = _FROZEN

    id: str
    patient_id: str | None = None
    encounter_class: EncounterClass | None = None
    status: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    # References the charges carry (see mapping/chargeitem_out.py).  From HL7 v2 the patient
    # and the visit are identifiers (PID-3, PV1-19 with their assigning authorities).
    patient: Ref | None = None
    identifier: Ref | None = None
    location: Ref | None = None  # FHIR Encounter.location[0].location; HL7 PV1-3.1, its facility PV1-3.4 the authority
    # The location's code the profile maps to a cost centre: the Location id; HL7 PV1-3.1.
    location_code: str | None = None
    service_provider: Ref | None = None  # FHIR Encounter.serviceProvider (HL7: none)
    account: Ref | None = None  # FHIR Encounter.account[0]; HL7 PID-18


class CodedLine(BaseModel):
    """One charge line with the reasoning that produced it."""

    model_config = _FROZEN

    code: str
    system: Literal["CPT", "HCPCS"]
    units: int
    modifiers: tuple[str, ...] = ()
    service_date: date
    administration_ids: tuple[str, ...]
    rule: str  # rule id, e.g. "hydration.initial"
    reason: str  # human-readable explanation
    minutes: int | None = None
    access_site: str | None = None
    drug_name: str | None = None
    drug_codings: tuple[Coding, ...] = ()
    ndc: str | None = None
    role: Literal["initial", "add-on", "standalone", "drug"] = "standalone"
    # Drug lines: the HCPCS billing unit ("10 mg") and the NDC quantity with its unit qualifier
    # (UN, ML, GR, F2, ME), from the administered amount and the formulary's NDC package unit.
    unit: str | None = None
    ndc_quantity: Decimal | None = None
    ndc_unit: str | None = None


class CodingWarning(BaseModel):
    model_config = _FROZEN

    code: str  # e.g. "missing-stop-time"
    message: str
    administration_ids: tuple[str, ...] = ()


class Exclusion(BaseModel):
    """An administration (or part of one) that produced no line, and why."""

    model_config = _FROZEN

    administration_id: str
    reason: str


class CodingResult(BaseModel):
    model_config = _FROZEN

    encounter_id: str
    setting: Setting
    lines: tuple[CodedLine, ...]
    warnings: tuple[CodingWarning, ...] = ()
    exclusions: tuple[Exclusion, ...] = ()
    formulary_version: str | None = None


def trusted(cls: type[_M], **values: object) -> _M:
    """Build a model from values the coding core computed itself, without re-validating them.

    The coding core's outputs are produced by its own typed code from validated inputs, so
    validation would only cost time (pydantic's ``model_construct`` is ~5x slower than this).
    Missing fields take their declared defaults.
    """
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _DEFAULTS[cls] = {
            name: f.get_default(call_default_factory=True) for name, f in cls.model_fields.items() if not f.is_required()
        }
    data = {**defaults, **values}
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", data)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


_DEFAULTS: dict[type, dict[str, object]] = {}


# Fast builders for the coding core's own outputs: the same objects ``trusted`` makes (same
# field values, same ``__dict__`` key order -- defaults first, then the given fields -- and
# the same fields-set), without the generic keyword-merging.  Hot path: one call per line.
_new = object.__new__
# Each kind of object shares one fields-set: the models are frozen, so pydantic never adds to it
# (``model_copy`` copies it before updating), and one set per object was ~40% of the objects
# the garbage collector had to track in a result.  Never mutate these.
_LINE_FIELDS = set(CodedLine.model_fields)
_RESULT_FIELDS = set(CodingResult.model_fields)
_WARNING_FIELDS = {"code", "message", "administration_ids"}
_EXCLUSION_FIELDS = {"administration_id", "reason"}


# BaseModel's own slot setters: ``_set_dict(obj, d)`` is ``object.__setattr__(obj, "__dict__", d)``
# without the attribute-name lookup.
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _finish(obj: _M, data: dict, fields_set: set[str]) -> _M:
    _set_dict(obj, data)
    _set_fields_set(obj, fields_set)
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


def coded_line(code: str, system: Literal["CPT", "HCPCS"], units: int, modifiers: tuple[str, ...], service_date: date,
               administration_ids: tuple[str, ...], rule: str, reason: str, minutes: int | None, access_site: str | None,
               drug_name: str | None, drug_codings: tuple[Coding, ...], ndc: str | None,
               role: Literal["initial", "add-on", "standalone", "drug"], unit: str | None = None,
               ndc_quantity: Decimal | None = None, ndc_unit: str | None = None) -> CodedLine:
    """``trusted(CodedLine, ...)`` with every field given."""
    obj = _new(CodedLine)  # _finish, inlined: one call per line saved
    _set_dict(obj, {
        "modifiers": modifiers, "minutes": minutes, "access_site": access_site, "drug_name": drug_name,
        "drug_codings": drug_codings, "ndc": ndc, "role": role, "unit": unit, "ndc_quantity": ndc_quantity,
        "ndc_unit": ndc_unit, "code": code, "system": system, "units": units,
        "service_date": service_date, "administration_ids": administration_ids, "rule": rule, "reason": reason,
    })
    _set_fields_set(obj, _LINE_FIELDS)
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


def coding_warning(code: str, message: str, administration_ids: tuple[str, ...]) -> CodingWarning:
    """``trusted(CodingWarning, code=..., message=..., administration_ids=...)``."""
    return _finish(_new(CodingWarning), {"administration_ids": administration_ids, "code": code, "message": message}, _WARNING_FIELDS)


def exclusion(administration_id: str, reason: str) -> Exclusion:
    """``trusted(Exclusion, administration_id=..., reason=...)``."""
    return _finish(_new(Exclusion), {"administration_id": administration_id, "reason": reason}, _EXCLUSION_FIELDS)


def coding_result(encounter_id: str, setting: Setting, lines: tuple[CodedLine, ...], warnings: tuple[CodingWarning, ...],
                  exclusions: tuple[Exclusion, ...], formulary_version: str | None) -> CodingResult:
    """``trusted(CodingResult, ...)`` with every field given."""
    return _finish(_new(CodingResult), {
        "warnings": warnings, "exclusions": exclusions, "formulary_version": formulary_version,
        "encounter_id": encounter_id, "setting": setting, "lines": lines,
    }, _RESULT_FIELDS)
