"""The ChargeItem builder validates from its own signature and values (mapping/built_validation.py).
That is exact only if, for every combination of the builder's branches, (1) fhir.resources
accepts the item, (2) items of one signature have one structure (the shape fhir.resources'
verdict depends on), and (3) every value the builder did not register is a constant."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fhir.resources.R4B.chargeitem import ChargeItem
from pydantic import ValidationError

import mapping.chargeitem_out as out
from coding_core.engine import code_encounter
from coding_core.formulary import NDC_SYSTEM
from coding_core.model import Coding, EncounterInfo, Ref
from coding_core.profile import CdmItem, Chargemaster, Profile
from mapping.fhir_shapes import ShapeValidator
from mapping.reference_data import load_formulary
from tests.builders import CHEMO, NS, THER, adm

FORMULARY = load_formulary()
WALK = ShapeValidator(ChargeItem)
# Every value the builder writes without registering it: its constants.
CONSTANTS = {"ChargeItem", "billable", "planned", out.ENTERER_DISPLAY, "patient not identified in the feed", "Organization",
             out.CPT_SYSTEM, out.LINE_IDENTIFIER_SYSTEM, out.ACCESS_SITE_SYSTEM, out.REVENUE_SYSTEM, out.NDC_UNIT_SYSTEM,
             NDC_SYSTEM, *out.CODE_SYSTEMS.values(),
             *(getattr(out, n) for n in dir(out) if n.startswith("EXT_") and isinstance(getattr(out, n), str))}

CDM = Chargemaster(system="https://h.example.org/cdm", items=(
    CdmItem(code="96413", cdm_code="1", description="CHEMO", unit_price=Decimal("10.00")),
    CdmItem(code="J9312", cdm_code="2", description="RITUX"),
    CdmItem(code="J9312", modifiers=("JW",), cdm_code="3", description="RITUX W", unit_price=Decimal("1.00"))))
PROFILES = [
    Profile(),
    Profile(chargemaster=CDM.model_copy(update={"version": "v1"}), fhir_base_url="https://f.example.org", enterer="Device/ic",
            cost_centers={"ONC": "1"}, hold_flagged_lines=True, require_ndc=True),
    Profile(chargemaster=Chargemaster(system=CDM.system, items=tuple(i.model_copy(update={"unit_price": None}) for i in CDM.items)),
            cost_centers={"X": "1"}, revenue_codes={"96413": "0999"},
            identifier_systems={"H": "urn:oid:1.2.3"}),
]
LITERAL = dict(patient=Ref(resource_type="Patient", reference="Patient/p1"), location=Ref(resource_type="Location", reference="Location/ONC"),
               location_code="ONC", service_provider=Ref(resource_type="Organization", reference="Organization/o"),
               account=Ref(resource_type="Account", reference="Account/a"))
LOGICAL = dict(patient=Ref(resource_type="Patient", value="MRN1", authority="H"), identifier=Ref(resource_type="Encounter", value="V1"),
               location=Ref(resource_type="Location", value="ONC", authority="MAIN"), location_code="ONC",
               account=Ref(resource_type="Account", value="A1", authority="H"))
ENCOUNTERS = [EncounterInfo(id="enc-1", patient_id="pat-1"), EncounterInfo(id="enc-1"), EncounterInfo(id="enc-1", **LITERAL),
              EncounterInfo(id="enc-1", **LOGICAL), EncounterInfo(id="enc-1", period_end=datetime(2026, 3, 2, 20, tzinfo=UTC)),
              EncounterInfo(id="enc-1", period_start=datetime(2026, 3, 2, 13, tzinfo=UTC))]


def _events(kind: int, source: str):
    """Administrations covering the line kinds: CPT with minutes, pushes, drugs with and without
    NDC (integer and decimal NDC quantities), waste (JW), an unknown drug, codings with and
    without display, performers literal and logical."""
    ndc = lambda e, code: e.model_copy(update={"ndc": code, "drug_codings": (*e.drug_codings, Coding(system=NDC_SYSTEM, code=code))})
    sets = [
        [adm(CHEMO, "09:00", "10:40", id="c", dose=(685, "mg"))],
        [ndc(adm(CHEMO, "09:00", "10:00", id="c", dose=(680, "mg"), wasted=(20, "mg")), "50242-053-06"),
         adm(THER, "10:05", None, id="p", method="push", dose=(4, "mg"), site=None)],
        [adm(None, "09:00", "09:20", id="u", text="mystery drug", dose=(1, "mg")), adm(NS, "09:30", None, id="n", volume=500, rate=250)],
        [ndc(adm("J9042", "09:00", "09:30", id="b", dose=(126, "mg"), wasted=(24, "mg")), "51144-050-01"),
         adm("J2405", "09:00", None, id="o", route="oral", dose=(8, "mg"))],
        [adm(THER, None, None, id="t", dose=(4, "mg"))],  # no time at all: no enteredDate without an encounter period
    ]
    events = sets[kind]
    if source == "bare":  # no performer, no identifier, codings as built
        return events
    hl7 = source == "hl7"
    performer = Ref(resource_type="Practitioner", value="RN1", authority="NPI") if hl7 else Ref(resource_type="Practitioner", reference="Practitioner/rn1")
    identifier = (lambda e: Ref(resource_type="MedicationAdministration", value=e.id, system="urn:infusion-charges:administration"))
    return [e.model_copy(update={"performers": (performer,), **({"identifier": identifier(e)} if hl7 else {}),
                                 "drug_codings": tuple(c.model_copy(update={"display": "shown"}) if i and hl7 else c
                                                       for i, c in enumerate(e.drug_codings))})
            for e in events]


def _built():
    """(item, signature, registered values) for every combination."""
    captured = []
    real = out._VALIDATOR.validate

    def capture(item, collected):
        captured.append((item, tuple(collected.signature), [v for _, v in collected.values]))
        real(item, collected)

    out._VALIDATOR.validate = capture
    try:
        for profile, encounter, kind, source, entered in itertools.product(PROFILES, ENCOUNTERS, range(5), ("bare", "fhir", "hl7"),
                                                                         (None, datetime(2026, 3, 3, tzinfo=UTC))):
            events = _events(kind, source)
            result = code_encounter(encounter, events, FORMULARY, profile)
            out.to_charge_items(result, encounter, profile, events, entered)
            if kind == 0:  # lines naming no drug (a port irrigation, a pump refill)
                bare = result.model_copy(update={"lines": tuple(ln.model_copy(update={"drug_name": None, "drug_codings": (), "ndc": None})
                                                                for ln in result.lines)})
                out.to_charge_items(bare, encounter, profile, events, entered)
    finally:
        out._VALIDATOR.validate = real
    return captured


BUILT = _built()


def test_the_combinations_reach_every_branch_of_the_builder():
    signatures = {s for _, s, _ in BUILT}
    assert len(BUILT) > 500 and len(signatures) > 100
    elements = Counter(k for item, _, _ in BUILT for k in item)
    for element in ("definitionCanonical", "performer", "performingOrganization", "costCenter", "enteredDate", "account",
                    "bodysite", "productCodeableConcept"):
        assert 0 < elements[element] < len(BUILT), element  # both with and without
    kinds = Counter(e["url"].rsplit("/", 1)[1] for item, _, _ in BUILT for e in item["extension"])
    assert {"chargeitem-modifier", "ndc-quantity", "performing-location", "review-flag", "revenue-code"} <= set(kinds)


def test_fhir_resources_accepts_every_item_built():
    for item, _, _ in BUILT:
        ChargeItem.model_validate(item)


def test_one_signature_is_one_structure():
    shapes: dict[tuple, tuple] = {}
    for item, signature, _ in BUILT:
        shape = WALK._shape(item, WALK._root, [], [])
        assert shapes.setdefault(signature, shape) == shape, f"signature {signature} has two structures"


def test_every_value_the_builder_did_not_register_is_a_constant():
    for item, _, registered in BUILT:
        walked: list = []
        WALK._shape(item, WALK._root, walked, [])
        rest = Counter(walked)
        rest.subtract(Counter(registered))
        unregistered = {v for v, n in rest.items() if n > 0}
        assert unregistered <= CONSTANTS, unregistered - CONSTANTS
        assert not [v for v, n in rest.items() if n < 0]  # nothing registered that is not in the item


def test_a_value_its_element_refuses_is_refused_with_fhir_resources_error():
    from tests.builders import run

    result = run(adm(CHEMO, "09:00", "10:40", id="c", dose=(700, "mg")))
    out.to_charge_items(result, ENCOUNTERS[0])  # its signature learned
    # A code with two spaces inside is no FHIR code (fhir.resources' Code pattern).
    bad = result.model_copy(update={"lines": tuple(ln.model_copy(update={"modifiers": ("5  9",)}) for ln in result.lines)})
    with pytest.raises(ValidationError):
        out.to_charge_items(bad, ENCOUNTERS[0])
    fast = out._VALIDATOR.fast
    out.to_charge_items(result, ENCOUNTERS[0])
    assert out._VALIDATOR.fast > fast  # the valid one still by its values alone
