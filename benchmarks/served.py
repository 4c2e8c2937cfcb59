"""The served phases: warm-up, the timed ``Transfer.Run``, and the weak replay through ``WeakModel.Complete``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.naive import WeakJob
from benchmarks.record import Replay
from benchmarks.stack import ServedStack
from cot_transfer.client import Sampling
from cot_transfer.domain.requests import FractionResult, Problem, ProblemError, StrongCot
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.transfer import RunSummary


def sampling_of(settings: SamplingParams) -> Sampling:
    # The seed too: the seeded comparisons (adaptive, decisions, search) rely on it reaching vLLM.
    return Sampling(
        temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens, seed=settings.seed
    )


async def warm_up(stack: ServedStack, problem: Problem, weak: SamplingParams, strong: SamplingParams) -> None:
    """One call of each kind, so the timed phases see warm replicas and handles."""
    async with stack.client(600) as client:
        await client.wait_ready(60)
        await client.complete(problem.problem, reference_answer=problem.answer, n=2, sampling=sampling_of(weak))
        async for _ in client.run_transfer(
            [problem], [0.0, 1.0], n=2, strong_sampling=sampling_of(strong), weak_sampling=sampling_of(weak)
        ):
            pass


@dataclass
class ServedRun:
    problems: int
    seconds: float
    strong_done_s: float
    strong: dict[str, StrongCot]
    rows: list[FractionResult]
    summary: RunSummary | None


async def served_run(
    stack: ServedStack,
    problems: Sequence[Problem],
    fractions: Sequence[float],
    n: int,
    strong: SamplingParams,
    weak: SamplingParams,
) -> ServedRun:
    """``Transfer.Run`` over every problem, timed from the call to the summary."""
    records: dict[str, StrongCot] = {}
    rows: list[FractionResult] = []
    summary: RunSummary | None = None
    errors: list[ProblemError] = []
    strong_done = 0.0
    async with stack.client(4 * 3600) as client:
        started = time.perf_counter()
        async for event in client.run_transfer(
            problems, fractions, n=n, strong_sampling=sampling_of(strong), weak_sampling=sampling_of(weak)
        ):
            if isinstance(event, StrongCot):
                records[event.problem_id] = event
                strong_done = time.perf_counter() - started
            elif isinstance(event, FractionResult):
                rows.append(event)
            elif isinstance(event, ProblemError):
                errors.append(event)
            else:
                summary = event
        seconds = time.perf_counter() - started
    if errors:
        # A problem that failed leaves its rows out: the throughput would be over less work than asked.
        raise RuntimeError(f"the served run lost {len(errors)} problems, e.g. {errors[0]}")
    return ServedRun(len(problems), seconds, strong_done, records, rows, summary)


def weak_jobs(problems: Sequence[Problem], strong: dict[str, StrongCot]) -> list[WeakJob]:
    """Every (problem, fraction) of the served run with the prefix the service cut."""
    return [
        WeakJob(problem.id, problem.problem, problem.answer, prefix.fraction, prefix.text)
        for problem in problems
        for prefix in strong[problem.id].prefixes
    ]


async def served_weak_replay(
    stack: ServedStack, jobs: Sequence[WeakJob], n: int, weak: SamplingParams, concurrency: int
) -> Replay:
    """The weak prompts of the run through ``WeakModel.Complete``: served weak completions per second."""
    slots = asyncio.Semaphore(concurrency)
    completions = 0

    async def one(job: WeakJob) -> None:
        nonlocal completions
        async with slots:
            result = await client.complete(
                job.problem, reference_answer=job.answer, prefix=job.prefix, n=n, sampling=sampling_of(weak)
            )
        completions += len(result.completions)

    async with stack.client(4 * 3600) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(job) for job in jobs))
        seconds = time.perf_counter() - started
    return Replay(
        requests=len(jobs),
        completions=completions,
        seconds=seconds,
        concurrency=concurrency,
        completions_per_s=completions / seconds if seconds else 0.0,
    )
