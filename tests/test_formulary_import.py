"""`infusion-charges formulary import` (crosswalk CSVs -> formulary file) and `formulary missing`."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import pytest

from coding_core.formulary import HCPCS_SYSTEM, NDC_SYSTEM
from coding_core.model import Coding
from connectors.cli import EXIT_FAILED, EXIT_OK, EXIT_REJECTED, main
from mapping.reference_data import load_formulary
from tests.test_cli import code, lines_of
from tests.test_fhir_in import SCT, r4

ROOT = Path(__file__).resolve().parent.parent
EXCERPT = ROOT / "samples" / "crosswalk-cms-excerpt.csv"
SITE_SAMPLE = ROOT / "samples" / "crosswalk-site.csv"
BUNDLED = ROOT / "coding_core" / "data" / "formulary.json"
CMS_PREAMBLE = b"".join(EXCERPT.read_bytes().splitlines(keepends=True)[:9])  # title ... header row: data starts on line 10
SITE_HEADER = "code_system,code,hcpcs,name,billing_unit,drug_class,single_dose\n"


def formulary(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(["formulary", *argv], out, err)
    return status, out.getvalue(), err.getvalue()


def drugs(path: Path) -> dict[str, dict]:
    return {d["hcpcs"]: d for d in json.loads(path.read_text(encoding="utf-8"))["drugs"]}


def cms_file(path: Path, *rows: tuple[str, ...]) -> Path:
    """A CMS-layout file: the published preamble and header, then ``rows`` (HCPCS, NDC2, dosage,
    PKG SIZE, PKG QTY, BILLUNITS, BILLUNITSPKG), with trailing empty columns as CMS writes them."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    for hcpcs, ndc, dosage, size, qty, units, units_pkg in rows:
        writer.writerow([hcpcs, "Short description", "Labeler, Inc.", ndc, "Drug name", dosage, size, qty, units, units_pkg,
                         *[""] * 20])
    path.write_bytes(CMS_PREAMBLE + text.getvalue().encode("cp1252"))
    return path


