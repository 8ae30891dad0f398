"""The Helm chart: strict lint, rendering for several values combinations, Kubernetes schema
validation of every manifest, the hardening ops expects, a config the worker accepts, and values
that contradict each other (or the worker's own models) refused before anything is rendered."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python import HelmError, HelmValuesError, lint
from helm_python.chart import Chart
from pydantic import create_model

from connectors import helm_schema
from connectors.settings import Settings, Topics
from mapping.reference_data import load_formulary, load_profile

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "infusion-charges"
CRD_KINDS = {"ServiceMonitor", "ScaledObject"}  # no schema in kubernetes-validate: checked by hand below
BASE = {"image": {"repository": "registry.test/billing/infusion-charges"}}  # the one required value

SASL = {"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"enabled": True, "username": "svc", "passwordSecret": {"name": "kafka-cred"}},
                  "tls": {"enabled": True, "secretName": "kafka-ca"}}}
# Each credential from its own Secret, under its own key (as e.g. Strimzi lays them out)
SPLIT = {"kafka": {"securityProtocol": "SASL_SSL",
                   "sasl": {"enabled": True, "usernameSecret": {"name": "kafka-user", "key": "user"},
                            "passwordSecret": {"name": "kafka-user", "key": "user.password"}},
                   "tls": {"enabled": True, "caSecret": {"name": "cluster-ca-cert", "key": "ca.crt"}, "mutual": True,
                           "certSecret": {"name": "client-cert", "key": "user.crt"},
                           "keySecret": {"name": "client-key", "key": "user.key"},
                           "keyPasswordSecret": {"name": "client-key", "key": "key.password"}}},
         "keda": {"enabled": True, "authenticationRef": "kafka-auth"}}
COMBINATIONS = {
    "defaults": {},
    "sasl-tls": SASL,
    "mtls": {"kafka": {"securityProtocol": "SSL", "tls": {"enabled": True, "secretName": "kafka-mtls", "mutual": True}}},
    "autoscaling": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}},
    "keda": {"keda": {"enabled": True, "authenticationRef": "kafka-auth"}},
    "metrics-off": {"metrics": {"enabled": False}},
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "persistent": {"state": {"persistence": {"enabled": True, "storageClass": "fast-ssd"}}, "autoscaling": {"enabled": True}},
    "split-secrets": SPLIT,
    "sasl-plaintext": {"kafka": {"securityProtocol": "SASL_PLAINTEXT", "sasl": {"enabled": True, "mechanism": "PLAIN", "username": "svc",
                                                                            "passwordSecret": {"name": "kafka-cred"}}}},
    "formulary-inline": {"worker": {"formulary": {"content": {"version": "site-1", "drugs": []}}}},
    "formulary-configmap": {"worker": {"formulary": {"existingConfigMap": {"name": "site-formulary"}}}},
    "extras": {"extraEnv": [{"name": "INFUSION_CHARGES_HOLD_GRACE_MS", "value": "250"}, {"name": "TZ", "value": "UTC"}],
               "extraVolumes": [{"name": "site-ca", "configMap": {"name": "site-ca"}}],
               "extraVolumeMounts": [{"name": "site-ca", "mountPath": "/etc/site-ca", "readOnly": True}],
               "topics": {"create": False}, "worker": {"logLevel": "DEBUG", "kafkaLogLevel": "INFO"}},
}


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def refused(chart, values) -> str:
    """The message of the render that ``values`` (with the required image) must fail."""
    with pytest.raises(HelmError) as e:
        chart.render(merged(BASE, values), name="ic", namespace="billing")
    return str(e.value)


def schema_refused(chart, values) -> str:
    """The message of values.schema.json refusing ``values`` (before any template runs)."""
    with pytest.raises(HelmValuesError) as e:
        chart.render(merged(BASE, values), name="ic", namespace="billing")
    return str(e.value)


def workload(docs: dict[str, list[dict]]) -> dict:
    """The worker's Deployment, or its StatefulSet when the state store is persistent."""
    (found,) = docs.get("Deployment", []) + docs.get("StatefulSet", [])
    return found


@pytest.fixture(scope="module")
def chart():
    return Chart.load(CHART)


