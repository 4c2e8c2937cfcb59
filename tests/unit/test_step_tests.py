"""The exact test of a shifted step between two binomials, and the near-zero bound."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from cot_transfer.domain.step_tests import (
    anytime_below,
    anytime_rise_p_values,
    restricted_before,
    rise_p_values,
    score_statistics,
    upper_bounds,
)

DELTA = 0.3


def _rejection_probabilities(before_n: int, after_n: int, level: float, pairs: list[tuple[float, float]]) -> np.ndarray:
    """P(the test rejects at ``level``) at each (p_before, p_after), computed exactly."""
    before = np.arange(before_n + 1)
    after = np.arange(after_n + 1)
    rejected = rise_p_values(before[:, None], before_n, after[None, :], after_n, DELTA) <= level
    p_before, p_after = np.array(pairs).T
    before_pmf = stats.binom.pmf(before[None, :], before_n, p_before[:, None])
    after_pmf = stats.binom.pmf(after[None, :], after_n, p_after[:, None])
    return np.einsum("pi,pj,ij->p", before_pmf, after_pmf, rejected.astype(float))


@pytest.mark.parametrize(("before_n", "after_n"), [(8, 8), (16, 16), (64, 64), (8, 64), (32, 16)])
@pytest.mark.parametrize("level", [0.05, 0.005])
def test_the_level_holds_on_the_whole_null_computed_exactly(before_n: int, after_n: int, level: float) -> None:
    """On the boundary (true step exactly delta, a fine grid off the test's own) and inside it."""
    boundary = [(p, p + DELTA) for p in np.linspace(0.0, 1.0 - DELTA, 353)]
    worst = _rejection_probabilities(before_n, after_n, level, boundary).max()
    assert worst <= level * (1 + 1e-6)
    inside = [
        (p, min(p + step, 1.0)) for p in np.linspace(0.0, 1.0, 41) for step in (-0.5, 0.0, 0.2, 0.29) if p + step >= 0.0
    ]
    assert _rejection_probabilities(before_n, after_n, level, inside).max() <= worst + 1e-12


def test_one_hypothesis_per_step_keeps_its_level() -> None:
    """The smaller of the rise and fall p-values, at any true step within [-delta, delta]."""
    n = 16
    k = np.arange(n + 1)
    rise = rise_p_values(k[:, None], n, k[None, :], n, DELTA)
    either = np.minimum(rise, rise.T) <= 0.005
    for p in np.linspace(0.0, 1.0, 51):
        for step in np.linspace(-DELTA, DELTA, 13):
            if 0.0 <= p + step <= 1.0:
                joint = np.outer(stats.binom.pmf(k, n, p), stats.binom.pmf(k, n, p + step))
                assert joint[either].sum() <= 0.005 * (1 + 1e-6)


def test_p_values_are_monotone_in_the_counts() -> None:
    table = rise_p_values(np.arange(17)[:, None], 16, np.arange(17)[None, :], 16, DELTA)
    assert np.all(np.diff(table, axis=0) >= 0)  # more successes before: a weaker rise
    assert np.all(np.diff(table, axis=1) <= 0)  # more successes after: a stronger rise
    assert table[0, 16] < 1e-4 and table[8, 8] > 0.9


def test_the_score_statistic_is_farrington_mannings() -> None:
    """The restricted maximum found by bisection against a brute-force grid, and the statistic
    built on it, the boundary's ends included."""
    grid = np.linspace(1e-9, 1 - DELTA - 1e-9, 200_001)
    for before, after in [(3, 12), (0, 16), (8, 16), (16, 16), (0, 0), (5, 5)]:
        likelihood = stats.binom.logpmf(before, 16, grid) + stats.binom.logpmf(after, 16, grid + DELTA)
        best = grid[np.argmax(likelihood)]
        assert restricted_before(before, 16, after, 16, DELTA) == pytest.approx(best, abs=1e-5)
        error = np.sqrt(best * (1 - best) / 16 + (best + DELTA) * (1 - best - DELTA) / 16)
        expected = (after / 16 - before / 16 - DELTA) / error
        assert score_statistics(before, 16, after, 16, DELTA) == pytest.approx(expected, rel=1e-4)


def test_large_n_uses_the_normal_score_test() -> None:
    assert rise_p_values(0, 2000, 1400, 2000, DELTA) < 1e-12
    assert rise_p_values(500, 2000, 1100, 2000, DELTA) == pytest.approx(0.5, abs=0.02)


def test_upper_bounds_are_one_sided_clopper_pearson() -> None:
    k = np.array([0, 1, 2, 5, 8])
    n = np.array([8, 16, 64, 32, 8])
    expected = proportion_confint(k, n, alpha=0.1, method="beta")[1]
    np.testing.assert_allclose(upper_bounds(k, n, 0.05), np.where(k == n, 1.0, expected))
    assert upper_bounds(0, 29, 0.05) <= 0.1 < upper_bounds(0, 28, 0.05)


def test_anytime_tests_hold_under_stopping_on_the_test_itself() -> None:
    """The worst stopping rule: look after every 8 samples up to 128 and stop as soon as the test
    rejects. The fixed-n test rejects far more often than its level; the anytime test does not."""
    rng = np.random.default_rng(5)
    reps, looks = 2000, 16
    before = rng.binomial(8, 0.35, (reps, looks)).cumsum(axis=1)
    after = rng.binomial(8, 0.65, (reps, looks)).cumsum(axis=1)
    n = 8 * np.arange(1, looks + 1)
    anytime = anytime_rise_p_values(before, n, after, n, DELTA) <= 0.05
    fixed = rise_p_values(before, n, after, n, DELTA) <= 0.05
    assert anytime.any(axis=1).mean() <= 0.05
    assert fixed.any(axis=1).mean() > 0.1
    never_near = anytime_below(rng.binomial(8, 0.1, (reps, looks)).cumsum(axis=1), n, 0.1, 0.05)
    assert never_near.any(axis=1).mean() <= 0.05


def test_bad_delta() -> None:
    with pytest.raises(ValueError, match="delta"):
        rise_p_values(0, 8, 8, 8, 0.0)
    with pytest.raises(ValueError, match="delta"):
        anytime_rise_p_values(0, 8, 8, 8, 1.5)
    assert rise_p_values(0, 8, 8, 8, 1.0) == 1.0