@pytest.fixture
def bare_base(tmp_path: Path) -> Path:
    """The bundled formulary without any NDC: what the crosswalk adds is then the crosswalk's doing."""
    doc = json.loads(BUNDLED.read_text(encoding="utf-8"))
    for d in doc["drugs"]:
        d.pop("ndc", None)
    path = tmp_path / "base.json"
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def imported(bare_base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "imported.json"
    status, _, err = formulary("import", str(EXCERPT), "--base", str(bare_base), "--out", str(out))
    assert status == EXIT_OK, err
    return out


# --- the CMS excerpt -------------------------------------------------------------------------------

def test_the_cms_excerpt_puts_each_ndc_on_its_hcpcs(bare_base: Path, tmp_path: Path):
    out = tmp_path / "imported.json"
    status, _, err = formulary("import", str(EXCERPT), "--base", str(bare_base), "--out", str(out))
    assert status == EXIT_OK, err
    assert ("formulary import: 396 rows read, 312 applied, 0 skipped (0 row errors, 0 for HCPCS not in the formulary), "
            "84 left to another HCPCS of the same NDC; 312 NDCs, 0 RxNorm codes and 0 drugs added") in err
    got = drugs(out)
    # Baxter 0.9% NaCl: each bag on the HCPCS of its size, stored as 11 digits 5-4-2
    assert "00338-0049-04" in got["J7030"]["ndc"]  # 1000 mL
    assert "00338-0049-03" in got["J7040"]["ndc"]  # 500 mL
    assert "00338-0049-02" in got["J7050"]["ndc"]  # 250 mL
    for bag in ("00338-0049-02", "00338-0049-03", "00338-0049-04"):
        assert sum(bag in d.get("ndc", []) for d in got.values()) == 1
    # a carton of 24 x 250 mL (BILLUNITSPKG 6, 12, 24) is still a 250 mL bag
    assert "00264-7800-20" in got["J7050"]["ndc"]
    # the row whose quoted drug name spans two lines (135-136)
    assert "00404-9998-01" in got["J1885"]["ndc"]
    assert len(got["J2405"]["ndc"]) == 30 and len(got["J9045"]["ndc"]) == 31 and len(got["J7120"]["ndc"]) == 19
    every = [n for d in got.values() for n in d.get("ndc", [])]
    assert len(every) == len(set(every)) == 312
    assert all(re.fullmatch(r"\d{5}-\d{4}-\d{2}", n) for n in every)
    assert all(d.get("ndc", []) == sorted(d.get("ndc", [])) for d in got.values())
    assert list(got) == sorted(got)


def test_the_output_is_versioned_and_names_its_sources(imported: Path, bare_base: Path):
    doc = json.loads(imported.read_text(encoding="utf-8"))
    base_version = json.loads(bare_base.read_text(encoding="utf-8"))["version"]
    excerpt_sha = hashlib.sha256(EXCERPT.read_bytes()).hexdigest()
    assert doc["version"] == f"{base_version}+{excerpt_sha[:8]}"
    assert doc["source"] == {
        "base": {"file": "base.json", "version": base_version, "sha256": hashlib.sha256(bare_base.read_bytes()).hexdigest()},
        "crosswalks": [{"file": "crosswalk-cms-excerpt.csv", "layout": "cms-asp", "sha256": excerpt_sha}],
    }
    loaded = load_formulary(imported)
    assert loaded.version == doc["version"]
    found = loaded.identify([Coding(system=NDC_SYSTEM, code="0338-0049-04")]).entry
    assert found is not None and found.hcpcs == "J7030"


def test_version_option(bare_base: Path, tmp_path: Path):
    out = tmp_path / "f.json"
    status, _, err = formulary("import", str(EXCERPT), "--base", str(bare_base), "--version", "site-2026q1", "--out", str(out))
    assert status == EXIT_OK, err
    assert json.loads(out.read_text())["version"] == "site-2026q1"
    assert "(version site-2026q1, " in err


def _saline(tmp_path: Path, ndc: str) -> Path:
    """1000 mL normal saline over two hours, identified by nothing but its NDC."""
    resource = r4(
        id="ma-ns", medicationCodeableConcept={"coding": [{"system": NDC_SYSTEM, "code": ndc}]},
        effectivePeriod={"start": "2026-03-02T09:00:00-05:00", "end": "2026-03-02T11:00:00-05:00"},
        dosage={"route": {"coding": [{"system": SCT, "code": "47625008"}]}, "dose": {"value": 1000, "unit": "mL", "code": "mL"},
                "rateQuantity": {"value": 500, "unit": "mL/h", "code": "mL/h"}},
    )
    path = tmp_path / "saline.json"
    path.write_text(json.dumps(resource), encoding="utf-8")
    return path


def _codes(bundle_text: str) -> dict[str, int]:
    return {key[1]: units for key, units in lines_of(bundle_text).items()}


@pytest.mark.parametrize("ndc", ["0338-0049-04", "00338-049-04", "00338-0049-4", "00338-0049-04", "00338004904"],
                         ids=["4-4-2", "5-3-2", "5-4-1", "5-4-2", "11-digits"])
def test_saline_sent_by_its_ndc_is_hydration_with_the_imported_formulary(ndc: str, imported: Path, bare_base: Path,
                                                                        tmp_path: Path):
    feed = _saline(tmp_path, ndc)
    status, out, err = code("--formulary", str(imported), str(feed))
    assert status == EXIT_OK, err
    assert _codes(out) == {"96360": 1, "96361": 1, "J7030": 1}
    # the same feed with the formulary before the import: an unknown drug, coded conservatively
    status, out, err = code("--formulary", str(bare_base), str(feed))
    assert status == EXIT_OK, err
    got = _codes(out)
    assert got.get("96365") == 1 and got.get("J3490") == 1 and "J7030" not in got and "96360" not in got


# --- rows that cannot be applied ------------------------------------------------------------------

def test_bad_rows_are_reported_with_file_line_and_column_and_skipped_whole(bare_base: Path, tmp_path: Path):
    site = tmp_path / "site.csv"
    site.write_text(SITE_HEADER + "\n".join([
        "NDC,0409-2585-01,J0690,cefazolin,500 mg,therapeutic,false",  # 2: a new drug
        "NDC,0409-2585-01,J0696,,,,",  # 3: the NDC is J0690's now
        "NDC,0143-9923-90,J0692,cefepime,500 mg,antibiotic,",  # 4: not a drug class
        "NDC,0143992390,J0690,,,,",  # 5: 10 digits, no hyphens
        "RXNORM,2180,J2405,,10 mg,,",  # 6: ondansetron is billed per 1 mg
        "RXNORM,2180,J0690,,,chemo,",  # 7: cefazolin was made therapeutic
        "NDC,0143-9923-90,J0694,,500 mg,therapeutic,",  # 8: a new drug needs a name
        "NDC,99999-0001-01,J9045,,,,yes",  # 9: carboplatin is single-dose already: agrees
    ]) + "\n", encoding="utf-8")
    cms = cms_file(tmp_path / "cms.csv",
                   ("J2405", "65219-0323-02", "2 MG", "2", "25", "4", "100"),  # 10: dosage is not J2405's unit
                   ("J2405", "6521903230", "1 MG", "2", "25", "4", "100"),  # 11: 10 digits, no hyphens
                   ("J0881", "55513-0002-01", "1 MCG", "1", "1", "25", "25"),  # 12: not in the formulary
                   ("J2405", "00409-2585-01", "1 MG", "2", "25", "4", "100"),  # 13: the site gave it to J0690
                   ("J2405", "99999-0001-01", "1 MG", "2", "25", "4", "100"),  # 14: the site gave it to J9045
                   ("J2405", "72266-0123-25", "1 MG", "2", "25", "4", "100"),  # 15: applied
                   ("J2405", "72266-0124-01", "1 MG", "20", "1", "40", "x"))  # 16: BILLUNITSPKG not a number
    out = tmp_path / "out.json"
    status, _, err = formulary("import", str(cms), str(site), "--base", str(bare_base), "--out", str(out))
    assert status == EXIT_REJECTED
    expected = [
        f"error: {site}, line 3, column code: NDC '00409-2585-01' is already claimed by J0690 (cefazolin)",
        f"error: {site}, line 4, column drug_class: 'antibiotic' is not a drug class",
        f"error: {site}, line 5, column code: NDC '0143992390' is 10 digits without hyphens",
        f"error: {site}, line 6, column billing_unit: says 10 mg, but J2405 (ondansetron) has 1 mg",
        f"error: {site}, line 7, column drug_class: says chemo, but J0690 (cefazolin) has therapeutic",
        f"error: {site}, line 8, column name: is empty, and J0694 is not in the formulary",
        f"error: {cms}, line 10, column HCPCS dosage: says 2 mg, but J2405 (ondansetron) is billed per 1 mg",
        f"error: {cms}, line 11, column NDC2: NDC '6521903230' is 10 digits without hyphens",
        f"skipped: {cms}, line 12, column _2026_CODE: J0881: HCPCS not in the formulary: give it a class with a site row",
        f"error: {cms}, line 13, column NDC2: NDC '00409-2585-01' is already claimed by J0690 (cefazolin)",
        f"error: {cms}, line 14, column NDC2: NDC '99999-0001-01' is already claimed by J9045 (carboplatin)",
        f"error: {cms}, line 16, column BILLUNITSPKG: 'x' is not a number",
    ]
    reported = [line.removeprefix("infusion-charges: ") for line in err.splitlines()]
    problems = [line for line in reported if line.startswith(("error:", "skipped:"))]
    assert len(problems) == len(expected), err
    for line, want in zip(problems, expected, strict=True):
        assert line.startswith(want), (line, want)
    assert "15 rows read, 3 applied, 12 skipped (11 row errors, 1 for HCPCS not in the formulary)" in err
    # the file is written with the good rows, and nothing of the bad ones
    got = drugs(out)
    assert got["J0690"]["ndc"] == ["00409-2585-01"] and "rxnorm" not in got["J0690"]
    assert got["J0690"]["drug_class"] == "therapeutic" and got["J0690"]["billing_unit_value"] == "500"
    assert got["J9045"]["ndc"] == ["99999-0001-01"]
    assert got["J2405"]["ndc"] == ["72266-0123-25"]
    assert "J0692" not in got and "J0694" not in got and "J0881" not in got
    assert "2180" not in json.dumps(got)
    assert "65219-0323-02" not in json.dumps(got) and "00143-9923-90" not in json.dumps(got)
    load_formulary(out)


def test_line_numbers_count_the_published_row_that_spans_two_lines(bare_base: Path, tmp_path: Path):
    doc = json.loads(bare_base.read_text(encoding="utf-8"))
    for d in doc["drugs"]:
        if d["hcpcs"] == "J1885":
            d["billing_unit_value"] = "30"  # every J1885 row of the excerpt (15 MG) now disagrees
    base = tmp_path / "base-30.json"
    base.write_text(json.dumps(doc), encoding="utf-8")
    status, _, err = formulary("import", str(EXCERPT), "--base", str(base), "--out", str(tmp_path / "out.json"))
    assert status == EXIT_REJECTED
    j1885 = [line for line in err.splitlines() if "J1885 (ketorolac)" in line]
    assert len(j1885) == 70
    column = "column HCPCS dosage: says 15 mg, but J1885 (ketorolac) is billed per 30 mg"
    assert f"infusion-charges: error: {EXCERPT}, line 134, {column}" in j1885  # the row before it
    assert f"infusion-charges: error: {EXCERPT}, line 135, {column}" in j1885  # NDC 00404-9998-01, lines 135-136
    assert f"infusion-charges: error: {EXCERPT}, line 137, {column}" in j1885  # the row after it
    assert not any(", line 136, " in line for line in j1885)


def test_hcpcs_not_in_the_formulary_is_reported_once_per_code(bare_base: Path, tmp_path: Path):
    cms = cms_file(tmp_path / "cms.csv", *[("J0881", f"55513-0002-0{i}", "1 MCG", "1", "1", "25", "25") for i in range(1, 4)])
    status, _, err = formulary("import", str(cms), "--base", str(bare_base), "--out", str(tmp_path / "out.json"))
    assert status == EXIT_REJECTED
    skipped = [line for line in err.splitlines() if "skipped:" in line]
    assert skipped == [f"infusion-charges: skipped: {cms}, line 10, column _2026_CODE: J0881: HCPCS not in the formulary: "
                       "give it a class with a site row (2 more rows, to line 12)"]


def test_a_site_row_for_a_new_drug_lets_the_cms_rows_for_it_apply(bare_base: Path, tmp_path: Path):
    cms = cms_file(tmp_path / "cms.csv", ("J0690", "00409-2585-01", "500 MG", "1", "25", "2", "50"),
                   ("J0690", "00143-9923-90", "500 MG", "1", "25", "1", "25"))
    out = tmp_path / "out.json"
    # the CMS file first on the command line: site files are applied first all the same
    status, _, err = formulary("import", str(cms), str(SITE_SAMPLE), "--base", str(bare_base), "--out", str(out))
    assert status == EXIT_OK, err
    got = drugs(out)
    assert got["J0690"] == {"hcpcs": "J0690", "name": "cefazolin", "drug_class": "therapeutic", "billing_unit_value": "500",
                            "billing_unit": "mg", "single_dose": False, "rxnorm": ["2180"],
                            "ndc": ["00143-9923-90", "00409-2585-01"]}
    assert "65219-0323-02" in got["J2405"]["ndc"]  # written 5-3-2 in the site file
    assert "6 rows read, 6 applied, 0 skipped" in err


# --- one NDC under several HCPCS codes ------------------------------------------------------------

SEVERAL = (
    # a single 250 mL bag: BILLUNITSPKG is 1 under all three codes (CMS rounds 0.25 up)
    ("J7030", "11111-1111-01", "1000 CC", "250", "1", "0.25", "1"),
    ("J7040", "11111-1111-01", "500 ML", "250", "1", "0.5", "1"),
    ("J7050", "11111-1111-01", "250 CC", "250", "1", "1", "1"),
    # a carton of 24 x 1000 mL
    ("J7030", "11111-1111-02", "1000 CC", "1000", "24", "1", "24"),
    ("J7040", "11111-1111-02", "500 ML", "1000", "24", "2", "48"),
    ("J7050", "11111-1111-02", "250 CC", "1000", "24", "4", "96"),
    # a 100 mL bag: below one unit under every code, so the largest
    ("J7030", "11111-1111-03", "1000 CC", "100", "1", "0.1", "1"),
    ("J7040", "11111-1111-03", "500 ML", "100", "1", "0.2", "1"),
    ("J7050", "11111-1111-03", "250 CC", "100", "1", "0.4", "1"),
    # D5W 1000 mL: its own code, J7070, is not in the formulary: the NDC goes nowhere
    ("J7060", "11111-1111-04", "500 ML", "1000", "1", "2", "2"),
    ("J7070", "11111-1111-04", "1000 CC", "1000", "1", "1", "1"),
)


@pytest.mark.parametrize("order", ["as listed", "reversed"])
def test_an_ndc_under_several_hcpcs_is_kept_on_the_one_whose_unit_is_one_container(order: str, bare_base: Path,
                                                                                    tmp_path: Path):
    rows = SEVERAL if order == "as listed" else SEVERAL[::-1]
    cms = cms_file(tmp_path / "cms.csv", *rows)
    out = tmp_path / "out.json"
    status, _, err = formulary("import", str(cms), "--base", str(bare_base), "--out", str(out))
    assert status == EXIT_REJECTED, err  # the J7070 row: not in the formulary
    got = drugs(out)
    assert got["J7050"].get("ndc") == ["11111-1111-01", "11111-1111-03"]
    assert got["J7030"].get("ndc") == ["11111-1111-02"]
    assert "ndc" not in got["J7040"] and "ndc" not in got["J7060"]
    assert "11 rows read, 3 applied, 1 skipped (0 row errors, 1 for HCPCS not in the formulary), 7 left to another HCPCS" in err
    if order == "as listed":
        assert (f"note: {cms}, line 10, column NDC2: NDC 11111-1111-01 is crosswalked to several HCPCS codes: kept on J7050 "
                "(line 12, BILLUNITS 1), whose billing unit fits one container best; not added to J7030 (line 10, BILLUNITS 0.25), "
                "J7040 (line 11, BILLUNITS 0.5)") in err
        assert f"note: {cms}, line 19, column NDC2: NDC 11111-1111-04 is crosswalked to several HCPCS codes: kept on J7070" in err
        assert f"skipped: {cms}, line 20, column _2026_CODE: J7070: HCPCS not in the formulary" in err


# --- the same inputs, the same bytes ---------------------------------------------------------------

def test_a_reimport_changes_nothing(bare_base: Path, tmp_path: Path):
    first, again, onto_itself = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    inputs = [str(EXCERPT), str(SITE_SAMPLE)]
    assert formulary("import", *inputs, "--base", str(bare_base), "--out", str(first))[0] == EXIT_OK
    assert formulary("import", *inputs, "--base", str(bare_base), "--out", str(again))[0] == EXIT_OK
    assert again.read_bytes() == first.read_bytes()
    status, _, err = formulary("import", *inputs, "--base", str(first), "--out", str(onto_itself))
    assert status == EXIT_OK, err
    assert onto_itself.read_bytes() == first.read_bytes()
    assert "0 NDCs, 0 RxNorm codes and 0 drugs added" in err
    # in place: the file is rewritten with the same bytes
    assert formulary("import", str(EXCERPT), "--base", str(first), "--out", str(first))[0] == EXIT_OK
    assert first.read_bytes() == again.read_bytes()
    # the order of the files on the command line changes the version (a hash of their bytes), not the drugs
    swapped = tmp_path / "d.json"
    assert formulary("import", *inputs[::-1], "--base", str(bare_base), "--out", str(swapped))[0] == EXIT_OK
    assert drugs(swapped) == drugs(first)


def test_importing_onto_the_bundled_formulary(tmp_path: Path):
    out = tmp_path / "out.json"
    status, _, err = formulary("import", str(EXCERPT), "--out", str(out))
    assert status == EXIT_OK, err
    doc = json.loads(out.read_text())
    assert doc["source"]["base"]["file"] == "coding_core/data/formulary.json"
    assert doc["source"]["base"]["sha256"] == hashlib.sha256(BUNDLED.read_bytes()).hexdigest()
    found = load_formulary(out).identify([Coding(system=NDC_SYSTEM, code="00338-0049-04")]).entry
    assert found is not None and found.hcpcs == "J7030"


# --- nothing written -----------------------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"a,b,c\r\n1,2,3\r\n", "no header row of a known crosswalk layout"),
    (b"HCPCS,NDC2,Drug Name\r\nJ2405,65219-0323-02,Ondansetron\r\n", "no header row of a known crosswalk layout"),
    (b"code_system,code,hcpcs\x81\x8d\r\n", "not UTF-8 or Windows-1252 text"),
])
def test_an_unreadable_input_or_unknown_layout_writes_nothing(content: bytes | None, message: str, bare_base: Path,
                                                             tmp_path: Path):
    bad = tmp_path / "bad.csv"
    if content is not None:
        bad.write_bytes(content)
    out = tmp_path / "out.json"
    status, _, err = formulary("import", str(EXCERPT), str(bad), "--base", str(bare_base), "--out", str(out))
    assert status == EXIT_FAILED
    assert f"infusion-charges: error: {bad}: {message}" in err
    assert not out.exists()
    out.write_text("kept")  # an existing file is left as it was
    assert formulary("import", str(bad), "--base", str(bare_base), "--out", str(out))[0] == EXIT_FAILED
    assert out.read_text() == "kept"


