from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cot_transfer.domain.statistics import (
    JEFFREYS_PRIOR,
    beta_prior,
    holm,
    mean_intervals,
    paired_difference,
    posterior_at_least,
    potential_intervals,
    rate_intervals,
    simultaneous_rate_band,
    to_interval,
)
from tests.simulation import RATE_LEVELS, clopper_pearson_coverage, draw_experiments

EXPERIMENTS = 1000
MIN_COVERAGE = 0.93


@pytest.mark.parametrize("problems", [8, 20, 100, 500])
@pytest.mark.parametrize("n", [4, 8, 16, 128])
@pytest.mark.parametrize("level", sorted(RATE_LEVELS))
def test_nominal_95_intervals_cover_the_measured_rates(problems: int, n: int, level: str) -> None:
    """Experiments drawn from known true potentials: the unlock rate, any-correct rate and mean
    potential intervals cover their truth at least 93% of the time at every setting."""
    rng = np.random.default_rng([problems, n, sorted(RATE_LEVELS).index(level)])
    experiments = draw_experiments(rng, EXPERIMENTS, problems, n, RATE_LEVELS[level])
    for name, result in clopper_pearson_coverage(experiments).items():
        assert result.coverage >= MIN_COVERAGE, (name, result)
        # Most experiments have a rate to cover, so the coverage is measured on enough of them.
        assert result.undefined < 0.5, (name, result)


def test_rate_intervals_are_clopper_pearson_and_never_collapse_at_the_ends() -> None:
    low, high = rate_intervals([0, 3, 11, 0], [11, 11, 11, 0])
    assert low[0] == 0.0 and high[0] == pytest.approx(1 - 0.025 ** (1 / 11))
    assert low[1] == pytest.approx(stats.beta.ppf(0.025, 3, 9)) and high[1] == pytest.approx(
        stats.beta.isf(0.025, 4, 8)
    )
    assert high[2] == 1.0 and low[2] == pytest.approx(0.025 ** (1 / 11))
    assert np.isnan(low[3]) and np.isnan(high[3])
    assert to_interval(low[3], high[3]) is None
    narrow_low, narrow_high = rate_intervals(3, 11, confidence=0.8)
    assert low[1] < narrow_low < narrow_high < high[1]


def test_fractional_counts_pin_their_ends() -> None:
    low, high = rate_intervals([0.0, 2.5, 4.0], [4, 4, 4])
    assert (low[0], high[2]) == (0.0, 1.0)
    assert 0.0 < low[1] < 2.5 / 4 < high[1] < 1.0


@pytest.mark.parametrize(("num_correct", "n", "low", "high"), [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634)])
def test_potential_intervals_are_wilson(num_correct: int, n: int, low: float, high: float) -> None:
    computed_low, computed_high = potential_intervals([num_correct], [n])
    assert computed_low[0] == pytest.approx(low, abs=1e-4)
    assert computed_high[0] == pytest.approx(high, abs=1e-4)
    assert potential_intervals([16], [16])[1][0] == 1.0
    with pytest.raises(ValueError, match="n must be positive"):
        potential_intervals([0], [0])


def test_posterior_probability_of_reaching_tau() -> None:
    certain, unsure, hopeless = posterior_at_least([128, 8, 0], [128, 16, 16], 0.5)
    assert certain > 0.999 and hopeless < 1e-4
    assert unsure == pytest.approx(0.5)
    with pytest.raises(ValueError, match="confidence"):
        rate_intervals(1, 2, confidence=1.5)


def test_mean_interval_is_student_t_over_problems() -> None:
    values = np.linspace(0.0, 1.0, 40)
    low, high = mean_intervals(values[:, None], np.ones((40, 1), dtype=bool))
    half = stats.t.ppf(0.975, 39) * values.std(ddof=1) / np.sqrt(40)
    assert (low[0], high[0]) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    # Few problems or no spread: the sum's Clopper-Pearson interval (conservative, never width 0).
    few_low, few_high = mean_intervals(np.zeros((40, 2)), np.r_[[[True, True]] * 5, [[False, True]] * 35])
    assert few_low[0] == 0.0 and few_high[0] == pytest.approx(1 - 0.025 ** (1 / 5))
    assert few_low[1] == 0.0 and few_high[1] > 0.0


