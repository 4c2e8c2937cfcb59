"""The order TransferRunner sends weak requests in: longest generation (most CoT left) first."""

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from benchmarks.ordering import arrival_order, longest_prefix_first
from cot_transfer.domain.requests import (
    CompletionRequest,
    CompletionResult,
    FractionResult,
    GradedCompletion,
    Prefix,
    PrefixRequest,
    Problem,
    StrongCot,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.serving.dataplane.fanout import PrioritySlots, TransferRunner, longest_generation_first
from tests.fakes import cot_events, transfer_request

COT = "0123456789abcdefghij"
FRACTIONS = (0.0, 0.1, 0.5, 0.9, 1.0)


def prefix(fraction: float, kept: int, total: int = len(COT)) -> Prefix:
    return Prefix(fraction, COT[:kept], kept, total)


def stream_prefixes(request: PrefixRequest) -> AsyncIterator[StrongEvent]:
    # Problem "problem K" gets a CoT of 10 * (K + 1) tokens, so problems differ in length.
    cot = COT * (int(request.problem.split()[-1]) + 1)
    return cot_events(cot, request.fractions, "1", lambda text: f"{request.problem}:{text}")


def numbered_problems(problems: int, fractions: tuple[float, ...] = FRACTIONS) -> TransferRequest:
    return transfer_request([Problem(f"p{index}", f"problem {index}", "1") for index in range(problems)], fractions)


class RecordingWeakModel:
    """Records (problem, remaining CoT tokens) per call; each call yields to the loop once. With
    ``first_call_waits_for``, the first call holds its slot until that condition holds (or 10 s):
    a problem's prefixes reach the queue only after its leak check, which runs in a thread, so
    without the hold the order in which the problems' requests queue up is the threads' order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.first_call_waits_for: Callable[[], bool] | None = None

    async def __call__(self, request: CompletionRequest) -> CompletionResult:
        problem, cut = request.prefix.split(":", 1)
        total = len(COT) * (int(problem.split()[-1]) + 1)
        self.calls.append((problem, total - len(cut)))
        if len(self.calls) == 1 and self.first_call_waits_for is not None:
            for _ in range(2000):  # 10 s at most: the test's assertion then says what went wrong
                if self.first_call_waits_for():
                    break
                await asyncio.sleep(0.005)
        await asyncio.sleep(0)
        return CompletionResult([GradedCompletion("", "1", True, 1, "stop")] * request.n, 5)


def test_scheduling_keys() -> None:
    short, long = prefix(0.1, 2), prefix(0.9, 18)
    assert longest_generation_first(short) < longest_generation_first(long)
    assert longest_prefix_first(long) < longest_prefix_first(short)
    assert arrival_order(short) == arrival_order(long)
    # Across problems: what is left to write counts, not the fraction.
    assert longest_generation_first(prefix(0.5, 50, total=100)) < longest_generation_first(prefix(0.0, 0, total=20))


async def test_waiting_requests_go_out_with_the_most_cot_left_first() -> None:
    weak = RecordingWeakModel()
    runner = TransferRunner(stream_prefixes, weak, max_concurrent_completions=1)
    # The first request takes the free slot at once and keeps it until the other 14 wait.
    weak.first_call_waits_for = lambda: len(runner._completion_slots._waiters) == 14
    events = [event async for event in runner.run(numbered_problems(problems=3))]
    remaining = [left for _, left in weak.calls]
    # Every request after the first waited, and went by key.
    assert remaining[1:] == sorted(remaining[1:], reverse=True)
    assert len(remaining) == 15
    rows = [event for event in events if isinstance(event, FractionResult)]
    assert sorted((row.problem_id, row.fraction) for row in rows) == sorted(
        (f"p{index}", fraction) for index in range(3) for fraction in FRACTIONS
    )


async def test_the_arrival_order_key_keeps_request_order() -> None:
    weak = RecordingWeakModel()
    runner = TransferRunner(stream_prefixes, weak, max_concurrent_completions=1, scheduling_key=arrival_order)
    [event async for event in runner.run(numbered_problems(problems=1))]
    # Fractions arrive sorted ascending, so the remaining CoT shrinks call by call.
    assert [left for _, left in weak.calls] == [20, 18, 10, 2, 0]


async def test_an_earlier_run_keeps_its_place_before_a_later_one() -> None:
    weak = RecordingWeakModel()
    runner = TransferRunner(stream_prefixes, weak, max_concurrent_completions=1)
    first = runner.run(numbered_problems(problems=1))
    second = runner.run(numbered_problems(problems=3, fractions=(0.0, 1.0)))

    async def drain(stream: AsyncIterator[object]) -> None:
        async for _ in stream:
            pass

    await asyncio.gather(drain(first), drain(second))
    problems = [problem for problem, _ in weak.calls]
    # Run one (problem 0, 5 fractions) is admitted before the later run's waiting requests.
    assert problems[:5] == ["problem 0"] * 5


async def test_strong_record_keeps_prefixes_in_request_order() -> None:
    runner = TransferRunner(stream_prefixes, RecordingWeakModel(), max_concurrent_completions=4)
    events = [event async for event in runner.run(numbered_problems(problems=1))]
    [record] = [event for event in events if isinstance(event, StrongCot)]
    assert [p.fraction for p in record.prefixes] == list(FRACTIONS)


async def test_priority_slots_bound_concurrency_and_admit_by_key() -> None:
    slots = PrioritySlots(2)
    admitted: list[str] = []
    in_flight = 0
    peak = 0
    release = asyncio.Event()

    async def worker(name: str, key: float) -> None:
        nonlocal in_flight, peak
        async with slots.hold((key,)):
            admitted.append(name)
            in_flight += 1
            peak = max(peak, in_flight)
            await release.wait()
            in_flight -= 1

    tasks = [asyncio.create_task(worker(name, key)) for name, key in [("a", 5), ("b", 5), ("c", 3), ("d", 1), ("e", 3)]]
    await asyncio.sleep(0.01)
    assert admitted == ["a", "b"]
    release.set()
    await asyncio.gather(*tasks)
    assert admitted == ["a", "b", "d", "c", "e"]
    assert peak == 2


async def test_a_cancelled_waiter_does_not_lose_a_slot() -> None:
    slots = PrioritySlots(1)
    hold_first = asyncio.Event()
    done: list[str] = []

    async def worker(name: str, wait: asyncio.Event | None = None) -> None:
        async with slots.hold((0.0,)):
            if wait is not None:
                await wait.wait()
            done.append(name)

    first = asyncio.create_task(worker("first", hold_first))
    await asyncio.sleep(0)
    doomed = asyncio.create_task(worker("doomed"))
    last = asyncio.create_task(worker("last"))
    await asyncio.sleep(0)
    doomed.cancel()
    hold_first.set()
    await asyncio.gather(first, last)
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert done == ["first", "last"]
    # The slot is free again: a new holder gets in at once.
    await asyncio.wait_for(worker("again"), 1)


async def test_a_waiter_cancelled_as_it_is_granted_passes_the_slot_on() -> None:
    slots = PrioritySlots(1)
    done: list[str] = []

    async def worker(name: str) -> None:
        async with slots.hold((0.0,)):
            done.append(name)

    holder = slots.hold((0.0,))
    await holder.__aenter__()
    granted_then_cancelled = asyncio.create_task(worker("cancelled"))
    after = asyncio.create_task(worker("after"))
    await asyncio.sleep(0)
    await holder.__aexit__(None, None, None)  # hands the slot to the first waiter...
    granted_then_cancelled.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(after, 1)
    assert done == ["after"]


def test_priority_slots_need_a_slot() -> None:
    with pytest.raises(ValueError):
        PrioritySlots(0)
