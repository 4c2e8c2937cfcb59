"""The transfer experiment: fan out over problems and fractions, stream results, summarise."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cot_transfer.domain.analysis import PROBLEM_ERROR, REASONING_TRUNCATED
from cot_transfer.domain.cut_search import CutSearch
from cot_transfer.domain.errors import (
    AbortedError,
    AlreadyExistsError,
    InvalidArgumentError,
    OverloadedError,
    UnavailableError,
)
from cot_transfer.domain.kept_answers import count_answers
from cot_transfer.domain.leaks import judge_prefix
from cot_transfer.domain.requests import (
    CompletionRequest,
    CompletionResult,
    FractionResult,
    Prefix,
    PrefixRequest,
    Problem,
    ProblemError,
    ResumedProblem,
    StrongAnswer,
    StrongCot,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.domain.run_size import cuts_counted, problem_row_count, row_samples_at_most
from cot_transfer.domain.steps import CutMode
from cot_transfer.domain.transfer import RunSummary
from cot_transfer.serving.common.metrics import NO_METRICS, ServiceMetrics
from cot_transfer.serving.common.serving_config import LimitsConfig
from cot_transfer.serving.dataplane.adaptive_rounds import ProblemRounds, draw_row, with_sample_counts
from cot_transfer.serving.dataplane.failures import failure_of
from cot_transfer.serving.dataplane.receiver_analysis import ReceiverAnalyses, completion_request, run_receiver_modes
from cot_transfer.serving.replicas.cuts import check_step_count, prefix_request_for
from cot_transfer.serving.replicas.graders import service_grader

StreamPrefixes = Callable[[PrefixRequest], AsyncIterator[StrongEvent]]
Complete = Callable[[CompletionRequest], Awaitable[CompletionResult]]
TransferEvent = StrongCot | FractionResult | ProblemError | RunSummary
RunEvents = Callable[[TransferRequest], AsyncIterator[TransferEvent]]


def by_receiver(completes: Mapping[str, Complete], default: Complete) -> Complete:
    """One ``Complete`` that sends each request to its receiver's (the edge admits served names only)."""

    async def complete(request: CompletionRequest) -> CompletionResult:
        return await completes.get(request.receiver, default)(request)

    return complete


@dataclass(frozen=True)
class _Failure:
    error: BaseException


_DONE = object()
# How long a take-over waits for the run it ends to stop its model work before it starts its own.
TAKE_OVER_WAIT_S = 30.0


@dataclass
class _Holder:
    """The run holding an experiment id, as a call that takes the id over needs it."""

    producer: asyncio.Task[None]
    events: asyncio.Queue[object]
    # Set when the id is taken over: the run's stream ends with it at its next read.
    aborted: AbortedError | None = None


# The limits a runner keeps when it is given none: the config's defaults (tests, benchmarks).
DEFAULT_LIMITS = LimitsConfig()


def longest_generation_first(prefix: Prefix) -> float:
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


SchedulingKey = Callable[[Prefix], float]


_Waiter = tuple[tuple[float, ...], int, asyncio.Future[None]]


