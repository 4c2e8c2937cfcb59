"""The service's metrics endpoint, linted by promtool and scraped by a real Prometheus server."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.datasets import load_problems
from tests.conftest import REPO, RunningService, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("prometheus") is None or shutil.which("promtool") is None,
        reason="Prometheus is not installed (Debian package prometheus; `make test` installs it)",
    ),
]

PROBLEMS = load_problems(REPO / "datasets" / "testbed-demo.jsonl")[:2]
# The session's service serves other tests' runs too: waiting for this one's own series is what
# says its final values have been exported (Ray reports a replica's metrics every few seconds).
EXPERIMENT = "test-metrics-endpoint"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def send_traffic(service: RunningService) -> None:
    async with service.client() as client:
        [event async for event in client.stream_prefixes(PROBLEMS[0].problem, [0.5, 1.0])]
        await client.complete(PROBLEMS[0].problem, reference_answer=PROBLEMS[0].answer, n=2)
        specs = [Problem(problem.id, problem.problem, problem.answer) for problem in PROBLEMS]
        [event async for event in client.run_transfer(specs, [0.5, 1.0], n=2, experiment_id=EXPERIMENT)]


def wait_for(found: Callable[[str], bool], what: str, url: str, timeout_s: float = 90.0) -> str:
    """The endpoint's body once ``found(body)``."""
    deadline = time.monotonic() + timeout_s
    body = ""
    while time.monotonic() < deadline:
        body = fetch(url)
        if found(body):
            return body
        time.sleep(2)
    raise AssertionError(f"{what} did not appear at {url} in {timeout_s} s; last body:\n{body[:2000]}")


def has_line(start: str, containing: str) -> Callable[[str], bool]:
    """Whether a body has a sample line that starts with ``start`` and holds ``containing``."""
    return lambda body: any(line.startswith(start) and containing in line for line in body.splitlines())


def metric_value(body: str, sample_prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(sample_prefix))


async def test_metrics_endpoint_shows_service_and_engine_metrics(service: RunningService) -> None:
    await send_traffic(service)
    own_unlock_rate = has_line("cot_transfer_experiment_unlock_rate{", f'experiment="{EXPERIMENT}"')
    await asyncio.to_thread(wait_for, own_unlock_rate, f"{EXPERIMENT}'s unlock rate", service.metrics_url)
    first_prefix = "cot_transfer_time_to_first_prefix_seconds_count"
    body = await asyncio.to_thread(wait_for, lambda body: first_prefix in body, first_prefix, service.metrics_url)
    for sample in (
        "cot_transfer_rpc_requests_total",
        "cot_transfer_rpc_duration_seconds_count",
        "cot_transfer_time_to_first_prefix_seconds_count",
        "cot_transfer_prompt_tokens_total",
        "cot_transfer_generated_tokens_total",
        "cot_transfer_completions_total",
        "cot_transfer_samples_graded_total",
        "cot_transfer_experiment_rows_done",
        "cot_transfer_experiment_rows_expected",
        "vllm_prefix_cache_queries_total",
    ):
        assert metric_value(body, sample) > 0, sample
    for present in ("vllm_num_requests_running", "vllm_num_requests_waiting", "vllm_kv_cache_usage_perc"):
        assert f"\n{present}{{" in body, present
    assert 'cot_transfer_rpc_requests_total{code="OK",method="Run"}' in body
    linted = await asyncio.to_thread(
        subprocess.run, ["promtool", "check", "metrics"], input=body, capture_output=True, text=True
    )
    assert linted.returncode == 0 and not linted.stdout.strip(), linted.stdout + linted.stderr


@pytest.fixture
def prometheus(service: RunningService, tmp_path: Path) -> Iterator[str]:
    """A Prometheus server on loopback scraping the service every second."""
    target = urllib.parse.urlsplit(service.metrics_url)
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "cot_transfer",
                "metrics_path": target.path,
                "static_configs": [{"targets": [target.netloc]}],
            }
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    subprocess.run(["promtool", "check", "config", str(config_path)], check=True, capture_output=True)
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                fetch(f"{url}/-/ready")
                break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def query(prometheus_url: str, promql: str) -> float:
    answer = json.loads(fetch(f"{prometheus_url}/api/v1/query?query={urllib.parse.quote(promql)}"))
    assert answer["status"] == "success", answer
    results = answer["data"]["result"]
    return float(results[0]["value"][1]) if results else 0.0


def wait_for_query(prometheus_url: str, promql: str, above: float, timeout_s: float = 90.0) -> float:
    deadline = time.monotonic() + timeout_s
    value = query(prometheus_url, promql)
    while value <= above and time.monotonic() < deadline:
        time.sleep(1)
        value = query(prometheus_url, promql)
    return value


async def test_prometheus_scrape_sees_requests_and_latency_move(service: RunningService, prometheus: str) -> None:
    up = await asyncio.to_thread(wait_for_query, prometheus, 'up{job="cot_transfer"}', 0.0)
    assert up == 1.0
    requests_query = 'sum(cot_transfer_rpc_requests_total{method="Complete"})'
    latency_query = 'sum(cot_transfer_rpc_duration_seconds_count{method="Complete"})'
    requests_before = await asyncio.to_thread(query, prometheus, requests_query)
    latency_before = await asyncio.to_thread(query, prometheus, latency_query)
    async with service.client() as client:
        for _ in range(3):
            await client.complete(PROBLEMS[1].problem, reference_answer=PROBLEMS[1].answer, n=2)
    requests_after = await asyncio.to_thread(wait_for_query, prometheus, requests_query, requests_before + 2.5)
    latency_after = await asyncio.to_thread(wait_for_query, prometheus, latency_query, latency_before + 2.5)
    assert requests_after >= requests_before + 3
    assert latency_after >= latency_before + 3
    p99 = await asyncio.to_thread(
        query,
        prometheus,
        'histogram_quantile(0.99, sum by (le) (cot_transfer_rpc_duration_seconds_bucket{method="Complete"}))',
    )
    assert 0 < p99 < 900
