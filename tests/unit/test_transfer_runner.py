"""Transfer orchestration with the two model services as plain async functions."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from cot_transfer.domain.errors import InvalidArgumentError, NotFoundError
from cot_transfer.domain.requests import (
    CompletionRequest,
    CompletionResult,
    CotDelta,
    CotPrefix,
    FractionResult,
    GradedCompletion,
    PrefixRequest,
    Problem,
    StrongAnswer,
    StrongCot,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.transfer import Thresholds, TransferSummary
from cot_transfer.serving.transfer import TransferRunner

COTS = {"p1": "abcdefghij Answer: 1", "p2": "klmnopqrst Answer: 2"}
PROBLEMS = {"problem one": "p1", "problem two": "p2"}


async def stream_prefixes(request: PrefixRequest) -> AsyncIterator[StrongEvent]:
    cot = COTS[PROBLEMS[request.problem]]
    yield CotDelta(cot)
    for fraction in request.fractions:
        kept = int(fraction * len(cot))
        yield CotPrefix(fraction, cot[:kept], kept, len(cot))
    yield StrongAnswer(cot, cot.rsplit(" ", 1)[-1], len(cot), "stop")


async def complete(request: CompletionRequest) -> CompletionResult:
    # The weak model is right once the prefix holds at least half the CoT.
    correct = len(request.prefix) >= 10
    return CompletionResult(
        [GradedCompletion("", request.reference_answer if correct else None, correct, 1, "stop")] * request.n, 5
    )


def transfer_request(grader: str = "exact") -> TransferRequest:
    return TransferRequest(
        problems=[Problem("p1", "problem one", "1"), Problem("p2", "problem two", "3")],
        fractions=(0.0, 0.5, 1.0),
        n=2,
        strong_sampling=SamplingParams(0.6, 0.95, 50),
        weak_sampling=SamplingParams(0.6, 0.95, 50),
        thresholds=Thresholds(),
        grader=grader,
    )


async def test_run_streams_every_result_then_a_summary() -> None:
    runner = TransferRunner(stream_prefixes, complete, max_concurrent_completions=4)
    events = [event async for event in runner.run(transfer_request())]
    strong = [event for event in events if isinstance(event, StrongCot)]
    rows = [event for event in events if isinstance(event, FractionResult)]
    summary = events[-1]
    assert isinstance(summary, TransferSummary)
    assert {(row.problem_id, row.fraction) for row in rows} == {
        (pid, fraction) for pid in ("p1", "p2") for fraction in (0.0, 0.5, 1.0)
    }
    assert {record.problem_id: record.correct for record in strong} == {"p1": True, "p2": False}
    assert summary.baseline_unsolved == 2
    assert [stats.unlocked for stats in summary.per_fraction] == [0, 2, 2]
    assert summary.strong_solve_rate == 0.5
    for record in strong:
        first_row = next(
            index for index, event in enumerate(events) if getattr(event, "problem_id", None) == record.problem_id
        )
        assert events[first_row] is record


async def test_concurrency_of_completions_is_bounded() -> None:
    in_flight = 0
    peak = 0

    async def slow_complete(request: CompletionRequest) -> CompletionResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return await complete(request)

    runner = TransferRunner(stream_prefixes, slow_complete, max_concurrent_completions=2)
    [event async for event in runner.run(transfer_request())]
    assert peak == 2


async def test_a_failing_completion_fails_the_run_with_its_error() -> None:
    async def failing(request: CompletionRequest) -> CompletionResult:
        raise InvalidArgumentError("prefix", "too long")

    runner = TransferRunner(stream_prefixes, failing, max_concurrent_completions=2)
    with pytest.raises(InvalidArgumentError, match="prefix: too long"):
        [event async for event in runner.run(transfer_request())]


async def test_unknown_grader_fails_before_any_model_call() -> None:
    calls = []

    async def recording(request: PrefixRequest) -> AsyncIterator[StrongEvent]:
        calls.append(request)
        async for event in stream_prefixes(request):
            yield event

    runner = TransferRunner(recording, complete, max_concurrent_completions=2)
    with pytest.raises(NotFoundError):
        [event async for event in runner.run(transfer_request(grader="nope"))]
    assert calls == []


async def test_closing_the_stream_cancels_outstanding_work() -> None:
    cancelled = asyncio.Event()

    async def hanging(request: CompletionRequest) -> CompletionResult:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    runner = TransferRunner(stream_prefixes, hanging, max_concurrent_completions=2)
    stream = runner.run(transfer_request())
    first = await anext(stream)
    assert isinstance(first, StrongCot)
    await stream.aclose()
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_strong_cots_are_written_a_bounded_number_at_a_time_in_problem_order() -> None:
    open_streams = 0
    most_open = 0
    order: list[str] = []

    async def counted_stream(request: PrefixRequest) -> AsyncIterator[StrongEvent]:
        nonlocal open_streams, most_open
        open_streams += 1
        most_open = max(most_open, open_streams)
        order.append(PROBLEMS[request.problem])
        await asyncio.sleep(0.01)
        async for event in stream_prefixes(request):
            yield event
        open_streams -= 1

    runner = TransferRunner(counted_stream, complete, max_concurrent_completions=4, max_concurrent_cots=1)
    events = [event async for event in runner.run(transfer_request())]
    assert most_open == 1
    assert order == ["p1", "p2"]
    assert isinstance(events[-1], TransferSummary)
    assert sum(isinstance(event, FractionResult) for event in events) == 6
