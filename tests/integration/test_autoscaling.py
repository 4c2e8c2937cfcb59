"""Serve's autoscaler adds a second weak-model replica under load and removes it afterwards."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest

from cot_transfer.client import CotTransferClient, Sampling
from cot_transfer.experiment.datasets import load_problems
from tests.conftest import REPO, RunningService

pytestmark = pytest.mark.integration

PROBLEM = load_problems(REPO / "datasets" / "testbed-demo.jsonl")[0]


def healthy_replicas(service: RunningService, deployment: str) -> int:
    with urllib.request.urlopen(service.ray_metrics_url, timeout=10) as response:
        body = response.read().decode()
    return round(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("ray_serve_deployment_replica_healthy{") and f'deployment="{deployment}"' in line
        )
    )


async def wait_for_replicas(service: RunningService, expected: int, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await asyncio.to_thread(healthy_replicas, service, "WeakModel") == expected:
            return time.monotonic() - started
        await asyncio.sleep(1)
    raise AssertionError(f"WeakModel did not reach {expected} healthy replicas in {timeout_s} s")


async def test_weak_deployment_scales_up_under_load_and_back_down(service: RunningService) -> None:
    await wait_for_replicas(service, 1, timeout_s=180)
    stop = asyncio.Event()

    async def keep_busy(client: CotTransferClient) -> int:
        calls = 0
        while not stop.is_set():
            await client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer, n=16, sampling=Sampling(seed=calls))
            calls += 1
        return calls

    async with service.client(timeout_s=600) as client:
        workers = [asyncio.create_task(keep_busy(client)) for _ in range(8)]
        try:
            await wait_for_replicas(service, 2, timeout_s=300)
        finally:
            stop.set()
            calls = sum(await asyncio.gather(*workers))
    assert calls > 0
    await wait_for_replicas(service, 1, timeout_s=180)
