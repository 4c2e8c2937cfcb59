"""Adaptive sampling in the transfer runner: rows drawn in rounds, stopped by the stopping rule."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from cot_transfer.domain import requests as rq
from cot_transfer.domain.analysis import analyze
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.sequential import (
    DECIDED,
    MIXTURE_CS,
    N_MAX,
    SamplingPlan,
    StoppingRule,
    confidence_sequence,
)
from cot_transfer.domain.sequential_estimates import rao_blackwell_potential
from cot_transfer.domain.transfer import RunSummary, Thresholds
from cot_transfer.serving.dataplane.fanout import TransferRunner
from tests.fakes import cot_events, transfer_request

COT = "abcdefghijklmnopqrst Answer: 1"


def stream_prefixes(request: rq.PrefixRequest) -> AsyncIterator[rq.StrongEvent]:
    return cot_events(COT, request.fractions, "1")


class Weak:
    """Potential by (problem, prefix length): 'hard' is never solved without the CoT, 'easy'
    always; the half prefix is a coin flip (alternate samples correct) for both."""

    def __init__(self, half_correct_every: int = 2) -> None:
        self.requests: list[rq.CompletionRequest] = []
        self.half_correct_every = half_correct_every

    async def __call__(self, request: rq.CompletionRequest) -> rq.CompletionResult:
        self.requests.append(request)
        await asyncio.sleep(0)  # let the other rows' rounds interleave, as a real engine does
        kept = len(request.prefix) / len(COT)
        easy = request.problem == "easy"
        samples = []
        for index in range(request.n):
            if kept == 0.0:
                correct = easy
            elif kept < 0.9:
                correct = index % self.half_correct_every == 0
            else:
                correct = True
            samples.append(rq.GradedCompletion("", "1" if correct else None, correct, 1, "stop"))
        return rq.CompletionResult(samples, 5)


def planned(problems: list[rq.Problem], plan: SamplingPlan | None, seed: int | None = None) -> rq.TransferRequest:
    sampling = SamplingParams(0.6, 0.95, 50, seed=seed)
    return transfer_request(problems, n=plan.n_max if plan else 32, receiver_sampling=sampling, sampling_plan=plan)


async def run(request: rq.TransferRequest, weak: Weak) -> tuple[dict[tuple[str, float], rq.FractionResult], RunSummary]:
    runner = TransferRunner(stream_prefixes, weak, max_concurrent_completions=2)
    events = [event async for event in runner.run(request)]
    rows = {(event.problem_id, event.fraction): event for event in events if isinstance(event, rq.FractionResult)}
    summary = events[-1]
    assert isinstance(summary, RunSummary)
    return rows, summary


PLAN = SamplingPlan(n_max=64, rounds=(8, 8, 16, 32))


async def test_rows_stop_once_their_decision_is_settled() -> None:
    weak = Weak()
    rows, summary = await run(planned([rq.Problem("hard", "hard", "1")], PLAN), weak)
    # Baseline: "unsolved" is brute force's call, at n_max. A 0-of-8 and an 8-of-8 row are decided
    # after one round; the coin flip sits on tau and runs to n_max.
    assert {key: (row.n, row.rounds, row.stop_reason) for key, row in rows.items()} == {
        ("hard", 0.0): (64, 4, N_MAX),
        ("hard", 0.5): (64, 4, N_MAX),
        ("hard", 1.0): (8, 1, DECIDED),
    }
    assert rows[("hard", 0.5)].num_correct == 32
    assert summary.samples_drawn == 64 + 64 + 8
    assert summary.samples_brute_force == 3 * 64
    assert [stats.unlocked for stats in summary.per_fraction] == [0, 1, 1]
    # Rounds of a row send the same prompt (its prefix), so the prefix cache serves them.
    assert {request.prefix for request in weak.requests if request.n == 32} == {COT[: len(COT) // 2], ""}


async def test_adaptive_rows_report_the_rao_blackwell_potential_and_keep_their_counts() -> None:
    # The half prefix is 1 correct in 4: 2 of 8 and 4 of 16 leave tau open, 8 of 32 settles it
    # below. Its potential is the Rao-Blackwell estimate over the looks it was drawn at (8, 16,
    # 32), not 8 / 32, which early stopping biases; n and num_correct stay the raw counts.
    rows, summary = await run(planned([rq.Problem("hard", "hard", "1")], PLAN), Weak(half_correct_every=4))
    half = rows[("hard", 0.5)]
    assert (half.n, half.num_correct, half.rounds, half.stop_reason) == (32, 8, 3, DECIDED)
    rule = StoppingRule(PLAN, Thresholds())
    assert half.rao_blackwell_potential == rao_blackwell_potential(rule, False, 8, (8, 16, 32))
    assert half.potential == half.rao_blackwell_potential != 8 / 32
    # The unlock decision reads the counts (the rule's call), not the estimate.
    assert [stats.unlocked for stats in summary.per_fraction] == [0, 0, 1]
    # A row stopped after one round: its round's share; the unsolved baseline: 0 of 64.
    assert rows[("hard", 1.0)].potential == 1.0
    assert rows[("hard", 0.0)].potential == 0.0
    # The analysis averages the estimates and gives adaptive rows the anytime-valid interval.
    assert summary.per_fraction[1].mean_potential == pytest.approx(half.rao_blackwell_potential)
    point = analyze(list(rows.values()), thresholds=Thresholds()).problems[0].points[1]
    assert point.potential == half.rao_blackwell_potential
    low, high = confidence_sequence(8, 32, 0.05)
    assert (point.potential_low, point.potential_high) == (float(low), float(high))


async def test_the_plans_rule_stops_the_rows() -> None:
    # 8 of 32 is settled below tau by the default rule; the mixture sequence holds it open until
    # the last look (16 of 64).
    mixture = SamplingPlan(n_max=64, rounds=(8, 8, 16, 32), rule=MIXTURE_CS)
    rows, _ = await run(planned([rq.Problem("hard", "hard", "1")], mixture), Weak(half_correct_every=4))
    assert (rows[("hard", 0.5)].n, rows[("hard", 0.5)].num_correct) == (64, 16)


async def test_a_problem_solved_at_baseline_stops_every_row_after_the_first_round() -> None:
    rows, summary = await run(planned([rq.Problem("easy", "easy", "1")], PLAN), Weak())
    assert {key: (row.n, row.stop_reason) for key, row in rows.items()} == {
        ("easy", 0.0): (8, DECIDED),
        ("easy", 0.5): (8, DECIDED),
        ("easy", 1.0): (8, DECIDED),
    }
    assert summary.baseline_unsolved == 0
    assert summary.samples_drawn == 24


async def test_seeded_rounds_continue_the_seed_stream_of_one_brute_force_request() -> None:
    # vLLM seeds sample j of a request with seed + j: each round starts where the last one ended.
    weak = Weak()
    await run(planned([rq.Problem("hard", "hard", "1")], PLAN, seed=7), weak)
    baseline = [request for request in weak.requests if request.prefix == ""]
    assert len(baseline) == 4
    starts = [7 + sum(request.n for request in baseline[:index]) for index in range(len(baseline))]
    assert [request.sampling.seed for request in baseline] == starts


async def test_without_a_plan_every_row_draws_n_at_once() -> None:
    weak = Weak()
    rows, summary = await run(planned([rq.Problem("hard", "hard", "1")], None), weak)
    assert {(row.n, row.rounds, row.stop_reason) for row in rows.values()} == {(32, 0, "")}
    assert all(row.rao_blackwell_potential is None for row in rows.values())
    assert len(weak.requests) == 3
    assert summary.samples_drawn == summary.samples_brute_force == 96


@pytest.mark.parametrize("failing_fraction", [0.0, 0.5])
async def test_a_failing_round_fails_its_problem_without_leaving_rows_waiting(failing_fraction: float) -> None:
    class Failing(Weak):
        async def __call__(self, request: rq.CompletionRequest) -> rq.CompletionResult:
            drawn_before = sum(1 for earlier in self.requests if earlier.prefix == request.prefix)
            if len(request.prefix) == int(failing_fraction * len(COT)) and drawn_before == 1:
                raise RuntimeError("engine died in the second round")
            return await super().__call__(request)

    runner = TransferRunner(stream_prefixes, Failing(), max_concurrent_completions=2)
    request = planned([rq.Problem("hard", "hard", "1")], PLAN)
    events = [event async for event in runner.run(request)]
    assert any(type(event).__name__ == "ProblemError" for event in events)
    assert isinstance(events[-1], RunSummary)
