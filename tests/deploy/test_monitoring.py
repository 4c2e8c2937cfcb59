"""The Grafana dashboard and the alerting rules (promtool check rules / test rules)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import DEPLOY, REPO

MONITORING = DEPLOY / "monitoring"
DATASOURCE = "${datasource}"

# The metrics the services export through Ray's metrics agent (ray_ prefix, counters _total).
SERVICE_METRICS = {
    "cot_transfer_rpc_requests_total",
    *(f"cot_transfer_rpc_duration_seconds_{suffix}" for suffix in ("bucket", "sum", "count")),
    *(f"cot_transfer_time_to_first_prefix_seconds_{suffix}" for suffix in ("bucket", "sum", "count")),
    "cot_transfer_prompt_tokens_total",
    "cot_transfer_generated_tokens_total",
    "cot_transfer_completions_total",
    "cot_transfer_samples_graded_total",
    "cot_transfer_samples_correct_total",
    "cot_transfer_experiment_rows_done",
    "cot_transfer_experiment_rows_expected",
    "cot_transfer_experiment_unlock_rate",
    "cot_transfer_experiments_running",
    "cot_transfer_backpressure_retries_total",
}
# vLLM's engine metrics, forwarded through Ray.
VLLM_METRICS = {
    "vllm_num_requests_running",
    "vllm_num_requests_waiting",
    "vllm_kv_cache_usage_perc",
    "vllm_prefix_cache_queries_total",
    "vllm_prefix_cache_hits_total",
}
# Ray Serve's own metrics used here (gauges, literal names in Ray 2.60's source).
SERVE_METRICS = {
    "ray_serve_deployment_replica_healthy",
    "ray_serve_autoscaling_target_replicas",
    "ray_serve_deployment_queued_queries",
}
KNOWN_METRICS = SERVICE_METRICS | VLLM_METRICS | SERVE_METRICS
METRIC = re.compile(r"\b(?:ray_serve|cot_transfer|vllm)_[A-Za-z0-9_:]+")


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((MONITORING / "dashboard.json").read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels of collapsed rows
    return [panel for panel in panels if panel["type"] != "row"]


def test_dashboard_has_a_prometheus_datasource_variable() -> None:
    dashboard = _dashboard()
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert dashboard["uid"] and dashboard["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE
            assert set(METRIC.findall(variable["definition"])) <= KNOWN_METRICS


def test_every_panel_queries_known_metrics_through_the_datasource_variable() -> None:
    panels = _panels(_dashboard())
    assert len(panels) >= 15
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE}, title
        assert panel["targets"], f"{title}: no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE, title
            names = set(METRIC.findall(target["expr"]))
            assert names, f"{title}: {target['expr']!r} names no metric"
            assert names <= KNOWN_METRICS, f"{title}: unknown metrics {names - KNOWN_METRICS}"
            # Ray adds per-process labels (WorkerId, ...): every selection is aggregated.
            assert re.search(r"\b(sum|max|avg|min)\b", target["expr"]) or "histogram_quantile" in target["expr"], title


def test_dashboard_covers_the_required_views() -> None:
    exprs = " ".join(target["expr"] for panel in _panels(_dashboard()) for target in panel["targets"])
    assert set(METRIC.findall(exprs)) >= KNOWN_METRICS - {
        "cot_transfer_rpc_duration_seconds_sum",
        "cot_transfer_rpc_duration_seconds_count",
        "cot_transfer_time_to_first_prefix_seconds_sum",
        "cot_transfer_time_to_first_prefix_seconds_count",
    }
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (method, le)" in exprs


def test_alert_rules_use_known_metrics_and_aggregate() -> None:
    alerts = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    rules = [rule for group in alerts["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == {
        "CotTransferHighErrorRate",
        "CotTransferQueueSaturated",
        "CotTransferNoHealthyReplica",
        "CotTransferExperimentStalled",
    }
    for rule in rules:
        names = set(METRIC.findall(rule["expr"]))
        assert names and names <= KNOWN_METRICS, rule["alert"]
        assert "sum" in rule["expr"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_serve_metric_names_exist_in_the_installed_ray() -> None:
    import ray.serve

    source = "\n".join(path.read_text() for path in Path(ray.serve.__file__).parent.rglob("*.py"))
    for name in SERVE_METRICS:
        assert f'"{name.removeprefix("ray_")}"' in source, name


def _promtool_candidates() -> Iterator[str]:
    on_path = shutil.which("promtool")
    if on_path:
        yield on_path
    yield str(REPO / ".tools" / "prometheus" / "usr" / "bin" / "promtool")


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool from PATH, or Debian's prometheus package unpacked by `make promtool` (run when missing)."""
    for candidate in _promtool_candidates():
        if os.access(candidate, os.X_OK):
            return candidate
    if shutil.which("make") is None or shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("promtool is missing and cannot be installed here (needs make, apt-get and dpkg: Debian/Ubuntu)")
    result = subprocess.run(
        ["make", "--no-print-directory", "promtool"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    for candidate in _promtool_candidates():
        if os.access(candidate, os.X_OK):
            return candidate
    tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
    pytest.skip("promtool is missing and `make promtool` could not install it: " + " | ".join(tail))


def _run(promtool: str, *args: str) -> str:
    result = subprocess.run([promtool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_promtool_check_rules(promtool: str) -> None:
    assert "SUCCESS: 4 rules found" in _run(promtool, "check", "rules", "alerts.yaml")


def test_promtool_unit_tests_fire_and_stay_quiet(promtool: str) -> None:
    tests = yaml.safe_load((MONITORING / "alerts_test.yaml").read_text())
    alerts = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]}
    firing = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if not case["exp_alerts"]}
    assert alerts == firing == quiet  # every alert is shown firing and shown quiet
    assert "SUCCESS" in _run(promtool, "test", "rules", "alerts_test.yaml")


def test_prometheus_rule_spec_is_the_rule_file() -> None:
    rule = yaml.safe_load((MONITORING / "prometheus-rule.yaml").read_text())
    assert rule["spec"] == yaml.safe_load((MONITORING / "alerts.yaml").read_text())
