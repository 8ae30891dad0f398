"""Coded lines out as FHIR R4 ChargeItems (validated with fhir.resources.R4B, identical for R4).

The profile published is docs/output-chargeitem.md, element by element.  In short:

* ``id`` — deterministic: a hash of what the line is about (:func:`line_key`): the encounter,
  the administrations the line came from, its date of service and the part of their service
  it charges, plus an ordinal when two lines share all of those.  The code, units and the
  explanation are *not* part of it, so a re-coded encounter keeps its line ids, a changed code
  or quantity is an update of the same charge, and no other line's id moves when an
  administration is removed.
* ``code`` — CPT or HCPCS, then the chargemaster code (:func:`billing`: the row, its revenue
  code, the line's review flags, shared with ``--explain``); ``definitionCanonical`` names a
  priced row's ChargeItemDefinition (mapping/chargemaster.py).
* ``quantity`` — units and the billing unit; drug lines' NDC quantity as extension
  :data:`EXT_NDC_QUANTITY`.
* References — ``subject``, ``context``, ``service``, ``performer``, ``account``,
  ``performingOrganization``, ``costCenter``: literal as the FHIR feed sent them, by
  identifier from HL7 v2 (mapping/references_out.py).  ``enteredDate`` from the record
  (:func:`entered_date`), never the wall clock.
* Extensions (:data:`EXT_BASE`): modifiers, rule, minutes, formulary version, revenue code,
  NDC quantity, performing location, review flags; ``note`` = the reason, then the warnings.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir.resources.R4B.chargeitem import ChargeItem

from coding_core.formulary import HCPCS_SYSTEM, NDC_SYSTEM
from coding_core.model import AdministrationEvent, CodedLine, CodingResult, CodingWarning, EncounterInfo, Ref
from coding_core.ndc import parse_ndc
from coding_core.profile import CdmItem, Profile
from coding_core.revenue_codes import revenue_code
from mapping.chargemaster import definition_canonical
from mapping.references_out import reference
from mapping.built_validation import BuiltValidator, Collected
from mapping.vocabulary import CPT_SYSTEM

CODE_SYSTEMS = {"CPT": CPT_SYSTEM, "HCPCS": HCPCS_SYSTEM}
_DEFAULT_PROFILE = Profile()
EXT_BASE = "https://infusion-charges.dev/fhir/StructureDefinition/"
EXT_MODIFIER = EXT_BASE + "chargeitem-modifier"
EXT_RULE = EXT_BASE + "coding-rule"
EXT_MINUTES = EXT_BASE + "service-minutes"
EXT_FORMULARY = EXT_BASE + "formulary-version"
EXT_REVENUE = EXT_BASE + "revenue-code"  # valueCoding, NUBC UB-04 revenue code
EXT_REVIEW_FLAG = EXT_BASE + "review-flag"  # valueCode: a warning concerning the line (REVIEW_FLAG_SYSTEM)
EXT_NDC_QUANTITY = EXT_BASE + "ndc-quantity"  # valueQuantity: the NDC quantity, code = its unit qualifier
EXT_LOCATION = EXT_BASE + "performing-location"  # valueReference: where the service was given
REVENUE_SYSTEM = "https://www.nubc.org/CodeSystem/RevenueCodes"
NDC_UNIT_SYSTEM = "urn:infusion-charges:ndc-unit-qualifier"  # UN, ML, GR, F2, ME (X12 / NCPDP unit of measure)
ENTERER_DISPLAY = "infusion-charges"
FULL_URL_NAMESPACE = uuid.UUID("1b4e28ba-2fa1-5d3e-9e2b-6f1c2a7d9e40")  # name-based fullUrls of ChargeItems: uuid5(this, id)
LINE_IDENTIFIER_SYSTEM = "urn:infusion-charges:charge-line"
# Bundle.meta.tag systems naming what a revision was coded with: .../formulary, .../profile.
CODED_WITH_SYSTEM = "urn:infusion-charges:coded-with"
ACCESS_SITE_SYSTEM = "urn:infusion-charges:access-site"


def line_key(encounter_id: str, line: CodedLine) -> str:
    """What makes a charge line the same line across re-codings of its encounter: what it is
    about -- the administrations it came from, its date of service, and which part of their
    service it charges (the service itself, its added hours, the drug, the drug discarded) --
    not how it is coded.  Removing, adding or re-ranking other administrations never moves an id
    to another service; a line re-coded (96367 becoming 96365, a new HCPCS code for the drug)
    is an update of the same charge."""
    if line.system == "HCPCS":
        part = "drug-wasted" if line.rule == "drug.wasted" else "drug"
    else:
        part = "added-hours" if line.rule.endswith("added-hour") else "service"
    return "|".join((encounter_id, part, line.service_date.isoformat(), ",".join(sorted(line.administration_ids))))


def charge_item_ids(encounter_id: str, lines: Sequence[CodedLine]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for line in lines:
        key = line_key(encounter_id, line)
        n = seen[key] = seen.get(key, 0) + 1
        digest = hashlib.sha256(f"{key}#{n}".encode()).hexdigest()[:32]
        ids.append(f"ci-{digest}")
    return ids


def to_charge_items(result: CodingResult, encounter: EncounterInfo, profile: Profile | None = None,
                    events: Iterable[AdministrationEvent] = (), entered: datetime | None = None) -> list[dict[str, Any]]:
    """The encounter's lines as validated ChargeItem dicts (JSON-ready).  ``profile``: revenue
    codes, chargemaster, identifier systems, cost centres, whether flagged lines are held;
    ``events``: the administrations coded (performers, HL7 identifiers); ``entered``: the
    enteredDate (default :func:`entered_date`)."""
    profile = profile or _DEFAULT_PROFILE
    by_id = {e.id: e for e in events}
    entered = entered or entered_date(encounter, by_id.values())
    context = _context(profile, encounter, by_id, entered.isoformat() if entered is not None else None, result.encounter_id)
    return [_charge_item(item_id, line, result, context)
            for line, item_id in zip(result.lines, charge_item_ids(result.encounter_id, result.lines), strict=True)]


def entered_date(encounter: EncounterInfo, events: Iterable[AdministrationEvent]) -> datetime | None:
    """When the charges were entered, from the record, never the wall clock (a replay gives the
    same bytes): the encounter's end, else its last documented administration time."""
    if encounter.period_end is not None:
        return encounter.period_end
    times = [t for e in events for t in (e.end, e.start) if t is not None]
    return max(times) if times else None


