"""Every row of the route and method vocabularies, read through both mappers.

The expected values are written here independently of ``mapping/vocabulary.py`` (from the code
systems' own definitions), so a changed row fails its test, a deleted row fails the coverage
test, and a row added without a test fails it too.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from coding_core.model import Method, Route
from mapping.fhir_in import map_medication_administration
from mapping.hl7_in import map_message
from mapping.vocabulary import (
    CODE_SYSTEMS,
    METHOD_ROWS,
    NCIT,
    ROUTE_ROWS,
    SNOMED,
    V2_0162,
    V2_0165,
    V3_ROUTE,
    canonical_system,
    method_of,
    read_rate,
    route_of,
)
from tests.hl7_builders import message, msh, orc, pid, pv1, rxa, rxr
from tests.test_fhir_in import dosage, r4

TZ = ZoneInfo("America/New_York")

IV, IA, SC, IM, PAR, ORAL, NP, PROC, REVIEW = (Route.IV, Route.INTRA_ARTERIAL, Route.SC, Route.IM, Route.OTHER, Route.ORAL,
                                               Route.NON_PARENTERAL, Route.PROCEDURE, Route.UNRECOGNISED)
EXPECTED_ROUTES: dict[str, dict[str, Route]] = {
    SNOMED: {
        "47625008": IV, "255560000": IV, "58100008": IA, "34206005": SC, "263887005": SC, "78421000": IM,
        "72607000": PAR, "38239002": PAR, "372464004": PROC, "12130007": PROC, "60213007": PROC, "37737002": PROC, "62226000": PROC,
        "26643006": ORAL,
        "37839007": NP, "54471007": NP, "6064005": NP, "45890007": NP, "447694001": NP, "18679011000001101": NP, "37161004": NP,
        "16857009": NP, "54485002": NP, "10547007": NP, "46713006": NP, "127490009": NP, "127492001": NP, "90028008": NP,
    },
    V2_0162: {  # HL7 v2 table 0162, all 47 codes
        "AP": NP, "B": NP, "DT": NP, "EP": PROC, "ET": NP, "GTT": NP, "GU": NP, "IA": IA, "IB": PROC, "IC": PROC, "ICV": PROC,
        "ID": PROC, "IH": NP, "IHA": IA, "IM": IM, "IMR": NP, "IN": NP, "IO": PROC, "IP": PAR, "IS": PROC, "IT": PAR, "IU": PROC,
        "IV": IV, "MM": NP, "MTH": NP, "NG": NP, "NP": NP, "NS": NP, "NT": NP, "OP": NP, "OT": NP, "OTH": REVIEW, "PF": REVIEW,
        "PO": ORAL, "PR": NP, "RM": NP, "SC": SC, "SD": NP, "SL": NP, "TD": NP, "TL": NP, "TP": NP, "TRA": NP, "UR": NP,
        "VG": NP, "VM": NP, "WND": NP,
    },
    V3_ROUTE: {
        "IV": IV, "IVC": IV, "IVCC": IV, "IVCI": IV, "PCA": IV, "IVINJ": IV, "IVINJBOL": IV, "IVPUSH": IV, "IVRPUSH": IV,
        "IVSPUSH": IV, "IVFLUSH": IV, "IA": IA, "IAINJ": IA, "IAINJP": IA, "IAINJSP": IA, "SQ": SC, "SQINFUS": SC,
        "IM": IM, "IMD": IM, "IMZ": IM, "IT": PAR, "ITINJ": PAR, "EPI": PROC, "EPIDURINJ": PROC, "IDINJ": PROC, "IPERINJ": PAR,
        "IOSSINJ": PAR, "IOSSC": PAR, "IVESINJ": PROC, "IARTINJ": PROC, "PARENTINJ": PAR, "PO": ORAL, "CHEW": ORAL,
        "DISSOLVE": ORAL, "SL": NP, "BUC": NP, "TOPICAL": NP, "SKIN": NP, "TRNSDERM": NP, "IPINHL": NP, "NEB": NP,
        "ORNEB": NP, "NASINHL": NP, "NASAL": NP, "OPTHALTA": NP, "OT": NP, "PR": NP, "VAGINSI": NP, "GT": NP, "NGT": NP,
    },
    NCIT: {
        "C38276": IV, "C38222": IA, "C38299": SC, "C28161": IM, "C38267": PAR, "C38238": PROC, "C38258": PAR, "C38243": PROC,
        "C38288": ORAL, "C38300": NP, "C38193": NP, "C38304": NP, "C38305": NP, "C38216": NP, "C38295": NP, "C38287": NP,
        "C38192": NP, "C38284": NP,
    },
}
PUSH, INF, INJ, FLUSH, OTHER, NOT_SAID = Method.PUSH, Method.INFUSION, Method.INJECTION, Method.FLUSH, Method.OTHER, Method.UNKNOWN
EXPECTED_METHODS: dict[str, dict[str, Method]] = {
    SNOMED: {
        "420620005": PUSH, "422145002": INJ, "417924000": OTHER, "419747000": OTHER, "420045007": OTHER, "420360002": OTHER,
        "420606003": OTHER, "421134003": OTHER, "421257003": OTHER, "421298005": OTHER, "421521009": OTHER, "421538008": OTHER,
        "421682005": OTHER, "421805007": OTHER, "422152000": OTHER, "422219000": OTHER,
        "418283001": NOT_SAID, "419385000": NOT_SAID, "419582001": NOT_SAID, "419652001": NOT_SAID,
        # the R5 set (736665006 descendants)
        "740685003": INJ, "764794000": INF, "738991002": OTHER, "738992009": OTHER, "738993004": OTHER, "738994005": OTHER,
        "738995006": OTHER, "738996007": OTHER, "740666001": OTHER, "764498003": OTHER, "782155003": OTHER, "782168006": OTHER,
        "785900008": OTHER, "738990001": NOT_SAID,
    },
    V2_0165: {  # HL7 v2 table 0165, all 15 codes
        "CH": OTHER, "DI": OTHER, "DU": OTHER, "IF": INJ, "IR": FLUSH, "IS": OTHER, "IVP": PUSH, "IVPB": INF, "NB": OTHER,
        "PF": INF, "PT": OTHER, "SH": OTHER, "SO": OTHER, "WA": OTHER, "WI": OTHER,
    },
}
URI = {key: uri for key, uri in CODE_SYSTEMS.values()}
HL7_NAME = {SNOMED: "SCT", V2_0162: "HL70162", V3_ROUTE: "HL7V3ROUTE", NCIT: "NCIT", V2_0165: "HL70165"}
ROUTE_CASES = [(s, c, r) for s, rows in EXPECTED_ROUTES.items() for c, r in rows.items()]
METHOD_CASES = [(s, c, m) for s, rows in EXPECTED_METHODS.items() for c, m in rows.items()]


def test_every_route_row_has_a_test_and_every_test_a_row():
    assert {(s, c) for s, c, _, _ in ROUTE_ROWS} == {(s, c) for s, c, _ in ROUTE_CASES}


def test_every_method_row_has_a_test_and_every_test_a_row():
    assert {(s, c) for s, c, _, _ in METHOD_ROWS} == {(s, c) for s, c, _ in METHOD_CASES}


def _fhir_route(system: str, code: str) -> tuple[Route, tuple[str, ...]]:
    ev = map_medication_administration(r4(dosage=dosage(route={"coding": [{"system": system, "code": code}]})))
    return ev.route, ev.unrecognised


def _hl7(route: str = "IV", method: str = ""):
    text = message(msh("C1"), pid(), pv1(), orc(), rxa("202611020900", "202611020940"), rxr(route=route, method=method))
    return next(r.administration for r in map_message(text, TZ) if r.administration is not None)


@pytest.mark.parametrize(("system", "code", "expected"), ROUTE_CASES, ids=[f"{s}|{c}" for s, c, _ in ROUTE_CASES])
def test_route_row_through_fhir(system, code, expected):
    route, unrecognised = _fhir_route(URI[system], code)
    assert route is expected
    assert bool(unrecognised) == (expected is REVIEW)


@pytest.mark.parametrize(("system", "code", "expected"), ROUTE_CASES, ids=[f"{s}|{c}" for s, c, _ in ROUTE_CASES])
def test_route_row_through_hl7(system, code, expected):
    ev = _hl7(route=code if system == V2_0162 else f"{code}^^{HL7_NAME[system]}")
    assert ev.route is expected


@pytest.mark.parametrize(("system", "code", "expected"), METHOD_CASES, ids=[f"{s}|{c}" for s, c, _ in METHOD_CASES])
def test_method_row_through_fhir_and_hl7(system, code, expected):
    ev = map_medication_administration(r4(dosage=dosage(method={"coding": [{"system": URI[system], "code": code}]})))
    assert ev.method is expected and not ev.unrecognised
    hl7 = _hl7(method=code if system == V2_0165 else f"{code}^^{HL7_NAME[system]}")
    assert hl7.method is expected


@pytest.mark.parametrize(("spelling", "uri"), [
    ("urn:oid:2.16.840.1.113883.6.96", "http://snomed.info/sct"),
    ("urn:oid:2.16.840.1.113883.12.162", "http://terminology.hl7.org/CodeSystem/v2-0162"),
    ("urn:oid:2.16.840.1.113883.12.165", "http://terminology.hl7.org/CodeSystem/v2-0165"),
    ("urn:oid:2.16.840.1.113883.5.112", "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"),
    ("http://ncimeta.nci.nih.gov", "http://ncithesaurus-stage.nci.nih.gov"),
    ("urn:oid:2.16.840.1.113883.6.88", "http://www.nlm.nih.gov/research/umls/rxnorm"),
    ("urn:oid:2.16.840.1.113883.6.69", "http://hl7.org/fhir/sid/ndc"),
    ("urn:oid:2.16.840.1.113883.6.285", "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"),
    ("urn:oid:2.16.840.1.113883.6.12", "http://www.ama-assn.org/go/cpt"),
])
def test_code_systems_are_recognised_by_oid_and_alias(spelling, uri):
    assert canonical_system(spelling) == uri and canonical_system(spelling.upper()) == uri


def test_a_route_by_oid_reads_like_its_uri():
    assert _fhir_route("urn:oid:2.16.840.1.113883.6.96", "34206005") == (Route.SC, ())


def test_drug_codings_sent_by_oid_are_read_in_their_canonical_system():
    ev = map_medication_administration(r4(medicationCodeableConcept={"coding": [{"system": "urn:oid:2.16.840.1.113883.6.88", "code": "26225"}]}))
    assert [(c.system, c.code) for c in ev.drug_codings] == [("http://www.nlm.nih.gov/research/umls/rxnorm", "26225")]


@pytest.mark.parametrize(("codings", "text", "expected"), [
    ([("urn:local:epic", "11", "Intravenous")], None, Route.IV),  # a local code: its display decides
    ([("urn:local:epic", "11", None)], "IV Piggyback", Route.IV),
    ([(None, "47625008", None)], None, Route.IV),  # no system: every table is tried
    ([(None, "SC", None)], None, Route.SC),
    ([], "Intravenous route (qualifier value)", Route.IV),
    ([], "subcutaneous infusion", Route.SC),
    ([], "by mouth", Route.ORAL),
    ([], "oral or intravenous", Route.UNRECOGNISED),  # words that disagree are not guessed
    ([], "give it by mouth", Route.ORAL),  # "it" inside a sentence is not intrathecal
    ([], "inject it under the skin", Route.UNRECOGNISED),
    ([], "IT", Route.OTHER),  # ... but the whole phrase is
    ([], None, Route.UNKNOWN),
])
def test_route_words_and_local_codes(codings, text, expected):
    assert route_of(codings, text)[0] is expected


EXPECTED_IMPLIED = {  # v3 route codes that name the technique
    "IV": INF, "IVC": INF, "IVCC": INF, "IVCI": INF, "PCA": INF, "IA": INF, "SQINFUS": INF, "IT": INF, "EPI": INF, "IOSSC": INF,
    "IVINJ": INJ, "IAINJ": INJ, "SQ": INJ, "IM": INJ, "IMD": INJ, "IMZ": INJ, "ITINJ": INJ, "IPERINJ": INJ, "IOSSINJ": INJ,
    "PARENTINJ": INJ, "IVINJBOL": PUSH, "IVPUSH": PUSH, "IVRPUSH": PUSH, "IVSPUSH": PUSH, "IAINJP": PUSH, "IAINJSP": PUSH,
    "IVFLUSH": FLUSH,
}


def test_every_implied_method_row_has_a_test():
    from mapping.vocabulary import ROUTE_METHODS

    assert ROUTE_METHODS == {(V3_ROUTE, code): m for code, m in EXPECTED_IMPLIED.items()}


@pytest.mark.parametrize(("code", "expected"), list(EXPECTED_IMPLIED.items()))
def test_a_v3_route_names_the_method_when_none_is_documented(code, expected):
    ev = map_medication_administration(r4(dosage=dosage(route={"coding": [{"system": URI[V3_ROUTE], "code": code}]})))
    assert ev.method is expected
    assert _hl7(route=f"{code}^^HL7V3ROUTE").method is expected
    documented = map_medication_administration(r4(dosage=dosage(route={"coding": [{"system": URI[V3_ROUTE], "code": code}]},
                                                                method={"coding": [{"system": URI[V2_0165], "code": "IVPB"}]})))
    assert documented.method is Method.INFUSION  # a documented method wins


def test_an_unrecognised_code_is_named_by_system_and_code_only():
    route, review = route_of([("http://snomed.info/sct", "999999", "Jane Doe's special route")], None)
    assert route is Route.UNRECOGNISED and review == "route http://snomed.info/sct|999999"
    assert _fhir_route("urn:oid:2.16.840.1.113883.6.96", "999999") == (REVIEW, ("dosage.route http://snomed.info/sct|999999",))
    route, review = route_of([], "Jane Doe's special route")
    assert route is Route.UNRECOGNISED and review == "route free text only"


@pytest.mark.parametrize("code", ["Left arm port, per Dr Smith", "SMITH^JOHN", "x" * 41])
def test_free_text_in_a_code_is_never_echoed(code):
    ev = map_medication_administration(r4(dosage=dosage(route={"coding": [{"system": "http://snomed.info/sct", "code": code}]},
                                                        method={"coding": [{"system": "urn:local:Jane Doe", "code": code}]})))
    assert ev.route is Route.UNRECOGNISED and ev.method is Method.UNRECOGNISED
    assert ev.unrecognised == ("dosage.route http://snomed.info/sct|(code not shown)", "dosage.method (system not shown)|(code not shown)")


@pytest.mark.parametrize(("codings", "text", "expected"), [
    ([], "subcutaneous infusion", Method.INFUSION),
    ([], "IV push", Method.PUSH),
    ([], "Inject", Method.INJECTION),
    ([], "hand-written note", Method.UNKNOWN),  # free text that names no technique: not said
    ([("urn:local:x", "ZZ", None)], None, Method.UNRECOGNISED),
    ([("http://snomed.info/sct", "420246001", None)], None, Method.UNRECOGNISED),  # "At": a fragment, not a method
])
def test_method_words_and_unknown_codes(codings, text, expected):
    assert method_of(codings, text)[0] is expected


@pytest.mark.parametrize(("value", "unit", "ml_per_h", "drug_rate", "ignored"), [
    ("125", "mL/h", "125", None, None), ("2", "mL/min", "120", None, None), ("1", "L/h", "1000", None, None),
    ("100", "mg/min", None, "100 mg/min", None), ("5", "units/h", None, "5 units/h", None),
    ("0.5", "mcg/kg/min", None, "0.5 mcg/kg/min", None), ("2", "{U}/h", None, "2 {U}/h", None),
    ("20", "min", None, None, "is a duration"), ("5", "mg", None, None, "not a rate per time"),
    ("5", "mL/kg", None, None, "not a rate per time"), ("5", "mg/kg/m2/min", None, None, "not a rate per time"),
])
def test_rates(value, unit, ml_per_h, drug_rate, ignored):
    from decimal import Decimal

    rate = read_rate(Decimal(value), unit, "dosage.rateQuantity")
    assert rate.ml_per_h == (Decimal(ml_per_h) if ml_per_h else None)
    assert rate.drug_rate == drug_rate
    assert (ignored is None and rate.ignored is None) or (ignored in rate.ignored and unit not in rate.ignored)


def test_docs_vocabulary_md_is_the_tables():
    from pathlib import Path

    from mapping.vocabulary import markdown

    page = Path(__file__).resolve().parent.parent / "docs" / "vocabulary.md"
    assert page.read_text() == markdown(), "regenerate: python -m mapping.vocabulary > docs/vocabulary.md"
