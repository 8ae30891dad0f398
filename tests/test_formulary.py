"""The bundled formulary data file, its loader, and profile overrides."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from coding_core.classify import dose_in
from coding_core.formulary import HCPCS_SYSTEM, NDC_SYSTEM, RXNORM_SYSTEM
from coding_core.model import Coding, DrugClass
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
    "J7120": ("1000", "mL", "hydration"), "J7042": ("500", "mL", "hydration"),
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
    ],
)
def test_lookup(formulary, codings, text, expected):
    entry = formulary.lookup(codings, text)
    assert entry is not None and entry.hcpcs == expected


def test_unknown_drug_is_none(formulary):
    assert formulary.lookup([Coding(system=NDC_SYSTEM, code="99999-9999-99")], "methylprednisolone") is None


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


def test_empty_profile_file_is_the_default(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{}")
    assert load_profile(path) == load_profile(None)
