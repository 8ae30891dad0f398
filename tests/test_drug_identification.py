"""Drug identification as feeds send it: NDCs in every layout, names reduced to the
ingredient (flagged), and what the line says when identification is uncertain."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from coding_core.drug_names import reduced
from coding_core.engine import code_encounter
from coding_core.formulary import BY_CODE, BY_NAME, BY_REDUCED_NAME, HCPCS_SYSTEM, NDC_SYSTEM, Formulary, FormularyEntry
from coding_core.model import AdministrationEvent, Coding, DrugClass, EncounterClass, EncounterInfo, Quantity, Route
from coding_core.ndc import normalize_ndc, parse_ndc
from coding_core.profile import Profile
from mapping.chargeitem_out import to_charge_items
from mapping.reference_data import ReferenceDataError, formulary_from_text, load_formulary


@pytest.mark.parametrize("sent, eleven", [
    ("0338-0049-04", "00338004904"),  # 4-4-2
    ("51144-050-01", "51144005001"),  # 5-3-2
    ("12345-6789-1", "12345678901"),  # 5-4-1
    ("00338-0049-04", "00338004904"),  # 11 digits hyphenated
    ("00338004904", "00338004904"),  # 11 digits
    (" 0338-0049-04 ", "00338004904"),
])
def test_every_ndc_layout_has_one_eleven_digit_form(sent, eleven):
    ndc = parse_ndc(sent)
    assert (ndc.eleven, ndc.candidates, ndc.ambiguous) == (eleven, (eleven,), False)
    assert normalize_ndc(sent) == eleven


def test_ten_digits_without_hyphens_could_be_any_layout():
    ndc = parse_ndc("0338004904")
    assert ndc.eleven is None and ndc.ambiguous
    assert ndc.candidates == ("00338004904", "03380004904", "0338004900" "4")  # 4-4-2, 5-3-2, 5-4-1 padded
    assert normalize_ndc("0338004904") == "0338004904"  # kept as sent


@pytest.mark.parametrize("bad", ["0338-49-04", "338-0049-04-1", "abc", "033800490", "0338-0049-0A"])
def test_what_is_not_an_ndc(bad):
    assert parse_ndc(bad).candidates == ()


def _formulary() -> Formulary:
    return Formulary("t", [
        FormularyEntry(hcpcs="J7030", name="normal saline solution infusion 1000 cc", drug_class=DrugClass.HYDRATION,
                       billing_unit_value=Decimal(1000), billing_unit="mL", ndc=("0338-0049-04",)),
        FormularyEntry(hcpcs="J7060", name="5% dextrose/water 500 ml", drug_class=DrugClass.HYDRATION,
                       billing_unit_value=Decimal(500), billing_unit="mL"),
        FormularyEntry(hcpcs="J3370", name="vancomycin", drug_class=DrugClass.THERAPEUTIC, billing_unit_value=Decimal(500),
                       billing_unit="mg", synonyms=("vancocin",)),
        FormularyEntry(hcpcs="J1100", name="dexamethasone sodium phosphate", drug_class=DrugClass.THERAPEUTIC,
                       billing_unit_value=Decimal(1), billing_unit="mg"),
        FormularyEntry(hcpcs="J3480", name="potassium chloride", drug_class=DrugClass.THERAPEUTIC,
                       billing_unit_value=Decimal(2), billing_unit="mEq"),
        FormularyEntry(hcpcs="J1453", name="fosaprepitant", drug_class=DrugClass.THERAPEUTIC, billing_unit_value=Decimal(1),
                       billing_unit="mg", synonyms=("emend iv",)),
    ])


@pytest.mark.parametrize("code", ["0338-0049-04", "00338-0049-04", "00338004904", "0338004904"])
def test_an_ndc_in_any_layout_finds_the_drug(code):
    found = _formulary().identify([Coding(system=NDC_SYSTEM, code=code)])
    assert (found.entry.hcpcs if found.entry else None, found.by) == ("J7030", BY_CODE)


@pytest.mark.parametrize("text, hcpcs, by", [
    ("vancomycin", "J3370", BY_NAME),
    ("Vancocin", "J3370", BY_NAME),
    ("Vancomycin Hydrochloride 1 g", "J3370", BY_REDUCED_NAME),
    ("vancomycin hydrochloride 1 g/200 mL IVPB", "J3370", BY_REDUCED_NAME),
    ("Vancomycin Hydrochloride (VANCOMYCIN HYDROCHLORIDE)", "J3370", BY_REDUCED_NAME),
    ("Dexamethasone 4 mg/mL injection", "J1100", BY_REDUCED_NAME),
    ("Potassium Chloride 20 mEq in 100 mL", "J3480", BY_REDUCED_NAME),
    ("Sodium chloride 0.9% 1000 mL", None, None),  # a salt that is the drug is kept: not potassium chloride
    ("Dextrose 50% 50 mL", None, None),  # fluids are never matched by a reduced name: D50 is not D5W
    ("Emend", None, None),  # "Emend IV" says IV to tell it from oral Emend: the synonym is not reduced
    ("ondansetron in dextrose", None, None),  # another ingredient left over: no match
])
def test_names_reduced_to_the_ingredient(text, hcpcs, by):
    found = _formulary().identify([], text)
    assert (found.entry.hcpcs if found.entry else None, found.by) == (hcpcs, by)


def test_reduced_names():
    assert reduced("Vancomycin Hydrochloride 1 g/200 mL") == ("vancomycin hydrochloride", "vancomycin")
    assert reduced("potassium chloride 20 mEq") == ("potassium chloride",)
    assert reduced("4 mg/mL") == ()


def test_a_reduced_name_that_fits_two_drugs_identifies_neither():
    f = Formulary("t", [
        FormularyEntry(hcpcs="J0001", name="drugamab sodium", drug_class=DrugClass.THERAPEUTIC, billing_unit_value=Decimal(1), billing_unit="mg"),
        FormularyEntry(hcpcs="J0002", name="drugamab acetate", drug_class=DrugClass.CHEMO, billing_unit_value=Decimal(1), billing_unit="mg"),
    ])
    assert f.identify([], "Drugamab 10 mg").entry is None
    assert f.identify([], "drugamab acetate").entry.hcpcs == "J0002"


def _code(event: AdministrationEvent, formulary: Formulary):
    info = EncounterInfo(id="e1", patient_id="p1", encounter_class=EncounterClass.AMBULATORY)
    return info, code_encounter(info, [event], formulary, Profile())


def _event(**over) -> AdministrationEvent:
    base = dict(id="a1", encounter_id="e1", patient_id="p1", route=Route.IV, access_device="port-1",
                start=datetime(2026, 11, 2, 9, 0, tzinfo=UTC), end=datetime(2026, 11, 2, 9, 40, tzinfo=UTC))
    return AdministrationEvent(**{**base, **over})


def test_a_drug_matched_by_a_reduced_name_is_coded_and_flagged():
    _, result = _code(_event(drug_text="Vancomycin Hydrochloride 1 g", dose=Quantity(value=Decimal(1000), unit="mg")), _formulary())
    assert [(ln.code, ln.units) for ln in result.lines] == [("96365", 1), ("J3370", 2)]
    flagged = [w for w in result.warnings if w.code == "matched-by-name"]
    assert len(flagged) == 1 and "J3370" in flagged[0].message and "by its name alone" in flagged[0].message
    _, by_code = _code(_event(drug_codings=(Coding(system=HCPCS_SYSTEM, code="J3370"),), dose=Quantity(value=Decimal(1000), unit="mg")),
                       _formulary())
    assert "matched-by-name" not in {w.code for w in by_code.warnings}


def test_saline_given_by_its_ndc_is_hydration_and_the_line_carries_the_eleven_digit_ndc():
    event = _event(drug_codings=(Coding(system=NDC_SYSTEM, code="0338-0049-04", display="Sodium chloride 0.9% 1000 mL"),),
                   end=datetime(2026, 11, 2, 10, 30, tzinfo=UTC), volume_ml=Decimal(1000), ndc="0338-0049-04")
    info, result = _code(event, _formulary())
    assert sorted((ln.code, ln.units) for ln in result.lines) == [("96360", 1), ("J7030", 1)]
    (drug_item,) = [i for i in to_charge_items(result, info) if i["code"]["coding"][0]["code"] == "J7030"]
    codings = drug_item["productCodeableConcept"]["coding"]
    assert {"system": NDC_SYSTEM, "code": "0338-0049-04", "display": "Sodium chloride 0.9% 1000 mL"} in codings  # as sent
    assert {"system": NDC_SYSTEM, "code": "00338004904"} in codings  # and as claims need it


def test_an_unhyphenated_ten_digit_ndc_is_kept_as_sent_with_a_warning():
    event = _event(drug_codings=(Coding(system=NDC_SYSTEM, code="0338004904"),), end=datetime(2026, 11, 2, 10, 30, tzinfo=UTC),
                   volume_ml=Decimal(1000), ndc="0338004904")
    info, result = _code(event, _formulary())
    assert ("J7030", 1) in [(ln.code, ln.units) for ln in result.lines]  # identified: one reading is known
    assert "ndc-not-normalised" in {w.code for w in result.warnings}
    (drug_item,) = [i for i in to_charge_items(result, info) if i["code"]["coding"][0]["code"] == "J7030"]
    assert [c["code"] for c in drug_item["productCodeableConcept"]["coding"] if c["system"] == NDC_SYSTEM] == ["0338004904"]


def test_a_formulary_ndc_must_be_in_a_known_layout():
    text = ('{"version": "t", "drugs": [{"hcpcs": "J7030", "name": "ns", "drug_class": "hydration", '
            '"billing_unit_value": "1000", "billing_unit": "mL", "ndc": ["0338004904"]}]}')
    with pytest.raises(ReferenceDataError) as e:
        formulary_from_text(text, "f.json")
    assert "J7030" in str(e.value) and "known layout" in str(e.value)


def test_the_bundled_formulary_reduces_no_name_to_a_fluid_or_to_two_drugs():
    f = load_formulary()
    assert f.identify([], "Dextrose 50% 50 mL").entry is None
    assert f.identify([], "Sodium chloride 0.9% 1000 mL").by != BY_REDUCED_NAME
    assert f.identify([], "Vancomycin Hydrochloride 1 g").entry.hcpcs == "J3370"


def test_unknown_and_name_matched_drugs_are_counted_by_code_system_only(tmp_path):
    from mapping.fhir_in import map_resource
    from tests.test_fhir_in import r4
    from tests.test_rooms import _events, _rooms

    rooms = _rooms(tmp_path)
    unknown_ndc = map_resource(r4(id="ma-1", medicationCodeableConcept={"coding": [{"system": NDC_SYSTEM, "code": "99999-9999-99"}]}))
    by_name = map_resource(r4(id="ma-2", medicationCodeableConcept={"text": "Vancomycin Hydrochloride 1 g"}))
    known = map_resource(r4(id="ma-3"))
    _events(rooms, unknown_ndc, by_name, known)
    _events(rooms, unknown_ndc, offset=1)  # delivered again: a duplicate is not counted twice
    text = rooms.processor.metrics.render().decode()
    counted = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("infusion_charges_unknown_drugs_total")}
    assert counted == {'infusion_charges_unknown_drugs_total{system="ndc"}': 1.0, 'infusion_charges_unknown_drugs_total{system="text"}': 1.0}
    assert "99999" not in text and "ancomycin" not in text


@pytest.mark.parametrize("code, hcpcs", [
    ("1740467", "J2405"),  # 2 ML Ondansetron 2 MG/ML Injection (SCD)
    ("104895", "J2405"),  # Zofran 4 MG Oral Tablet (SBD): the route decides the oral product
    ("1807639", "J7030"),  # 1000 mL sodium chloride 9 mg/mL Bag
    ("1807634", "J7040"),
    ("204520", "J3480"),  # the FHIR example's potassium chloride product code
])
def test_product_level_rxnorm_codes_resolve(code, hcpcs):
    found = load_formulary().identify([Coding(system="http://www.nlm.nih.gov/research/umls/rxnorm", code=code)])
    assert (found.entry.hcpcs if found.entry else None, found.by) == (hcpcs, BY_CODE)


def _fhir_lines(medication: dict, dose: dict, end: str) -> list[tuple[str, int]]:
    from mapping.fhir_in import map_medication_administration
    from tests.test_fhir_in import r4

    event = map_medication_administration(r4(medicationCodeableConcept=medication, effectivePeriod={"start": "2026-03-02T10:00:00-05:00", "end": end},
                                             dosage={"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]}, "dose": dose}))
    info = EncounterInfo(id=event.encounter_id, patient_id="p1", encounter_class=EncounterClass.AMBULATORY)
    return sorted((ln.code, ln.units) for ln in code_encounter(info, [event], load_formulary(), Profile()).lines)


def test_an_rxnorm_code_sent_by_oid_resolves():
    lines = _fhir_lines({"coding": [{"system": "urn:oid:2.16.840.1.113883.6.88", "code": "1740467"}]}, {"value": 4, "unit": "mg", "code": "mg"},
                        "2026-03-02T10:20:00-05:00")
    assert ("96365", 1) in lines and ("J2405", 4) in lines and not [c for c, _ in lines if c == "J3490"]


@pytest.mark.parametrize("ndc", ["0338-0049-04", "00338-0049-04", "00338004904"])
def test_normal_saline_given_by_its_ndc_is_hydration(ndc):
    lines = _fhir_lines({"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": ndc}], "text": "Sodium chloride 0.9% 1000 mL"},
                        {"value": 1000, "unit": "mL", "code": "mL"}, "2026-03-02T11:05:00-05:00")
    assert lines == [("96360", 1), ("J7030", 1)]  # not 96365 + J3490, an unknown therapeutic drug


@pytest.mark.parametrize("codes", [
    [(NDC_SYSTEM, "0338-0049-04"), ("http://www.nlm.nih.gov/research/umls/rxnorm", "8591")],  # NS bag + KCl
    [("http://www.nlm.nih.gov/research/umls/rxnorm", "8591"), ("http://www.nlm.nih.gov/research/umls/rxnorm", "1807639")],
    [(HCPCS_SYSTEM, "J7030"), ("http://www.nlm.nih.gov/research/umls/rxnorm", "204520")],
])
def test_a_fluid_with_a_drug_added_is_the_drug_not_hydration(codes):
    """An ingredient-coded Medication (KCl 20 mEq in 1 L 0.9 % NS) names the bag and the drug:
    therapeutic, per the coding rules, whichever code comes first."""
    found = load_formulary().identify([Coding(system=s, code=c) for s, c in codes])
    assert found.entry.hcpcs == "J3480"


def test_a_reduced_name_never_crosses_salts_nor_reduces_a_concentration():
    f = Formulary("t", [
        *_formulary().entries,
        FormularyEntry(hcpcs="J7131", name="hypertonic saline solution", drug_class=DrugClass.THERAPEUTIC,
                       billing_unit_value=Decimal(1), billing_unit="mL", synonyms=("sodium chloride",)),
        FormularyEntry(hcpcs="J9999", name="dextrose", drug_class=DrugClass.THERAPEUTIC, billing_unit_value=Decimal(1), billing_unit="mL"),
    ])
    assert f.identify([], "Dexamethasone acetate 8 mg/mL").entry is None  # J1094, not J1100 dexamethasone sodium phosphate
    assert f.identify([], "Dexamethasone Sodium Phosphate 4 mg/mL").entry.hcpcs == "J1100"
    assert f.identify([], "Sodium chloride 0.9% 1000 mL").entry is None  # not 1000 mL of 3 % saline
    assert f.identify([], "Dextrose 5% in water 1000 mL").entry is None
