"""The cut-search benchmark's comparison: every-step's points, the search's, the testbed's truth."""

from __future__ import annotations

import math

from benchmarks.cut_search import compare_served, insight_cut, within_one_step
from cot_transfer.domain.requests import FractionResult

CUTS = 8
UNLOCK = 5


def row(problem_id: str, cut: int, n: int) -> FractionResult:
    correct = n if cut >= UNLOCK else 0
    return FractionResult(problem_id, cut / (CUTS - 1), 10 * cut, 10 * (CUTS - 1), n, correct, num_steps=cut)


def test_within_one_step_counts_two_absent_points_as_agreeing() -> None:
    assert within_one_step(None, None)
    assert within_one_step(4, 5) and not within_one_step(3, 5)
    assert not within_one_step(None, 5) and not within_one_step(5, None)


def test_the_insight_cut_is_the_first_prefix_that_holds_the_insight_token() -> None:
    record = {"metadata": {"positions": {"insight": {"token": 40, "fraction": 0.6}}}}
    tokens = [10 * cut for cut in range(CUTS)]
    assert insight_cut(record, tokens) == 5  # prefixes hold 0, 10, ... tokens: 50 > 40 first at cut 5
    assert insight_cut({"metadata": {"positions": {"insight": None}}}, tokens) is None


def test_the_comparison_counts_agreement_and_samples_per_problem() -> None:
    every_step = [row("p", cut, 128) for cut in range(CUTS)]
    adaptive = [row("p", cut, 16) for cut in range(CUTS)]
    searched = [row("p", cut, 16) for cut in (0, 2, 4, 5, 7)]
    record = {"p": {"metadata": {"positions": {"insight": {"token": 45}}}}}
    comparison = compare_served(every_step, adaptive, searched, record, {"search": 1.0})
    assert comparison.problems == comparison.unsolved_at_baseline == 1
    assert comparison.unlock_within_one_step == comparison.jump_within_one_step == 1.0
    assert comparison.jump_within_one_step_of_truth == comparison.every_step_jump_within_one_step_of_truth == 1.0
    assert math.isclose(comparison.sample_ratio_vs_every_step, 5 * 16 / (CUTS * 128))
    assert math.isclose(comparison.sample_ratio_vs_every_step_adaptive, 5 / CUTS)
    assert comparison.per_problem[0]["search_unlock"] == UNLOCK


def test_a_problem_missing_from_a_run_is_left_out_of_all() -> None:
    every_step = [row("p", cut, 128) for cut in range(CUTS - 1)]  # the whole CoT's row lost
    every_step += [row("q", cut, 128) for cut in range(CUTS) if cut != 3]  # a middle one lost
    searched = [row("p", 0, 16), row("q", 0, 16)]
    assert compare_served(every_step, [], searched, {}, {}).problems == 0
    # A problem with every every-step row but no search row is left out too.
    assert compare_served([row("r", cut, 128) for cut in range(CUTS)], [], searched, {}, {}).problems == 0
