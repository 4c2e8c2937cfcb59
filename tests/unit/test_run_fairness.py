"""Runs share an ingress replica fairly, and the limits on runs: at most so many at once, at most
so many samples each."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest

from cot_transfer.domain.errors import InvalidArgumentError, OverloadedError
from cot_transfer.domain.requests import (
    CompletionRequest,
    CompletionResult,
    GradedCompletion,
    PrefixRequest,
    Problem,
    ResumedProblem,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.domain.sampling_plan import SamplingPlan
from cot_transfer.domain.steps import CutMode
from cot_transfer.serving.common.serving_config import LimitsConfig
from cot_transfer.serving.dataplane.fanout import PrioritySlots, TransferRunner, most_samples
from tests.fakes import cot_events, transfer_request

COT = "0123456789abcdefghij"
FRACTIONS = (0.0, 0.1, 0.5, 0.9, 1.0)


def stream_prefixes(request: PrefixRequest) -> AsyncIterator[StrongEvent]:
    return cot_events(COT, request.fractions, "1", lambda text: f"{request.problem}:{text}")


def problems(run: str, count: int, fractions: tuple[float, ...] = FRACTIONS) -> TransferRequest:
    return transfer_request([Problem(f"{run}{index}", f"{run} {index}", "1") for index in range(count)], fractions)


def all_correct(request: CompletionRequest) -> CompletionResult:
    return CompletionResult([GradedCompletion("", "1", True, 1, "stop")] * request.n, 5)


class GatedWeakModel:
    """Records which run each call belongs to, in the order the calls got their slots; every call
    waits at ``gate`` so the test decides when the queue starts to move."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.gate = asyncio.Event()

    async def __call__(self, request: CompletionRequest) -> CompletionResult:
        problem, cut = request.prefix.split(":", 1)
        self.calls.append((problem.split()[0], len(COT) - len(cut)))
        await self.gate.wait()
        await asyncio.sleep(0)
        return all_correct(request)


async def wait_until(condition: Callable[[], object], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def drain(stream: AsyncIterator[object]) -> None:
    async for _ in stream:
        pass


async def test_a_small_run_is_not_queued_behind_a_big_one() -> None:
    weak = GatedWeakModel()
    runner = TransferRunner(stream_prefixes, weak, max_concurrent_completions=2)
    waiting = runner._completion_slots._waiters
    big = asyncio.create_task(drain(runner.run(problems("big", 8))))
    # All 40 of the big run's requests are queued (2 in flight, 38 waiting) before the small run starts.
    await wait_until(lambda: len(waiting) == 38, "the big run's requests")
    small = asyncio.create_task(drain(runner.run(problems("small", 1))))
    await wait_until(lambda: len(waiting) == 43, "the small run's requests")
    weak.gate.set()
    await asyncio.gather(big, small)
    runs = [run for run, _ in weak.calls]
    assert len(runs) == 45
    # Strict run order would send the small run's 5 requests last (calls 41-45). Shared evenly, they
    # take every other freed slot: all 5 are in by call 2 + 2 * 5.
    last_small = max(index for index, run in enumerate(runs) if run == "small")
    assert last_small < 12, runs
    # Within each run the scheduling key still decides: the most CoT left first.
    for run in ("big", "small"):
        left = [remaining for name, remaining in weak.calls[2:] if name == run]
        assert left == sorted(left, reverse=True), (run, left)


async def test_a_freed_slot_goes_to_the_run_holding_fewest_then_by_key() -> None:
    slots = PrioritySlots(2)
    granted: list[str] = []
    releases: dict[str, asyncio.Event] = {}

    async def request(name: str, run: int, key: float) -> None:
        releases[name] = asyncio.Event()
        async with slots.hold((key,), run=run):
            granted.append(name)
            await releases[name].wait()

    async def release(name: str) -> None:
        releases[name].set()
        await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(request(name, 0, 0.0)) for name in ("a0", "a1")]
    await asyncio.sleep(0.01)
    tasks += [asyncio.create_task(request(f"a{key}", 0, key)) for key in (3.0, 1.0, 2.0)]
    tasks += [asyncio.create_task(request(f"b{key}", 1, key)) for key in (5.0, 4.0)]
    await asyncio.sleep(0.01)
    assert granted == ["a0", "a1"]
    # Run 0 holds both slots: each freed slot goes to whichever run then holds fewer.
    for name in ("a0", "a1", "b4.0", "a1.0", "b5.0", "a2.0", "a3.0"):
        await release(name)
    await asyncio.gather(*tasks)
    assert granted == ["a0", "a1", "b4.0", "a1.0", "b5.0", "a2.0", "a3.0"]


