"""The Helm chart: strict lint, rendering for several values combinations, Kubernetes schema
validation of every manifest, the hardening ops expects, and a config the worker accepts."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from helm_python import HelmError, lint
from helm_python.chart import Chart

from connectors.settings import Settings
from mapping.reference_data import load_profile

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "infusion-charges"
CRD_KINDS = {"ServiceMonitor", "ScaledObject"}  # no schema in kubernetes-validate: checked by hand below

SASL = {"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"enabled": True, "username": "svc", "passwordSecret": {"name": "kafka-cred"}},
                  "tls": {"enabled": True, "secretName": "kafka-ca"}}}
COMBINATIONS = {
    "defaults": {},
    "sasl-tls": SASL,
    "mtls": {"kafka": {"securityProtocol": "SSL", "tls": {"enabled": True, "secretName": "kafka-mtls", "mutual": True}}},
    "autoscaling": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}},
    "keda": {"keda": {"enabled": True, "authenticationRef": "kafka-auth"}},
    "metrics-off": {"metrics": {"enabled": False}},
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "persistent": {"state": {"persistence": {"enabled": True, "storageClass": "fast-ssd"}}, "autoscaling": {"enabled": True}},
}


def workload(docs: dict[str, list[dict]]) -> dict:
    """The worker's Deployment, or its StatefulSet when the state store is persistent."""
    (found,) = docs.get("Deployment", []) + docs.get("StatefulSet", [])
    return found


@pytest.fixture(scope="module")
def chart():
    return Chart.load(CHART)


def render(chart, values) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for path, text in chart.render(values, name="ic", namespace="billing").items():
        if path.endswith(".txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.setdefault(doc["kind"], []).append(doc)
    return out


def test_strict_lint_is_clean():
    result = lint(CHART, strict=True)
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
    assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-ca"
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
    with pytest.raises(HelmError):
        chart.render(values, name="ic", namespace="billing")


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
