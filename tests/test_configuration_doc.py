"""docs/configuration.md is the models' own description, and samples/worker.yaml is a complete
worker configuration the worker accepts."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from coding_core.formulary import FormularyEntry
from coding_core.profile import Profile
from connectors import config_doc
from connectors.settings import Settings
from mapping.reference_data import load_profile

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_page_is_generated_from_the_models():
    assert config_doc.main(["--check"]) == 0, "regenerate: python -m connectors.config_doc"


def test_every_field_of_every_model_has_a_row_with_a_description():
    page = (ROOT / "docs" / "configuration.md").read_text()
    tops = {Settings: "## Worker settings", Profile: "## Profile", FormularyEntry: "## Formulary entries"}
    for model in (*tops, *config_doc.nested(Settings), *config_doc.nested(Profile), *config_doc.nested(FormularyEntry)):
        section = page.split(tops.get(model, f"### {model.__name__}\n"), 1)[1].split("\n#", 1)[0]
        for name in model.model_fields:
            row = re.search(rf"^\| `{name}` \|.*\|$", section, flags=re.M)
            assert row, f"{model.__name__}.{name} has no row"
            assert not row.group(0).endswith("| — |"), f"{model.__name__}.{name}: write its comment in the model's source"


def test_settings_rows_name_the_environment_variable_the_settings_read(monkeypatch):
    monkeypatch.setenv("INFUSION_CHARGES_TOPICS__CHARGES", "billing.v2")
    monkeypatch.setenv("INFUSION_CHARGES_HOLD_GRACE_MS", "7")
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert "`INFUSION_CHARGES_TOPICS__CHARGES`" in page and "`INFUSION_CHARGES_HOLD_GRACE_MS`" in page
    settings = Settings.load()
    assert settings.topics.charges == "billing.v2" and settings.hold_grace_ms == 7


def test_a_comment_above_and_beside_a_field_is_its_description():
    notes = config_doc.comments(Settings)
    assert notes["hold_grace_ms"].startswith("An encounter update (a close) waits")
    assert notes["bootstrap_servers"] == "Kafka brokers, comma-separated host:port"


def test_the_sample_worker_configuration_is_complete_and_accepted(monkeypatch):
    monkeypatch.setenv("INFUSION_CHARGES_SECURITY__SASL_PASSWORD", "from-a-secret")
    path = ROOT / "samples" / "worker.yaml"
    settings = Settings.load(path)
    assert settings.security.protocol == "SASL_SSL" and settings.replication_factor == 3
    text = path.read_text()
    data = yaml.safe_load(text)
    commented: dict[int, set[str]] = {0: set(), 2: set()}  # "# key:" lines left for secrets, by indent
    for indent, first, second in re.findall(r"^( *)# ([a-z_]+)(?: / ([a-z_]+))?:", text, flags=re.M):
        commented[len(indent)] |= {first, second} - {""}
    assert set(data) | commented[0] == set(Settings.model_fields), "samples/worker.yaml: add (or comment) every setting"
    for key in ("topics", "security"):
        model = type(getattr(settings, key))
        assert set(data[key]) | (commented[2] & set(model.model_fields)) == set(model.model_fields), \
            f"samples/worker.yaml: {key}: add (or comment) every setting"


def test_the_run_command_accepts_the_sample_configuration(monkeypatch, tmp_path):
    """As ``run --config`` reads it, up to connecting: the profile it names loads too."""
    from connectors import cli

    monkeypatch.setenv("INFUSION_CHARGES_SECURITY__SASL_PASSWORD", "from-a-secret")
    text = (ROOT / "samples" / "worker.yaml").read_text().replace(
        "/etc/infusion-charges/profile.yaml", str(ROOT / "samples" / "profile-billing.yaml"))
    (tmp_path / "worker.yaml").write_text(text)
    settings = Settings.load(tmp_path / "worker.yaml")
    assert load_profile(settings.profile).name == "general-hospital-opps-2026"
    args = cli._parser().parse_args(["run", "--config", str(tmp_path / "worker.yaml")])
    assert args.config == str(tmp_path / "worker.yaml")


def test_the_sample_billing_profile_shows_every_profile_field():
    path = ROOT / "samples" / "profile-billing.yaml"
    text = path.read_text()
    data = yaml.safe_load(text)
    assert set(data) == set(Profile.model_fields), "samples/profile-billing.yaml: show every profile field"
    cdm = set(data["chargemaster"]) | set(re.findall(r"^  # ([a-z_]+):", text, flags=re.M))
    assert cdm == set(type(load_profile(path).chargemaster).model_fields) - {"items"}
