"""The dynamics labels against known truth: false labels on curves with no step of delta, power
on a jump of delta + 0.4 (``tests/dynamics_simulation.py``; the README's tables come from
``python -m tests.dynamics_simulation``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cot_transfer.domain.dynamics import LABEL_CODES, TraceDynamics, classify_curves
from cot_transfer.domain.step_tests import rise_p_values
from tests.dynamics_simulation import (
    ANSWER_INDEX,
    FRACTIONS,
    JUMPS,
    NO_JUMP,
    PRE_ANSWER_025,
    adaptive_rows,
    detection_rate,
    false_label_rate,
    fixed_rows,
)

REPS = 2000
LEVEL = 0.05


def _allowed(rate: float = LEVEL, reps: int = REPS) -> float:
    """The largest simulated rate consistent with a true rate of ``rate`` (3 standard errors)."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / reps)


@pytest.mark.parametrize("n", [8, 16, 64])
def test_curves_without_a_step_of_delta_get_a_false_label_at_most_5_percent_of_the_time(n: int) -> None:
    rng = np.random.default_rng([22, n])
    rates = {name: false_label_rate(*fixed_rows(rng, curve, REPS, n)) for name, curve in NO_JUMP.items()}
    assert max(rates.values()) <= _allowed(), rates


def test_adaptive_rows_hold_the_level_under_their_stopping() -> None:
    """Rows stopped by the service's rule: k / n is biased, n differs along a curve."""
    rng = np.random.default_rng(2264)
    rates = {
        name: false_label_rate(*adaptive_rows(rng, curve, REPS // 2, 64), adaptive=True)
        for name, curve in NO_JUMP.items()
    }
    assert max(rates.values()) <= _allowed(reps=REPS // 2), rates


@pytest.mark.parametrize("n", [8, 16, 64])
def test_a_potential_of_025_before_the_answer_is_not_a_lucky_guess(n: int) -> None:
    k, n_ = fixed_rows(np.random.default_rng([25, n]), PRE_ANSWER_025, REPS, n)
    labels = classify_curves(FRACTIONS, k, n_, np.full(REPS, ANSWER_INDEX)).label
    assert np.mean(labels == LABEL_CODES.index(TraceDynamics.LUCKY_GUESS)) <= _allowed()


@pytest.mark.parametrize("n", [48, 64, 128])
def test_a_jump_of_07_is_found_at_its_fraction(n: int) -> None:
    rng = np.random.default_rng([7, n])
    rates = {name: detection_rate(*fixed_rows(rng, curve, REPS // 2, n)) for name, curve in JUMPS.items()}
    assert min(rates.values()) >= 0.9, rates


def test_at_n_16_no_valid_test_of_the_jump_step_reaches_90_percent() -> None:
    """Why power 0.9 starts near n = 48, not 16. The null curve (..., 0.15, 0.35, 0.65, 0.85, ...)
    has no step above 0.3 and differs from the jump (..., 0.15, 0.15, 0.85, 0.85, ...) only at
    the step's two points; the Neyman-Pearson test between them at level 0.05 bounds the power of
    any test that holds its level there, before any multiplicity."""
    n = 16
    k = np.arange(n + 1)
    null = np.outer(stats.binom.pmf(k, n, 0.35), stats.binom.pmf(k, n, 0.65)).ravel()
    jump = np.outer(stats.binom.pmf(k, n, 0.15), stats.binom.pmf(k, n, 0.85)).ravel()
    order = np.argsort(-(jump / null))
    size = np.cumsum(null[order])
    inside = size <= LEVEL
    boundary = int(np.count_nonzero(inside))
    # Randomised on the boundary outcome: the most power any level-0.05 test has.
    bound = jump[order][inside].sum() + (LEVEL - size[inside][-1]) / null[order][boundary] * jump[order][boundary]
    assert bound < 0.9
    ours = rise_p_values(k[:, None], n, k[None, :], n, 0.3).ravel() <= LEVEL / 10
    assert jump[ours].sum() <= bound
