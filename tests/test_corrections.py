"""Corrections as interface engines send them, through the real pipeline: re-sent with the same
id and no ``meta``, versioned after unversioned, an Encounter finished without ``meta``, an
HL7 message re-sent under the same control id after a fix.  Each changes the charges (a new
revision) and is counted on ``/metrics``; an identical re-send changes nothing."""

from __future__ import annotations

import json
import time

from tests.hl7_builders import message, msh, pid, pv1, ras, rxa, rxr, segment
from tests.pipeline_helpers import Running, billable, latest_revisions, produce, settings_for
from tests.test_fhir_in import r4

START = "2026-03-02T10:00:00-05:00"
ADT_CLOSE = message(msh("A1", message="ADT^A03", time="20261102140000"), segment("EVN", {1: "A03"}), pid(),
                    pv1("V1", f45="20261102130000"))


def _encounter(status: str, **meta) -> dict:
    return {"resourceType": "Encounter", "id": "e-1", "status": status, "class": {"code": "AMB"}, **meta}


def _codes(bundle: dict) -> list[tuple[str, int]]:
    return sorted((r["code"]["coding"][0]["code"], r["quantity"]["value"]) for r in billable(bundle))


def _revision(bootstrap, topic, at_least: int, encounter: str = "e-1") -> dict:
    latest = latest_revisions(bootstrap, topic, lambda got: encounter in got and int(got[encounter]["meta"]["versionId"]) >= at_least,
                              timeout_s=90)
    assert encounter in latest and int(latest[encounter]["meta"]["versionId"]) >= at_least, latest.get(encounter, {}).get("meta")
    return latest[encounter]


def _metric(worker, outcome: str) -> float:
    for line in worker.worker.metrics.render().decode().splitlines():
        if line.startswith(f'infusion_charges_records_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_corrections_without_meta_and_versioned_after_unversioned_change_the_charges(kafka_bootstrap):
    settings = settings_for(kafka_bootstrap)
    t = settings.topics
    worker = Running(settings)
    try:
        admin = r4(effectivePeriod={"start": START, "end": "2026-03-02T10:40:00-05:00"})  # rituximab 40 min: 96413
        produce(kafka_bootstrap, [(t.fhir_administrations, b"ma-1", json.dumps(admin).encode()),
                                  (t.fhir_encounters, b"e-1", json.dumps(_encounter("in-progress")).encode())])
        time.sleep(1)
        produce(kafka_bootstrap, [(t.fhir_encounters, b"e-1", json.dumps(_encounter("finished")).encode())])  # no meta: closes
        first = _revision(kafka_bootstrap, t.charges, 1)
        assert ("96413", 1) in _codes(first) and not [c for c in _codes(first) if c[0] == "96415"]

        fixed = r4(effectivePeriod={"start": START, "end": "2026-03-02T11:40:00-05:00"})  # the nurse fixes the stop: 100 min
        produce(kafka_bootstrap, [(t.fhir_administrations, b"ma-1", json.dumps(fixed).encode())])
        second = _revision(kafka_bootstrap, t.charges, 2)
        assert ("96413", 1) in _codes(second) and ("96415", 1) in _codes(second)

        produce(kafka_bootstrap, [(t.fhir_administrations, b"ma-1", json.dumps(fixed).encode())])  # the same again
        versioned = r4(meta={"versionId": "2"}, status="entered-in-error",
                       effectivePeriod={"start": START, "end": "2026-03-02T11:40:00-05:00"})
        produce(kafka_bootstrap, [(t.fhir_administrations, b"ma-1", json.dumps(versioned).encode())])
        third = _revision(kafka_bootstrap, t.charges, 3)
        assert [c for c in _codes(third) if c[0].startswith("96")] == []  # withdrawn: entered in error
        assert int(third["meta"]["versionId"]) == 3, "the identical re-send published nothing"
        unversioned_late = r4(effectivePeriod={"start": START, "end": "2026-03-02T10:20:00-05:00"})
        produce(kafka_bootstrap, [(t.fhir_administrations, b"ma-1", json.dumps(unversioned_late).encode())])
        deadline = time.monotonic() + 20
        while _metric(worker, "outdated") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _metric(worker, "outdated") == 1  # an unversioned record after a versioned one is older
        assert _metric(worker, "duplicate") >= 1 and _metric(worker, "replaced") >= 3
        latest = latest_revisions(kafka_bootstrap, t.charges, lambda got: False, timeout_s=3)
        assert int(latest["e-1"]["meta"]["versionId"]) == 3
    finally:
        worker.close()


def test_an_hl7_message_re_sent_after_a_fix_is_an_update(kafka_bootstrap):
    settings = settings_for(kafka_bootstrap)
    t = settings.topics
    worker = Running(settings)
    try:
        first = ras("C1", "V1", [("F1", [rxa("20261102100000", "20261102104000"), rxr()])])
        fixed = ras("C1", "V1", [("F1", [rxa("20261102100000", "20261102114000"), rxr()])])  # same MSH-10, stop corrected
        produce(kafka_bootstrap, [(t.hl7_ras, b"V1", first.encode()), (t.hl7_adt, b"V1", ADT_CLOSE.encode())])
        one = _revision(kafka_bootstrap, t.charges, 1, "V1")
        produce(kafka_bootstrap, [(t.hl7_ras, b"V1", fixed.encode())])
        two = _revision(kafka_bootstrap, t.charges, 2, "V1")
        assert _codes(one) != _codes(two) and ("96415", 1) in _codes(two)
    finally:
        worker.close()
