"""No secret in any output: every secret setting, given in the settings file or the
environment, through every settings error, never shows in stdout or stderr (a pod's log)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRET = "Hunter2-s3cr3t-Value"
SECRET_FIELDS = ("sasl_password", "ssl_key_password", "log_id_key")  # every SecretStr of Settings
# Settings that are wrong in ways that make the worker refuse to start, each with the secret set.
BROKEN = [
    {"security": {"protocol": "SASL_SSL", "sasl_username": "svc"}},  # no mechanism
    {"security": {"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}},  # no username
    {"security": {"protocol": "SSL", "sasl_mechanism": "NOT-A-MECHANISM"}},
    {"security": {"protocol": "SSL", "ssl_certfile": "/nowhere/cert.pem"}},  # cert without key
    {"security": {"protocol": "TLS-ish"}},
    {"max_state_bytes": "lots", "security": {"protocol": "SASL_SSL"}},
]


def _run(config: dict, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump({"metrics_port": None, "state_dir": str(tmp_path / "state"), **config}))
    return subprocess.run([sys.executable, "-m", "connectors.cli", "run", "--config", str(path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=60, cwd=tmp_path)


@pytest.mark.parametrize("field", SECRET_FIELDS)
@pytest.mark.parametrize("broken", BROKEN, ids=[f"broken{i}" for i in range(len(BROKEN))])
@pytest.mark.parametrize("where", ["file", "environment"])
def test_a_secret_never_shows_in_any_settings_error(field, broken, where, tmp_path):
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in broken.items()}
    env: dict[str, str] = {}
    nested = field != "log_id_key"
    if where == "file":
        (config.setdefault("security", {}) if nested else config)[field] = SECRET
    else:
        env[f"INFUSION_CHARGES_{'SECURITY__' if nested else ''}{field.upper()}"] = SECRET
    done = _run(config, env, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert SECRET not in done.stdout + done.stderr and SECRET[:6] not in done.stdout + done.stderr
    assert "security" in done.stderr or "max_state_bytes" in done.stderr  # the error still says where


def test_the_secret_fields_are_every_secret_of_the_settings():
    from pydantic import SecretStr

    from connectors.settings import Security, Settings

    def secrets(model: type) -> set[str]:
        return {name for name, f in model.model_fields.items() if SecretStr in getattr(f.annotation, "__args__", (f.annotation,))}

    assert secrets(Settings) | secrets(Security) == set(SECRET_FIELDS)
