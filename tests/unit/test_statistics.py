from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cot_transfer.domain.statistics import (
    posterior_at_least,
    potential_intervals,
    rate_intervals,
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