@dataclass(frozen=True)
class _Context:
    """What every line of one encounter shares."""

    profile: Profile
    encounter: EncounterInfo
    events: Mapping[str, AdministrationEvent]
    entered: str | None
    cost_center: str | None  # the profile's cost centre for the encounter's location
    # The references every line repeats, made once per encounter (a Ref is a pydantic model):
    # the encounter as ChargeItem.context names it, the patient as subject names it (None:
    # not identified), and each administration as service names it (filled as lines need them).
    context_ref: Ref
    subject_ref: Ref | None
    services: dict[str, Ref] = field(default_factory=dict)


def _context(profile: Profile, encounter: EncounterInfo, events: Mapping[str, AdministrationEvent], entered: str | None,
             encounter_id: str) -> _Context:
    cost_center = profile.cost_centers.get(encounter.location_code or "") if profile.cost_centers else None
    context_ref = encounter.identifier if encounter.identifier is not None else Ref(
        resource_type="Encounter", reference=f"Encounter/{encounter_id}")
    subject_ref = encounter.patient if encounter.patient is not None else (
        Ref(resource_type="Patient", reference=f"Patient/{encounter.patient_id}") if encounter.patient_id else None)
    return _Context(profile, encounter, events, entered, cost_center, context_ref, subject_ref)


