"""Worker settings: YAML, environment, command line, and Kafka security."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from connectors.settings import Security, Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("INFUSION_CHARGES_"):
            monkeypatch.delenv(key)


def test_precedence_command_line_then_environment_then_yaml_then_defaults(tmp_path, monkeypatch):
    cfg = tmp_path / "worker.yaml"
    cfg.write_text("group_id: from-yaml\nbootstrap_servers: yaml:9092\ntopics:\n  charges: billing.v2\n  events: yaml-events\nidle_close_minutes: 60\n")
    monkeypatch.setenv("INFUSION_CHARGES_TOPICS__EVENTS", "env-events")
    monkeypatch.setenv("INFUSION_CHARGES_IDLE_CLOSE_MINUTES", "30")
    s = Settings.load(cfg, bootstrap_servers="cli:9092")
    assert s.bootstrap_servers == "cli:9092"  # command line
    assert (s.idle_close_minutes, s.topics.events) == (30, "env-events")  # environment, also nested
    assert (s.group_id, s.topics.charges) == ("from-yaml", "billing.v2")  # YAML
    assert s.topics.hl7_ras == "hl7v2.ras" and s.retention_days == 30  # defaults


def test_unknown_settings_and_missing_file_are_errors(tmp_path):
    cfg = tmp_path / "worker.yaml"
    cfg.write_text("grup_id: typo\n")
    with pytest.raises(ValueError, match="grup_id: extra_forbidden"):  # named by location and error type only
        Settings.load(cfg)
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        Settings.load(tmp_path / "absent.yaml")


def test_sasl_scram_over_tls():
    sec = Security(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc", sasl_password="s3cret",
                   ssl_cafile="/etc/ca.pem")
    cfg = sec.kafka_config()
    assert cfg == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "svc",
                   "sasl_plain_password": "s3cret", "ssl_check_hostname": True, "ssl_cafile": "/etc/ca.pem"}
    assert "s3cret" not in repr(sec) and "s3cret" not in str(Settings(security=sec))


def test_mutual_tls():
    cfg = Security(protocol="SSL", ssl_cafile="/ca", ssl_certfile="/c.pem", ssl_keyfile="/k.pem", ssl_key_password="pw").kafka_config()
    assert (cfg["ssl_certfile"], cfg["ssl_keyfile"], cfg["ssl_password"]) == ("/c.pem", "/k.pem", "pw")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"},  # no credentials
        {"protocol": "SSL", "ssl_certfile": "/c.pem"},  # certificate without key
    ],
)
def test_incomplete_security_is_rejected(kwargs):
    with pytest.raises(ValidationError):
        Security(**kwargs)


def test_kafka_config_splits_bootstrap_servers():
    s = Settings(bootstrap_servers="a:1,b:2")
    assert s.kafka_config() == {"bootstrap_servers": ["a:1", "b:2"], "client_id": "infusion-charges-worker", "security_protocol": "PLAINTEXT",
                                "bootstrap_timeout_ms": 30_000}


def test_the_site_has_one_time_zone_for_hl7_times_and_dates_of_service(tmp_path):
    from coding_core.profile import Profile
    from connectors.settings import site_profile
    from mapping.reference_data import load_profile

    chicago = tmp_path / "profile.yaml"
    chicago.write_text("timezone: America/Chicago\n")
    # the profile names the zone: the worker parses HL7 times in it too
    assert site_profile(Settings(), load_profile(chicago)).timezone == "America/Chicago"
    # settings name it and the profile does not: the profile takes it
    assert site_profile(Settings(timezone="America/Denver"), Profile()).timezone == "America/Denver"
    assert site_profile(Settings(timezone="America/Chicago"), load_profile(chicago)).timezone == "America/Chicago"
    assert site_profile(Settings(), Profile()).timezone == "America/New_York"
    with pytest.raises(ValueError, match="one time zone"):
        site_profile(Settings(timezone="America/New_York"), load_profile(chicago))
    with pytest.raises(ValueError, match="not an IANA time zone"):
        site_profile(Settings(timezone="America/Chicgo"), Profile())


def test_run_refuses_two_time_zones_before_connecting(tmp_path):
    import io

    from connectors.cli import main

    profile = tmp_path / "profile.yaml"
    profile.write_text("timezone: America/Chicago\n")
    cfg = tmp_path / "worker.yaml"
    cfg.write_text(f"bootstrap_servers: 127.0.0.1:1\ntimezone: America/New_York\nprofile: {profile}\n")
    err = io.StringIO()
    assert main(["run", "--config", str(cfg)], err=err) == 2
    assert "one time zone" in err.getvalue()
