"""``infusion-charges code --previous``: offline, the correction a re-coding would publish.

The README's example from the field: marking the ondansetron push in samples/oncology-day.json
entered-in-error must withdraw ondansetron's lines only; dexamethasone's and diphenhydramine's
lines keep their ids (a billing system that posted them sees no change of meaning)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from connectors.cli import main

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "oncology-day.json"


def _code(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(["code", *argv], out, err), out.getvalue(), err.getvalue()


def _by_code(items) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for it in items:
        out.setdefault(it["code"]["coding"][0]["code"], set()).add(it["id"])
    return out


def test_a_withdrawn_push_withdraws_its_own_lines_and_moves_no_other_id(tmp_path):
    code, out, _ = _code(str(SAMPLE))
    assert code == 0
    items = [e["resource"] for e in json.loads(out)["entry"]]
    first = {"resourceType": "Bundle", "type": "transaction", "meta": {"versionId": "1"},
             "entry": [{"resource": it} for it in items]}
    previous = tmp_path / "revision-1.json"
    previous.write_text(json.dumps(first))

    doc = json.loads(SAMPLE.read_text())
    ondansetron = next(e["resource"] for e in doc["entry"] if e["resource"].get("id") == "ma-5001-2")
    ondansetron["status"] = "entered-in-error"
    corrected = tmp_path / "oncology-day-corrected.json"
    corrected.write_text(json.dumps(doc))

    code, out, err = _code("--previous", str(previous), str(corrected))
    assert code == 0 and "1 encounters corrected" in err
    (line,) = out.splitlines()
    revision = json.loads(line)
    assert revision["type"] == "transaction" and revision["meta"]["versionId"] == "2"
    resources = [e["resource"] for e in revision["entry"]]
    withdrawn = {r["id"] for r in resources if r["status"] == "entered-in-error"}
    about_ondansetron = {it["id"] for it in items if any(s["reference"] == "MedicationAdministration/ma-5001-2" for s in it["service"])}
    assert withdrawn and withdrawn <= about_ondansetron
    before, after = _by_code(items), _by_code(r for r in resources if r["status"] == "billable")
    for drug in ("J1100", "J1200"):  # dexamethasone, diphenhydramine: the same lines, the same ids
        assert after[drug] == before[drug]

    code, out, err = _code("--previous", str(previous), str(SAMPLE))  # nothing changed: nothing to send
    assert code == 0 and out == "" and "0 encounters corrected" in err


def test_previous_that_is_not_a_revision_bundle_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"resourceType": "Patient"}')
    code, _, err = _code("--previous", str(bad), str(SAMPLE))
    assert code == 2 and "--previous" in err and "Traceback" not in err