def _charge_item(item_id: str, line: CodedLine, result: CodingResult, ctx: _Context) -> dict[str, Any]:
    """One ChargeItem; each branch taken is a token of ``c.signature`` and each value that
    varies goes through ``c.value`` with its element's check (mapping/built_validation.py)."""
    profile, encounter = ctx.profile, ctx.encounter
    c = Collected()
    sig, v = c.signature, c.value

    modifier_system = CODE_SYSTEMS[line.system]
    extensions: list[dict[str, Any]] = [
        {"url": EXT_MODIFIER, "valueCoding": {"system": modifier_system, "code": v(_C.ext_coding_code, m)}} for m in line.modifiers
    ]
    sig.append(bool(line.modifiers))
    extensions.append({"url": EXT_RULE, "valueString": v(_C.ext_string, line.rule)})
    if line.minutes is not None:
        extensions.append({"url": EXT_MINUTES, "valueInteger": v(_C.ext_integer, line.minutes)})
    sig.append(line.minutes is not None)
    if result.formulary_version:
        extensions.append({"url": EXT_FORMULARY, "valueString": v(_C.ext_string, result.formulary_version)})
    sig.append(bool(result.formulary_version))
    bill = billing(line, result, ctx)
    row, cdm = bill.row, profile.chargemaster
    if bill.revenue is not None:
        extensions.append({"url": EXT_REVENUE, "valueCoding": {"system": REVENUE_SYSTEM, "code": v(_C.ext_coding_code, bill.revenue)}})
    sig.append(bill.revenue is not None)
    if line.ndc_quantity is not None and line.ndc_unit is not None:
        value = int(line.ndc_quantity) if line.ndc_quantity == line.ndc_quantity.to_integral_value() else float(line.ndc_quantity)
        unit = v(_C.ext_quantity_unit, line.ndc_unit)
        extensions.append({"url": EXT_NDC_QUANTITY, "valueQuantity": {
            "value": v(_C.ext_quantity_value, value), "unit": unit, "system": NDC_UNIT_SYSTEM, "code": v(_C.ext_quantity_code, unit)}})
        sig.append(type(value))
    else:
        sig.append(None)
    location = encounter.location
    if location is not None:
        extensions.append({"url": EXT_LOCATION, "valueReference": _ref(c, location, profile)})
    flags = bill.flags
    extensions += [{"url": EXT_REVIEW_FLAG, "valueCode": v(_C.ext_code, flag)} for flag in flags]
    sig.append(bool(flags))
    notes = [{"text": v(_C.note, line.reason)}]
    notes += [{"text": v(_C.note, f"warning {w.code}: {w.message}")} for w in bill.warnings]
    notes += [{"text": v(_C.note, f"review {code}: {message}")} for code, message in bill.own_flags]
    coding = [{"system": CODE_SYSTEMS[line.system], "code": v(_C.code_code, line.code)}]
    if row is not None and cdm is not None:
        cdm_coding = {"system": v(_C.code_system, cdm.system)}
        if cdm.version:
            cdm_coding["version"] = v(_C.code_version, cdm.version)
        cdm_coding["code"], cdm_coding["display"] = v(_C.code_code, row.cdm_code), v(_C.code_display, row.description)
        coding.append(cdm_coding)
        sig.append(bool(cdm.version))
    else:
        sig.append(None)
    item: dict[str, Any] = {
        "resourceType": "ChargeItem",
        "id": v(_C.id, item_id),
        "extension": extensions,
        "identifier": [{"system": LINE_IDENTIFIER_SYSTEM, "value": v(_C.identifier_value, item_id)}],
        "status": "planned" if flags and profile.hold_flagged_lines else "billable",
        "code": {
            "coding": coding,
            "text": v(_C.code_text, f"{line.code} {line.drug_name}" if line.system == "HCPCS" and line.drug_name else line.code),
        },
        "subject": _subject(c, ctx.subject_ref, profile),
        "context": _ref(c, ctx.context_ref, profile),
        "occurrenceDateTime": v(_C.occurrence, line.service_date.isoformat()),
        "quantity": {"value": v(_C.quantity_value, line.units), "unit": v(_C.quantity_unit, line.unit or "service")},
        "enterer": {"reference": v(_C.reference, profile.enterer)} if profile.enterer else {"display": ENTERER_DISPLAY},
        "service": [_ref(c, _service(a, ctx), profile, listed=True) for a in line.administration_ids],
        "note": notes,
    }
    sig.append(bool(profile.enterer))
    sig.append("|")  # the references' kinds follow, in the order they were written
    canonical = definition_canonical(profile, row) if row is not None else None
    if canonical is not None:
        item["definitionCanonical"] = [v(_C.canonical, canonical)]
    sig.append(canonical is not None)
    performers = list(dict.fromkeys(p for a in line.administration_ids if (e := ctx.events.get(a)) is not None for p in e.performers))
    if performers:
        sig.append("performer")
        item["performer"] = [{"actor": _ref(c, p, profile, listed=True)} for p in performers]
    if encounter.service_provider is not None:
        sig.append("performingOrganization")
        item["performingOrganization"] = _ref(c, encounter.service_provider, profile)
    cost_center = ctx.cost_center
    if cost_center is not None:
        item["costCenter"] = {"type": "Organization", "identifier": {
            "system": v(_C.identifier_system, profile.cost_center_system), "value": v(_C.identifier_value, cost_center)}}
    sig.append(cost_center is not None)
    if ctx.entered is not None:
        item["enteredDate"] = v(_C.entered, ctx.entered)
    sig.append(ctx.entered is not None)
    if line.access_site:
        kind, _, name = line.access_site.partition(":")
        item["bodysite"] = [{"coding": [{"system": ACCESS_SITE_SYSTEM, "code": v(_C.coding_code, line.access_site)}],
                             "text": v(_C.concept_text, f"{kind} {name}")}]
    sig.append(bool(line.access_site))
    if line.drug_name or line.drug_codings:
        product: dict[str, Any] = {"text": v(_C.concept_text, line.drug_name)} if line.drug_name else {}
        codings = [{"system": v(_C.coding_system, d.system), "code": v(_C.coding_code, d.code),
                    **({"display": v(_C.coding_display, d.display)} if d.display else {})} for d in line.drug_codings]
        if line.ndc and parse_ndc(line.ndc).eleven and not any(d["system"] == NDC_SYSTEM and d["code"] == line.ndc for d in codings):
            codings.append({"system": NDC_SYSTEM, "code": v(_C.coding_code, line.ndc)})  # the 11-digit form claims use
        if codings:
            product["coding"] = codings
        item["productCodeableConcept"] = product
        sig.append((bool(line.drug_name), *dict.fromkeys("display" in d for d in codings)) if codings else (bool(line.drug_name),))
    else:
        sig.append(None)
    if encounter.account is not None:
        sig.append("account")
        item["account"] = [_ref(c, encounter.account, profile, listed=True)]
    # Validation is the contract: a ChargeItem we could not validate must never be published.
    _VALIDATOR.validate(item, c)
    return item


