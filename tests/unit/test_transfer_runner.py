"""Transfer orchestration with the two model services as plain async functions."""

import asyncio
import dataclasses
import re
import threading
from collections.abc import AsyncIterator

import pytest

from cot_transfer.domain import requests as rq
from cot_transfer.domain.errors import (
    AbortedError,
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
)
from cot_transfer.domain.transfer import RunSummary
from cot_transfer.serving.dataplane.admission import call_when_admitted
from cot_transfer.serving.dataplane.fanout import Complete, StreamPrefixes, TransferEvent, TransferRunner
from tests.fakes import cot_events, transfer_request

COTS = {"p1": "abcdefghij Answer: 1", "p2": "klmnopqrst Answer: 2"}
PROBLEMS = {"problem one": "p1", "problem two": "p2"}


def stream_prefixes(request: rq.PrefixRequest) -> AsyncIterator[rq.StrongEvent]:
    cot = COTS[PROBLEMS[request.problem]]
    return cot_events(cot, request.fractions, cot.rsplit(" ", 1)[-1])


async def complete(request: rq.CompletionRequest) -> rq.CompletionResult:
    # The weak model is right once the prefix holds at least half the CoT.
    correct = len(request.prefix) >= 10
    return rq.CompletionResult(
        [rq.GradedCompletion("", request.reference_answer if correct else None, correct, 1, "stop")] * request.n, 5
    )


def two_problems(grader: str = "exact") -> rq.TransferRequest:
    return transfer_request([rq.Problem("p1", "problem one", "1"), rq.Problem("p2", "problem two", "3")], grader=grader)


async def run_two_problems(
    strong: StreamPrefixes = stream_prefixes, weak: Complete = complete, max_concurrent_completions: int = 2
) -> tuple[list[TransferEvent], list[rq.ProblemError]]:
    """Every event of a run of the two problems, and apart the problem errors among them."""
    runner = TransferRunner(strong, weak, max_concurrent_completions=max_concurrent_completions)
    events = [event async for event in runner.run(two_problems())]
    return events, [event for event in events if isinstance(event, rq.ProblemError)]


async def test_run_streams_every_result_then_a_summary() -> None:
    runner = TransferRunner(stream_prefixes, complete, max_concurrent_completions=4)
    events = [event async for event in runner.run(two_problems())]
    strong = [event for event in events if isinstance(event, rq.StrongCot)]
    rows = [event for event in events if isinstance(event, rq.FractionResult)]
    summary = events[-1]
    assert isinstance(summary, RunSummary)
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

    async def slow_complete(request: rq.CompletionRequest) -> rq.CompletionResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return await complete(request)

    runner = TransferRunner(stream_prefixes, slow_complete, max_concurrent_completions=2)
    [event async for event in runner.run(two_problems())]
    assert peak == 2


async def test_a_failing_completion_becomes_its_problems_error_and_the_run_goes_on() -> None:
    async def failing_for_p2(request: rq.CompletionRequest) -> rq.CompletionResult:
        if request.problem == "problem two" and request.prefix:
            raise InvalidArgumentError("prefix", "too long")
        return await complete(request)

    events, errors = await run_two_problems(weak=failing_for_p2)
    assert errors == [rq.ProblemError("p2", "INVALID_ARGUMENT", "prefix: too long")]
    assert errors[0].permanent
    assert {(row.problem_id, row.fraction) for row in events if isinstance(row, rq.FractionResult)} >= {
        ("p1", fraction) for fraction in (0.0, 0.5, 1.0)
    }
    summary = events[-1]
    assert isinstance(summary, RunSummary)
    assert summary.problem_errors == 1
    assert summary.n_problems == 1  # p2's rows so far are left out of the statistics


async def test_a_prompt_past_the_context_is_a_permanent_problem_error() -> None:
    async def too_long_for_p1(request: rq.PrefixRequest) -> AsyncIterator[rq.StrongEvent]:
        if request.problem == "problem one":
            raise OutOfRangeError("problem", "the prompt is 900 tokens; the model holds 256")
        async for event in stream_prefixes(request):
            yield event

    events, errors = await run_two_problems(too_long_for_p1)
    assert [(error.problem_id, error.code, error.permanent) for error in errors] == [("p1", "OUT_OF_RANGE", True)]
    assert "900 tokens" in errors[0].message
    assert {event.problem_id for event in events if isinstance(event, rq.FractionResult)} == {"p2"}
    summary = events[-1]
    assert isinstance(summary, RunSummary) and summary.problem_errors == 1 and summary.n_problems == 1


