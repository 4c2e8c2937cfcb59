from __future__ import annotations

import json
import math

import pytest

from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.statistics import (
    Interval,
    TransferStatistics,
    compute_transfer_statistics,
    percentile,
    wilson_interval,
)
from cot_transfer.domain.transfer import FractionOutcome, Thresholds, summarize


@pytest.mark.parametrize(
    ("num_correct", "n", "low", "high"),
    [
        # Hand-computed from the Wilson formula with z = 1.959964; 81/263 is the worked
        # example of Wikipedia's "Binomial proportion confidence interval" comparison.
        (0, 10, 0.0, 0.277533),
        (5, 10, 0.236593, 0.763407),
        (10, 10, 0.722467, 1.0),
        (81, 263, 0.255289, 0.366210),
        (0, 1, 0.0, 0.793451),
        (1, 1, 0.206549, 1.0),
    ],
)
def test_wilson_interval_known_values(num_correct: int, n: int, low: float, high: float) -> None:
    computed = wilson_interval(num_correct, n)
    assert computed[0] == pytest.approx(low, abs=1e-4)
    assert computed[1] == pytest.approx(high, abs=1e-4)


def test_wilson_interval_is_exact_at_the_ends_and_widens_with_confidence() -> None:
    assert wilson_interval(0, 16)[0] == 0.0
    assert wilson_interval(16, 16)[1] == 1.0
    narrow = wilson_interval(5, 16, confidence=0.8)
    wide = wilson_interval(5, 16, confidence=0.99)
    assert wide[0] < narrow[0] < 5 / 16 < narrow[1] < wide[1]