def test_a_bad_base_formulary_writes_nothing(tmp_path: Path):
    base = tmp_path / "base.json"
    base.write_text('{"version": "x", "drugs": [{"hcpcs": "J1"}]}')
    out = tmp_path / "out.json"
    status, _, err = formulary("import", str(EXCERPT), "--base", str(base), "--out", str(out))
    assert status == EXIT_FAILED and f"{base}: drugs[0]" in err
    assert not out.exists()


# --- formulary missing ------------------------------------------------------------------------------------

def _feed(tmp_path: Path) -> Path:
    heparin = {"coding": [{"system": NDC_SYSTEM, "code": "63323-0540-05", "display": "Heparin Sodium 5,000 units/mL"}]}
    resources = [
        r4(id="ma-1", medicationCodeableConcept=heparin),
        r4(id="ma-2", medicationCodeableConcept=heparin),
        r4(id="ma-3", medicationCodeableConcept={"text": "Zinc sulfate 1 mg/mL"}),
        r4(id="ma-4", medicationCodeableConcept={"text": "Ondansetron HCl 4 mg/2 mL injection"}),
        r4(id="ma-5", medicationCodeableConcept={"coding": [{"system": HCPCS_SYSTEM, "code": "J9312"}]}),
        r4(id="ma-6", medicationCodeableConcept={"text": "ondansetron hcl 4 mg/2 ml injection"}),
    ]
    path = tmp_path / "feed.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
    return path


