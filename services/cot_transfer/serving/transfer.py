"""The transfer experiment: fan out over problems and fractions, stream results, summarise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from cot_transfer.domain.errors import UnavailableError
from cot_transfer.domain.grading import get_grader
from cot_transfer.domain.requests import (
    CompletionRequest,
    CompletionResult,
    CotPrefix,
    FractionRecord,
    PrefixRequest,
    ProblemSpec,
    StrongAnswer,
    StrongCotRecord,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.domain.transfer import FractionOutcome, RunningUnlockRates, TransferSummary, summarize
from cot_transfer.serving.metrics import NO_METRICS, ServiceMetrics

StreamPrefixes = Callable[[PrefixRequest], AsyncIterator[StrongEvent]]
Complete = Callable[[CompletionRequest], Awaitable[CompletionResult]]
TransferEvent = StrongCotRecord | FractionRecord | TransferSummary


@dataclass(frozen=True)
class _Failure:
    error: BaseException


_DONE = object()


def longest_first(prefixes: Sequence[CotPrefix]) -> list[CotPrefix]:
    """The order a problem's weak requests are sent in: longest prefix first.

    Every prompt of a problem is the same rendered problem followed by a prefix of the same
    CoT, so the prompts are prefixes of the longest one. Sent first, the longest prompt puts
    every full KV-cache block the shorter prompts can share into the engine's prefix cache
    (vLLM caches a block as soon as it is scheduled), and each shorter prompt then computes
    only its tokens past the last shared full block. The longer prompts also have the
    smallest generation budgets, so they finish first and free their slots soonest. Ties
    keep the request order.
    """
    return sorted(prefixes, key=lambda prefix: -prefix.num_tokens)


def _first_cause(error: BaseException) -> BaseException:
    """The first error inside (nested) task groups: the one the caller should see."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class TransferRunner:
    """Runs one experiment against a strong and a weak model given as two callables.

    The callables are deployment handles in the service and plain functions in tests, so the
    orchestration is tested without Ray.
    """

    def __init__(
        self,
        stream_prefixes: StreamPrefixes,
        complete: Complete,
        max_concurrent_completions: int,
        metrics: ServiceMetrics = NO_METRICS,
    ) -> None:
        self._stream_prefixes = stream_prefixes
        self._complete = complete
        self._completion_slots = asyncio.Semaphore(max_concurrent_completions)
        self._metrics = metrics
        self._running = 0

    async def run(self, request: TransferRequest) -> AsyncGenerator[TransferEvent, None]:
        get_grader(request.grader)  # an unknown grader fails the run before any model work
        events: asyncio.Queue[object] = asyncio.Queue()
        producer = asyncio.create_task(self._produce(request, events))
        outcomes: list[FractionOutcome] = []
        strong_correct: dict[str, bool] = {}
        running_rates = RunningUnlockRates(request.thresholds)
        rows_expected = len(request.problems) * len(request.fractions)
        self._running += 1
        self._metrics.experiments_running(self._running)
        self._metrics.experiment_progress(request.experiment_id, 0, rows_expected)
        try:
            while (event := await events.get()) is not _DONE:
                if isinstance(event, _Failure):
                    raise event.error
                if isinstance(event, FractionRecord):
                    outcome = FractionOutcome(event.problem_id, event.fraction, event.n, event.num_correct)
                    outcomes.append(outcome)
                    running_rates.add(outcome)
                    self._metrics.experiment_progress(request.experiment_id, len(outcomes), rows_expected)
                    self._metrics.experiment_unlock_rates(request.experiment_id, running_rates.rates())
                    yield event
                elif isinstance(event, StrongCotRecord):
                    strong_correct[event.problem_id] = event.correct
                    yield event
        finally:
            self._running -= 1
            self._metrics.experiments_running(self._running)
            if not producer.done():
                producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        yield summarize(
            outcomes,
            fractions=request.fractions,
            n_samples=request.n,
            thresholds=request.thresholds,
            strong_correct=strong_correct,
        )

    async def _produce(self, request: TransferRequest, events: asyncio.Queue[object]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for problem in request.problems:
                    group.create_task(self._run_problem(request, problem, events))
        except BaseExceptionGroup as group_error:
            await events.put(_Failure(_first_cause(group_error)))
        except BaseException as error:  # cancellation included: the consumer is gone or going
            await events.put(_Failure(error))
            raise
        else:
            await events.put(_DONE)

    async def _run_problem(self, request: TransferRequest, problem: ProblemSpec, events: asyncio.Queue[object]) -> None:
        prefixes: list[CotPrefix] = []
        answer: StrongAnswer | None = None
        prefix_request = PrefixRequest(
            problem=problem.problem,
            fractions=request.fractions,
            sampling=request.strong_sampling,
            grader=request.grader,
        )
        async for event in self._stream_prefixes(prefix_request):
            if isinstance(event, CotPrefix):
                prefixes.append(event)
            elif isinstance(event, StrongAnswer):
                answer = event
        if answer is None:
            raise UnavailableError(f"the strong model ended problem {problem.id!r} without an answer")
        grader = get_grader(request.grader)
        await events.put(
            StrongCotRecord(
                problem_id=problem.id,
                cot=answer.cot,
                answer=answer.answer,
                correct=grader.is_correct(answer.answer, problem.answer),
                cot_num_tokens=answer.cot_num_tokens,
                prefixes=tuple(prefixes),
            )
        )
        async with asyncio.TaskGroup() as group:
            for prefix in longest_first(prefixes):
                group.create_task(self._run_fraction(request, problem, prefix, events))

    async def _run_fraction(
        self, request: TransferRequest, problem: ProblemSpec, prefix: CotPrefix, events: asyncio.Queue[object]
    ) -> None:
        completion_request = CompletionRequest(
            problem=problem.problem,
            prefix=prefix.text,
            n=request.n,
            sampling=request.weak_sampling,
            reference_answer=problem.answer,
            grader=request.grader,
        )
        async with self._completion_slots:
            result = await self._complete(completion_request)
        await events.put(
            FractionRecord(
                problem_id=problem.id,
                fraction=prefix.fraction,
                prefix_num_tokens=prefix.num_tokens,
                cot_num_tokens=prefix.cot_num_tokens,
                n=len(result.completions),
                num_correct=result.num_correct,
            )
        )
