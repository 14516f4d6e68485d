"""The Kubernetes manifests of deploy/k8s: the Kubernetes JSON schemas (vendored by
kubernetes-validate, strict), selectors, probes on declared ports, the kustomization."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.deploy_support import (
    K8S_DIR,
    K8S_FILES,
    K8S_VERSION,
    SETTINGS_VARIABLES,
    load_yaml_documents,
    resolve_cli,
    settings_from,
)

# -- Kubernetes -----------------------------------------------------------------------------


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in K8S_FILES
        if path.name != "kustomization.yaml"
        for doc in load_yaml_documents(path)
    ]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


@pytest.mark.parametrize(
    ("file", "doc"),
    k8s_documents(),
    ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}",
)
def test_k8s_manifest_satisfies_the_kubernetes_schema(file: str, doc: dict[str, Any]) -> None:
    assert {"apiVersion", "kind", "metadata"} <= doc.keys(), file
    assert doc["metadata"].get("name"), file
    for version in (K8S_VERSION, kubernetes_validate.latest_version()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load_yaml_documents(K8S_DIR / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {p.name for p in K8S_FILES} - {"kustomization.yaml"}
    assert set(listed) == on_disk
    (namespace,) = k8s_kind("Namespace")
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    images = {i["name"] for i in kustomization["images"]}
    for _, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert container["image"].partition(":")[0] in images


def _container_env(
    container: dict[str, Any], configmaps: dict[str, dict[str, str]], secrets: dict[str, Any]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def test_k8s_workloads(monkeypatch: pytest.MonkeyPatch) -> None:
    configmaps = {c["metadata"]["name"]: c["data"] for c in k8s_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: s["stringData"] for s in k8s_kind("Secret")}
    for data in configmaps.values():
        assert set(data) <= SETTINGS_VARIABLES, set(data) - SETTINGS_VARIABLES
    partitions = int(configmaps["tillstream-config"]["TILLSTREAM_TOPIC_PARTITIONS"])
    for workload in k8s_kind("Deployment") + k8s_kind("Job"):
        spec = workload["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        name = workload["metadata"]["name"]
        args = container["args"]
        resolve_cli(args)
        env = _container_env(container, configmaps, secrets)
        assert {k for k in env if k.startswith("TILLSTREAM_")} <= SETTINGS_VARIABLES, name
        settings_from(env, monkeypatch)
        assert container["resources"]["requests"].keys() >= {"cpu", "memory"}, name
        assert "memory" in container["resources"]["limits"], name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
    for deployment in k8s_kind("Deployment"):
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]
        template = spec["template"]
        labels = template["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        assert 1 <= spec["replicas"] <= partitions, f"{name}: replicas beyond partitions idle"
        assert template["spec"]["terminationGracePeriodSeconds"] >= 30, name
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        args = container["args"]
        assert args[0] == "consume"
        listen_port = int(args[args.index("--listen") + 1].rpartition(":")[2])
        assert listen_port in ports.values(), f"{name}: --listen port is not declared"
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name}: {probe}"
            port = ports.get(get["port"], get["port"])
            assert port == listen_port, f"{name}: {probe} on {get['port']}"
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == listen_port
        assert annotations["prometheus.io/path"] == "/metrics"
    consumers = {
        d["spec"]["template"]["spec"]["containers"][0]["args"][1] for d in k8s_kind("Deployment")
    }
    assert consumers == {"erp", "crm", "analytics", "audit", "fleet"}


def test_k8s_consumers_guard_their_read_apis_with_the_token_of_the_secret() -> None:
    """Open read APIs inside a cluster would hand the CRM's profiles to any pod."""
    for deployment in k8s_kind("Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item for item in container.get("env", [])}
        token = env.get("TILLSTREAM_CONSUMER_API_TOKEN")
        assert token is not None, deployment["metadata"]["name"]
        assert token["valueFrom"]["secretKeyRef"]["name"] == "tillstream-credentials"


def test_k8s_services_and_budgets_select_a_deployment() -> None:
    templates = [d["spec"]["template"] for d in k8s_kind("Deployment")]
    for service in k8s_kind("Service"):
        selector = service["spec"]["selector"]
        (match,) = [t for t in templates if selector.items() <= t["metadata"]["labels"].items()]
        ports = {p["name"]: p["containerPort"] for p in match["spec"]["containers"][0]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports or port["targetPort"] in ports.values()
    budgets = k8s_kind("PodDisruptionBudget")
    assert budgets
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        matches = [t for t in templates if selector.items() <= t["metadata"]["labels"].items()]
        assert len(matches) == 1, budget["metadata"]["name"]
