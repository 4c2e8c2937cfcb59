"""deploy/: every manifest parses and validates (core kinds, CRDs), and the overlays render as operators need."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cot_transfer.serving.common.serving_config import PROXY_MAX_MESSAGE_ENV, ServingConfig

from .conftest import DEPLOY, REPO, Manifest, crd_schemas, kustomize, load_documents, of_kind, only

# Core kinds are validated against these Kubernetes versions' schemas (an old floor and the newest known).
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CRD_KINDS = {"RayService", "PodMonitor", "ServiceMonitor", "PrometheusRule"}
# Files under deploy/ that are kustomize patches or tool inputs, not whole resources.
NOT_RESOURCES = {
    "kustomization.yaml",
    "serve-config.yaml",
    "gpu-workers.yaml",
    "testbed-models.yaml",
    "alerts.yaml",
    "alerts_test.yaml",
}


def _yaml_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml"))


def _resource_files() -> list[Path]:
    return [path for path in _yaml_files() if path.name not in NOT_RESOURCES]


def validate(manifest: Manifest) -> None:
    """Core kinds with kubernetes-validate (strict: unknown fields fail), CRD kinds with the CRD's schema."""
    kind = manifest["kind"]
    if kind in CRD_KINDS:
        schema = crd_schemas().get((manifest["apiVersion"], kind))
        assert schema is not None, f"no CRD schema for {manifest['apiVersion']} {kind}"
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(manifest), key=lambda error: list(error.path))
        assert not errors, f"{kind} {manifest['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, error.path))}: {error.message}" for error in errors
        )
    else:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)
    metadata = manifest["metadata"]
    assert metadata.get("name"), f"{kind} without a name"
    for key, value in {**metadata.get("labels", {}), **metadata.get("annotations", {})}.items():
        assert isinstance(value, str), f"{kind} {metadata['name']}: label/annotation {key} is not a string"


def test_every_yaml_file_parses() -> None:
    files = _yaml_files()
    assert len(files) >= 15
    for path in files:
        documents = load_documents(path)
        assert documents, f"{path} is empty"
        assert all(isinstance(document, (dict, list)) for document in documents), path


def test_dashboard_json_parses() -> None:
    import json

    assert json.loads((DEPLOY / "monitoring" / "dashboard.json").read_text())["panels"]