async def test_a_strong_stream_without_an_answer_is_a_transient_problem_error() -> None:
    async def no_answer_for_p2(request: rq.PrefixRequest) -> AsyncIterator[rq.StrongEvent]:
        async for event in stream_prefixes(request):
            if request.problem == "problem two" and isinstance(event, rq.StrongAnswer):
                return
            yield event

    _, errors = await run_two_problems(no_answer_for_p2)
    assert [(error.problem_id, error.code, error.permanent) for error in errors] == [("p2", "UNAVAILABLE", False)]
    assert "without an answer" in errors[0].message


async def test_an_unexpected_error_is_internal_with_an_incident_id_and_no_exception_text() -> None:
    async def broken(request: rq.CompletionRequest) -> rq.CompletionResult:
        raise RuntimeError("secret internals /home/x")

    events, errors = await run_two_problems(weak=broken)
    assert {error.problem_id for error in errors} == {"p1", "p2"}
    for error in errors:
        assert error.code == "INTERNAL" and not error.permanent
        assert re.search(r"incident [0-9a-f]{12}", error.message)
        assert "secret" not in error.message and "Traceback" not in error.message
    summary = events[-1]
    assert isinstance(summary, RunSummary) and summary.problem_errors == 2 and summary.n_problems == 0


async def test_a_full_queue_past_the_wait_limit_is_a_resource_exhausted_problem_error() -> None:
    class QueueFullError(Exception):
        pass

    async def always_full() -> rq.CompletionResult:
        raise QueueFullError

    async def complete_when_admitted(request: rq.CompletionRequest) -> rq.CompletionResult:
        if request.problem == "problem one":
            return await complete(request)
        return await call_when_admitted(always_full, QueueFullError, backoff=lambda attempt: 0.01, max_wait_s=0.05)

    _, errors = await run_two_problems(weak=complete_when_admitted, max_concurrent_completions=4)
    assert [(error.problem_id, error.code, error.permanent) for error in errors] == [
        ("p2", "RESOURCE_EXHAUSTED", False)
    ]
    assert "0.05 s" in errors[0].message


async def test_a_second_concurrent_run_with_the_same_experiment_id_is_refused() -> None:
    release = asyncio.Event()

    async def held(request: rq.CompletionRequest) -> rq.CompletionResult:
        await release.wait()
        return await complete(request)

    runner = TransferRunner(stream_prefixes, held, max_concurrent_completions=4)
    request = dataclasses.replace(two_problems(), experiment_id="exp-1")
    first = runner.run(request)
    assert isinstance(await anext(first), rq.StrongCot)
    assert runner.running_experiments() == {"exp-1"}
    with pytest.raises(AlreadyExistsError, match="exp-1"):
        await anext(runner.run(request))
    release.set()
    rest = [event async for event in first]
    assert isinstance(rest[-1], RunSummary)
    # Once the first has ended the id is free again.
    again = [event async for event in runner.run(request)]
    assert isinstance(again[-1], RunSummary)


async def test_a_run_with_take_over_ends_the_run_holding_its_id_and_its_model_work() -> None:
    release = asyncio.Event()
    orphan_drawing = asyncio.Event()
    orphan_stopped = asyncio.Event()
    started = cancelled = 0

    async def held(request: rq.CompletionRequest) -> rq.CompletionResult:
        nonlocal started, cancelled
        started += 1
        if started == 4:  # the orphan's four rows (two problems, fractions 0.5 and 1) are drawing
            orphan_drawing.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled += 1
            if cancelled == 4:
                orphan_stopped.set()
            raise
        return await complete(request)

    runner = TransferRunner(stream_prefixes, held, max_concurrent_completions=8)
    request = dataclasses.replace(two_problems(), experiment_id="exp-1")
    orphan = runner.run(request)  # a call whose reader left without cancelling it
    assert isinstance(await anext(orphan), rq.StrongCot)
    await asyncio.wait_for(orphan_drawing.wait(), 5)

    taking_over = runner.run(dataclasses.replace(request, take_over=True))
    first = asyncio.ensure_future(anext(taking_over))
    # The orphan's completions in flight are cancelled (the engine aborts them) before the new run draws.
    await asyncio.wait_for(orphan_stopped.wait(), 5)
    release.set()
    events = [await first]
    assert runner.running_experiments() == {"exp-1"}  # now the new run's
    events += [event async for event in taking_over]
    assert isinstance(events[-1], RunSummary)
    with pytest.raises(AbortedError, match="'exp-1' was taken over"):
        async for _ in orphan:
            pass
    assert runner.running_experiments() == frozenset()


