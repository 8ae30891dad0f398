"""Kafka security against a running broker: TLS, mutual TLS with an encrypted key, SASL PLAIN
and SCRAM over TLS and without -- each as the worker connects (its own clients, built from its
settings) -- and each refusal as an operator sees it: exit 2, the cause in the log, no secret.

TLS and the SASL exchange are served by tests/kafka_gate.py in front of tansu, which cannot
serve them itself; tansu's own SASL is tested for what it does: it refuses every login (see
docs/operations.md "Kafka security")."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.broker import EmbeddedBroker, free_port
from connectors.settings import Security, Settings
from connectors.topics import prepare_topics
from tests.kafka_gate import Gate, Pki
from tests.pipeline_helpers import ROOT, Running, charged_as, latest_revisions, offline_truth, produce, sample_messages, settings_for

USER, PASSWORD = "svc-infusion", "Sasl-Pass-7f3e9"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test certificates")
    return Pki(tmp_path_factory.mktemp("pki"))


@contextmanager
def secured(tls: Any = None, users: dict[str, str] | None = None, **gate: Any) -> Iterator[tuple[str, Gate]]:
    """A broker whose only listener is the gate: bootstrap address and gate."""
    port = free_port()
    broker = EmbeddedBroker(advertised_port=port).start()
    front = Gate(port, broker.port, tls=tls, users=users, **gate).start()
    try:
        yield broker.bootstrap, front
    finally:
        front.stop()
        broker.stop()


def sasl(pki: Pki, mechanism: str, protocol: str = "SASL_SSL", password: str = PASSWORD, **more: Any) -> dict[str, Any]:
    tls = {"ssl_cafile": str(pki.root / "ca.pem")} if protocol == "SASL_SSL" else {}
    return {"protocol": protocol, "sasl_mechanism": mechanism, "sasl_username": USER, "sasl_password": password, **tls, **more}


def mutual(pki: Pki, **more: Any) -> dict[str, Any]:
    return {"protocol": "SSL", "ssl_cafile": str(pki.root / "ca.pem"), "ssl_certfile": str(pki.root / "client.pem"),
            "ssl_keyfile": str(pki.root / "client-encrypted.key"), "ssl_key_password": pki.key_password, **more}


# (name, gate: TLS server context maker + SASL users, client security settings)
ACCEPTED = {
    "SASL_SSL SCRAM-SHA-512": (lambda p: p.server_context(), True, lambda p: sasl(p, "SCRAM-SHA-512")),
    "SASL_SSL SCRAM-SHA-256": (lambda p: p.server_context(), True, lambda p: sasl(p, "SCRAM-SHA-256")),
    "SASL_SSL PLAIN": (lambda p: p.server_context(), True, lambda p: sasl(p, "PLAIN")),
    "SASL_PLAINTEXT SCRAM-SHA-512": (lambda p: None, True, lambda p: sasl(p, "SCRAM-SHA-512", protocol="SASL_PLAINTEXT")),
    "SSL, server certificate checked": (lambda p: p.server_context(), False, lambda p: {"protocol": "SSL", "ssl_cafile": str(p.root / "ca.pem")}),
    "SSL, client certificate, encrypted key": (lambda p: p.server_context(require_client_cert=True), False, mutual),
    "SASL_SSL SCRAM-SHA-512 and a client certificate": (lambda p: p.server_context(require_client_cert=True), True,
                                                        lambda p: {**mutual(p), **sasl(p, "SCRAM-SHA-512")}),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_the_worker_prepares_its_topics_over_each_secured_listener(pki, case):
    tls, with_sasl, client = ACCEPTED[case]
    with secured(tls(pki), {USER: PASSWORD} if with_sasl else None) as (bootstrap, gate):
        settings = settings_for(bootstrap, security=Security(**client(pki)))
        topics = prepare_topics(settings)  # the worker's first contact: create, list and describe
        assert set(topics) >= set(settings.topics.inputs()) | {settings.topics.events, settings.topics.charges}
        assert gate.refused == []


@pytest.mark.parametrize("case", ["SASL_SSL SCRAM-SHA-512", "SSL, client certificate, encrypted key"])
def test_the_pipeline_charges_over_a_secured_listener(pki, case, caplog):
    tls, with_sasl, client = ACCEPTED[case]
    caplog.set_level(logging.DEBUG, logger="infusion_charges")
    with secured(tls(pki), {USER: PASSWORD} if with_sasl else None) as (bootstrap, _gate):
        security = Security(**client(pki))
        settings = settings_for(bootstrap, security=security)
        worker = Running(settings)
        try:
            produce(bootstrap, sample_messages(settings), **security.kafka_config())
            truth = offline_truth()
            latest = latest_revisions(bootstrap, settings.topics.charges, charged_as(truth), **security.kafka_config())
            assert charged_as(truth)(latest)
        finally:
            worker.close()
    assert PASSWORD not in caplog.text and pki.key_password not in caplog.text


def _run_worker(bootstrap: str, security: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = {**settings_for(bootstrap).model_dump(mode="json", exclude={"security"}), "security": security,
              "bootstrap_timeout_ms": 3000, "log_level": "DEBUG", "kafka_log_level": "INFO", "state_dir": str(tmp_path / "state")}
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "connectors.cli", "run", "--config", str(path)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


# (name, gate TLS, gate SASL mechanisms or None, client security, what the log names, the gate's reason)
REFUSED = {
    "wrong password": (lambda p: p.server_context(), ("SCRAM-SHA-512",), lambda p: sasl(p, "SCRAM-SHA-512", password="Not-The-Pass-1"),
                       "SaslAuthenticationFailed", "credentials"),
    "wrong password, PLAIN": (lambda p: p.server_context(), ("PLAIN",), lambda p: sasl(p, "PLAIN", password="Not-The-Pass-1"),
                              "SaslAuthenticationFailed", "credentials"),
    "mechanism the broker does not offer": (lambda p: p.server_context(), ("SCRAM-SHA-512",), lambda p: sasl(p, "PLAIN"),
                                            "UnsupportedSaslMechanism", "mechanism"),
    "no SASL where the broker requires it": (lambda p: p.server_context(), ("SCRAM-SHA-512",),
                                             lambda p: {"protocol": "SSL", "ssl_cafile": str(p.root / "ca.pem")}, "Bootstrap failed", "api 3"),
    "no client certificate": (lambda p: p.server_context(require_client_cert=True), None,
                              lambda p: {"protocol": "SSL", "ssl_cafile": str(p.root / "ca.pem")}, "SSL", None),
    "server certificate for another host": (lambda p: p.server_context(cert="wrong-host"), None, mutual, "CERTIFICATE_VERIFY_FAILED", None),
    "plaintext to a TLS listener": (lambda p: p.server_context(), None, lambda p: {"protocol": "PLAINTEXT"}, "Bootstrap failed", None),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_connection_is_exit_2_naming_the_cause_and_no_secret(pki, case, tmp_path):
    tls, mechanisms, client, named, reason = REFUSED[case]
    users = {USER: PASSWORD} if mechanisms else None
    with secured(tls(pki), users, **({"mechanisms": mechanisms} if mechanisms else {})) as (bootstrap, gate):
        done = _run_worker(bootstrap, client(pki), tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "worker failed" in done.stderr and named in done.stderr, (gate.refused, gate.closed, done.stderr[-3000:])
    for secret in (PASSWORD, "Not-The-Pass-1", pki.key_password):
        assert secret not in output
    if reason:
        assert any(r.startswith(reason) for r in gate.refused), gate.refused
    assert not any(r.startswith("gate error") for r in gate.refused), gate.refused


@pytest.mark.parametrize("mechanism, named", [("SCRAM-SHA-512", "Bootstrap failed"), ("PLAIN", "socket disconnected")])
def test_tansus_own_sasl_refuses_every_login_and_the_worker_says_so(mechanism, named, tmp_path):
    # No SCRAM credentials in its memory storage: it answers the first SCRAM message with
    # "e=unknown-user", which kafka-python does not read as a refusal (the log shows the lost
    # connection, then "Bootstrap failed"); PLAIN it does not offer, and it closes the connection.
    broker = EmbeddedBroker(authentication=True).start()
    try:
        done = _run_worker(broker.bootstrap, {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism, "sasl_username": USER,
                                              "sasl_password": PASSWORD}, tmp_path)
    finally:
        broker.stop()
    assert done.returncode == 2 and named in done.stderr, done.stderr[-3000:]
    assert PASSWORD not in done.stdout + done.stderr


def test_kafka_debug_logging_is_refused():
    """kafka-python's DEBUG lines carry raw frames, record values and the SASL PLAIN token."""
    with pytest.raises(ValueError) as e:
        Settings(kafka_log_level="DEBUG")
    assert "kafka_log_level" in str(e.value)