@pytest.mark.parametrize("path", _resource_files(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_resource_files_validate(path: Path) -> None:
    for manifest in load_documents(path):
        if manifest["kind"] in CRD_KINDS:
            crd_schemas()  # skips, saying why, where the CRD schemas are absent
        validate(manifest)


def test_crd_validation_rejects_unknown_and_mistyped_fields() -> None:
    service = load_documents(DEPLOY / "base" / "rayservice.yaml")[0]
    typo: dict[str, Any] = yaml.safe_load(yaml.safe_dump(service))
    typo["spec"]["rayClusterConfig"]["enableInTreeAutoscalling"] = True
    with pytest.raises(AssertionError, match="enableInTreeAutoscalling"):
        validate(typo)
    wrong_type: dict[str, Any] = yaml.safe_load(yaml.safe_dump(service))
    wrong_type["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "twelve"
    with pytest.raises(AssertionError, match="maxReplicas"):
        validate(wrong_type)


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_rendered_overlays_validate(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    manifests = rendered[overlay]
    kinds = {manifest["kind"] for manifest in manifests}
    assert {"Namespace", "RayService", "Service", "PodMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap"} <= kinds
    # Core kinds first: without the CRD schemas the test skips at the first custom resource.
    for manifest in sorted(manifests, key=lambda manifest: manifest["kind"] in CRD_KINDS):
        validate(manifest)
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == "cot-transfer"


def _rayservice(manifests: list[Manifest]) -> Manifest:
    return only(manifests, "RayService", "cot-transfer")


def _serving_config(service: Manifest) -> ServingConfig:
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    (application,) = serve["applications"]
    assert application["import_path"] == "cot_transfer.serving.wiring.deployments:build_app"
    return ServingConfig.model_validate(application["args"]["config"])


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_serve_config_round_trips_to_the_serving_config(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    expected = ServingConfig.from_yaml(REPO / "configs" / f"k8s-{overlay}.yaml")
    assert _serving_config(_rayservice(rendered[overlay])) == expected


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_every_deployment_of_the_overlays_sheds_past_a_bounded_queue(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    config = _serving_config(_rayservice(rendered[overlay]))
    assert config.ingress.serve_options()["max_queued_requests"] >= 1
    for model in (config.strong, config.weak, *config.receivers):
        assert model.serve_options()["max_queued_requests"] >= 1


def test_gpu_overlay(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["gpu"]
    cluster = _rayservice(manifests)["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["authOptions"]["mode"] == "token"
    (group,) = cluster["workerGroupSpecs"]
    container = group["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["image"].endswith(":0.1.0-gpu")
    # Room for every replica the Serve autoscaler may start, one GPU each.
    config = ServingConfig.from_yaml(REPO / "configs" / "k8s-gpu.yaml")
    assert config.strong.resources.num_gpus == config.weak.resources.num_gpus == 1
    assert group["minReplicas"] >= config.strong.autoscaling.min_replicas + config.weak.autoscaling.min_replicas
    assert group["maxReplicas"] >= config.strong.autoscaling.max_replicas + config.weak.autoscaling.max_replicas
    cpus = int(container["resources"]["limits"]["cpu"])
    assert cpus >= config.strong.resources.num_cpus and cpus >= config.weak.resources.num_cpus
    # The model volume: a claim, mounted read-only at /models.
    (volume,) = [v for v in group["template"]["spec"]["volumes"] if v["name"] == "models"]
    claim = only(manifests, "PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    # No models on the head: it starts no replicas.
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_cpu_overlay_takes_the_models_from_the_image(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["cpu"]
    assert not of_kind(manifests, "PersistentVolumeClaim")
    cluster = _rayservice(manifests)["spec"]["rayClusterConfig"]
    (group,) = cluster["workerGroupSpecs"]
    spec = group["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "models"]
    assert "emptyDir" in volume
    (init,) = spec["initContainers"]
    assert init["image"] == spec["containers"][0]["image"]
    assert "/models" in init["command"][-1]
    assert {"name": "models", "mountPath": "/models"} in init["volumeMounts"]
    for container in (spec["containers"][0], cluster["headGroupSpec"]["template"]["spec"]["containers"][0]):
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
        assert container["image"].endswith(":0.1.0-cpu")
    assert cluster["authOptions"]["mode"] == "token"
    # The model paths of the config are where the init container copies the testbed models.
    config = ServingConfig.from_yaml(REPO / "configs" / "k8s-cpu.yaml")
    assert {config.strong.engine.model, config.weak.engine.model} == {"/models/strong", "/models/weak"}
    assert config.strong.resources.num_gpus == config.weak.resources.num_gpus == 0


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_ports_agree_with_the_serving_config(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    manifests = rendered[overlay]
    config = ServingConfig.from_yaml(REPO / "configs" / f"k8s-{overlay}.yaml")
    service = only(manifests, "Service", "cot-transfer-grpc")
    (port,) = service["spec"]["ports"]
    assert port["port"] == config.grpc_port and port["targetPort"] == "grpc"
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "cot-transfer", "ray.io/serve": "true"}
    cluster = _rayservice(manifests)["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"], *(group["template"] for group in cluster["workerGroupSpecs"])]
    for pod in pods:
        name = pod["metadata"]["labels"]["app.kubernetes.io/name"]
        assert service["spec"]["selector"]["app.kubernetes.io/name"] == name
        ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
        assert ports["grpc"] == config.grpc_port
        assert ports["serve"] == config.http_port
        assert ports["metrics"] == config.metrics_port == 8080  # KubeRay's --metrics-export-port
    serve = yaml.safe_load(_rayservice(manifests)["spec"]["serveConfigV2"])
    assert serve["grpc_options"]["port"] == config.grpc_port
    assert serve["http_options"] == {"host": "0.0.0.0", "port": config.http_port}


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_every_proxy_takes_the_configured_message_size_limit(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    config = ServingConfig.from_yaml(REPO / "configs" / f"k8s-{overlay}.yaml")
    cluster = _rayservice(rendered[overlay])["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"], *(group["template"] for group in cluster["workerGroupSpecs"])]
    for pod in pods:
        env = {item["name"]: item.get("value") for item in pod["spec"]["containers"][0]["env"]}
        assert env[PROXY_MAX_MESSAGE_ENV] == str(config.limits.max_message_bytes)


def test_podmonitors_scrape_head_and_workers(rendered: dict[str, list[Manifest]]) -> None:
    monitors = of_kind(rendered["gpu"], "PodMonitor")
    node_types = {monitor["spec"]["selector"]["matchLabels"]["ray.io/node-type"] for monitor in monitors}
    assert node_types == {"head", "worker"}
    for monitor in monitors:
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
        assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "cot-transfer"


def test_dashboard_configmap_and_prometheus_rule(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["gpu"]
    dashboard = only(manifests, "ConfigMap", "cot-transfer-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = dashboard["data"].values()
    assert content == (DEPLOY / "monitoring" / "dashboard.json").read_text()
    rule = only(manifests, "PrometheusRule", "cot-transfer")
    assert rule["spec"] == yaml.safe_load((DEPLOY / "monitoring" / "alerts.yaml").read_text())


def _allowed_ports(policy: Manifest) -> tuple[set[int], set[int]]:
    """Ports open to any source, and ports open only to some sources (all ports: 0)."""
    anywhere: set[int] = set()
    restricted: set[int] = set()
    for rule in policy["spec"]["ingress"]:
        ports = {port["port"] for port in rule.get("ports", [])} or {0}
        (restricted if rule.get("from") else anywhere).update(ports)
    return anywhere, restricted


# The namespace kube-prometheus-stack is installed in (deploy/README.md, step 1).
MONITORING_NAMESPACE = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
SAME_NAMESPACE: Manifest = {"podSelector": {}}


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_network_policy_keeps_the_control_plane_inside_the_namespace(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    policy = only(rendered[overlay], "NetworkPolicy", "cot-transfer-ray")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "cot-transfer"}
    anywhere, _ = _allowed_ports(policy)
    assert anywhere == {9000}  # the API only: its calls carry the bearer token
    for rule in policy["spec"]["ingress"]:
        for peer in rule.get("from", []):
            ports = {port["port"] for port in rule.get("ports", [])}
            if peer == MONITORING_NAMESPACE:
                assert ports == {8000, 8080}
            elif "namespaceSelector" in peer:
                # Other namespaces: only the KubeRay operator, only to the (token-guarded) dashboard API.
                assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "kuberay-operator"}
                assert ports == {8265}
            else:
                assert peer == SAME_NAMESPACE  # this namespace's pods: Ray's own traffic, every port


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
@pytest.mark.parametrize("port", [8000, 8080])
def test_metrics_ports_open_only_to_the_monitoring_namespace(
    rendered: dict[str, list[Manifest]], overlay: str, port: int
) -> None:
    """Serve HTTP (the service's /metrics) and Ray's metrics export name experiments and their
    unlock rates without a token: Prometheus's namespace may scrape them, no one else outside."""
    policy = only(rendered[overlay], "NetworkPolicy", "cot-transfer-ray")
    peers = []
    for rule in policy["spec"]["ingress"]:
        ports = {item["port"] for item in rule.get("ports", [])}
        if not ports or port in ports:
            assert rule.get("from"), f"port {port} is open to every source: {rule}"
            peers += rule["from"]
    assert MONITORING_NAMESPACE in peers
    assert all(peer in (SAME_NAMESPACE, MONITORING_NAMESPACE) for peer in peers), peers


def test_the_documented_patch_names_another_monitoring_namespace(tmp_path: Path) -> None:
    """deploy/README.md's patch for a Prometheus outside `monitoring`, on top of an overlay."""
    readme = (DEPLOY / "README.md").read_text()
    (block,) = [
        block.split("\n", 1)[1]
        for block in readme.split("```")[1::2]
        if block.startswith("yaml") and "name: cot-transfer-ray" in block
    ]
    patches = yaml.safe_load(textwrap.dedent(block))["patches"]
    overlay = os.path.relpath(DEPLOY / "overlays" / "gpu", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [overlay], "patches": patches}))
    policy = only(kustomize(tmp_path), "NetworkPolicy", "cot-transfer-ray")
    elsewhere = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prometheus"}}}
    (metrics_rule,) = [rule for rule in policy["spec"]["ingress"] if elsewhere in rule.get("from", [])]
    assert {port["port"] for port in metrics_rule["ports"]} == {8000, 8080}
    assert metrics_rule["from"] == [elsewhere]
