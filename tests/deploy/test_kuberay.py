"""The generated manifests: the Serve config rendered from a serving config, and the freshness checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from cot_transfer.serving.common.serving_config import ServingConfig
from cot_transfer.serving.wiring.deployments import GRPC_SERVICER_FUNCTIONS
from tools.kuberay import (
    IMPORT_PATH,
    load_cluster_config,
    main,
    render_file,
    render_prometheus_rule,
    render_rayservice_patch,
    render_serve_config,
)

from .conftest import DEPLOY, REPO

# Each generated file and the source it is rendered from (as `make manifests` writes them).
GENERATED = {
    "deploy/overlays/cpu/serve-config.yaml": ("config", "configs/k8s-cpu.yaml"),
    "deploy/overlays/gpu/serve-config.yaml": ("config", "configs/k8s-gpu.yaml"),
    "deploy/monitoring/prometheus-rule.yaml": ("alerts", "deploy/monitoring/alerts.yaml"),
}


@pytest.mark.parametrize("name", ["k8s-cpu.yaml", "k8s-gpu.yaml"])
def test_serve_config_is_a_valid_serve_deploy_config(name: str) -> None:
    config = load_cluster_config(REPO / "configs" / name)
    rendered = render_serve_config(config)
    schema = ServeDeploySchema.model_validate(rendered)
    assert schema.grpc_options.port == config.grpc_port
    assert schema.grpc_options.grpc_servicer_functions == GRPC_SERVICER_FUNCTIONS
    assert schema.http_options.host == "0.0.0.0"
    assert schema.http_options.port == config.http_port
    (application,) = schema.applications
    assert application.name == config.app_name
    assert application.route_prefix == config.route_prefix
    assert application.import_path == IMPORT_PATH
    assert ServingConfig.model_validate(application.args["config"]) == config


def test_serve_config_survives_the_yaml_string_round_trip() -> None:
    config = load_cluster_config(REPO / "configs" / "k8s-gpu.yaml")
    patch = yaml.safe_load(render_rayservice_patch(config, "configs/k8s-gpu.yaml"))
    assert patch["kind"] == "RayService" and patch["metadata"]["name"] == "cot-transfer"
    serve = yaml.safe_load(patch["spec"]["serveConfigV2"])
    assert serve == render_serve_config(config)
    ServeDeploySchema.model_validate(serve)


def test_gpu_config_binds_each_model_replica_to_a_gpu() -> None:
    config = load_cluster_config(REPO / "configs" / "k8s-gpu.yaml")
    for deployment in (config.strong, config.weak):
        assert deployment.resources.ray_actor_options()["num_gpus"] == 1
        assert deployment.autoscaling.max_replicas > deployment.autoscaling.min_replicas >= 1
        assert deployment.engine.model.startswith("/models/")


@pytest.mark.parametrize("generated", sorted(GENERATED))
def test_committed_generated_files_are_fresh(generated: str) -> None:
    kind, source = GENERATED[generated]
    rendered = (
        render_prometheus_rule(yaml.safe_load((REPO / source).read_text()), source)
        if kind == "alerts"
        else (render_rayservice_patch(load_cluster_config(REPO / source), source))
    )
    committed = (REPO / generated).read_text()
    assert committed == rendered, f"{generated} is stale: run `make manifests`"


def test_makefile_regenerates_every_generated_file() -> None:
    makefile = (REPO / "Makefile").read_text()
    target = makefile.split("\nmanifests:", 1)[1].split("\n\n", 1)[0]
    for generated, (kind, source) in GENERATED.items():
        assert f"--{kind} {source} --out {generated}" in target


def test_cli_check_reports_stale_and_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    committed = "deploy/overlays/gpu/serve-config.yaml"
    assert main(["--config", "configs/k8s-gpu.yaml", "--out", committed, "--check"]) == 0
    stale = tmp_path / "stale.yaml"
    stale.write_text((REPO / committed).read_text().replace("max_replicas: 8", "max_replicas: 9"))
    assert main(["--config", "configs/k8s-gpu.yaml", "--out", str(stale), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["--config", "configs/k8s-gpu.yaml", "--out", str(tmp_path / "none.yaml"), "--check"]) == 1
    assert "missing" in capsys.readouterr().err
    # Without --check the file is written, and then passes the check.
    assert main(["--config", "configs/k8s-gpu.yaml", "--out", str(stale)]) == 0
    assert stale.read_text() == (REPO / committed).read_text()
    assert main(["--alerts", "deploy/monitoring/alerts.yaml", "--out", str(tmp_path / "rule.yaml")]) == 0
    assert (tmp_path / "rule.yaml").read_text() == (DEPLOY / "monitoring" / "prometheus-rule.yaml").read_text()


def test_render_file_names_its_source_relative_to_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert render_file(config=REPO / "configs" / "k8s-cpu.yaml") == render_file(config=Path("configs/k8s-cpu.yaml"))


def _config_data() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load((REPO / "configs" / "k8s-cpu.yaml").read_text())
    return data


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_hosts_are_rejected(tmp_path: Path, host: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = _config_data()
    data["host"] = host
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="loopback"):
        load_cluster_config(path)
    assert main(["--config", str(path), "--out", str(tmp_path / "out.yaml")]) == 2
    assert "loopback" in capsys.readouterr().err
    assert not (tmp_path / "out.yaml").exists()


def test_relative_model_paths_are_rejected(tmp_path: Path) -> None:
    data = _config_data()
    strong = data["strong"]
    assert isinstance(strong, dict)
    strong["engine"]["model"] = "../models/testbed/strong"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"strong\.engine\.model"):
        load_cluster_config(path)


def test_a_rule_file_must_hold_only_groups() -> None:
    with pytest.raises(ValueError, match="groups"):
        render_prometheus_rule({"rules": []}, "x.yaml")