def _ref(c: Collected, ref: Ref, profile: Profile, listed: bool = False) -> dict[str, Any]:
    """:func:`reference`, its values registered; its kind (literal or logical) is a token, once
    per list for the items of a list (a list's structure is that of its distinct items)."""
    out = reference(ref, profile)
    token = "literal" if "reference" in out else "logical"
    if not listed or c.signature[-1:] != [token]:
        c.signature.append(token)
    if "reference" in out:
        c.value(_C.reference, out["reference"])
    else:
        c.value(_C.reference_type, out["type"])
        c.value(_C.identifier_system, out["identifier"]["system"])
        c.value(_C.identifier_value, out["identifier"]["value"])
    return out


def _subject(c: Collected, patient: Ref | None, profile: Profile) -> dict[str, Any]:
    if patient is not None:
        return _ref(c, patient, profile)
    c.signature.append("no-patient")
    return {"display": "patient not identified in the feed"}


def _service(admin_id: str, ctx: _Context) -> Ref:
    ref = ctx.services.get(admin_id)
    if ref is None:
        event = ctx.events.get(admin_id)
        ref = ctx.services[admin_id] = event.identifier if event is not None and event.identifier is not None \
            else Ref(resource_type="MedicationAdministration", reference=f"MedicationAdministration/{admin_id}")
    return ref