def render(chart, values) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for path, text in chart.render(merged(BASE, values), name="ic", namespace="billing").items():
        if path.endswith(".txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.setdefault(doc["kind"], []).append(doc)
    return out


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_strict_lint_is_clean(values):
    result = lint(CHART, merged(BASE, values), strict=True)
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] >= 2] == []  # no warnings or errors (info only)


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_every_manifest_is_valid_kubernetes(chart, values):
    for kind, docs in render(chart, values).items():
        for doc in docs:
            if kind in CRD_KINDS:
                assert doc["apiVersion"] and doc["spec"]
                continue
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_hardening(chart, values):
    docs = render(chart, values)
    deploy = workload(docs)
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] >= 30
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    metrics_on = values.get("metrics", {}).get("enabled", True)
    assert ("livenessProbe" in container) is metrics_on and ("readinessProbe" in container) is metrics_on
    if metrics_on:
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ("Service" in docs) is metrics_on
    assert "PodDisruptionBudget" in docs and "NetworkPolicy" in docs and "ServiceAccount" in docs
    assert ("HorizontalPodAutoscaler" in docs) is bool(values.get("autoscaling", {}).get("enabled"))
    assert ("ScaledObject" in docs) is bool(values.get("keda", {}).get("enabled"))
    assert ("ServiceMonitor" in docs) is bool(values.get("metrics", {}).get("serviceMonitor", {}).get("enabled"))
    scaled = "HorizontalPodAutoscaler" in docs or "ScaledObject" in docs
    assert ("replicas" in deploy["spec"]) is not scaled  # the autoscaler owns the replica count


