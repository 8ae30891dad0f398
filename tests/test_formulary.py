"""The bundled formulary data file, its loader, and profile overrides."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from coding_core.classify import dose_in
from coding_core.engine import code_encounter
from coding_core.formulary import HCPCS_SYSTEM, NDC_SYSTEM, RXNORM_SYSTEM
from coding_core.model import AdministrationEvent, Coding, DrugClass, EncounterClass, EncounterInfo, Quantity, Route
from coding_core.profile import FormularyOverride, Profile
from coding_core.rules import UNCLASSIFIED_DRUG_HCPCS
from mapping.reference_data import ReferenceDataError, formulary_for, load_formulary, load_profile

# Issue 2's required list: code -> (billing unit, unit, class).  Written from the HCPCS
# descriptors, independently of the data file.
REQUIRED = {
    "J9312": ("10", "mg", "chemo"), "J9271": ("1", "mg", "chemo"), "J9299": ("1", "mg", "chemo"),
    "J1745": ("10", "mg", "chemo"), "Q5103": ("10", "mg", "chemo"), "J9035": ("10", "mg", "chemo"),
    "J9355": ("10", "mg", "chemo"), "J9022": ("10", "mg", "chemo"), "J9045": ("50", "mg", "chemo"),
    "J9060": ("10", "mg", "chemo"), "J9267": ("1", "mg", "chemo"), "J9171": ("1", "mg", "chemo"),
    "J9201": ("200", "mg", "chemo"), "J9263": ("0.5", "mg", "chemo"), "J9206": ("20", "mg", "chemo"),
    "J9190": ("500", "mg", "chemo"), "J9000": ("10", "mg", "chemo"), "J9070": ("100", "mg", "chemo"),
    "J9370": ("1", "mg", "chemo"), "J3380": ("1", "mg", "chemo"), "J2350": ("1", "mg", "chemo"),
    "J2323": ("1", "mg", "chemo"), "J0129": ("10", "mg", "chemo"), "J9041": ("0.1", "mg", "chemo"),
    "J9217": ("7.5", "mg", "chemo-hormonal"), "J9395": ("25", "mg", "chemo-hormonal"),
    "J2405": ("1", "mg", "therapeutic"), "J1100": ("1", "mg", "therapeutic"), "J1200": ("50", "mg", "therapeutic"),
    "J2469": ("25", "mcg", "therapeutic"), "J1453": ("1", "mg", "therapeutic"), "J1885": ("15", "mg", "therapeutic"),
    "J2270": ("10", "mg", "therapeutic"), "J3370": ("500", "mg", "therapeutic"), "J0696": ("250", "mg", "therapeutic"),
    "J3489": ("1", "mg", "therapeutic"), "J1756": ("1", "mg", "therapeutic"), "J3480": ("2", "mEq", "therapeutic"),
    "J1569": ("500", "mg", "therapeutic"), "J0897": ("1", "mg", "chemo"),
    "J7030": ("1000", "mL", "hydration"), "J7040": ("500", "mL", "hydration"), "J7050": ("250", "mL", "hydration"),
    "J7120": ("1000", "mL", "hydration"), "J7042": ("500", "mL", "hydration"), "J7060": ("500", "mL", "hydration"),
    "P9016": ("1", "each", "blood"),
}


@pytest.fixture(scope="module")
def formulary():
    return load_formulary()


@pytest.mark.parametrize("code", sorted(REQUIRED))
def test_required_drug(formulary, code):
    value, unit, cls = REQUIRED[code]
    entry = formulary.by_hcpcs(code)
    assert entry is not None, f"{code} missing from the formulary"
    assert (entry.billing_unit_value, entry.billing_unit, entry.drug_class) == (Decimal(value), unit, DrugClass(cls))


def test_version_and_every_billing_unit_is_convertible(formulary):
    assert formulary.version
    for e in formulary.entries:
        assert dose_in(e.billing_unit_value, e.billing_unit, e.billing_unit) == e.billing_unit_value, e.hcpcs


@pytest.mark.parametrize(
    ("codings", "text", "expected"),
    [
        ([Coding(system=HCPCS_SYSTEM, code="j9312")], None, "J9312"),
        ([Coding(system=RXNORM_SYSTEM, code="1547545")], None, "J9271"),
        ([], "Keytruda", "J9271"),
        ([], "LACTATED RINGERS", "J7120"),
        ([Coding(system="urn:local:pharmacy", code="X1", display="Zofran")], None, "J2405"),
        ([Coding(system=RXNORM_SYSTEM, code="000000"), Coding(system=HCPCS_SYSTEM, code="J1100")], None, "J1100"),
        ([Coding(system=RXNORM_SYSTEM, code="993449")], None, "J0897"),
        ([Coding(system=HCPCS_SYSTEM, code="Q5103")], None, "Q5103"),  # the biosimilar is not folded into J1745
        ([], "Remicade", "J1745"),
        ([], "INFLECTRA", "Q5103"),
        ([], "  Rituximab ", "J9312"),
        ([], "5-FU", "J9190"),
        ([], "Normal Saline", "J7030"),
        ([], "D5/NS", "J7042"),
        ([], "D5W", "J7060"),  # hydration (CODING_RULES), not an unknown drug coded as therapeutic
        ([], "0.9% Sodium Chloride", "J7030"),
        ([], "Lupron Depot", "J9217"),
        ([Coding(system="urn:local:mar", code="zz", display="Xgeva")], None, "J0897"),
    ],
)
def test_lookup(formulary, codings, text, expected):
    entry = formulary.lookup(codings, text)
    assert entry is not None and entry.hcpcs == expected


def test_unknown_drug_is_none(formulary):
    assert formulary.lookup([Coding(system=NDC_SYSTEM, code="99999-9999-99")], "methylprednisolone") is None
    assert formulary.lookup([]) is None
    # "Emend" alone is also oral aprepitant (a different drug and code): only "Emend IV" is fosaprepitant.
    assert formulary.lookup([], "Emend") is None


def test_the_bundled_file_is_read_once_and_names_its_provenance(formulary):
    assert load_formulary() is formulary
    assert formulary.version == "2026.12.3"
    note = formulary.by_hcpcs("J0897").note
    assert note and "96372" in note


def test_unclassified_drug_code_is_left_to_the_engine(formulary):
    """The engine bills J3490 for drugs it cannot find (entry None, unknown-drug warning, 1 unit).

    A J3490 entry in the formulary would turn such drugs into "known" therapeutic drugs: the
    warning and the unclassified line's reason would be lost and mg doses would not convert.
    """
    assert formulary.by_hcpcs(UNCLASSIFIED_DRUG_HCPCS) is None
    event = AdministrationEvent(
        id="a1", encounter_id="e1", patient_id="p1", route=Route.IV, access_device="port-1",
        drug_codings=(Coding(system=HCPCS_SYSTEM, code=UNCLASSIFIED_DRUG_HCPCS, display="compounded mystery"),),
        start=datetime(2026, 11, 2, 9, 0, tzinfo=UTC), end=datetime(2026, 11, 2, 9, 40, tzinfo=UTC),
        dose=Quantity(value=Decimal(100), unit="mg"),
    )
    result = code_encounter(EncounterInfo(id="e1", patient_id="p1", encounter_class=EncounterClass.AMBULATORY),
                            [event], formulary, Profile())
    drug_lines = [ln for ln in result.lines if ln.system == "HCPCS"]
    assert [(ln.code, ln.units, ln.rule) for ln in drug_lines] == [(UNCLASSIFIED_DRUG_HCPCS, 1, "drug.unclassified")]
    assert "unknown-drug" in {w.code for w in result.warnings}


def test_profile_overrides_change_the_class_and_add_local_codes(tmp_path, formulary):
    path = tmp_path / "site.yaml"
    path.write_text(
        "name: acme\n"
        "formulary_overrides:\n"
        "  - {hcpcs: J0897, drug_class: therapeutic}\n"
        "  - {hcpcs: J9312, local_codes: [RITUX500]}\n"
    )
    site = formulary_for(load_profile(path), formulary)
    assert site.by_hcpcs("J0897").drug_class is DrugClass.THERAPEUTIC
    assert formulary.by_hcpcs("J0897").drug_class is DrugClass.CHEMO  # the bundled one is untouched
    assert site.lookup([Coding(system="urn:local:acme", code="ritux500")]).hcpcs == "J9312"
    assert site.version != formulary.version


def _write(tmp_path, drugs, name="f.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"version": "t1", "drugs": drugs}))
    return path


DRUG = {"hcpcs": "J1", "name": "one", "drug_class": "therapeutic", "billing_unit_value": "1", "billing_unit": "mg"}


@pytest.mark.parametrize(
    ("drugs", "message"),
    [
        ([{**DRUG, "colour": "red"}], "drugs[0]: colour: Extra inputs"),
        ([{**DRUG, "drug_class": "vitamin"}], "drugs[0]: drug_class"),
        ([DRUG, {**DRUG, "name": "two"}], "HCPCS code 'J1' appears in two entries"),
        ([DRUG, {**DRUG, "hcpcs": "J2", "name": "two", "synonyms": ["ONE"]}], "name 'one' is claimed by both J1 and J2"),
        ([DRUG, {**DRUG, "hcpcs": "J2", "name": "two"} | {"rxnorm": ["5"]}, {**DRUG, "hcpcs": "J3", "name": "3", "rxnorm": ["5"]}],
         "RxNorm code '5' is claimed by both J2 and J3"),
    ],
)
def test_bad_formulary_files(tmp_path, drugs, message):
    path = _write(tmp_path, drugs)
    with pytest.raises(ReferenceDataError) as e:
        load_formulary(path)
    assert str(path) in str(e.value) and message in str(e.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"version": "", "drugs": []}', "'version' must be a non-empty string"),
        ('{"drugs": []}', "an object with 'version' and 'drugs'"),
        ('{"version": "t", "drugs": {}}', "'drugs' must be a list"),
        ('{"version": "t", "drugs": [{"hcpcs": "J1", "hcpcs": "J2"}]}', "key 'hcpcs' appears twice"),
    ],
)
def test_malformed_formulary_structure(tmp_path, text, message):
    path = tmp_path / "f.json"
    path.write_text(text)
    with pytest.raises(ReferenceDataError) as e:
        load_formulary(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_unparsable_formulary(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("{")
    with pytest.raises(ReferenceDataError, match="f.json: not valid JSON"):
        load_formulary(path)
    with pytest.raises(ReferenceDataError, match="cannot read"):
        load_formulary(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("setting: hospital\n", "setting"),
        ("distinct_service_modifier: 76\n", "distinct_service_modifier"),
        ("- just\n- a list\n", "a profile is a mapping"),
        ("timezone: [\n", "not valid YAML"),
        ("timezone: Mars/Olympus_Mons\n", "not an IANA time zone"),
    ],
)
def test_bad_profiles(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ReferenceDataError) as e:
        load_profile(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_override_that_creates_a_conflict_is_rejected(formulary, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("formulary_overrides:\n  - {hcpcs: J9045, synonyms: [rituxan]}\n")
    with pytest.raises(ReferenceDataError, match="'rituxan' is claimed by both"):
        formulary_for(load_profile(path), formulary)


def test_bad_json_profile(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"jw_jz": false,}')
    with pytest.raises(ReferenceDataError, match="p.json: not valid JSON"):
        load_profile(path)


def test_override_with_a_bad_value_names_the_profile(formulary):
    profile = Profile(name="acme", formulary_overrides=(FormularyOverride(hcpcs="J0897", drug_class="vitamin"),))
    with pytest.raises(ReferenceDataError, match="profile acme: formulary_overrides: drug_class"):
        formulary_for(profile, formulary)


def test_formulary_for_without_overrides_is_the_bundled_formulary(formulary):
    assert formulary_for(Profile()) is formulary


def test_empty_profile_file_is_the_default(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{}")
    assert load_profile(path) == load_profile(None)
