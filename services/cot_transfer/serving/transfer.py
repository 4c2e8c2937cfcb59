"""The transfer experiment: fan out over problems and fractions, stream results, summarise."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from cot_transfer.domain.errors import UnavailableError
from cot_transfer.domain.grading import get_grader
from cot_transfer.domain.requests import (
    CompletionRequest,
    CompletionResult,
    CotPrefix,
    FractionResult,
    PrefixRequest,
    Problem,
    StrongAnswer,
    StrongCot,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.domain.transfer import FractionOutcome, RunningUnlockRates, TransferSummary, summarize
from cot_transfer.serving.metrics import NO_METRICS, ServiceMetrics

StreamPrefixes = Callable[[PrefixRequest], AsyncIterator[StrongEvent]]
Complete = Callable[[CompletionRequest], Awaitable[CompletionResult]]
TransferEvent = StrongCot | FractionResult | TransferSummary


@dataclass(frozen=True)
class _Failure:
    error: BaseException


_DONE = object()


def longest_generation_first(prefix: CotPrefix) -> float:
    """Scheduling key of a weak request (lower runs sooner): the most CoT left to write first.

    The weak model continues a prefix to the end of the reasoning, so the CoT tokens past the
    prefix predict how long its generation runs. Starting the longest generations first and
    filling in with the short ones (longest-processing-time-first) keeps the engine's batch
    full to the end of the run instead of leaving a tail of long generations behind.
    It does not cost prefix-cache reuse: a problem's prompts are prefixes of one another and
    vLLM caches a block as soon as it is scheduled, so a shorter prompt sent first shares its
    full blocks with the longer ones as well as the other way round (and its samples, which
    often repeat the CoT, fill further blocks the longer prompts can reuse). Measured with
    ``python -m benchmarks.ordering`` (BENCHMARKS.md).
    """
    return -float(prefix.cot_num_tokens - prefix.num_tokens)


def longest_prefix_first(prefix: CotPrefix) -> float:
    """The alternative key: the longest prompt of a problem first (kept for the benchmarks)."""
    return -float(prefix.num_tokens)


def arrival_order(prefix: CotPrefix) -> float:
    """No priority: requests run in the order they are created (each problem's fractions in
    request order, problems as their CoTs finish), as a plain semaphore admits them."""
    return 0.0


SchedulingKey = Callable[[CotPrefix], float]


class PrioritySlots:
    """A semaphore whose waiters are admitted lowest key first, in arrival order among equals."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self._free = slots
        self._waiters: list[tuple[tuple[float, ...], int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[float, ...]) -> AsyncIterator[None]:
        await self._acquire(key)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, key: tuple[float, ...]) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (key, next(self._arrivals), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                # The slot was handed over just as this waiter was cancelled: pass it on.
                self._release()
            raise

    def _release(self) -> None:
        while self._waiters:
            _, _, granted = heapq.heappop(self._waiters)
            if not granted.done():  # cancelled waiters stay in the heap until they surface here
                granted.set_result(None)
                return
        self._free += 1


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
        scheduling_key: SchedulingKey = longest_generation_first,
        max_concurrent_cots: int = 32,
    ) -> None:
        """At most ``max_concurrent_completions`` weak requests are in flight across all runs; the
        waiting ones go out run by run, in each run by ``scheduling_key`` (lowest first).
        At most ``max_concurrent_cots`` strong CoTs are written at once across all runs, run by
        run and in each run in problem order, so a run of thousands of problems does not flood
        the strong model's queue."""
        self._stream_prefixes = stream_prefixes
        self._complete = complete
        self._scheduling_key = scheduling_key
        self._completion_slots = PrioritySlots(max_concurrent_completions)
        self._cot_slots = PrioritySlots(max_concurrent_cots)
        self._runs_started = itertools.count()
        self._metrics = metrics
        self._running = 0

    async def run(self, request: TransferRequest) -> AsyncGenerator[TransferEvent, None]:
        get_grader(request.grader)  # an unknown grader fails the run before any model work
        events: asyncio.Queue[object] = asyncio.Queue()
        producer = asyncio.create_task(self._produce(request, next(self._runs_started), events))
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
                if isinstance(event, FractionResult):
                    outcome = FractionOutcome(event.problem_id, event.fraction, event.n, event.num_correct)
                    outcomes.append(outcome)
                    running_rates.add(outcome)
                    self._metrics.experiment_progress(request.experiment_id, len(outcomes), rows_expected)
                    self._metrics.experiment_unlock_rates(request.experiment_id, running_rates.rates())
                    yield event
                elif isinstance(event, StrongCot):
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

    async def _produce(self, request: TransferRequest, run_number: int, events: asyncio.Queue[object]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for index, problem in enumerate(request.problems):
                    group.create_task(self._run_problem(request, problem, (run_number, index), events))
        except BaseExceptionGroup as group_error:
            await events.put(_Failure(_first_cause(group_error)))
        except BaseException as error:  # cancellation included: the consumer is gone or going
            await events.put(_Failure(error))
            raise
        else:
            await events.put(_DONE)

    async def _run_problem(
        self,
        request: TransferRequest,
        problem: Problem,
        position: tuple[int, int],
        events: asyncio.Queue[object],
    ) -> None:
        """``position``: (run number, problem index), the order in which CoTs get written."""
        run_number = position[0]
        prefixes: list[CotPrefix] = []
        answer: StrongAnswer | None = None
        prefix_request = PrefixRequest(
            problem=problem.problem,
            fractions=request.fractions,
            sampling=request.strong_sampling,
            grader=request.grader,
        )
        async with self._cot_slots.hold((float(position[0]), float(position[1]))):
            async for event in self._stream_prefixes(prefix_request):
                if isinstance(event, CotPrefix):
                    prefixes.append(event)
                elif isinstance(event, StrongAnswer):
                    answer = event
        if answer is None:
            raise UnavailableError(f"the strong model ended problem {problem.id!r} without an answer")
        grader = get_grader(request.grader)
        await events.put(
            StrongCot(
                problem_id=problem.id,
                cot=answer.cot,
                answer=answer.answer,
                correct=grader.is_correct(answer.answer, problem.answer),
                cot_num_tokens=answer.cot_num_tokens,
                prefixes=tuple(prefixes),
            )
        )
        async with asyncio.TaskGroup() as group:
            for prefix in prefixes:
                group.create_task(self._run_fraction(request, problem, prefix, run_number, events))

    async def _run_fraction(
        self,
        request: TransferRequest,
        problem: Problem,
        prefix: CotPrefix,
        run_number: int,
        events: asyncio.Queue[object],
    ) -> None:
        completion_request = CompletionRequest(
            problem=problem.problem,
            prefix=prefix.text,
            n=request.n,
            sampling=request.weak_sampling,
            reference_answer=problem.answer,
            grader=request.grader,
        )
        # Runs keep their arrival order; within a run the scheduling key decides.
        async with self._completion_slots.hold((float(run_number), self._scheduling_key(prefix))):
            result = await self._complete(completion_request)
        await events.put(
            FractionResult(
                problem_id=problem.id,
                fraction=prefix.fraction,
                prefix_num_tokens=prefix.num_tokens,
                cot_num_tokens=prefix.cot_num_tokens,
                n=len(result.completions),
                num_correct=result.num_correct,
            )
        )
