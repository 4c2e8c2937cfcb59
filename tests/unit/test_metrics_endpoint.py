"""Merging Ray node expositions into the service's clean Prometheus endpoint."""

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cot_transfer.serving.wiring.metrics_endpoint import merge_expositions, public_name

RAY_LABELS = 'Component="core_worker",NodeAddress="10.0.0.1",SessionName="s",Version="2.60.0",WorkerId="{worker}"'

NODE = """# HELP ray_cot_transfer_rpc_requests_total RPCs by method and gRPC status code.
# TYPE ray_cot_transfer_rpc_requests_total counter
ray_cot_transfer_rpc_requests_total{LABELS,code="OK",method="Run"} 2.0
# HELP ray_cot_transfer_rpc_duration_seconds Whole RPC time.
# TYPE ray_cot_transfer_rpc_duration_seconds histogram
ray_cot_transfer_rpc_duration_seconds_bucket{LABELS,le="1.0",method="Run"} 1.0
ray_cot_transfer_rpc_duration_seconds_bucket{LABELS,le="+Inf",method="Run"} 2.0
ray_cot_transfer_rpc_duration_seconds_count{LABELS,method="Run"} 2.0
ray_cot_transfer_rpc_duration_seconds_sum{LABELS,method="Run"} 3.5
# HELP ray_vllm_num_requests_running Number of requests in model execution batches.
# TYPE ray_vllm_num_requests_running gauge
ray_vllm_num_requests_running{LABELS,ReplicaId="r1",engine="0",model_name="weak"} 3.0
# HELP ray_vllm_iteration_tokens_total Histogram of tokens per engine step.
# TYPE ray_vllm_iteration_tokens_total histogram
ray_vllm_iteration_tokens_total_count{LABELS,engine="0"} 5.0
# HELP ray_tasks Current number of tasks.
# TYPE ray_tasks gauge
ray_tasks{LABELS,State="RUNNING"} 4.0
"""


def node_exposition(worker: str) -> str:
    return NODE.replace("LABELS", RAY_LABELS.format(worker=worker))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_names_lose_the_ray_prefix_and_only_service_and_chosen_engine_families_stay() -> None:
    assert public_name("ray_cot_transfer_rpc_requests") == "cot_transfer_rpc_requests"
    assert public_name("ray_vllm_num_requests_running") == "vllm_num_requests_running"
    assert public_name("ray_vllm_iteration_tokens_total") is None
    assert public_name("ray_tasks") is None


def test_series_split_by_ray_process_labels_are_summed() -> None:
    merged = samples(merge_expositions([node_exposition("w1"), node_exposition("w2")]))
    assert merged[("cot_transfer_rpc_requests_total", (("code", "OK"), ("method", "Run")))] == 4.0
    assert merged[("cot_transfer_rpc_duration_seconds_bucket", (("le", "1.0"), ("method", "Run")))] == 2.0
    assert merged[("cot_transfer_rpc_duration_seconds_count", (("method", "Run"),))] == 4.0
    assert merged[("cot_transfer_rpc_duration_seconds_sum", (("method", "Run"),))] == 7.0
    running = ("vllm_num_requests_running", (("engine", "0"), ("model_name", "weak"), ("replica", "r1")))
    assert merged[running] == 6.0
    assert not any(name.startswith(("ray_", "vllm_iteration")) for name, _ in merged)
    assert not any(key in dict(labels) for _, labels in merged for key in ("WorkerId", "NodeAddress", "ReplicaId"))


def test_empty_input_gives_an_empty_exposition() -> None:
    assert merge_expositions([]) == ""


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_finds_nothing_to_lint() -> None:
    exposition = merge_expositions([node_exposition("w1"), node_exposition("w2")])
    checked = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == ""
