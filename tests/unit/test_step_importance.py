"""Step importance: hand-computed resampling importance, Newcombe interval and answer shift,
and the interval's coverage checked by simulation against known potentials."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from cot_transfer.domain.step_importance import CutCounts, step_importances, total_variation


def test_hand_computed_step() -> None:
    # Wilson 95% of 5/8: [0.30574, 0.86316]; of 1/8: [0.02241, 0.47089]. Newcombe:
    # 0.5 - sqrt((0.625 - 0.30574)^2 + (0.47089 - 0.125)^2) = 0.02929,
    # 0.5 + sqrt((0.86316 - 0.625)^2 + (0.125 - 0.02241)^2) = 0.75932.
    before = CutCounts(fraction=0.2, n=8, num_correct=1, num_steps=2, answer_counts=(("7", 4), ("", 4)))
    after = CutCounts(fraction=0.3, n=8, num_correct=5, num_steps=3, answer_counts=(("8", 6), ("7", 2)))
    (step,) = step_importances([after, before])
    assert (step.step, step.from_fraction, step.to_fraction, step.from_steps, step.to_steps) == (1, 0.2, 0.3, 2, 3)
    assert step.importance == pytest.approx(0.5)
    assert step.importance_low == pytest.approx(0.02929, abs=1e-4)
    assert step.importance_high == pytest.approx(0.75932, abs=1e-4)
    # "7": 1/2 vs 1/4, none: 1/2 vs 0, "8": 0 vs 3/4 -> (1/4 + 1/2 + 3/4) / 2.
    assert step.answer_shift == pytest.approx(0.75)


def test_steps_follow_fraction_order_and_skip_empty_cuts() -> None:
    cuts = [
        CutCounts(1.0, 4, 4),
        CutCounts(0.0, 4, 0),
        CutCounts(0.5, 0, 0),  # no samples: the step spans it
        CutCounts(0.4, 4, 2),
    ]
    steps = step_importances(cuts)
    assert [(s.from_fraction, s.to_fraction) for s in steps] == [(0.0, 0.4), (0.4, 1.0)]
    assert [s.importance for s in steps] == [0.5, 0.5]
    assert all(s.answer_shift is None for s in steps)  # no answer counts kept


def test_total_variation_bounds() -> None:
    assert total_variation([("1", 3)], [("1", 5)]) == 0.0
    assert total_variation([("1", 3)], [("2", 5)]) == 1.0
    assert total_variation([], [("2", 5)]) is None


def test_interval_coverage_against_known_potentials() -> None:
    """Exact coverage (every count pair weighted by its binomial probability) over a grid of true
    potentials at n = 8: Newcombe's interval is near nominal on average (0.952) and never far below
    it (minimum 0.912: the counts of n = 8 are coarse)."""
    n = 8
    bounds = {
        (after, before): step_importances([CutCounts(0.0, n, before), CutCounts(1.0, n, after)])[0]
        for after in range(n + 1)
        for before in range(n + 1)
    }
    coverages = []
    for p_before in np.linspace(0.0, 1.0, 11):
        for p_after in np.linspace(0.0, 1.0, 11):
            truth = p_after - p_before
            coverages.append(
                sum(
                    binom.pmf(after, n, p_after) * binom.pmf(before, n, p_before)
                    for (after, before), step in bounds.items()
                    if step.importance_low - 1e-9 <= truth <= step.importance_high + 1e-9
                )
            )
    assert float(np.mean(coverages)) >= 0.945
    assert min(coverages) >= 0.90