def test_credentials_come_from_existing_secrets_never_from_values(chart):
    docs = render(chart, SASL)
    (container,) = workload(docs)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    password = env["INFUSION_CHARGES_SECURITY__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": "kafka-cred", "key": "password"}
    assert "value" not in env["INFUSION_CHARGES_SECURITY__SASL_PASSWORD"]
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    (ca,) = volumes["kafka-tls"]["projected"]["sources"]
    assert ca["secret"] == {"name": "kafka-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert "password" not in docs["ConfigMap"][0]["data"]["worker.yaml"]


def test_the_log_id_key_comes_from_an_existing_secret(chart):
    docs = render(chart, {"worker": {"logIdKeySecret": {"name": "ops-keys"}}})
    (container,) = workload(docs)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["INFUSION_CHARGES_LOG_ID_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "ops-keys", "key": "log-id-key"}
    (container,) = workload(render(chart, {}))["spec"]["template"]["spec"]["containers"]
    assert "INFUSION_CHARGES_LOG_ID_KEY" not in {e["name"] for e in container["env"]}


def test_rendered_config_is_accepted_by_the_worker(chart, tmp_path, monkeypatch):
    docs = render(chart, {**SASL, "worker": {"delivery": "exactly-once", "profile": {"distinct_service_modifier": "XU"}}})
    data = docs["ConfigMap"][0]["data"]
    (tmp_path / "worker.yaml").write_text(data["worker.yaml"])
    (tmp_path / "profile.yaml").write_text(data["profile.yaml"])
    monkeypatch.setenv("INFUSION_CHARGES_SECURITY__SASL_PASSWORD", "from-the-secret")  # as the Deployment injects it
    settings = Settings.load(tmp_path / "worker.yaml")
    assert settings.security.protocol == "SASL_SSL" and settings.security.sasl_password.get_secret_value() == "from-the-secret"
    assert settings.delivery == "exactly-once" and settings.metrics_port == 9464
    assert load_profile(tmp_path / "profile.yaml").distinct_service_modifier == "XU"


@pytest.mark.parametrize(
    "values",
    [{"worker": {"delivery": "maybe"}}, {"replicaCount": 0}, {"unknownKey": 1}, {"kafka": {"sasl": {"enabled": True}}},
     {"kafka": {"tls": {"enabled": True}}}, {"terminationGracePeriodSeconds": 30, "worker": {"shutdownTimeoutS": 30}},
     {"state": {"mountPath": "relative"}}],
    ids=["bad-delivery", "zero-replicas", "unknown-key", "sasl-without-secret", "tls-without-secret", "grace-not-above-shutdown",
         "relative-state-path"],
)
def test_bad_values_are_refused(chart, values):
    refused(chart, values)


@pytest.mark.parametrize("persistent", [False, True])
def test_the_state_store_has_a_volume_where_the_worker_keeps_it(chart, tmp_path, persistent):
    docs = render(chart, {"state": {"persistence": {"enabled": persistent, "size": "20Gi"}}})
    pod = workload(docs)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "state")
    (tmp_path / "worker.yaml").write_text(docs["ConfigMap"][0]["data"]["worker.yaml"])
    settings = Settings.load(tmp_path / "worker.yaml")
    assert str(settings.state_dir) == mount["mountPath"] and not mount.get("readOnly")
    assert settings.shutdown_timeout_s < pod["terminationGracePeriodSeconds"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    if persistent:
        assert workload(docs)["kind"] == "StatefulSet" and "state" not in volumes
        (claim,) = workload(docs)["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "state" and claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    else:
        assert workload(docs)["kind"] == "Deployment" and volumes["state"]["emptyDir"]["sizeLimit"]


def test_autoscalers_target_the_workload_kind_rendered(chart):
    for persistent in (False, True):
        for scaler, values in (("HorizontalPodAutoscaler", {"autoscaling": {"enabled": True}}),
                               ("ScaledObject", {"keda": {"enabled": True}})):
            docs = render(chart, {**values, "state": {"persistence": {"enabled": persistent}}})
            assert docs[scaler][0]["spec"]["scaleTargetRef"]["kind"] == workload(docs)["kind"]


def test_dockerfile_final_stage_is_slim_unprivileged_and_without_build_tools():
    text = (CHART.parent.parent.parent / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]
    assert final.split()[1].endswith("-slim") and " AS " not in final.splitlines()[1]
    user = next(line.split()[1] for line in final.splitlines() if line.startswith("USER "))
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) >= 10000  # numeric: runAsNonRoot can verify it
    assert not any(tool in final for tool in ("gcc", "build-essential", "apt-get install", "git "))
    assert "PYTHONDONTWRITEBYTECODE=1" in final  # the root filesystem is read-only


def test_every_value_is_documented_in_the_chart_readme():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()

    def leaves(d, prefix=""):
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and v and key != "worker.topics":
                yield from leaves(v, key + ".")
            else:
                yield key

    assert [k for k in leaves(values) if f"| `{k}` |" not in readme] == []


# -- values that contradict each other -------------------------------------------------------

TLS_CA = {"enabled": True, "secretName": "kafka-ca"}
SASL_OK = {"enabled": True, "username": "svc", "passwordSecret": {"name": "kafka-cred"}}


@pytest.mark.parametrize("values, where", [
    ({"kafka": {"securityProtocol": "SASL_SSL", "tls": TLS_CA, "sasl": {"username": "svc", "passwordSecret": {"name": "c"}}}},
     "/kafka/sasl/enabled"),
    ({"kafka": {"securityProtocol": "SASL_PLAINTEXT", "sasl": {"enabled": True, "username": "svc"}}}, "/kafka/sasl/passwordSecret/name"),
    ({"kafka": {"securityProtocol": "SASL_SSL", "tls": TLS_CA, "sasl": {"enabled": True, "passwordSecret": {"name": "c"}}}},
     "/kafka/sasl/usernameSecret"),
    ({"kafka": {"securityProtocol": "SASL_SSL", "tls": TLS_CA,
                "sasl": {**SASL_OK, "usernameSecret": {"name": "kafka-user"}}}}, "/kafka/sasl/usernameSecret/name"),
    ({"kafka": {"securityProtocol": "SSL", "tls": TLS_CA, "sasl": SASL_OK}}, "/kafka/securityProtocol"),
    ({"kafka": {"securityProtocol": "PLAINTEXT", "sasl": SASL_OK}}, "/kafka/securityProtocol"),
    ({"kafka": {"securityProtocol": "SSL"}}, "/kafka/tls/enabled"),
    ({"kafka": {"securityProtocol": "SASL_SSL", "sasl": SASL_OK}}, "/kafka/tls/enabled"),
    ({"kafka": {"securityProtocol": "PLAINTEXT", "tls": TLS_CA}}, "/kafka/securityProtocol"),
    ({"kafka": {"securityProtocol": "SASL_PLAINTEXT", "sasl": SASL_OK, "tls": TLS_CA}}, "/kafka/securityProtocol"),
    ({"kafka": {"securityProtocol": "SSL", "tls": {"enabled": True}}}, "/kafka/tls/caSecret"),
    ({"kafka": {"securityProtocol": "SSL", "tls": {"enabled": True, "caSecret": {"name": "ca"}, "mutual": True}}},
     "/kafka/tls/certSecret"),
    ({"kafka": {"securityProtocol": "SSL", "tls": {"enabled": True, "caSecret": {"name": "ca"}, "mutual": True,
                                                   "certSecret": {"name": "c"}}}}, "/kafka/tls/keySecret"),
    ({"kafka": {"tls": {"mutual": True, "secretName": "kafka-mtls"}}}, "/kafka/tls/enabled"),
    ({"kafka": {"securityProtocol": "SSL", "tls": {**TLS_CA, "keyPasswordSecret": {"name": "k"}}}}, "/kafka/tls/mutual"),
    ({**SASL, "keda": {"enabled": True}}, "/keda/authenticationRef"),
], ids=["sasl-protocol-sasl-off", "sasl-no-password-secret", "sasl-no-username", "two-usernames", "sasl-on-ssl",
        "sasl-on-plaintext", "ssl-tls-off", "sasl-ssl-tls-off", "plaintext-with-tls", "sasl-plaintext-with-tls", "tls-no-ca",
        "mtls-no-cert", "mtls-no-key", "mtls-without-tls", "key-password-without-mtls", "keda-secured-no-auth"])
def test_contradictory_security_values_are_refused_by_the_schema(chart, values, where):
    message = schema_refused(chart, values)
    assert f"at '{where}" in message, message


def test_the_schema_is_valid_draft_7_and_agrees_with_the_settings_enums():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    settings = helm_schema.model_schema(Settings)["properties"]
    security = settings["security"]["properties"]
    props = schema["properties"]
    worker, kafka = props["worker"]["properties"], props["kafka"]["properties"]
    mechanisms = next(s["enum"] for s in security["sasl_mechanism"]["anyOf"] if "enum" in s)
    assert worker["delivery"]["enum"] == settings["delivery"]["enum"]
    assert worker["logLevel"]["enum"] == settings["log_level"]["enum"]
    assert worker["kafkaLogLevel"]["enum"] == settings["kafka_log_level"]["enum"]
    assert kafka["securityProtocol"]["enum"] == security["protocol"]["enum"]
    assert kafka["sasl"]["properties"]["mechanism"]["enum"] == mechanisms


# -- the profile and the formulary, checked against the worker's models ----------------------

def test_the_committed_schema_is_generated_from_the_worker_models():
    path = CHART / "values.schema.json"
    committed = json.loads(path.read_text())
    assert helm_schema.updated(committed) == committed, "stale: run python -m connectors.helm_schema"
    assert helm_schema.render(committed) == path.read_text()
    assert helm_schema.main(["--check"]) == 0
    assert "$ref" not in path.read_text()  # each generated part stands alone where Helm reads it


def test_a_change_to_the_profile_model_makes_the_committed_schema_stale(monkeypatch):
    from coding_core.profile import Profile
    grown = create_model("Profile", __base__=Profile, new_setting=(bool, False))
    monkeypatch.setitem(helm_schema.GENERATED, ("properties", "worker", "properties", "profile"),
                        lambda: helm_schema.model_schema(grown))
    committed = json.loads((CHART / "values.schema.json").read_text())
    assert helm_schema.updated(committed) != committed


@pytest.mark.parametrize("profile, where", [
    ({"jw_jz_policy": True}, "/worker/profile"),  # unknown key
    ({"distinct_service_modifier": "XX"}, "/worker/profile/distinct_service_modifier"),
    ({"setting": "hospital"}, "/worker/profile/setting"),
    ({"transfusion_window_minutes": "an hour"}, "/worker/profile/transfusion_window_minutes"),
    ({"formulary_overrides": [{"hcpcs": "J9312", "billing_units": "10"}]}, "/worker/profile/formulary_overrides/0"),
    ({"formulary_overrides": [{"name": "no code"}]}, "/worker/profile/formulary_overrides/0"),
], ids=["unknown-key", "bad-modifier", "bad-setting", "bad-type", "override-typo", "override-without-hcpcs"])
def test_a_profile_the_worker_would_refuse_is_refused_at_render_time(chart, profile, where):
    message = schema_refused(chart, {"worker": {"profile": profile}})
    assert f"at '{where}" in message, message


def test_a_full_profile_renders_and_the_worker_reads_it(chart, tmp_path):
    profile = {"name": "site-340b", "setting": "professional", "distinct_service_modifier": "XS", "jw_jz": False,
               "timezone": "America/New_York", "kvo_max_rate_ml_per_h": 25, "derive_stop_time": False,
               "transfusion_window_minutes": 45, "route_drug_modifiers": {"iv": "JA"}, "drug_line_modifiers": ["TB"],
               "formulary_overrides": [{"hcpcs": "J9312", "billing_unit_value": "10", "billing_unit": "mg", "ndc": ["50242-051-21"]}]}
    docs = render(chart, {"worker": {"profile": profile}})
    (tmp_path / "profile.yaml").write_text(worker_config(docs)["profile.yaml"])
    loaded = load_profile(tmp_path / "profile.yaml")
    assert (loaded.name, loaded.distinct_service_modifier, loaded.drug_line_modifiers) == ("site-340b", "XS", ("TB",))
    assert str(loaded.kvo_max_rate_ml_per_h) == "25" and loaded.formulary_overrides[0].ndc == ("50242-051-21",)


def test_a_profile_time_zone_other_than_the_worker_s_is_refused(chart):
    message = refused(chart, {"worker": {"timezone": "America/Chicago", "profile": {"timezone": "America/New_York"}}})
    assert "the site has one time zone" in message
    render(chart, {"worker": {"timezone": "America/Chicago", "profile": {"timezone": "America/Chicago"}}})


# -- credentials: each from its Secret, where the worker's settings look -----------------------

def _pod(docs):
    pod = workload(docs)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container, {e["name"]: e for e in container["env"]}


def worker_config(docs) -> dict[str, str]:
    """The data of the chart's own ConfigMap (worker.yaml, profile.yaml)."""
    (found,) = [c["data"] for c in docs["ConfigMap"] if c["metadata"]["name"] == "ic-infusion-charges"]
    return found


def _settings(docs, tmp_path, monkeypatch, **env: str) -> Settings:
    (tmp_path / "worker.yaml").write_text(worker_config(docs)["worker.yaml"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.load(tmp_path / "worker.yaml")


def test_every_credential_comes_from_its_own_secret_and_key_and_the_settings_point_at_it(chart, tmp_path, monkeypatch):
    docs = render(chart, SPLIT)
    pod, container, env = _pod(docs)
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {"INFUSION_CHARGES_SECURITY__SASL_USERNAME": {"name": "kafka-user", "key": "user"},
                    "INFUSION_CHARGES_SECURITY__SASL_PASSWORD": {"name": "kafka-user", "key": "user.password"},
                    "INFUSION_CHARGES_SECURITY__SSL_KEY_PASSWORD": {"name": "client-key", "key": "key.password"}}
    assert all("value" not in env[name] for name in refs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = {item["path"]: (source["secret"]["name"], item["key"])
             for source in volumes["kafka-tls"]["projected"]["sources"] for item in source["secret"]["items"]}
    assert files == {"ca.crt": ("cluster-ca-cert", "ca.crt"), "tls.crt": ("client-cert", "user.crt"),
                     "tls.key": ("client-key", "user.key")}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "kafka-tls"]
    assert mount["readOnly"] is True
    worker_yaml = worker_config(docs)["worker.yaml"]
    assert "sasl_username" not in worker_yaml and "password" not in worker_yaml
    security = _settings(docs, tmp_path, monkeypatch, INFUSION_CHARGES_SECURITY__SASL_USERNAME="svc-from-secret",
                         INFUSION_CHARGES_SECURITY__SASL_PASSWORD="pw", INFUSION_CHARGES_SECURITY__SSL_KEY_PASSWORD="kpw").security
    root = Path(mount["mountPath"])
    assert (security.ssl_cafile, security.ssl_certfile, security.ssl_keyfile) == (root / "ca.crt", root / "tls.crt", root / "tls.key")
    assert security.sasl_username == "svc-from-secret" and security.ssl_key_password.get_secret_value() == "kpw"
    assert security.kafka_config()["security_protocol"] == "SASL_SSL"


def test_one_tls_secret_still_holds_the_ca_certificate_and_key(chart, tmp_path, monkeypatch):
    docs = render(chart, COMBINATIONS["mtls"])  # the 0.1.0 values: kafka.tls.secretName with ca.crt, tls.crt, tls.key
    pod, _, env = _pod(docs)
    sources = {v["name"]: v for v in pod["volumes"]}["kafka-tls"]["projected"]["sources"]
    assert [(s["secret"]["name"], s["secret"]["items"]) for s in sources] == [
        ("kafka-mtls", [{"key": "ca.crt", "path": "ca.crt"}]), ("kafka-mtls", [{"key": "tls.crt", "path": "tls.crt"}]),
        ("kafka-mtls", [{"key": "tls.key", "path": "tls.key"}])]
    assert "INFUSION_CHARGES_SECURITY__SSL_KEY_PASSWORD" not in env
    security = _settings(docs, tmp_path, monkeypatch).security
    assert security.ssl_certfile == Path("/etc/infusion-charges-tls/tls.crt") and security.ssl_key_password is None


# -- the formulary, log levels, extras -------------------------------------------------------

def _formulary(docs, tmp_path, monkeypatch):
    pod, container, _ = _pod(docs)
    settings = _settings(docs, tmp_path, monkeypatch)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "formulary"]
    volume = {v["name"]: v for v in pod["volumes"]}["formulary"]["configMap"]
    (item,) = volume["items"]
    assert settings.formulary == Path(mount["mountPath"]) / item["path"]
    return settings, volume, item


def test_an_inline_formulary_is_a_config_map_mounted_where_the_setting_points(chart, tmp_path, monkeypatch):
    bundled = json.loads((ROOT / "coding_core" / "data" / "formulary.json").read_text())
    bundled["version"] = "site-2027.1"
    docs = render(chart, {"worker": {"formulary": {"content": bundled}}})
    settings, volume, item = _formulary(docs, tmp_path, monkeypatch)
    (own,) = [c for c in docs["ConfigMap"] if c["metadata"]["name"] == volume["name"]]
    assert volume["name"] == "ic-infusion-charges-formulary" and item["key"] == "formulary.json"
    (tmp_path / item["path"]).write_text(own["data"][item["key"]])
    loaded, reference = load_formulary(tmp_path / item["path"]), load_formulary()
    assert loaded.version == "site-2027.1" and loaded.entries == reference.entries
    assert "checksum/formulary" in workload(docs)["spec"]["template"]["metadata"]["annotations"]


@pytest.mark.parametrize("text, key", [('{"version": "1", "drugs": []}', "formulary.json"),
                                       ("version: '1'\ndrugs: []\n", "formulary.yaml")])
def test_an_inline_formulary_text_keeps_its_format(chart, tmp_path, monkeypatch, text, key):
    docs = render(chart, {"worker": {"formulary": {"content": text}}})
    _, volume, item = _formulary(docs, tmp_path, monkeypatch)
    (own,) = [c for c in docs["ConfigMap"] if c["metadata"]["name"] == volume["name"]]
    assert item["key"] == key
    (tmp_path / key).write_text(own["data"][key])
    assert load_formulary(tmp_path / key).version == "1"


def test_an_existing_formulary_config_map_is_mounted_and_none_is_rendered(chart, tmp_path, monkeypatch):
    docs = render(chart, {"worker": {"formulary": {"existingConfigMap": {"name": "site-formulary", "key": "site.yaml"}}}})
    _, volume, item = _formulary(docs, tmp_path, monkeypatch)
    assert (volume["name"], item["key"], item["path"]) == ("site-formulary", "site.yaml", "site.yaml")
    assert len(docs["ConfigMap"]) == 1
    settings = _settings(render(chart, {}), tmp_path, monkeypatch)
    assert settings.formulary is None  # the bundled formulary
    assert "formulary" not in {v["name"] for v in _pod(render(chart, {}))[0]["volumes"]}


@pytest.mark.parametrize("formulary, where", [
    ({"content": "{}", "existingConfigMap": {"name": "site-formulary"}}, "/worker/formulary/content"),
    ({"content": {"drugs": []}}, "/worker/formulary/content"),
    ({"content": {"version": "1", "drugs": [{"hcpcs": "J9312", "name": "rituximab", "drug_class": "chemo"}]}},
     "/worker/formulary/content"),
    ({"content": {"version": "1", "drugs": [{"hcpcs": "J9312", "name": "rituximab", "drug_class": "antibody",
                                              "billing_unit_value": "10", "billing_unit": "mg"}]}}, "/worker/formulary/content"),
    ({"existingConfigMap": {"name": "f", "key": "a/b.json"}}, "/worker/formulary/existingConfigMap/key"),
    ({"existingConfigMap": {"name": "f", "key": "..data"}}, "/worker/formulary/existingConfigMap/key"),  # Kubernetes' own
], ids=["both", "no-version", "entry-incomplete", "bad-drug-class", "bad-key", "reserved-key"])
def test_a_formulary_the_worker_would_refuse_is_refused_at_render_time(chart, formulary, where):
    message = schema_refused(chart, {"worker": {"formulary": formulary}})
    assert f"at '{where}" in message, message


def test_log_levels_extra_env_and_volumes_are_rendered(chart, tmp_path, monkeypatch):
    docs = render(chart, COMBINATIONS["extras"])
    pod, container, env = _pod(docs)
    settings = _settings(docs, tmp_path, monkeypatch)
    assert (settings.log_level, settings.kafka_log_level, settings.create_topics) == ("DEBUG", "INFO", False)
    assert env["INFUSION_CHARGES_HOLD_GRACE_MS"] == {"name": "INFUSION_CHARGES_HOLD_GRACE_MS", "value": "250"}
    assert env["TZ"]["value"] == "UTC" and "INFUSION_CHARGES_CLIENT_ID" in env
    assert {"name": "site-ca", "configMap": {"name": "site-ca"}} in pod["volumes"]
    assert {"name": "site-ca", "mountPath": "/etc/site-ca", "readOnly": True} in container["volumeMounts"]
    defaults = _settings(render(chart, {}), tmp_path, monkeypatch)
    assert (defaults.log_level, defaults.kafka_log_level, defaults.create_topics) == ("INFO", "WARNING", True)


@pytest.mark.parametrize("values, where", [
    ({"worker": {"kafkaLogLevel": "DEBUG"}}, "/worker/kafkaLogLevel"),  # kafka-python's DEBUG carries PHI and the SASL token
    ({"worker": {"logLevel": "TRACE"}}, "/worker/logLevel"),
    ({"extraEnv": [{"value": "no name"}]}, "/extraEnv/0"),
    ({"extraVolumeMounts": [{"name": "x", "mountPath": "relative"}]}, "/extraVolumeMounts/0/mountPath"),
    ({"topics": {"create": "no"}}, "/topics/create"),
], ids=["kafka-debug", "bad-level", "env-without-name", "relative-mount", "create-not-bool"])
def test_bad_extras_and_levels_are_refused_by_the_schema(chart, values, where):
    message = schema_refused(chart, values)
    assert f"at '{where}" in message, message


def test_extra_env_cannot_override_what_the_chart_sets_or_renders(chart):
    everything = render(chart, merged(SASL, {"worker": {"formulary": {"content": "{}"}}}))
    worker_yaml = yaml.safe_load(worker_config(everything)["worker.yaml"])
    names = [f"INFUSION_CHARGES_{key.upper()}" for key in worker_yaml]
    names += ["INFUSION_CHARGES_TOPICS__CHARGES", "INFUSION_CHARGES_SECURITY__SASL_PASSWORD", "INFUSION_CHARGES_CLIENT_ID",
              "INFUSION_CHARGES_LOG_ID_KEY", "PYTHONDONTWRITEBYTECODE"]
    for name in names:
        assert "extraEnv" in refused(chart, {"extraEnv": [{"name": name, "value": "x"}]}), name
    assert "extraVolumes" in refused(chart, {"extraVolumes": [{"name": "state", "emptyDir": {}}]})


# -- topics: creation, KEDA triggers, the chart's names equal the worker's ---------------------

def test_the_chart_names_the_topics_the_worker_defaults_to(chart, tmp_path, monkeypatch):
    docs = render(chart, {})
    assert yaml.safe_load(worker_config(docs)["worker.yaml"])["topics"] == Topics().model_dump()
    settings = _settings(render(chart, {"worker": {"topics": {"hl7_ras": "site.ras"}}}), tmp_path, monkeypatch)
    assert settings.topics == Topics(hl7_ras="site.ras")


@pytest.mark.parametrize("overrides", [{}, {"hl7_ras": "site.ras", "events": "site.events", "fhir_encounters": "site.enc"}])
def test_keda_has_one_trigger_per_topic_the_group_reads(chart, overrides):
    docs = render(chart, {"keda": {"enabled": True}, "worker": {"topics": overrides, "groupId": "charges-a"}})
    triggers = docs["ScaledObject"][0]["spec"]["triggers"]
    topics = Topics(**overrides)
    assert [t["metadata"]["topic"] for t in triggers] == [*topics.inputs(), topics.events]  # what the worker subscribes to
    assert {t["type"] for t in triggers} == {"kafka"} and {t["metadata"]["consumerGroup"] for t in triggers} == {"charges-a"}
    assert len({t["name"] for t in triggers}) == len(triggers)


def test_topic_creation_can_be_left_to_the_operators(chart, tmp_path, monkeypatch):
    values = merged(BASE, {"topics": {"create": False}})
    notes = chart.render(values, name="ic", namespace="billing")["infusion-charges/templates/NOTES.txt"]
    assert all(name in notes for name in Topics().model_dump().values())
    readme = (CHART / "README.md").read_text()
    section = readme[readme.index("## Topics and ACLs"):readme.index("## Profile, formulary")]
    for key, name in Topics().model_dump().items():
        assert f"| `{key}` | `{name}` |" in section
    for acl in ("DescribeConfigs", "IdempotentWrite", "TransactionalId", "prefix `<groupId>-`", "Group | `<groupId>` | Read",
                "Create | only with `topics.create: true`"):
        assert acl in section, acl


# -- the image ---------------------------------------------------------------------------------

def test_the_image_repository_is_required_and_the_tag_defaults_to_the_app_version(chart):
    with pytest.raises(HelmError, match="image.repository is required"):
        chart.render({}, name="ic", namespace="billing")
    (container,) = workload(render(chart, {}))["spec"]["template"]["spec"]["containers"]
    app_version = chart.metadata["appVersion"]
    assert container["image"] == f"registry.test/billing/infusion-charges:{app_version}"
    assert app_version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (container,) = workload(render(chart, {"image": {"tag": "0.1.0-fix1"}}))["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(":0.1.0-fix1")


def test_the_chart_readme_says_how_to_build_and_push_the_image(chart):
    readme = (CHART / "README.md").read_text()
    section = readme[readme.index("## Building the image"):readme.index("## Kafka security")]
    lines = [line.split("#")[0].strip() for line in section[section.index("```sh"):].splitlines()]
    assert "docker build -t $REGISTRY/infusion-charges:$VERSION ." in lines  # the repository's Dockerfile, context: its root
    assert "docker push $REGISTRY/infusion-charges:$VERSION" in lines
    assert any(line.startswith("helm install") and "image.repository=$REGISTRY/infusion-charges" in line for line in lines)
    version_line = next(line for line in lines if line.startswith("VERSION="))
    out = subprocess.run(["sh", "-c", f"{version_line}; printf %s \"$VERSION\""], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout == chart.metadata["appVersion"]  # the tag the chart pulls by default
    assert (ROOT / "Dockerfile").is_file() and "Dockerfile" in section