async def test_unknown_grader_fails_before_any_model_call() -> None:
    calls = []

    async def recording(request: rq.PrefixRequest) -> AsyncIterator[rq.StrongEvent]:
        calls.append(request)
        async for event in stream_prefixes(request):
            yield event

    runner = TransferRunner(recording, complete, max_concurrent_completions=2)
    with pytest.raises(NotFoundError):
        [event async for event in runner.run(two_problems(grader="nope"))]
    assert calls == []


async def test_closing_the_stream_cancels_outstanding_work() -> None:
    cancelled = asyncio.Event()

    async def hanging(request: rq.CompletionRequest) -> rq.CompletionResult:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    runner = TransferRunner(stream_prefixes, hanging, max_concurrent_completions=2)
    stream = runner.run(two_problems())
    first = await anext(stream)
    assert isinstance(first, rq.StrongCot)
    await stream.aclose()
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_strong_cots_are_written_a_bounded_number_at_a_time_in_problem_order() -> None:
    open_streams = 0
    most_open = 0
    order: list[str] = []

    async def counted_stream(request: rq.PrefixRequest) -> AsyncIterator[rq.StrongEvent]:
        nonlocal open_streams, most_open
        open_streams += 1
        most_open = max(most_open, open_streams)
        order.append(PROBLEMS[request.problem])
        await asyncio.sleep(0.01)
        async for event in stream_prefixes(request):
            yield event
        open_streams -= 1

    runner = TransferRunner(counted_stream, complete, max_concurrent_completions=4, max_concurrent_cots=1)
    events = [event async for event in runner.run(two_problems())]
    assert most_open == 1
    assert order == ["p1", "p2"]
    assert isinstance(events[-1], RunSummary)
    assert sum(isinstance(event, rq.FractionResult) for event in events) == 6


async def test_every_prefix_is_judged_on_whether_it_states_the_reference_answer() -> None:
    runner = TransferRunner(stream_prefixes, complete, max_concurrent_completions=4)
    events = [event async for event in runner.run(two_problems())]
    rows = {
        (row.problem_id, row.fraction): row.answer_in_prefix for row in events if isinstance(row, rq.FractionResult)
    }
    # p1's CoT ends "Answer: 1", its reference; p2's states 2 against a reference of 3.
    assert rows == {
        ("p1", 0.0): False,
        ("p1", 0.5): False,
        ("p1", 1.0): True,
        ("p2", 0.0): False,
        ("p2", 0.5): False,
        ("p2", 1.0): False,
    }
    strong = {cot.problem_id: cot for cot in events if isinstance(cot, rq.StrongCot)}
    assert [prefix.answer_in_prefix for prefix in strong["p1"].prefixes] == [False, False, True]
    assert [prefix.answer_in_prefix for prefix in strong["p2"].prefixes] == [False, False, False]


async def test_the_strong_answer_and_the_prefixes_are_graded_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cot_transfer.domain.answers import ExactGrader
    from cot_transfer.serving.dataplane import fanout as transfer

    loop_thread = threading.get_ident()
    grading_threads: list[int] = []

    class RecordingGrader(ExactGrader):
        def is_correct(self, extracted: str | None, reference: str) -> bool:
            grading_threads.append(threading.get_ident())
            return super().is_correct(extracted, reference)

    monkeypatch.setattr(transfer, "service_grader", lambda name, metrics=None: RecordingGrader())
    runner = TransferRunner(stream_prefixes, complete, max_concurrent_completions=4)
    events = [event async for event in runner.run(two_problems())]
    assert {cot.problem_id: cot.correct for cot in events if isinstance(cot, rq.StrongCot)} == {"p1": True, "p2": False}
    assert grading_threads
    assert loop_thread not in grading_threads
