"""Strict input: what a hostile or broken feed can send never flips a charge, never crashes the
command, and is never echoed."""

from __future__ import annotations

import io
import json

import pytest

from connectors.cli import main
from connectors.routing import route_fhir, route_hl7
from mapping.errors import MappingError
from mapping.fhir_in import map_medication_administration
from tests.hl7_builders import message, msh, orc, pid, pv1, rxa, rxr
from tests.test_fhir_in import r4
from zoneinfo import ZoneInfo

TZ = ZoneInfo("America/New_York")


def _code(tmp_path, text: str, name: str = "in.json") -> tuple[int, str]:
    path = tmp_path / name
    path.write_text(text)
    err = io.StringIO()
    return main(["code", str(path)], io.StringIO(), err), err.getvalue()


def test_a_duplicate_key_is_refused_not_last_wins(tmp_path):
    text = json.dumps(r4()).replace('"status": "completed"', '"status": "completed", "status": "entered-in-error"')
    code, err = _code(tmp_path, text)
    assert code == 2 and "the key status appears twice" in err and "Traceback" not in err
    routed = route_fhir(text.encode(), TZ)  # the worker: the message is rejected with the reason
    assert routed.records == [] and any("appears twice" in str(e) for e in routed.errors)
    code, err = _code(tmp_path, text, "in.ndjson")
    assert code in (1, 2) and "line 1" in err and "appears twice" in err


def test_a_duplicate_key_that_is_not_a_key_name_is_not_echoed(tmp_path):
    code, err = _code(tmp_path, '{"resourceType": "Patient", "Jane Doe 1970-01-01": 1, "Jane Doe 1970-01-01": 2}')
    assert code == 2 and "Jane" not in err and "(not shown)" in err


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"resourceType": "MedicationAdministration", "x": ' + "7" * 5000 + "}"])
def test_deep_nesting_and_huge_numbers_are_exit_2_naming_the_file(tmp_path, text):
    code, err = _code(tmp_path, text)
    assert code == 2 and "in.json" in err and "Traceback" not in err and "7777" not in err


@pytest.mark.parametrize("ref", ["Encounter/e-1\u0000", "Encounter/e 1", "Encounter/" + "x" * 65, "Encounter/e-1\nX"])
def test_a_reference_id_that_is_not_a_fhir_id_is_a_mapping_error(ref):
    with pytest.raises(MappingError) as e:
        map_medication_administration(r4(context={"reference": ref}))
    assert "not a FHIR id" in str(e.value) and "\u0000" not in str(e.value) and "x" * 65 not in str(e.value)


def test_an_invalid_resource_id_is_not_named_in_the_error():
    with pytest.raises(MappingError) as e:
        map_medication_administration(r4(id="SMITH JOHN 1970-01-01"))
    assert "SMITH" not in str(e.value) and e.value.record_id is None


def test_control_characters_in_the_hl7_visit_number_are_refused():
    text = message(msh("C1"), pid(), pv1("V\x011"), orc(), rxa("202611020900", "202611020940"), rxr())
    routed = route_hl7(text.encode(), TZ)
    assert routed.records == [] and any("PV1-19: contains control characters" in str(e) for e in routed.errors)


def test_an_unknown_key_that_is_not_an_element_name_is_not_echoed():
    with pytest.raises(MappingError) as e:
        map_medication_administration(r4(**{"Jane Doe 1970-01-01": 1}))
    assert "Jane" not in str(e.value) and "(key not shown): Extra inputs are not permitted" in str(e.value)
    with pytest.raises(MappingError) as e:
        map_medication_administration(r4(colour="red"))
    assert "colour: Extra inputs" in str(e.value)  # an element-shaped key still says where


def test_hl7_free_text_in_msh9_and_msh10_is_not_repeated_in_errors():
    from mapping.hl7_in import map_message

    text = message(msh("JANE DOE 1970", message="SMITH^JOHN"), pid(), pv1(), orc(), rxa("202611020900"), rxr())
    with pytest.raises(MappingError) as e:
        map_message(text, TZ)
    assert "JANE" not in str(e.value) and "SMITH" not in str(e.value) and "MSH-9" in str(e.value)


@pytest.mark.parametrize("where, over", [
    ("note[0].text", {"note": [{"text": "held\u0000given"}]}),
    ("medicationCodeableConcept.coding[0].code", {"medicationCodeableConcept": {"coding": [{"code": "J93\u000112"}]}}),
    ("context.reference", {"context": {"reference": "Encounter/e-1\u001b"}}),
])
def test_a_control_character_in_any_string_is_refused_naming_the_path(tmp_path, where, over):
    text = json.dumps(r4(**over))  # json.dumps escapes them: \u0000
    code, err = _code(tmp_path, text)
    assert code == 2 and f"{where} holds a control character" in err and "\\u00" not in err
    routed = route_fhir(text.encode(), TZ)
    assert routed.records == [] and any(f"{where} holds a control character" in str(e) for e in routed.errors)
    bundle = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r4(**over)}]})
    assert any(f"entry[0].resource.{where}" in str(e) for e in route_fhir(bundle.encode(), TZ).errors)


def test_tab_cr_and_lf_are_strings_fhir_allows():
    text = json.dumps(r4(note=[{"text": "line one\r\nline\ttwo"}]))
    assert len(route_fhir(text.encode(), TZ).records) == 1