class _RunQueues:
    """The requests waiting on ``PrioritySlots``: a heap per run, lowest key (then arrival) first.
    Its length counts every waiter, cancelled ones included until they surface."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[_Waiter]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, run: int, waiter: _Waiter) -> None:
        heapq.heappush(self._heaps.setdefault(run, []), waiter)
        self._count += 1

    def pop_fairest(self, held: Mapping[int, int]) -> tuple[int, asyncio.Future[None]] | None:
        """The next waiter of the run that holds the fewest slots (the earliest run among equals)."""
        if not self._heaps:
            return None
        run = min(self._heaps, key=lambda waiting: (held.get(waiting, 0), waiting))
        heap = self._heaps[run]
        _, _, granted = heapq.heappop(heap)
        if not heap:
            del self._heaps[run]
        self._count -= 1
        return run, granted


class PrioritySlots:
    """A semaphore shared fairly by runs: a freed slot goes to the waiting run that holds the
    fewest slots (the earliest run among equals), and in that run to the lowest key, in arrival
    order among equals.

    Fewest-held-first shares the slots evenly among the runs that want them, so a run of one
    problem started beside a run of thousands gets its few requests in at the next releases
    instead of after all of the big run's. A lone run keeps its own order, and with a single slot
    (where every run holds none or one) runs go in arrival order.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self._free = slots
        self._waiters = _RunQueues()
        self._held: dict[int, int] = {}
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[float, ...], run: int = 0) -> AsyncIterator[None]:
        """A slot for one request of ``run`` (a number: lower is earlier), waiting in line by ``key``."""
        await self._acquire(key, run)
        try:
            yield
        finally:
            self._release(run)

    async def _acquire(self, key: tuple[float, ...], run: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            self._held[run] = self._held.get(run, 0) + 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.push(run, (key, next(self._arrivals), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                # The slot was handed over just as this waiter was cancelled: pass it on.
                self._release(run)
            raise

    def _release(self, run: int) -> None:
        # The releasing run's count drops first, so with one slot a tie goes to the earlier run.
        self._held[run] -= 1
        if not self._held[run]:
            del self._held[run]
        while (waiter := self._waiters.pop_fairest(self._held)) is not None:
            next_run, granted = waiter
            if not granted.done():  # cancelled waiters stay queued until they surface here
                self._held[next_run] = self._held.get(next_run, 0) + 1
                granted.set_result(None)
                return
        self._free += 1


def _first_cause(error: BaseException) -> BaseException:
    """The first error inside (nested) task groups: the one the caller should see."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def problem_error(problem_id: str, error: BaseException) -> ProblemError:
    """The per-problem error event for a failure, named once by ``failures.failure_of`` (an
    unexpected error is logged there under an incident id, which is all the message carries)."""
    failure = failure_of(_first_cause(error))
    return ProblemError(problem_id=problem_id, code=failure.code, message=failure.details)


def row_fields_of(prefix: Prefix) -> dict[str, Any]:
    """What a row takes from the prefix it was drawn on: where the cut is and what it gives away."""
    return {
        "fraction": prefix.fraction,
        "prefix_num_tokens": prefix.num_tokens,
        "cot_num_tokens": prefix.cot_num_tokens,
        "num_steps": prefix.num_steps,
        "answer_in_prefix": prefix.answer_in_prefix,
        "answer_stated_in_prefix": prefix.answer_stated_in_prefix,
    }


def _rows(request: TransferRequest, cuts_per_problem: int) -> int:
    """The rows of a run whose fresh problems are cut ``cuts_per_problem`` times (``run_size.problem_row_count``)."""
    modes = len(run_receiver_modes(request))
    return sum(problem_row_count(request.resumed.get(one.id), cuts_per_problem, modes) for one in request.problems)


def expected_rows(request: TransferRequest) -> int:
    """The rows a run sends: every (fraction, receiver, mode) of each problem, a resumed problem's
    own rows (or every row of its stored prefixes)."""
    return _rows(request, len(request.fractions))


def most_samples(request: TransferRequest) -> int:
    """The most samples a run can draw: each row's n (a plan's n_max), an every-step cut counted at
    the most steps a problem may have, since its cuts are known only once the CoT is written."""
    per_row = row_samples_at_most(request.n, request.sampling_plan)
    return _rows(request, cuts_counted(request.cut, len(request.fractions), request.max_steps)) * per_row


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
        limits: LimitsConfig = DEFAULT_LIMITS,
    ) -> None:
        """At most ``max_concurrent_completions`` weak requests are in flight across all runs; a
        freed slot goes to the run holding the fewest (``PrioritySlots``), in each run by
        ``scheduling_key`` (lowest first). At most ``max_concurrent_cots`` strong CoTs are written
        at once across all runs, shared the same way and in each run in problem order, so a run of
        thousands of problems neither floods the strong model's queue nor holds a small run back.
        ``limits``: the most runs at once (``max_concurrent_runs``) and samples a run
        (``max_samples_per_run``)."""
        self._stream_prefixes = stream_prefixes
        self._complete = complete
        self._scheduling_key = scheduling_key
        self._completion_slots = PrioritySlots(max_concurrent_completions)
        self._cot_slots = PrioritySlots(max_concurrent_cots)
        self._runs_started = itertools.count()
        self._limits = limits
        self._metrics = metrics
        self._running = 0
        self._experiments: dict[str, _Holder] = {}

    def running_experiments(self) -> frozenset[str]:
        """The experiment ids of the runs in progress here."""
        return frozenset(self._experiments)

    async def run(self, request: TransferRequest) -> AsyncGenerator[TransferEvent, None]:
        """Streams each problem's StrongCot and FractionResults, a ProblemError for each problem
        that could not be run (its rows so far stay valid but it is left out of the summary),
        and last the summary."""
        service_grader(request.grader)  # an unknown grader fails the run before any model work
        self._check_limits(request)
        while request.experiment_id and (holder := self._experiments.get(request.experiment_id)) is not None:
            if not request.take_over:
                # Two runs under one id would write each other's progress and unlock-rate series.
                raise AlreadyExistsError(
                    f"experiment_id {request.experiment_id!r} is already running; wait for it or use another id"
                )
            await self._take_over(request.experiment_id, holder)
        # Bounded: a slow reader makes the problems wait at their next put (back-pressure), never buffers without end.
        events: asyncio.Queue[object] = asyncio.Queue(self._limits.max_buffered_events_per_run)
        strong_correct: dict[str, bool] = {}
        # One analysis path: the gauges rerun the summary's analysis, at most once a second.
        # One per (receiver, mode); the gauges follow the primary one.
        running = ReceiverAnalyses(request)
        rows_expected = expected_rows(request)
        self._running += 1
        self._metrics.experiments_running(self._running)
        self._metrics.experiment_started(request.experiment_id)
        self._metrics.experiment_progress(request.experiment_id, 0, rows_expected)
        samples_drawn = 0
        producer = asyncio.create_task(self._produce(request, next(self._runs_started), events))
        holder = _Holder(producer, events)
        if request.experiment_id:
            self._experiments[request.experiment_id] = holder
        try:
            while (event := await events.get()) is not _DONE:
                if holder.aborted is not None:
                    raise holder.aborted
                if isinstance(event, _Failure):
                    raise event.error
                if isinstance(event, FractionResult):
                    running.add(event)
                    samples_drawn += event.n
                    self._metrics.experiment_progress(request.experiment_id, running.rows, rows_expected)
                    rates = running.unlock_rates_due()
                    if rates is not None:
                        self._metrics.experiment_unlock_rates(request.experiment_id, rates)
                    yield event
                elif isinstance(event, StrongCot):
                    strong_correct[event.problem_id] = event.correct
                    if event.reasoning_truncated:
                        running.exclude(event.problem_id, REASONING_TRUNCATED)
                    yield event
                elif isinstance(event, ProblemError):
                    running.exclude(event.problem_id, PROBLEM_ERROR)
                    yield event
            final_rates = running.unlock_rates_due(force=True)
            if final_rates is not None:
                self._metrics.experiment_unlock_rates(request.experiment_id, final_rates)
        finally:
            self._running -= 1
            if self._experiments.get(request.experiment_id) is holder:  # not when taken over
                del self._experiments[request.experiment_id]
            self._metrics.experiments_running(self._running)
            self._metrics.experiment_ended(request.experiment_id)
            if not producer.done():
                producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        summary = running.run_summary(request.n, strong_correct)
        yield with_sample_counts(summary, samples_drawn, running.rows, request.sampling_plan, request.n)

    async def _take_over(self, experiment_id: str, holder: _Holder) -> None:
        """Ends the run holding ``experiment_id`` for a call that takes the id over: its model work
        is cancelled (engine requests aborted) and its stream ends with ABORTED at its next read.
        Its reader is most likely gone: a client killed while Serve's gRPC proxy was writing to it,
        whose call the proxy never ended."""
        del self._experiments[experiment_id]  # the caller found ``holder`` there, with no await since
        holder.aborted = AbortedError(
            f"experiment_id {experiment_id!r} was taken over by a later call (a resume of the same results folder)"
        )
        holder.producer.cancel()
        await asyncio.wait({holder.producer}, timeout=TAKE_OVER_WAIT_S)
        if holder.events.empty():
            # A reader waiting on the empty queue wakes to the abort.
            holder.events.put_nowait(_Failure(holder.aborted))

    def _check_limits(self, request: TransferRequest) -> None:
        """Refuses, before any model work, a run too big for one call (for good: INVALID_ARGUMENT)
        and a run beyond the runs this replica takes at once (for now: RESOURCE_EXHAUSTED)."""
        samples = most_samples(request)
        if samples > self._limits.max_samples_per_run:
            raise InvalidArgumentError(
                "problems",
                f"{len(request.problems)} problems may draw {samples} samples (prefixes x receivers x modes x n);"
                f" at most {self._limits.max_samples_per_run} (limits.max_samples_per_run): split them over runs",
            )
        if self._running >= self._limits.max_concurrent_runs:
            raise OverloadedError(
                f"{self._running} Transfer.Run calls are in progress on this replica, its limit"
                " (limits.max_concurrent_runs); retry with backoff"
            )

    async def _produce(self, request: TransferRequest, run_number: int, events: asyncio.Queue[object]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for index, problem in enumerate(request.problems):
                    work = self._run_problem(request, problem, (run_number, index), events)
                    group.create_task(self._isolated(problem.id, work, events))
        except BaseExceptionGroup as group_error:
            await events.put(_Failure(_first_cause(group_error)))
        except BaseException as error:  # cancellation included: the consumer is gone or going
            # Not awaited: on a full queue no reader is left to make room, and the consumer's cleanup awaits this task.
            with contextlib.suppress(asyncio.QueueFull):
                events.put_nowait(_Failure(error))
            raise
        else:
            await events.put(_DONE)

    async def _isolated(self, problem_id: str, work: Awaitable[None], events: asyncio.Queue[object]) -> None:
        """Runs one problem's ``work``; its failure becomes its ProblemError and the other problems
        go on. Cancellation (the caller left, the deadline passed) is not a problem's failure: it
        ends the run."""
        try:
            await work
        except Exception as error:  # a task group of the problem's fractions included
            await events.put(problem_error(problem_id, error))

    async def _strong_cot(
        self, request: TransferRequest, problem: Problem, position: tuple[int, int]
    ) -> tuple[list[Prefix], StrongAnswer]:
        """The problem's CoT from the strong model (or cut from its imported CoT) and its prefixes."""
        prefixes: list[Prefix] = []
        answer: StrongAnswer | None = None
        async with self._cot_slots.hold((float(position[1]),), run=position[0]):
            async for event in self._stream_prefixes(prefix_request_for(request, problem)):
                if isinstance(event, Prefix):
                    prefixes.append(event)
                elif isinstance(event, StrongAnswer):
                    answer = event
        if answer is None:
            raise UnavailableError(f"the strong model ended problem {problem.id!r} without an answer")
        check_step_count(request, prefixes)
        return prefixes, answer

    async def _run_problem(
        self,
        request: TransferRequest,
        problem: Problem,
        position: tuple[int, int],
        events: asyncio.Queue[object],
    ) -> None:
        """``position``: (run number, problem index), the order in which CoTs get written. A
        resumed problem with stored prefixes is completed on them: no CoT is written or sent."""
        run_number = position[0]
        resumed = request.resumed.get(problem.id, ResumedProblem())
        answer: StrongAnswer | None = None
        if resumed.prefixes:
            prefixes = list(resumed.prefixes)
        else:
            prefixes, answer = await self._strong_cot(request, problem, position)
        grader = service_grader(request.grader, self._metrics)
        # Grading may block on a math-verify worker for seconds: off the event loop.
        leaks = await asyncio.to_thread(lambda: [judge_prefix(grader, cut.text, problem.answer) for cut in prefixes])
        judged = tuple(
            dataclasses.replace(
                prefix, answer_in_prefix=leak.answer_in_prefix, answer_stated_in_prefix=leak.answer_stated_in_prefix
            )
            for prefix, leak in zip(prefixes, leaks, strict=True)
        )
        if answer is not None:
            correct = await asyncio.to_thread(grader.is_correct, answer.answer, problem.answer)
            # Every field of the strong model's answer, and what the run adds: correctness, judged prefixes.
            cot = StrongCot(problem_id=problem.id, correct=correct, prefixes=judged, **dataclasses.asdict(answer))
            await events.put(cot)
        if request.cut is CutMode.SEARCH and not resumed.rows:
            # A resumed search names the rows of its next wave (the client replays the search
            # over the rows on disk): those are drawn as any resumed rows.
            await self._search_problem(request, problem, judged, run_number, events)
            return
        # Every receiver, in every mode, completes the same prefix (a resume: the rows it lacks).
        rows = [
            (prefix, receiver, mode)
            for prefix in judged
            for receiver, mode in run_receiver_modes(request)
            if not resumed.rows or (prefix.fraction, receiver, mode) in resumed.rows
        ]
        # Adaptive sampling: the rows of one (receiver, mode) share its baseline's state, where
        # the baseline row is drawn in this run (a resumed row whose baseline is on disk does not wait).
        rounds: dict[tuple[str, str], ProblemRounds] = {}
        if request.sampling_plan is not None:
            for key in run_receiver_modes(request):
                fractions = [prefix.fraction for prefix, receiver, mode in rows if (receiver, mode) == key]
                rounds[key] = ProblemRounds(request, fractions)
        async with asyncio.TaskGroup() as group:
            for prefix, receiver, mode in rows:
                group.create_task(
                    self._run_fraction(
                        request, problem, prefix, run_number, events, receiver, mode, rounds.get((receiver, mode))
                    )
                )

    async def _search_problem(
        self,
        request: TransferRequest,
        problem: Problem,
        prefixes: tuple[Prefix, ...],
        run_number: int,
        events: asyncio.Queue[object],
    ) -> None:
        """A search run's problem: per (receiver, mode), rows only at the cuts the search probes,
        wave after wave (``cot_transfer.domain.cut_search``); the waves of the receivers run at once."""

        async def search(receiver: str, mode: str) -> None:
            rounds = ProblemRounds(request, [0.0]) if request.sampling_plan is not None else None
            cut_search = CutSearch(len(prefixes), request.thresholds)
            while wave := cut_search.next_wave():
                async with asyncio.TaskGroup() as group:
                    tasks = {
                        cut: group.create_task(
                            self._run_fraction(
                                request, problem, prefixes[cut], run_number, events, receiver, mode, rounds
                            )
                        )
                        for cut in wave
                    }
                for cut, task in tasks.items():
                    row = task.result()
                    cut_search.observe(cut, row.num_correct, row.n, row.potential)

        async with asyncio.TaskGroup() as group:
            for receiver, mode in run_receiver_modes(request):
                group.create_task(search(receiver, mode))

    async def _run_fraction(
        self,
        request: TransferRequest,
        problem: Problem,
        prefix: Prefix,
        run_number: int,
        events: asyncio.Queue[object],
        receiver: str = "",
        mode: str = "free",
        rounds: ProblemRounds | None = None,
    ) -> FractionResult:
        completion = completion_request(request, problem, prefix, receiver, mode)

        async def draw(round_request: CompletionRequest) -> CompletionResult:
            # Runs share the slots evenly; within a run the scheduling key decides.
            async with self._completion_slots.hold((self._scheduling_key(prefix),), run=run_number):
                return await self._complete(round_request)

        drawn = await draw_row(rounds, completion, prefix.fraction, (receiver, mode), draw)
        result = drawn.result
        row = FractionResult(
            problem_id=problem.id,
            n=len(result.completions),
            num_correct=result.num_correct,
            receiver=receiver,
            mode=mode,
            answer_counts=count_answers(sample.extracted_answer for sample in result.completions),
            completions=tuple(result.completions) if request.keep_completions else (),
            rounds=drawn.rounds,
            stop_reason=drawn.stop_reason,
            rao_blackwell_potential=drawn.rao_blackwell_potential,
            **row_fields_of(prefix),
        )
        await events.put(row)
        return row
