from __future__ import annotations

import json

import numpy as np
import pytest

from cot_transfer.domain.analysis import PROBLEM_ERROR, REASONING_TRUNCATED, RunningAnalysis, analyze
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.transfer import Thresholds, potential

DEFAULT = Thresholds()


def rows(
    table: dict[str, dict[float, int]], n: int = 4, answer: dict[tuple[str, float], bool] | None = None
) -> list[FractionResult]:
    return [
        FractionResult(pid, fraction, 0, 10, n, correct, (answer or {}).get((pid, fraction)))
        for pid, row in table.items()
        for fraction, correct in row.items()
    ]


TABLE = {
    "a": {0.0: 0, 0.5: 1, 1.0: 4},  # unsolved, unlocked at 1.0
    "b": {0.0: 0, 0.5: 2, 1.0: 1},  # unsolved, unlocked at 0.5 (2 of 4 = tau)
    "c": {0.0: 3, 0.5: 4, 1.0: 4},  # solved alone
    "d": {0.0: 0, 0.5: 0, 1.0: 0},  # unsolved, never
}


def test_potential() -> None:
    assert potential(3, 4) == 0.75
    with pytest.raises(ValueError):
        potential(5, 4)
    with pytest.raises(ValueError):
        potential(0, 0)


def test_unlock_rule_and_rates() -> None:
    analysis = analyze(rows(TABLE), thresholds=DEFAULT, strong_correct={"a": True, "b": False})
    assert analysis.fractions == (0.0, 0.5, 1.0)
    assert (analysis.n_problems, analysis.baseline_unsolved, analysis.n_samples) == (4, 3, 4)
    at_half, at_full = analysis.per_fraction[1:]
    assert (at_half.unlocked, at_half.unsolved_evaluated, at_half.unlock_rate) == (1, 3, pytest.approx(1 / 3))
    assert (at_full.unlocked, at_full.unlock_rate) == (1, pytest.approx(1 / 3))
    assert at_half.any_correct == 2 and at_half.mean_potential == pytest.approx(7 / 16)
    assert at_half.unlock_rate_interval is not None
    assert at_half.unlock_rate_interval.low < 1 / 3 < at_half.unlock_rate_interval.high
    assert analysis.per_fraction[0].unlocked == 0
    # Known strong correctness only: 1 of the 2 problems that have it.
    assert analysis.strong_solve_rate == 0.5


def test_thresholds_change_who_is_unsolved_and_unlocked() -> None:
    table = {"a": {0.0: 1, 1.0: 3}, "b": {0.0: 0, 1.0: 2}}
    lenient = analyze(rows(table), thresholds=Thresholds(0.25, 0.75))
    assert (lenient.baseline_unsolved, lenient.per_fraction[-1].unlocked) == (2, 1)
    strict = analyze(rows(table), thresholds=Thresholds(0.0, 0.5))
    assert (strict.baseline_unsolved, strict.per_fraction[-1].unlocked) == (1, 1)


def test_undefined_rates_are_none_and_missing_baselines_are_counted() -> None:
    analysis = analyze(rows({"a": {0.0: 4, 1.0: 4}, "b": {1.0: 0}}), thresholds=DEFAULT)
    final = analysis.per_fraction[-1]
    assert (final.unlock_rate, final.unlock_rate_interval, final.unsolved_evaluated) == (None, None, 0)
    assert analysis.problems_without_baseline == 1
    assert analysis.problems[1].baseline_unsolved is None
    assert analyze([], thresholds=DEFAULT, fractions=[0.0, 1.0]).per_fraction[0].mean_potential is None


def test_answer_in_prefix_and_the_unlock_rate_without_it() -> None:
    answer = {("a", 1.0): True, ("b", 1.0): False, ("d", 1.0): False, ("c", 1.0): True, ("a", 0.5): False}
    analysis = analyze(rows(TABLE, answer=answer), thresholds=DEFAULT)
    at_full = analysis.per_fraction[-1]
    # Per prefix: a unlocks by copying the answer; b and d see no answer and stay locked.
    assert (at_full.answer_in_prefix, at_full.answer_in_prefix_unknown) == (2, 0)
    assert (at_full.unlocked, at_full.unsolved_prefix_without_answer, at_full.unlocked_prefix_without_answer) == (
        1,
        2,
        0,
    )
    assert at_full.unlock_rate_prefix_without_answer == 0.0
    # The fixed set: only a is known to state no answer before the last fraction (b's and d's
    # flags at 0.5 are unknown), so the rate without the answer follows a at every fraction.
    assert [stats.unsolved_without_answer for stats in analysis.per_fraction] == [1, 1, 1]
    assert (at_full.unlocked_without_answer, at_full.unlock_rate_without_answer) == (1, 1.0)
    assert at_full.unlock_rate_without_answer_interval is not None
    at_half = analysis.per_fraction[1]
    assert (at_half.answer_in_prefix, at_half.answer_in_prefix_unknown) == (0, 3)
    assert analysis.per_fraction[0].answer_in_prefix is None
    assert analysis.problems[0].answer_fraction == 1.0