@dataclass(frozen=True)
class Billing:
    """What a line posts under, and why it needs review: shared by the ChargeItem and --explain."""

    row: CdmItem | None  # its chargemaster row
    revenue: str | None  # the row's revenue code, else the profile's or the default
    warnings: tuple[CodingWarning, ...]  # the coding's warnings about the line's administrations
    own_flags: tuple[tuple[str, str], ...]  # (code, message) the output raises itself (no-cdm-item, ...)

    @property
    def flags(self) -> list[str]:
        return list(dict.fromkeys([*(w.code for w in self.warnings), *(code for code, _ in self.own_flags)]))


def billing(line: CodedLine, result: CodingResult, ctx: _Context) -> Billing:
    cdm = ctx.profile.chargemaster
    row = cdm.row(line.code, line.modifiers) if cdm is not None else None
    ids = set(line.administration_ids)
    return Billing(row, (row.revenue_code if row is not None else None) or revenue_code(line.code, ctx.profile),
                   tuple(w for w in result.warnings if ids.intersection(w.administration_ids)), tuple(_line_flags(line, row, ctx)))


def billing_of(result: CodingResult, encounter: EncounterInfo, profile: Profile | None = None,
               events: Iterable[AdministrationEvent] = ()) -> list[Billing]:
    """Each line's :class:`Billing`, as :func:`to_charge_items` publishes it."""
    ctx = _context(profile or _DEFAULT_PROFILE, encounter, {e.id: e for e in events}, None, result.encounter_id)
    return [billing(line, result, ctx) for line in result.lines]


def _line_flags(line: CodedLine, row: CdmItem | None, ctx: _Context) -> list[tuple[str, str]]:
    """Review flags the output itself raises: (code, message).  The codes are in REVIEW_FLAGS."""
    profile = ctx.profile
    flags = []
    if profile.chargemaster is not None and row is None:
        flags.append(("no-cdm-item", f"no chargemaster row for {line.code}" + (f" with {' '.join(line.modifiers)}" if line.modifiers else "")))
    if line.system == "HCPCS":
        if line.ndc is None and profile.require_ndc and not line.code.startswith("P"):
            flags.append(("no-ndc", f"drug line {line.code} has no NDC; the profile requires one"))
        elif line.ndc is not None and line.ndc_quantity is None and line.rule != "drug.unclassified":
            flags.append(("no-ndc-quantity", f"NDC of {line.code}: no NDC quantity (the formulary gives no package unit for it, "
                                             "its administrations name different NDCs, or the dose is unknown)"))
    if profile.cost_centers and ctx.cost_center is None:
        flags.append(("no-cost-center", "the encounter's location maps to no cost centre in the profile"
                      if ctx.encounter.location_code else "the encounter names no location: no cost centre"))
    return flags


# fhir.resources' verdict from the builder's own signature and values (mapping/built_validation.py).
# The item is published as built: it is already in the form fhir.resources would write
# (tests/test_chargeitem_out.py checks the round trip).
_VALIDATOR = BuiltValidator(ChargeItem)


