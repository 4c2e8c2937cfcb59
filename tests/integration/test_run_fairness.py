"""Runs share the service fairly, on the real stack: a small run started beside a big one is not
queued behind the big one's work (issue 25: 8.4 s alone, 241 s beside a 64-problem run)."""

from __future__ import annotations

import asyncio
import time

import pytest

from cot_transfer.client import CotTransferClient
from cot_transfer.domain.requests import Problem, StrongCot
from cot_transfer.experiment.datasets import load_problems
from tests.conftest import REPO, RunningService

pytestmark = pytest.mark.integration

# The CLI's default fractions; n as a quick run draws it.
FRACTIONS = [round(0.1 * step, 1) for step in range(11)]
N = 8
BIG_RUN_PROBLEMS = 64
# The target: within 3x of the small run's time alone.
SLOWDOWN_ALLOWED = 3.0


def problems(name: str, count: int) -> list[Problem]:
    base = load_problems(REPO / "datasets" / "testbed-demo.jsonl")
    return [
        Problem(f"{name}-{index}", base[index % len(base)].problem, base[index % len(base)].answer)
        for index in range(count)
    ]


async def timed_run(client: CotTransferClient, name: str) -> float:
    started = time.monotonic()
    async for _ in client.run_transfer(problems(name, 1), FRACTIONS, n=N):
        pass
    return time.monotonic() - started


async def test_a_one_problem_run_beside_a_big_run_finishes_within_3x_its_solo_time(service: RunningService) -> None:
    async with service.client() as client:
        solo_s, beside_s = await solo_and_beside(client)
    print(f"one-problem run: {solo_s:.1f} s alone, {beside_s:.1f} s beside a {BIG_RUN_PROBLEMS}-problem run")
    assert beside_s < SLOWDOWN_ALLOWED * solo_s, (solo_s, beside_s)


async def solo_and_beside(client: CotTransferClient) -> tuple[float, float]:
    """A one-problem run's time alone, then while a big run is in flight (cancelled after)."""
    await timed_run(client, "warm-up")  # the engines' first requests pay one-off costs
    solo_s = await timed_run(client, "solo")
    big_started = asyncio.Event()

    async def big_run() -> None:
        async for event in client.run_transfer(problems("big", BIG_RUN_PROBLEMS), FRACTIONS, n=N):
            if isinstance(event, StrongCot):
                big_started.set()

    big = asyncio.create_task(big_run())
    try:
        # The big run is writing CoTs and has completions queued: the slots are all taken.
        await asyncio.wait_for(big_started.wait(), 120)
        beside_s = await timed_run(client, "beside")
        assert not big.done(), "the big run ended first: nothing was measured beside it"
    finally:
        big.cancel()
        await asyncio.gather(big, return_exceptions=True)
    return solo_s, beside_s