def test_mean_interval_covers_and_is_narrower_than_the_sum_interval() -> None:
    """100 problems, n = 16, potentials from a two-humped population (mean 0.38): t covers the
    true mean at least 93% of the time and is narrower than Clopper-Pearson on the sum."""
    rng = np.random.default_rng(3)
    experiments, problems, n = 1000, 100, 16
    hard = rng.random((experiments, problems)) < 0.6
    truth = 0.6 * 0.1 + 0.4 * 0.8
    true_potentials = np.where(hard, rng.beta(1, 9, hard.shape), rng.beta(8, 2, hard.shape))
    measured = rng.binomial(n, true_potentials) / n
    low, high = mean_intervals(measured.T, np.ones(measured.T.shape, dtype=bool))
    assert ((low <= truth) & (truth <= high)).mean() >= MIN_COVERAGE
    sum_low, sum_high = rate_intervals(measured.sum(axis=1), np.full(experiments, problems))
    assert (high - low).mean() < 0.8 * (sum_high - sum_low).mean()


def test_empirical_bayes_prior_recovers_the_population_and_unbiases_p_unlocked() -> None:
    """Rows from Beta(2, 6) potentials at n = 16: the fitted prior is close to Beta(2, 6). Where no
    problem truly reaches tau (Beta(1, 12) potentials, n = 8), the summed p_unlocked under the
    fitted prior stays near the truth (about 0.02 of 200), far below Jeffreys' sum."""
    rng = np.random.default_rng(4)
    a, b = beta_prior(rng.binomial(16, rng.beta(2, 6, 4000)), 16)
    assert a / (a + b) == pytest.approx(0.25, abs=0.02)
    assert a + b == pytest.approx(8, rel=0.25)
    jeffreys, fitted = [], []
    for _ in range(50):
        k = rng.binomial(8, rng.beta(1, 12, 200))
        jeffreys.append(posterior_at_least(k, 8, 0.5).sum())
        fitted.append(posterior_at_least(k, 8, 0.5, beta_prior(k, 8)).sum())
    truth = 200 * stats.beta.sf(0.5, 1, 12)
    assert abs(np.mean(fitted) - truth) < 0.5
    assert np.mean(jeffreys) > 2 * np.mean(fitted) + 0.3
    # Too few rows, or rows all 0: Jeffreys.
    assert beta_prior([0, 1], [8, 8]) == JEFFREYS_PRIOR
    assert beta_prior([0] * 10, [8] * 10) == JEFFREYS_PRIOR


def test_simultaneous_band_covers_the_whole_curve() -> None:
    """40 problems over 11 fractions with a rising true unlock probability: the band covers the
    true curve at every fraction at once in at least 93% of experiments (a pointwise 95% interval
    at each of 11 fractions would not)."""
    rng = np.random.default_rng(6)
    truth = np.linspace(0.0, 0.6, 11)
    covered = 0
    experiments = 200
    for _ in range(experiments):
        unlocked = rng.random((40, 11)) < truth
        low, high = simultaneous_rate_band(unlocked, np.ones((40, 11), dtype=bool), resamples=500)
        covered += bool(np.all((low <= truth) & (truth <= high)))
    assert covered / experiments >= MIN_COVERAGE


def test_paired_difference_mcnemar_by_hand_and_coverage() -> None:
    # 8 problems unlocked by A only, 1 by B only: exact two-sided p = 2 P(Bin(9, 1/2) <= 1) = 20/512.
    result = paired_difference([1] * 10 + [0] * 10, [1] * 2 + [0] * 8 + [1] + [0] * 9)
    assert result is not None
    assert (result.both, result.a_only, result.b_only) == (2, 8, 1)
    assert result.p_value == pytest.approx(20 / 512)
    assert result.difference == pytest.approx(0.35) and result.low < 0.35 < result.high
    assert paired_difference([], []) is None
    # Correlated pairs over 60 problems (true difference (0.45 - 0.30)(1 - 2 x 0.1) = 0.12): Newcombe covers.
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(500):
        shared = rng.random(60)
        first, second = shared < 0.45, shared < 0.30
        noise = rng.random(60) < 0.1
        first, second = first ^ noise, second ^ noise
        truth = 0.12
        found = paired_difference(first, second)
        assert found is not None
        hits += found.low <= truth <= found.high
    assert hits / 500 >= MIN_COVERAGE


def test_holm_adjustment_by_hand() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []
