"""Coded lines out as FHIR R4 ChargeItems (validated with fhir.resources.R4B, identical for R4).

Profile (also in the README, "Output contract"):

* ``id`` — deterministic: a hash of what the line is about (:func:`line_key`): the encounter,
  the administrations the line came from, its date of service and the part of their service
  it charges, plus an ordinal when two lines share all of those.  The code, units and the
  explanation are *not* part of it, so a re-coded encounter keeps its line ids, a changed code
  or quantity is an update of the same charge, and no other line's id moves when an
  administration is removed.
* ``status`` = ``billable``; ``code.coding`` = CPT (``http://www.ama-assn.org/go/cpt``) or
  HCPCS (``http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets``).
* ``quantity.value`` = units; ``occurrenceDateTime`` = the date of service (a FHIR date).
* ``context`` -> Encounter, ``subject`` -> Patient, ``service`` -> the MedicationAdministrations
  the line came from, ``bodysite`` -> the vascular access, ``productCodeableConcept`` -> drug
  (its codings as sent, and the NDC in the 11-digit 5-4-2 form where it was sent otherwise).
* Modifiers: repeated extension :data:`EXT_MODIFIER` (``valueCoding``, CPT/HCPCS modifier).
* Explanation: ``note[0].text`` = the reason; further notes = warnings about the same
  administrations.  Extensions :data:`EXT_RULE` (``valueString``, the rule id) and
  :data:`EXT_MINUTES` (``valueInteger``) make the reasoning machine-readable.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fhir.resources.R4B.chargeitem import ChargeItem

from coding_core.formulary import HCPCS_SYSTEM, NDC_SYSTEM
from coding_core.model import CodedLine, CodingResult, EncounterInfo
from coding_core.ndc import parse_ndc
from coding_core.profile import Profile
from coding_core.revenue_codes import revenue_code
from mapping.fhir_shapes import ShapeValidator

CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
CODE_SYSTEMS = {"CPT": CPT_SYSTEM, "HCPCS": HCPCS_SYSTEM}
_DEFAULT_PROFILE = Profile()
EXT_BASE = "https://infusion-charges.dev/fhir/StructureDefinition/"
EXT_MODIFIER = EXT_BASE + "chargeitem-modifier"
EXT_RULE = EXT_BASE + "coding-rule"
EXT_MINUTES = EXT_BASE + "service-minutes"
EXT_FORMULARY = EXT_BASE + "formulary-version"
EXT_REVENUE = EXT_BASE + "revenue-code"  # valueCoding, NUBC UB-04 revenue code
EXT_REVIEW_FLAG = EXT_BASE + "review-flag"  # valueCode: a warning concerning the line (REVIEW_FLAG_SYSTEM)
REVENUE_SYSTEM = "https://www.nubc.org/CodeSystem/RevenueCodes"
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


def to_charge_items(result: CodingResult, encounter: EncounterInfo, profile: Profile | None = None) -> list[dict[str, Any]]:
    """The encounter's lines as validated ChargeItem dicts (JSON-ready); ``profile``: revenue
    codes and whether flagged lines are held for review."""
    profile = profile or _DEFAULT_PROFILE
    items = []
    for line, item_id in zip(result.lines, charge_item_ids(result.encounter_id, result.lines), strict=True):
        items.append(_charge_item(item_id, line, result, encounter, profile))
    return items


def _charge_item(item_id: str, line: CodedLine, result: CodingResult, encounter: EncounterInfo, profile: Profile) -> dict[str, Any]:
    modifier_system = CODE_SYSTEMS[line.system]
    extensions: list[dict[str, Any]] = [
        {"url": EXT_MODIFIER, "valueCoding": {"system": modifier_system, "code": m}} for m in line.modifiers
    ]
    extensions.append({"url": EXT_RULE, "valueString": line.rule})
    if line.minutes is not None:
        extensions.append({"url": EXT_MINUTES, "valueInteger": line.minutes})
    if result.formulary_version:
        extensions.append({"url": EXT_FORMULARY, "valueString": result.formulary_version})
    revenue = revenue_code(line.code, profile)
    if revenue is not None:
        extensions.append({"url": EXT_REVENUE, "valueCoding": {"system": REVENUE_SYSTEM, "code": revenue}})

    admin_ids = set(line.administration_ids)
    concerning = [w for w in result.warnings if admin_ids.intersection(w.administration_ids)]
    flags = list(dict.fromkeys(w.code for w in concerning))
    extensions += [{"url": EXT_REVIEW_FLAG, "valueCode": flag} for flag in flags]
    notes = [{"text": line.reason}]
    notes += [{"text": f"warning {w.code}: {w.message}"} for w in concerning]
    patient_id = encounter.patient_id
    item: dict[str, Any] = {
        "resourceType": "ChargeItem",
        "id": item_id,
        "extension": extensions,
        "identifier": [{"system": LINE_IDENTIFIER_SYSTEM, "value": item_id}],
        "status": "planned" if flags and profile.hold_flagged_lines else "billable",
        "code": {
            "coding": [{"system": CODE_SYSTEMS[line.system], "code": line.code}],
            "text": f"{line.code} {line.drug_name}" if line.system == "HCPCS" and line.drug_name else line.code,
        },
        "subject": {"reference": f"Patient/{patient_id}"} if patient_id else {"display": "patient not identified in the feed"},
        "context": {"reference": f"Encounter/{result.encounter_id}"},
        "occurrenceDateTime": line.service_date.isoformat(),
        "quantity": {"value": line.units},
        "service": [{"reference": f"MedicationAdministration/{a}"} for a in line.administration_ids],
        "note": notes,
    }
    if line.access_site:
        kind, _, name = line.access_site.partition(":")
        item["bodysite"] = [{"coding": [{"system": ACCESS_SITE_SYSTEM, "code": line.access_site}], "text": f"{kind} {name}"}]
    if line.drug_name or line.drug_codings:
        product: dict[str, Any] = {"text": line.drug_name} if line.drug_name else {}
        codings = [{"system": c.system, "code": c.code, **({"display": c.display} if c.display else {})} for c in line.drug_codings]
        if line.ndc and parse_ndc(line.ndc).eleven and not any(c["system"] == NDC_SYSTEM and c["code"] == line.ndc for c in codings):
            codings.append({"system": NDC_SYSTEM, "code": line.ndc})  # the 11-digit form claims use, beside the NDC as sent
        if codings:
            product["coding"] = codings
        item["productCodeableConcept"] = product
    # Validation is the contract: a ChargeItem we could not validate must never be published.
    _VALIDATOR.validate(item)
    return item


# fhir.resources validation, exact, at a fraction of its cost (see mapping/fhir_shapes.py).
# The item is published as built: it is already in the form fhir.resources would write
# (tests/test_chargeitem_out.py checks the round trip).
_VALIDATOR = ShapeValidator(ChargeItem)


def full_url(item_id: str, base_url: str | None = None) -> str:
    """A ChargeItem entry's fullUrl: <base>/ChargeItem/<id> on a known server, else the
    name-based ``urn:uuid:`` of its id (the same line, the same URL, in every revision)."""
    if base_url:
        return f"{base_url}/ChargeItem/{item_id}"
    return f"urn:uuid:{uuid.uuid5(FULL_URL_NAMESPACE, item_id)}"


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