def test_formulary_missing_lists_unknown_drugs_and_reduced_name_matches(tmp_path: Path):
    out, err = io.StringIO(), io.StringIO()
    status = main(["formulary", "missing", str(_feed(tmp_path))], out, err)
    assert status == EXIT_OK, err.getvalue()
    assert out.getvalue().splitlines() == [
        "# not in the formulary: 2 drugs, 3 administrations",
        f"2\t{NDC_SYSTEM}|63323-0540-05\tHeparin Sodium 5,000 units/mL",
        "1\t-\tZinc sulfate 1 mg/mL",
        "# identified only by a reduced name (give them a code): 1 drug, 2 administrations",
        "2\t-\tOndansetron HCl 4 mg/2 mL injection\tJ2405 ondansetron",
    ]
    assert "6 administrations read" in err.getvalue()


def test_a_drug_added_through_the_site_crosswalk_is_no_longer_missing(bare_base: Path, tmp_path: Path):
    site = tmp_path / "site.csv"
    site.write_text(SITE_HEADER + "NDC,63323-540-05,J1644,heparin sodium,1000 units,therapeutic,false\n", encoding="utf-8")
    extended = tmp_path / "extended.json"
    status, _, err = formulary("import", str(site), "--base", str(bare_base), "--out", str(extended))
    assert status == EXIT_OK, err
    out, err2 = io.StringIO(), io.StringIO()
    assert main(["formulary", "missing", "--formulary", str(extended), str(_feed(tmp_path))], out, err2) == EXIT_OK
    lines = out.getvalue().splitlines()
    assert lines[0] == "# not in the formulary: 1 drug, 1 administration"
    assert not any("63323-0540-05" in line for line in lines)


def test_formulary_missing_unreadable_file():
    out, err = io.StringIO(), io.StringIO()
    assert main(["formulary", "missing", "/nonexistent/feed.json"], out, err) == EXIT_FAILED
    assert "no such file" in err.getvalue() and out.getvalue() == ""
