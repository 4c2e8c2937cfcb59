"""One bad problem never sinks a run, and an oversized input costs the service nothing, on the
real stack (Ray Serve's gRPC proxy, vLLM on CPU)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cot_transfer.client import CotTransferClient, RpcFailedError
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from tests.conftest import REPO, RunningService

pytestmark = pytest.mark.integration

DEMO = load_problems(REPO / "datasets" / "testbed-demo.jsonl")
# 4,000 characters: past the 512-token context of the testbed models whatever their tokenizer.
PAST_THE_CONTEXT = Problem("past-the-context", "1+2-" * 1000 + "1", "3")
FIVE_MB = "7+" * (5 * 2**19)


class CountingClient(CotTransferClient):
    """Counts the Transfer.Run calls a run makes."""

    runs = 0

    async def run_transfer(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        CountingClient.runs += 1
        async for event in super().run_transfer(*args, **kwargs):
            yield event


def counting_client(service: RunningService) -> CountingClient:
    return CountingClient(service.address, application=service.application, timeout_s=300, token=service.token)


async def test_a_run_with_a_problem_past_the_context_finishes_the_others_and_resumes_at_once(
    service: RunningService, tmp_path: Path
) -> None:
    problems = [Problem(p.id, p.problem, p.answer) for p in DEMO[:7]]
    problems.insert(3, PAST_THE_CONTEXT)
    settings = ExperimentSettings(fractions=(0.5, 1.0), n=2)
    out = tmp_path / "run"
    CountingClient.runs = 0
    async with counting_client(service) as client:
        summary = await run_experiment(client, problems, settings, out)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {row["problem_id"] for row in rows} == {problem.id for problem in problems} - {PAST_THE_CONTEXT.id}
    assert len(rows) == 7 * 3
    assert [(error["problem_id"], error["code"], error["permanent"]) for error in summary["failed_problems"]] == [
        (PAST_THE_CONTEXT.id, "OUT_OF_RANGE", True)
    ]
    assert (out / "summary.json").exists()
    assert CountingClient.runs == 1

    started = time.monotonic()
    async with counting_client(service) as client:
        again = await run_experiment(client, problems, settings, out, resume=True)
    assert CountingClient.runs == 1  # nothing was run again, the failed problem included
    assert time.monotonic() - started < 30
    assert [error["problem_id"] for error in again["failed_problems"]] == [PAST_THE_CONTEXT.id]
    assert len((out / "results.jsonl").read_text().splitlines()) == 7 * 3


async def test_a_five_megabyte_problem_is_refused_at_the_edge_and_spares_a_concurrent_complete(
    service: RunningService,
) -> None:
    small = DEMO[0]
    async with service.client() as client:
        info = await client.get_info()
        assert 0 < info.max_text_chars < len(FIVE_MB)

        async def timed_complete() -> float:
            started = time.monotonic()
            await client.complete(small.problem, reference_answer=small.answer, n=2)
            return time.monotonic() - started

        await timed_complete()  # warm
        unloaded = statistics.median([await timed_complete() for _ in range(3)])

        async def timed_refusal() -> tuple[float, RpcFailedError]:
            started = time.monotonic()
            with pytest.raises(RpcFailedError) as caught:
                await client.complete(FIVE_MB, reference_answer="3")
            return time.monotonic() - started, caught.value

        (refusal_s, refusal), loaded = await asyncio.gather(timed_refusal(), timed_complete())
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.details.startswith("problem: at most") and "limits.max_text_chars" in refusal.details
    # Before the cap the replica tokenised such a problem for 11-15 s, and a Complete beside it
    # waited as long; these bounds are loose regression guards, not a speed claim.
    assert refusal_s < 5.0
    assert loaded < 2 * unloaded + 1.0


async def test_get_info_reports_each_models_fingerprint_and_the_sampling_defaults(service: RunningService) -> None:
    async with service.client() as client:
        info = await client.get_info()
    assert {model.name for model in info.models} == {info.strong_model, info.weak_model}
    assert all(len(model.fingerprint) == 16 for model in info.models)
    assert info.strong_sampling_defaults is not None and info.strong_sampling_defaults.max_tokens > 0
    assert info.weak_sampling_defaults is not None