async def test_with_one_slot_the_earlier_run_wins_a_tie() -> None:
    slots = PrioritySlots(1)
    granted: list[str] = []

    async def request(name: str, run: int) -> None:
        async with slots.hold((0.0,), run=run):
            granted.append(name)

    first = slots.hold((0.0,), run=0)
    await first.__aenter__()
    tasks = [asyncio.create_task(request(name, run)) for name, run in (("later", 1), ("earlier", 0))]
    await asyncio.sleep(0)
    await first.__aexit__(None, None, None)
    await asyncio.gather(*tasks)
    assert granted == ["earlier", "later"]


async def test_a_run_beyond_max_concurrent_runs_is_shed_until_one_ends() -> None:
    weak = GatedWeakModel()
    runner = TransferRunner(
        stream_prefixes, weak, max_concurrent_completions=4, limits=LimitsConfig(max_concurrent_runs=1)
    )
    running = asyncio.create_task(drain(runner.run(problems("first", 1))))
    await wait_until(lambda: weak.calls, "the first run's requests")
    with pytest.raises(OverloadedError) as refused:
        await drain(runner.run(problems("second", 1)))
    assert "limits.max_concurrent_runs" in str(refused.value) and "retry" in str(refused.value)
    weak.gate.set()
    await running
    await drain(runner.run(problems("third", 1)))
    assert {run for run, _ in weak.calls} == {"first", "third"}


def test_most_samples_counts_every_row_a_run_can_draw() -> None:
    request = problems("p", 3)  # 5 fractions, one receiver, n = 2
    assert most_samples(request) == 3 * 5 * request.n
    plan = dataclasses.replace(request, sampling_plan=SamplingPlan(n_max=64))
    assert most_samples(plan) == 3 * 5 * 64
    # An every-step run's cuts are known once its CoTs are written: counted at the most steps.
    every_step = dataclasses.replace(request, cut=CutMode.EVERY_STEP, fractions=(0.0, 1.0), max_steps=40)
    assert most_samples(every_step) == 3 * 40 * request.n
    # A resume draws only the rows it lacks.
    resumed = dataclasses.replace(request, resumed={"p0": ResumedProblem(rows=frozenset({(0.5, "", "free")}))})
    assert most_samples(resumed) == (2 * 5 + 1) * request.n


async def test_a_run_over_max_samples_per_run_is_refused_before_any_model_work() -> None:
    calls: list[object] = []

    def strong(request: PrefixRequest) -> AsyncIterator[StrongEvent]:
        calls.append(request)
        return stream_prefixes(request)

    async def weak(request: CompletionRequest) -> CompletionResult:
        calls.append(request)
        return all_correct(request)

    request = problems("p", 3)
    cap = most_samples(request) - 1
    runner = TransferRunner(strong, weak, max_concurrent_completions=4, limits=LimitsConfig(max_samples_per_run=cap))
    with pytest.raises(InvalidArgumentError) as refused:
        await drain(runner.run(request))
    assert refused.value.field == "problems"
    assert f"at most {cap} (limits.max_samples_per_run)" in str(refused.value)
    assert calls == []
    # At the cap the run goes ahead.
    events = [
        event
        async for event in TransferRunner(strong, weak, 4, limits=LimitsConfig(max_samples_per_run=cap + 1)).run(
            request
        )
    ]
    assert events and calls