class _Checks:
    """Each variable element's check, as fhir.resources declares it."""

    def __init__(self, validator: BuiltValidator):
        c = validator.check
        self.id, self.identifier_value, self.identifier_system = c("id"), c("identifier", "value"), c("identifier", "system")
        self.ext_string, self.ext_integer, self.ext_code = c("extension", "valueString"), c("extension", "valueInteger"), c("extension", "valueCode")
        self.ext_coding_code = c("extension", "valueCoding", "code")
        self.ext_quantity_value, self.ext_quantity_unit = c("extension", "valueQuantity", "value"), c("extension", "valueQuantity", "unit")
        self.ext_quantity_code = c("extension", "valueQuantity", "code")
        self.note = c("note", "text")
        self.code_code, self.code_system = c("code", "coding", "code"), c("code", "coding", "system")
        self.code_version, self.code_display, self.code_text = c("code", "coding", "version"), c("code", "coding", "display"), c("code", "text")
        self.reference, self.reference_type = c("subject", "reference"), c("subject", "type")
        self.occurrence, self.entered = c("occurrenceDateTime"), c("enteredDate")
        self.quantity_value, self.quantity_unit = c("quantity", "value"), c("quantity", "unit")
        self.canonical = c("definitionCanonical")
        self.coding_code, self.coding_system = c("productCodeableConcept", "coding", "code"), c("productCodeableConcept", "coding", "system")
        self.coding_display, self.concept_text = c("productCodeableConcept", "coding", "display"), c("productCodeableConcept", "text")


_C = _Checks(_VALIDATOR)


def full_url(item_id: str, base_url: str | None = None) -> str:
    """A ChargeItem entry's fullUrl: <base>/ChargeItem/<id> on a known server, else the
    name-based ``urn:uuid:`` of its id (the same line, the same URL, in every revision)."""
    if base_url:
        return f"{base_url}/ChargeItem/{item_id}"
    return f"urn:uuid:{name_uuid(item_id)}"


_NAMESPACE_BYTES = FULL_URL_NAMESPACE.bytes


def name_uuid(name: str) -> str:
    """``str(uuid.uuid5(FULL_URL_NAMESPACE, name))`` (RFC 4122 version 5: SHA-1 of the namespace
    and the name, version and variant bits set), written without building a UUID object:
    ~1.4 instead of ~5 µs, once per ChargeItem of every revision."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def bundle(items: Iterable[dict[str, Any]], base_url: str | None = None) -> dict[str, Any]:
    """A FHIR Bundle of type ``collection`` (entries are validated ChargeItems); id from content."""
    items = list(items)
    entries = [{"fullUrl": full_url(it["id"], base_url), "resource": it} for it in items]
    digest = hashlib.sha256("\n".join(f"{it['id']} {it['quantity']}" for it in items).encode()).hexdigest()[:32]
    return {"resourceType": "Bundle", "id": f"charges-{digest}", "type": "collection", "entry": entries}


def revision_bundle(
    encounter_id: str,
    revision: int,
    items: Sequence[dict[str, Any]],
    previous: Mapping[str, dict[str, Any]] | None = None,
    coded_with: Mapping[str, str] | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """One coding result as a FHIR ``transaction``: ``PUT ChargeItem/{id}`` per current line and,
    for every line of the previous revision that vanished, the same ChargeItem again with status
    ``entered-in-error``.  A FHIR server applies it idempotently; the same inputs give the same
    bytes (deterministic id, no timestamps), so a repeated delivery changes nothing.
    ``coded_with`` (e.g. formulary and profile versions) is recorded as ``meta.tag``."""
    current_ids = {it["id"] for it in items}
    withdrawn = [
        {**old, "status": "entered-in-error"}
        for old_id, old in sorted((previous or {}).items())
        if old_id not in current_ids and old.get("status") != "entered-in-error"
    ]
    entries = [
        {"fullUrl": full_url(it["id"], base_url), "resource": it,
         "request": {"method": "PUT", "url": f"ChargeItem/{it['id']}"}}
        for it in (*items, *withdrawn)
    ]
    return {
        "resourceType": "Bundle",
        "id": f"charges-{hashlib.sha256(encounter_id.encode()).hexdigest()[:16]}-r{revision}",
        "meta": {"versionId": str(revision), **({"tag": [
            {"system": f"{CODED_WITH_SYSTEM}/{name}", "code": value} for name, value in sorted(coded_with.items())]} if coded_with else {})},
        "type": "transaction",
        "entry": entries,
    }
