"""`infusion-charges code`: the bundled samples end to end, errors, exit status."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from connectors.cli import EXIT_FAILED, EXIT_OK, EXIT_REJECTED, main
from tests.test_fhir_in import r4

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def code(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(["code", *argv], out, err)
    return status, out.getvalue(), err.getvalue()


def lines_of(bundle_text: str) -> Counter:
    """(encounter, code, modifiers, date) -> units, from a printed Bundle."""
    doc = json.loads(bundle_text)
    Bundle.model_validate(doc)
    assert doc["type"] == "collection"
    units: Counter = Counter()
    for entry in doc["entry"]:
        item = entry["resource"]
        mods = tuple(e["valueCoding"]["code"] for e in item.get("extension", []) if e["url"].endswith("chargeitem-modifier"))
        context = item["context"]  # literal from FHIR, by identifier from HL7
        encounter = context["reference"].split("/")[1] if "reference" in context else context["identifier"]["value"]
        key = (encounter, item["code"]["coding"][0]["code"], mods, item["occurrenceDateTime"])
        units[key] += item["quantity"]["value"]
    return units


def test_oncology_day_sample():
    status, out, err = code(str(SAMPLES / "oncology-day.json"))
    assert status == EXIT_OK, err
    e, d = "enc-onc-5001", "2026-11-02"
    assert lines_of(out) == {
        # rituximab 09:30-13:52 (version 2 of the record replaced version 1's 13:40 stop)
        (e, "96413", (), d): 1,
        (e, "96415", (), d): 3,  # 202 min beyond the first hour
        # ondansetron push, dexamethasone over 15 min (= a push), diphenhydramine push
        (e, "96375", (), d): 3,
        # saline 08:30-14:00, concurrent with rituximab for 262 min: 68 min are billable
        (e, "96361", (), d): 1,
        (e, "J9312", ("JZ",), d): 70,
        (e, "J2405", (), d): 8,  # the entered-in-error 4 mg dose is not billed
        (e, "J1100", (), d): 12,
        (e, "J1200", (), d): 1,
        (e, "J7030", (), d): 1,
    }
    assert "1 replaced by newer versions" in err


def test_two_access_sites_sample():
    status, out, err = code(str(SAMPLES / "infusion-clinic.json"))
    assert status == EXIT_OK, err
    e, d = "enc-clinic-7002", "2026-11-05"
    got = lines_of(out)
    assert got[(e, "96413", (), d)] == 1 and got[(e, "96415", (), d)] == 1
    assert got[(e, "96375", (), d)] == 1  # unknown steroid pushed on the infliximab line
    assert got[(e, "96374", ("59",), d)] == 1  # the right-arm IV is a second access site
    assert got[(e, "J3490", (), d)] == 1  # unknown drug: unclassified line, not dropped


def test_overnight_observation_sample_dates_hours_by_day():
    status, out, err = code(str(SAMPLES / "observation-overnight.ndjson"))
    assert status == EXIT_OK, err
    e = "enc-obs-9003"
    got = lines_of(out)
    assert got[(e, "96360", (), "2026-11-03")] == 1
    assert got[(e, "96361", (), "2026-11-03")] == 2
    assert got[(e, "96361", (), "2026-11-04")] == 6
    assert got[(e, "96372", (), "2026-11-03")] == 1
    assert "1 duplicates ignored" in err


def test_explain_prints_a_table_per_encounter():
    feeds = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".json", ".ndjson", ".hl7"})  # not the crosswalks, README
    status, out, err = code("--explain", *(str(p) for p in feeds))
    assert status == EXIT_OK, err
    assert out.count("Encounter ") == 4  # three FHIR feeds and one HL7 v2 feed
    assert "Encounter V77001 (EMER" in out
    assert "96361" in out and "hydration" in out
    assert "warnings:" in out and "unknown-drug" in out
    assert "not charged:" in out and "ma-5001-6" in out  # entered in error, listed with its reason


def test_professional_setting_and_profile(tmp_path):
    profile = tmp_path / "site.yaml"
    profile.write_text("distinct_service_modifier: XU\n")
    status, out, _ = code("--profile", str(profile), str(SAMPLES / "infusion-clinic.json"))
    assert status == EXIT_OK
    assert lines_of(out)[("enc-clinic-7002", "96374", ("XU",), "2026-11-05")] == 1
    status, out, _ = code("--setting", "professional", str(SAMPLES / "infusion-clinic.json"))
    assert status == EXIT_OK
    got = lines_of(out)
    assert not any(k[1] == "96374" for k in got)  # professional: one initial per date, across sites


def test_one_bad_record_is_reported_and_the_rest_coded(tmp_path):
    feed = tmp_path / "feed.ndjson"
    feed.write_text("\n".join([json.dumps(r4(id="good")), json.dumps(r4(id="bad", context=None)), "{oops"]) + "\n")
    status, out, err = code(str(feed))
    assert status == EXIT_REJECTED
    assert lines_of(out)[("e-1", "96413", (), "2026-03-02")] == 1
    assert f"{feed}, line 2: MedicationAdministration/bad: no context reference" in err
    assert f"{feed}, line 3: not JSON" in err


def test_unreadable_file_is_a_clear_error_and_nothing_is_printed(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"resourceType": "Bundle", "entry": [\n')
    status, out, err = code(str(SAMPLES / "oncology-day.json"), str(bad))
    assert status == EXIT_FAILED and out == ""
    assert f"{bad}, line 2 column 1: not JSON" in err
    status, out, err = code(str(tmp_path / "missing.json"))
    assert status == EXIT_FAILED and "missing.json: no such file" in err


def test_bad_profile_is_a_clear_error(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("distinct_service_modifier: 76\n")
    status, out, err = code("--profile", str(profile), str(SAMPLES / "oncology-day.json"))
    assert status == EXIT_FAILED and out == "" and "p.yaml" in err


def test_no_phi_on_stderr(tmp_path):
    feed = tmp_path / "feed.ndjson"
    res = r4(id="bad", status="bogus", subject={"reference": "Patient/DOE-JANE-19700101"})
    feed.write_text(json.dumps(res) + "\n")
    status, _, err = code(str(feed))
    assert status == EXIT_REJECTED and "MedicationAdministration/bad" in err
    assert "DOE" not in err and "19700101" not in err


@pytest.mark.parametrize("argv", [[], ["code"], ["code", "--setting", "hospital", "x.json"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        main(argv, io.StringIO(), io.StringIO())
    assert e.value.code == 2


def test_hl7_sample_feed():
    status, out, err = code(str(SAMPLES / "ed-visit.hl7"))
    assert status == EXIT_OK, err
    e, d = "V77001", "2026-11-09"
    assert lines_of(out) == {
        (e, "96365", (), d): 1,  # ceftriaxone 40 min: the initial service (outranks hydration)
        (e, "96361", (), d): 1,  # saline 08:00-09:05 less 15 min concurrent with ceftriaxone = 50 min
        (e, "96375", (), d): 1,  # ondansetron push; the ketorolac push was deleted (RXA-21 D)
        (e, "J0696", (), d): 4,
        (e, "J2405", (), d): 4,
        (e, "J7030", (), d): 1,
    }


def test_hl7_bad_message_is_reported_with_control_id_and_the_rest_coded(tmp_path):
    text = (SAMPLES / "ed-visit.hl7").read_text().replace("RXA|0|1|20261109085000", "RXA|0|1|2026-11-09 08:50")
    feed = tmp_path / "feed.hl7"
    feed.write_bytes(text.encode("latin-1"))
    status, out, err = code(str(feed))
    assert status == EXIT_REJECTED
    assert f"{feed}, message 3: RAS^O17/RAS0002: RXA-3: not an HL7 timestamp" in err
    got = lines_of(out)
    assert ("V77001", "96365", (), "2026-11-09") not in got  # the ceftriaxone message was rejected whole
    # without it, the ondansetron push outranks the saline as the initial service
    assert got[("V77001", "96374", (), "2026-11-09")] == 1 and got[("V77001", "96361", (), "2026-11-09")] == 1


def test_hl7_in_iso_8859_1_and_from_stdin(tmp_path, monkeypatch):
    text = (SAMPLES / "ed-visit.hl7").read_text().replace("ondansetron", "ondansetr\u00f3n")
    latin = tmp_path / "latin.hl7"
    latin.write_bytes(text.encode("latin-1"))
    status, out, _ = code(str(latin))
    assert status == EXIT_OK and lines_of(out)[("V77001", "96375", (), "2026-11-09")] == 1
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    status, out2, _ = code("-")
    assert status == EXIT_OK and lines_of(out2) == lines_of(out)


def test_file_with_no_hl7_message_is_unreadable(tmp_path):
    bad = tmp_path / "x.hl7"
    bad.write_text("hello\n")
    status, out, err = code(str(bad))
    assert status == EXIT_FAILED and out == "" and "x.hl7: no MSH segment" in err


def test_bench_takes_the_benchmarks_own_options(capsys):
    """``infusion-charges bench`` is connectors/bench.py: every option its docs name is accepted."""
    import pytest as _pytest

    from connectors.cli import main

    with _pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    shown = capsys.readouterr().out
    for option in ("--quick", "--seed", "--workers", "--light-rate", "--encounters", "--latency-seconds"):
        assert option in shown
