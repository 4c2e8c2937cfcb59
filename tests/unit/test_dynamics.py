from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from cot_transfer.domain.dynamics import (
    CurvePoint,
    DynamicsParameters,
    TraceDynamics,
    answer_fraction,
    classify_points,
    count_labels,
    holm_adjusted,
)
from tests.simulation import flat_label_rate, label_planted, precision_recall

FRACTIONS = [round(index / 10, 1) for index in range(11)]


def curve(*counts: int, n: int = 16) -> list[CurvePoint]:
    return [CurvePoint(fraction, count, n) for fraction, count in zip(FRACTIONS, counts, strict=True)]


@pytest.mark.parametrize("n", [8, 16, 128])
@pytest.mark.parametrize("level", [0.02, 0.2, 0.5, 0.8, 0.98])
def test_a_flat_curve_gets_a_label_at_most_5_percent_of_the_time(n: int, level: float) -> None:
    rng = np.random.default_rng([n, round(100 * level)])
    assert flat_label_rate(rng, 600, n, level) <= 0.05


def test_planted_events_are_found_at_large_n_and_rarely_invented() -> None:
    scores = precision_recall(label_planted(np.random.default_rng(7), 60, 128))
    for label, (precision, recall) in scores.items():
        assert precision >= 0.9, (label, precision)
        assert recall >= 0.85, (label, recall)


def test_labels_with_their_step_fraction_and_confidence() -> None:
    insight = classify_points(curve(0, 0, 0, 0, 12, 12, 13, 13, 14, 15, 16), 1.0)
    assert insight.label is TraceDynamics.INSIGHT
    assert (insight.from_fraction, insight.fraction, insight.step) == (0.3, 0.4, pytest.approx(0.75))
    assert insight.confidence is not None and insight.confidence > 0.99

    tangent = classify_points(curve(0, 0, 14, 14, 1, 1, 1, 1, 1, 1, 1), 1.0)
    assert (tangent.label, tangent.fraction, tangent.step) == (TraceDynamics.TANGENT, 0.4, pytest.approx(-13 / 16))

    lucky = classify_points(curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16), 1.0)
    assert (lucky.label, lucky.fraction, lucky.step) == (TraceDynamics.LUCKY_GUESS, 1.0, 1.0)

    late = classify_points(curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 16), 1.0)
    assert (late.label, late.fraction) == (TraceDynamics.LATE_SPIKE, 0.9)

    gradual = classify_points(curve(0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 16), 1.0)
    assert gradual.label is TraceDynamics.MONOTONIC and gradual.confidence is None


def test_the_answer_fraction_decides_lucky_guess_against_insight() -> None:
    shape = curve(0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16)
    assert classify_points(shape, 0.7).label is TraceDynamics.LUCKY_GUESS
    assert classify_points(shape, 1.0).label is TraceDynamics.INSIGHT
    assert classify_points(shape, None).label is TraceDynamics.INSIGHT


def test_a_small_n_needs_a_larger_step() -> None:
    """The same 0 -> 0.5 step is a significant insight with 128 samples, noise with 4."""
    many = [CurvePoint(f, 0 if f < 0.5 else 64, 128) for f in FRACTIONS]
    few = [CurvePoint(f, 0 if f < 0.5 else 2, 4) for f in FRACTIONS[:6]]
    assert classify_points(many, 1.0).label is TraceDynamics.INSIGHT
    assert classify_points(few, None).label is TraceDynamics.MONOTONIC


def test_parameters_change_the_labels() -> None:
    shape = curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 14, 16)
    assert classify_points(shape, 1.0).label is TraceDynamics.LATE_SPIKE
    # With nothing late, the rise at 0.9 is an ordinary step; the 0.9 prefix is pre-answer, so no lucky guess.
    assert classify_points(shape, 1.0, DynamicsParameters(late_fraction=1.0)).label is TraceDynamics.INSIGHT
    step = curve(4, 4, 4, 4, 4, 9, 9, 9, 9, 9, 9)
    assert classify_points(step, None).label is TraceDynamics.INSIGHT
    assert classify_points(step, None, DynamicsParameters(delta=0.5)).label is TraceDynamics.MONOTONIC


def test_unordered_and_partial_curves() -> None:
    points = [CurvePoint(1.0, 16, 16), CurvePoint(0.0, 0, 16), CurvePoint(0.5, 0, 16)]
    assert classify_points(points, 1.0).label is TraceDynamics.LUCKY_GUESS
    assert classify_points([CurvePoint(0.0, 5, 16)], None).label is TraceDynamics.MONOTONIC


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one point"):
        classify_points([], None)
    with pytest.raises(ValueError, match="delta"):
        classify_points(curve(*[0] * 11), None, DynamicsParameters(delta=0.0))
    with pytest.raises(ValueError, match="false_positive_rate"):
        classify_points(curve(*[0] * 11), None, DynamicsParameters(false_positive_rate=1.0))


def test_holm_matches_statsmodels() -> None:
    p_values = np.random.default_rng(3).uniform(0, 0.2, 25)
    expected = multipletests(p_values, method="holm")[1]
    np.testing.assert_allclose(holm_adjusted(p_values), expected)


def test_answer_fraction_is_the_first_prefix_stating_it() -> None:
    assert answer_fraction([1.0, 0.5, 0.0], [True, True, False]) == 0.5
    assert answer_fraction([0.0, 1.0], [False, None]) is None


def test_count_labels_lists_every_label() -> None:
    counts = count_labels([TraceDynamics.INSIGHT, TraceDynamics.INSIGHT, TraceDynamics.TANGENT])
    assert counts == {"monotonic": 0, "insight": 2, "tangent": 1, "late_spike": 0, "lucky_guess": 0}