@pytest.mark.parametrize(("num_correct", "n", "confidence"), [(1, 0, 0.95), (3, 2, 0.95), (1, 2, 1.0), (1, 2, 0.0)])
def test_wilson_interval_rejects_bad_input(num_correct: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(num_correct, n, confidence)


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == 2.5
    assert percentile(values, 0.025) == pytest.approx(1.075)
    assert percentile([7.0], 0.3) == 7.0


def _rows(curves: dict[str, list[tuple[float, int]]], n: int = 4) -> list[FractionOutcome]:
    return [
        FractionOutcome(problem_id, fraction, n, num_correct)
        for problem_id, points in curves.items()
        for fraction, num_correct in points
    ]


# With n = 4 and the default thresholds: p1, p2, p3 are unsolved at baseline (0 correct),
# p4 is solved. At 0.5, p1 is unlocked (2/4 >= 0.5), p2 has one correct sample (any
# correct, not unlocked), p3 none. At 1.0, p1 and p2 are unlocked.
CURVES = {
    "p1": [(0.0, 0), (0.5, 2), (1.0, 4)],
    "p2": [(0.0, 0), (0.5, 1), (1.0, 3)],
    "p3": [(0.0, 0), (0.5, 0), (1.0, 0)],
    "p4": [(0.0, 3), (0.5, 4), (1.0, 4)],
}


def test_point_estimates_on_a_hand_made_run() -> None:
    stats = compute_transfer_statistics(_rows(CURVES), bootstrap_resamples=200)
    assert stats.fractions == (0.0, 0.5, 1.0)
    assert (stats.n_problems, stats.baseline_unsolved, stats.problems_without_baseline) == (4, 3, 0)
    at_zero, at_half, at_full = stats.per_fraction
    assert (at_zero.unlocked, at_zero.unlock_rate, at_zero.any_correct_rate) == (0, 0.0, 0.0)
    assert (at_half.unsolved_evaluated, at_half.unlocked, at_half.any_correct) == (3, 1, 2)
    assert at_half.unlock_rate == pytest.approx(1 / 3)
    assert at_half.any_correct_rate == pytest.approx(2 / 3)
    assert at_half.mean_potential == pytest.approx((2 + 1 + 0 + 4) / 16)
    assert at_full.unlock_rate == pytest.approx(2 / 3)
    assert at_full.any_correct_rate == pytest.approx(2 / 3)


def test_point_estimates_agree_with_transfer_summarize() -> None:
    rows = _rows(CURVES)
    stats = compute_transfer_statistics(rows, bootstrap_resamples=50)
    summary = summarize(rows, [0.5, 1.0], 4, Thresholds(), {})
    assert summary.baseline_unsolved == stats.baseline_unsolved
    for expected, computed in zip(summary.per_fraction, stats.per_fraction[1:], strict=True):
        assert computed.unlocked == expected.unlocked
        assert computed.unlock_rate == pytest.approx(expected.unlock_rate)
        assert computed.mean_potential == pytest.approx(expected.weak_potential_mean)


def test_intervals_contain_the_estimate_and_stay_in_unit_range() -> None:
    stats = compute_transfer_statistics(_rows(CURVES), bootstrap_resamples=500)
    for fraction_stats in stats.per_fraction:
        pairs = [
            (fraction_stats.unlock_rate, fraction_stats.unlock_rate_interval),
            (fraction_stats.any_correct_rate, fraction_stats.any_correct_rate_interval),
            (fraction_stats.mean_potential, fraction_stats.mean_potential_interval),
        ]
        for estimate, interval in pairs:
            assert estimate is not None and interval is not None
            assert 0.0 <= interval.low <= estimate <= interval.high <= 1.0


def test_baseline_intervals_are_zero_when_baseline_means_unsolved() -> None:
    stats = compute_transfer_statistics(_rows(CURVES), bootstrap_resamples=100)
    assert stats.per_fraction[0].unlock_rate_interval == Interval(0.0, 0.0)


def test_bootstrap_is_deterministic_under_a_seed() -> None:
    rows = _rows({f"{pid}-{copy}": points for pid, points in CURVES.items() for copy in range(3)})
    first = compute_transfer_statistics(rows, bootstrap_resamples=300, seed=7)
    again = compute_transfer_statistics(list(reversed(rows)), bootstrap_resamples=300, seed=7)
    other = compute_transfer_statistics(rows, bootstrap_resamples=300, seed=8)
    assert first == again
    assert first.per_fraction != other.per_fraction


def test_more_problems_give_a_narrower_interval() -> None:
    few = compute_transfer_statistics(_rows(CURVES), bootstrap_resamples=400)
    many_curves = {f"{pid}-{copy}": points for pid, points in CURVES.items() for copy in range(25)}
    many = compute_transfer_statistics(_rows(many_curves), bootstrap_resamples=400)

    def width(stats: TransferStatistics) -> float:
        interval = stats.per_fraction[1].unlock_rate_interval
        assert interval is not None
        return interval.high - interval.low

    assert width(many) < width(few) / 2


def test_no_unsolved_problem_leaves_rates_undefined() -> None:
    rows = _rows({"p1": [(0.0, 2), (1.0, 4)], "p2": [(0.0, 4), (1.0, 4)]})
    stats = compute_transfer_statistics(rows, bootstrap_resamples=50)
    assert stats.baseline_unsolved == 0
    for fraction_stats in stats.per_fraction:
        assert fraction_stats.unsolved_evaluated == 0
        assert fraction_stats.unlock_rate is None and fraction_stats.unlock_rate_interval is None
        assert fraction_stats.any_correct_rate is None and fraction_stats.any_correct_rate_interval is None
    assert stats.per_fraction[1].mean_potential == 1.0


def test_single_sample_per_prefix() -> None:
    rows = _rows({"p1": [(0.0, 0), (1.0, 1)], "p2": [(0.0, 0), (1.0, 0)]}, n=1)
    stats = compute_transfer_statistics(rows, bootstrap_resamples=300)
    full = stats.per_fraction[1]
    assert (full.unlocked, full.unlock_rate, full.any_correct_rate) == (1, 0.5, 0.5)
    assert full.unlock_rate_interval == Interval(0.0, 1.0)


def test_single_problem() -> None:
    stats = compute_transfer_statistics(_rows({"p1": [(0.0, 0), (1.0, 3)]}), bootstrap_resamples=20)
    assert stats.per_fraction[1].unlock_rate == 1.0
    assert stats.per_fraction[1].unlock_rate_interval == Interval(1.0, 1.0)
    assert stats.per_fraction[1].mean_potential_interval == Interval(0.75, 0.75)


def test_partial_results_count_only_evaluated_problems() -> None:
    rows = _rows({"p1": [(0.0, 0), (0.5, 4)], "p2": [(0.0, 0)], "p3": [(0.5, 4)]})
    stats = compute_transfer_statistics(rows, bootstrap_resamples=50)
    assert (stats.n_problems, stats.baseline_unsolved, stats.problems_without_baseline) == (3, 2, 1)
    half = stats.per_fraction[1]
    # p2 has no result at 0.5 yet; p3 has no baseline, so it cannot count as unlocked.
    assert (half.n_problems, half.unsolved_evaluated, half.unlocked, half.unlock_rate) == (2, 1, 1, 1.0)


def test_thresholds_are_applied() -> None:
    rows = _rows(CURVES)
    lenient = compute_transfer_statistics(rows, Thresholds(0.0, 0.25), bootstrap_resamples=20)
    assert lenient.per_fraction[1].unlocked == 2
    with_tau0 = compute_transfer_statistics(rows, Thresholds(0.75, 1.0), bootstrap_resamples=20)
    assert with_tau0.baseline_unsolved == 4


def test_requested_fractions_without_results_are_reported_empty() -> None:
    stats = compute_transfer_statistics(_rows(CURVES), fractions=[0.0, 0.25, 1.0], bootstrap_resamples=20)
    quarter = stats.per_fraction[1]
    assert (quarter.fraction, quarter.n_problems, quarter.mean_potential, quarter.unlock_rate) == (0.25, 0, None, None)


def test_no_results_at_all() -> None:
    stats = compute_transfer_statistics([], fractions=[0.0, 1.0], bootstrap_resamples=20)
    assert stats.n_problems == 0
    assert all(s.mean_potential is None and s.mean_potential_interval is None for s in stats.per_fraction)


def test_bad_arguments_are_rejected() -> None:
    rows = _rows(CURVES)
    with pytest.raises(ValueError, match="duplicate"):
        compute_transfer_statistics([*rows, rows[0]])
    with pytest.raises(ValueError, match="bootstrap_resamples"):
        compute_transfer_statistics(rows, bootstrap_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        compute_transfer_statistics(rows, confidence=1.5)
    with pytest.raises(InvalidArgumentError, match="unlock_min_potential"):
        compute_transfer_statistics(rows, Thresholds(0.5, 0.5))


def test_to_dict_is_strict_json() -> None:
    stats = compute_transfer_statistics(_rows(CURVES), fractions=[0.0, 0.25, 0.5, 1.0], bootstrap_resamples=50)
    decoded = json.loads(json.dumps(stats.to_dict(), allow_nan=False))
    assert decoded["baseline_unsolved"] == 3
    assert decoded["thresholds"] == {"baseline_max_potential": 0.0, "unlock_min_potential": 0.5}
    half = decoded["per_fraction"][2]
    assert half["unlocked"] == 1
    assert set(half["unlock_rate_interval"]) == {"low", "high"}
    assert decoded["per_fraction"][1]["mean_potential"] is None
    assert not any(isinstance(value, float) and math.isnan(value) for value in half.values())
