"""JSON logs carry ids and counts as fields; the ops server answers without a worker too."""

from __future__ import annotations

import json
import logging
from urllib.error import HTTPError
from urllib.request import urlopen

from connectors.ops import JsonFormatter, Metrics, OpsServer


def test_json_log_lines():
    record = logging.LogRecord("infusion_charges.worker", logging.WARNING, __file__, 1, "dead-lettered %s", ("t.in",), None)
    record.partition, record.offset = 2, 41
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "WARNING" and doc["message"] == "dead-lettered t.in"
    assert (doc["partition"], doc["offset"], doc["logger"]) == (2, 41, "infusion_charges.worker")


def test_readiness_follows_the_worker():
    state = {"ready": False}
    server = OpsServer(0, Metrics(), lambda: state["ready"], host="127.0.0.1").start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert urlopen(f"{base}/healthz").status == 200
        try:
            urlopen(f"{base}/readyz")
            raise AssertionError("expected 503")
        except HTTPError as e:
            assert e.code == 503
        state["ready"] = True
        assert urlopen(f"{base}/readyz").status == 200
        assert b"infusion_charges_messages_consumed" in urlopen(f"{base}/metrics").read()
    finally:
        server.stop()


def test_half_open_connections_are_capped_and_dropped(monkeypatch):
    """400 connections that never send a request take at most MAX_CONNECTIONS threads, are
    dropped after the read timeout, and the probes are answered again right after."""
    import socket
    import threading
    import time

    import connectors.ops as ops

    monkeypatch.setattr(ops, "READ_TIMEOUT_S", 1.0)
    server = OpsServer(0, Metrics(), lambda: True, host="127.0.0.1").start()
    server.server.RequestHandlerClass.timeout = 1.0
    idle = []
    try:
        before = threading.active_count()
        for _ in range(400):
            s = socket.create_connection(("127.0.0.1", server.port))
            idle.append(s)
        time.sleep(0.5)
        assert threading.active_count() - before <= ops.MAX_CONNECTIONS + 2
        time.sleep(1.5)  # the read timeout passes: the held connections are dropped
        assert urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status == 200
        assert threading.active_count() - before <= 3
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_encounters_are_named_by_a_keyed_digest_an_operator_can_compute():
    import hashlib
    import hmac

    import connectors.ops as ops

    try:
        ops.set_id_key(None)
        plain = ops.safe_id("V77001")
        assert plain == "enc:" + hashlib.sha256(b"V77001").hexdigest()[:16]
        ops.set_id_key("site-secret")
        keyed = ops.safe_id("V77001")
        assert keyed != plain and "V77001" not in keyed
        assert keyed == "enc:" + hmac.new(b"site-secret", b"V77001", hashlib.sha256).hexdigest()[:16]  # the runbook's formula
    finally:
        ops.set_id_key(None)


def test_log_levels_come_from_the_settings(monkeypatch, tmp_path):
    import connectors.ops as ops
    from connectors.settings import Settings

    monkeypatch.setenv("INFUSION_CHARGES_KAFKA_LOG_LEVEL", "ERROR")
    settings = Settings.load(None, log_level="WARNING")
    assert (settings.log_level, settings.kafka_log_level) == ("WARNING", "ERROR")
    root, kafka = logging.getLogger(), logging.getLogger("kafka")
    handlers, level, kafka_level = list(root.handlers), root.level, kafka.level
    try:
        ops.configure_logging(settings.log_level, settings.kafka_log_level)
        assert root.level == logging.WARNING and logging.getLogger("kafka").level == logging.ERROR
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        kafka.setLevel(kafka_level)


def test_each_published_revision_is_one_info_line_and_its_warnings_are_counted_by_code(tmp_path, caplog):
    from mapping.fhir_in import map_resource
    from tests.test_fhir_in import r4
    from tests.test_rooms import _events, _rooms

    caplog.set_level(logging.INFO, logger="infusion_charges")
    rooms = _rooms(tmp_path)
    unknown = map_resource(r4(id="ma-1", medicationCodeableConcept={"text": "Compounded Mystery Drug"}))
    _events(rooms, unknown, map_resource({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}}))
    (line,) = [r for r in caplog.records if "published" in r.getMessage()]
    assert line.levelno == logging.INFO and line.revision == 1 and line.warnings >= 1 and line.withdrawn == 0
    assert "e-1" not in line.getMessage() and line.encounter.startswith("enc:")
    text = rooms.processor.metrics.render().decode()
    assert 'infusion_charges_warnings_total{code="unknown-drug"} 1.0' in text and "Mystery" not in text


def test_a_busy_metrics_port_is_a_clear_exit_2(tmp_path):
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        config = tmp_path / "worker.yaml"
        config.write_text(yaml.safe_dump({"metrics_port": port, "state_dir": str(tmp_path / "state"), "bootstrap_servers": "127.0.0.1:1"}))
        done = subprocess.run([sys.executable, "-m", "connectors.cli", "run", "--config", str(config)], capture_output=True, text=True,
                              timeout=60, cwd=root)
    assert done.returncode == 2 and f"metrics_port {port}: cannot listen" in done.stderr and "Traceback" not in done.stderr
