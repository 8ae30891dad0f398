"""Dead letters through the real broker: listed without payload, shown, and after a fix
replayed to their source topic, where the worker codes them."""

from __future__ import annotations

import io
import json
import time

from connectors.cli import main
from tests.pipeline_helpers import Running, billable, dead_letters, latest_revisions, produce, settings_for, write_config
from tests.test_fhir_in import r4


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out, err), out.getvalue(), err.getvalue()


def test_a_dead_letter_fixed_and_replayed_is_coded(kafka_bootstrap, tmp_path):
    strict = settings_for(kafka_bootstrap, max_message_bytes=1024)
    t = strict.topics
    big = r4(note=[{"text": "administered without incident; " * 60}])  # ~2 KB: over the 1 KB limit
    close = {"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}}
    worker = Running(strict)
    try:
        produce(kafka_bootstrap, [(t.fhir_administrations, b"ma-1", json.dumps(big).encode())])
        (letter,) = dead_letters(kafka_bootstrap, t.dead_letter, at_least=1)
        assert dict(letter.headers)["error.type"] == b"OversizedMessage"
    finally:
        worker.close()

    fixed = strict.model_copy(update={"max_message_bytes": 1_048_576})  # the operator's fix
    config = write_config(fixed, tmp_path / "worker.yaml")
    code, out, err = _cli("dead-letters", "list", "--config", str(config))
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and row["error_type"] == "OversizedMessage" and row["source"].startswith(f"{t.fhir_administrations}[")
    assert "administered" not in out and "value" not in row  # no payload in the list
    code, out, _ = _cli("dead-letters", "show", row["id"], "--config", str(config))
    assert code == 0 and json.loads(out)["error_message"] and "value" not in json.loads(out)
    code, out, _ = _cli("dead-letters", "show", row["id"], "--payload", "--config", str(config))
    assert "administered without incident" in json.loads(out)["value"]
    code, _, err = _cli("dead-letters", "replay", "--config", str(config))
    assert code == 2 and "needs ids" in err  # nothing is replayed without a selection

    worker = Running(fixed)
    try:
        code, _, err = _cli("dead-letters", "replay", "--error-type", "OversizedMessage", "--config", str(config))
        assert code == 0 and "replayed 1 dead letters" in err, err
        produce(kafka_bootstrap, [(t.fhir_encounters, b"e-1", json.dumps(close).encode())])
        latest = latest_revisions(kafka_bootstrap, t.charges, lambda got: "e-1" in got and billable(got["e-1"]), timeout_s=90)
        assert any(r["code"]["coding"][0]["code"] == "96413" for r in billable(latest["e-1"]))
        deadline = time.monotonic() + 10
        while worker.worker.stats.get("redriven", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker.worker.stats["redriven"] == 1
        assert 'infusion_charges_redriven_total{topic="' in worker.worker.metrics.render().decode()
    finally:
        worker.close()