def test_excluded_problems_are_left_out_and_counted() -> None:
    excluded = {"a": REASONING_TRUNCATED, "b": PROBLEM_ERROR, "x": PROBLEM_ERROR}
    analysis = analyze(rows(TABLE), thresholds=DEFAULT, excluded_problems=excluded)
    assert (analysis.n_problems, analysis.baseline_unsolved) == (2, 1)
    assert (analysis.truncated_cots, analysis.problem_errors) == (1, 2)
    summary = analysis.run_summary(4)
    assert (summary.truncated_cots, summary.problem_errors, summary.n_samples) == (1, 2, 4)


def test_varying_n_and_subsets() -> None:
    results = [
        FractionResult("a", 0.0, 0, 10, 8, 0),
        FractionResult("a", 1.0, 10, 10, 128, 64),
        FractionResult("b", 0.0, 0, 10, 16, 0),
        FractionResult("b", 1.0, 10, 10, 4, 1),
    ]
    analysis = analyze(results, thresholds=DEFAULT)
    assert analysis.n_samples is None
    assert analysis.per_fraction[-1].unlocked == 1
    point = analysis.problems[0].points[-1]
    assert point.p_unlocked == pytest.approx(0.5, abs=0.01)
    b_full = analysis.problems[1].points[-1].p_unlocked
    assert b_full is not None and b_full < 0.3
    only_b = analyze([r for r in results if r.problem_id == "b"], thresholds=DEFAULT)
    assert only_b.per_fraction[-1].unlock_rate == 0.0


def test_p_unlocked_only_for_baseline_unsolved_problems() -> None:
    analysis = analyze(rows(TABLE, n=4), thresholds=DEFAULT)
    by_id = {problem.problem_id: problem for problem in analysis.problems}
    assert all(point.p_unlocked is None for point in by_id["c"].points)
    a_full = by_id["a"].points[-1]
    assert a_full.unlocked and a_full.p_unlocked is not None and a_full.p_unlocked > 0.9
    assert by_id["a"].first_unlock_fraction == 1.0


def test_duplicates_and_other_fractions() -> None:
    results = rows(TABLE)
    with pytest.raises(ValueError, match="duplicate"):
        analyze([*results, results[0]], thresholds=DEFAULT)
    chosen = analyze(results, thresholds=DEFAULT, fractions=[1.0])
    assert chosen.fractions == (0.0, 1.0)
    with pytest.raises(ValueError, match="confidence"):
        analyze(results, thresholds=DEFAULT, confidence=1.0)


def test_to_dict_is_json_ready_and_keeps_the_old_keys() -> None:
    body = analyze(rows(TABLE), thresholds=DEFAULT).to_dict()
    json.dumps(body, allow_nan=False)
    for key in ("fractions", "unlock_rate", "weak_potential_mean", "per_fraction", "baseline_unsolved", "unlocked"):
        assert key in body
    entry = body["per_fraction"][-1]
    assert set(entry["unlock_rate_interval"]) == {"low", "high"}
    for key in ("answer_in_prefix", "unlock_rate_without_answer", "unlock_rate_without_answer_interval"):
        assert key in entry
    assert body["problems"][0]["points"][0]["p_unlocked"] is not None


def test_running_analysis_recomputes_at_most_once_per_interval() -> None:
    now = [0.0]
    running = RunningAnalysis(DEFAULT, (0.0, 1.0), min_interval_s=1.0, clock=lambda: now[0])
    for result in rows({"a": {0.0: 0, 1.0: 4}}):
        running.add(result)
    assert running.unlock_rates_due() == {0.0: 0.0, 1.0: 1.0}
    for result in rows({"b": {0.0: 0, 1.0: 0}}):
        running.add(result)
    assert running.unlock_rates_due() is None
    assert running.unlock_rates_due(force=True) == {0.0: 0.0, 1.0: 0.5}
    now[0] = 5.0
    running.exclude("b", PROBLEM_ERROR)
    assert running.unlock_rates_due() == {0.0: 0.0, 1.0: 1.0}


def test_a_flat_experiment_labels_few_curves() -> None:
    rng = np.random.default_rng(0)
    fractions = [index / 10 for index in range(11)]
    results = [
        FractionResult(f"p{i}", f, 0, 10, 16, int(k))
        for i in range(100)
        for f, k in zip(fractions, rng.binomial(16, 0.4, 11), strict=True)
    ]
    counts = analyze(results, thresholds=DEFAULT).to_dict()["dynamics"]["counts"]
    assert counts["monotonic"] >= 90


def test_a_slow_running_analysis_is_redone_less_often() -> None:
    ticks = iter([0.0, 2.0, 3.0, 21.0, 22.0])  # the first analysis takes 2 s of the clock
    running = RunningAnalysis(DEFAULT, (0.0, 1.0), min_interval_s=1.0, clock=lambda: next(ticks))
    running.add(FractionResult("a", 0.0, 0, 10, 4, 0))
    assert running.unlock_rates_due() == {0.0: 0.0}
    assert running.unlock_rates_due() is None  # at 3 s: due only 10 x 2 s after the start
    assert running.unlock_rates_due() == {0.0: 0.0}
