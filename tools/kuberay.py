"""Kubernetes manifests generated from project files: the RayService's Serve config and the PrometheusRule.

KubeRay reads the Serve config from ``RayService.spec.serveConfigV2``, a string holding a Ray Serve
config file. Kustomize cannot read a file into a string field, so the overlay of each cluster flavour
carries a generated RayService patch (``deploy/overlays/<name>/serve-config.yaml``) rendered from a
typed serving config (``configs/k8s-<name>.yaml``). The PrometheusRule is the alert rule file
``deploy/monitoring/alerts.yaml`` wrapped as the resource's spec. ``make manifests`` regenerates both;
``--check`` (and a test) fails when a committed file differs from what the sources render to::

    python -m tools.kuberay --config configs/k8s-gpu.yaml --out deploy/overlays/gpu/serve-config.yaml
    python -m tools.kuberay --alerts deploy/monitoring/alerts.yaml \\
        --out deploy/monitoring/prometheus-rule.yaml --check
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from cot_transfer.serving.common.serving_config import ServingConfig

# The import path Serve calls with the application's ``args`` (see deployments.build_app).
IMPORT_PATH = "cot_transfer.serving.wiring.deployments:build_app"
# The RayService in deploy/base/rayservice.yaml, whose serveConfigV2 the overlay patch sets.
RAYSERVICE_NAME = "cot-transfer"
PROMETHEUS_RULE_NAME = "cot-transfer"
# kube-prometheus-stack's Prometheus selects rules by its Helm release label by default.
PROMETHEUS_RULE_LABELS = {"app.kubernetes.io/name": "cot-transfer", "release": "kube-prometheus-stack"}


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks (``|``), so the embedded Serve config stays readable."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, width=1000, allow_unicode=True)


def _header(source: str) -> str:
    return (
        f"# Generated from {source} by `make manifests` (python -m tools.kuberay): do not edit.\n"
        "# A test fails when this file differs from what its source renders to.\n"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_cluster_config(config: ServingConfig) -> None:
    """Raises ValueError for settings that cannot work in pods: loopback proxies, relative model paths."""
    if _is_loopback(config.host):
        raise ValueError(
            f"host {config.host!r} is a loopback address: the Serve proxies of a cluster must listen on all "
            "interfaces (0.0.0.0) to be reachable through the Kubernetes Services"
        )
    models = [("strong", config.strong), ("weak", config.weak)]
    models += [(f"receivers[{index}]", receiver) for index, receiver in enumerate(config.receivers)]
    for role, deployment in models:
        # A model on an OpenAI-compatible server has no folder in the pods, only perhaps its tokenizer.
        folder = deployment.engine.tokenizer_folder
        field = "engine.model" if deployment.engine.endpoint is None else "engine.endpoint.tokenizer"
        if folder is not None and not PurePosixPath(folder).is_absolute():
            raise ValueError(
                f"{role}.{field} {folder!r} must be an absolute path inside the pods "
                "(the model volume is mounted at /models)"
            )


def load_cluster_config(path: str | Path) -> ServingConfig:
    """Loads a serving config for a cluster: model paths are pod paths and are left as they are."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    config = ServingConfig.model_validate(data)
    check_cluster_config(config)
    return config


def render_serve_config(config: ServingConfig) -> dict[str, Any]:
    """The Ray Serve config file (``ServeDeploySchema``) that deploys the app of ``config``."""
    from cot_transfer.serving.wiring.deployments import GRPC_SERVICER_FUNCTIONS

    check_cluster_config(config)
    return {
        # A proxy on every node that hosts a replica (and the head): the Services route to any of them.
        "proxy_location": "EveryNode",
        "http_options": {"host": config.host, "port": config.http_port},
        "grpc_options": {"port": config.grpc_port, "grpc_servicer_functions": list(GRPC_SERVICER_FUNCTIONS)},
        "applications": [
            {
                "name": config.app_name,
                "route_prefix": config.route_prefix,
                "import_path": IMPORT_PATH,
                "args": {"config": config.model_dump(mode="json")},
            }
        ],
    }


def render_rayservice_patch(config: ServingConfig, source: str, name: str = RAYSERVICE_NAME) -> str:
    """The kustomize patch that sets the RayService's serveConfigV2 from ``config`` (YAML text)."""
    serve_config = _dump(render_serve_config(config))
    patch = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name},
        "spec": {"serveConfigV2": serve_config},
    }
    return _header(source) + _dump(patch)


def render_prometheus_rule(alerts: dict[str, Any], source: str, name: str = PROMETHEUS_RULE_NAME) -> str:
    """A PrometheusRule whose spec is the Prometheus rule file ``alerts`` (``{groups: [...]}``), as YAML text."""
    if not isinstance(alerts, dict) or not isinstance(alerts.get("groups"), list) or set(alerts) != {"groups"}:
        raise ValueError(f"{source}: a Prometheus rule file holds exactly one key, 'groups', a list")
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": dict(PROMETHEUS_RULE_LABELS)},
        "spec": alerts,
    }
    return _header(source) + _dump(rule)


def _display_path(path: Path) -> str:
    """The path relative to the working directory (the repository root under make) when it lies below it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def render_file(*, config: Path | None = None, alerts: Path | None = None) -> str:
    if config is not None:
        return render_rayservice_patch(load_cluster_config(config), _display_path(config))
    if alerts is not None:
        return render_prometheus_rule(yaml.safe_load(alerts.read_text()), _display_path(alerts))
    raise ValueError("render_file needs config or alerts")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.kuberay",
        description="Render the generated Kubernetes manifests (RayService serve-config patch, PrometheusRule).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="serving config YAML -> RayService patch with serveConfigV2")
    source.add_argument("--alerts", type=Path, help="Prometheus rule file -> PrometheusRule")
    parser.add_argument("--out", type=Path, required=True, help="file to write (or to compare with --check)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when --out differs")
    args = parser.parse_args(argv)

    try:
        rendered = render_file(config=args.config, alerts=args.alerts)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text() if args.out.is_file() else None
        if current != rendered:
            state = "missing" if current is None else "stale"
            print(f"{args.out}: {state}; run `make manifests` to regenerate it", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(rendered)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
