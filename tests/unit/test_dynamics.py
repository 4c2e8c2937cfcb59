from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from cot_transfer.domain.dynamics import (
    CurvePoint,
    DynamicsParameters,
    TraceDynamics,
    answer_fraction,
    classify_curves,
    classify_points,
    count_labels,
    holm_adjusted,
)
from tests.simulation import flat_label_rate

FRACTIONS = [round(index / 10, 1) for index in range(11)]


def curve(*counts: int, n: int = 16) -> list[CurvePoint]:
    return [CurvePoint(fraction, count, n) for fraction, count in zip(FRACTIONS, counts, strict=True)]


@pytest.mark.parametrize("n", [8, 16, 128])
@pytest.mark.parametrize("level", [0.02, 0.2, 0.5, 0.8, 0.98])
def test_a_flat_curve_gets_a_label_at_most_5_percent_of_the_time(n: int, level: float) -> None:
    rng = np.random.default_rng([n, round(100 * level)])
    assert flat_label_rate(rng, 600, n, level) <= 0.05


def test_labels_with_their_step_fraction_and_confidence() -> None:
    insight = classify_points(curve(0, 0, 0, 0, 12, 12, 13, 13, 14, 15, 16), 1.0)
    assert insight.label is TraceDynamics.INSIGHT
    assert (insight.from_fraction, insight.fraction, insight.step) == (0.3, 0.4, pytest.approx(0.75))
    assert insight.confidence is not None and insight.confidence > 0.95

    tangent = classify_points(curve(0, 0, 14, 14, 1, 1, 1, 1, 1, 1, 1), 1.0)
    assert (tangent.label, tangent.fraction, tangent.step) == (TraceDynamics.TANGENT, 0.4, pytest.approx(-13 / 16))

    lucky = classify_points(curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 64, n=64), 1.0)
    assert (lucky.label, lucky.fraction, lucky.step) == (TraceDynamics.LUCKY_GUESS, 1.0, 1.0)

    late = classify_points(curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 48, 64, n=64), 1.0)
    assert (late.label, late.fraction) == (TraceDynamics.LATE_SPIKE, 0.9)

    gradual = classify_points(curve(0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 16), 1.0)
    assert gradual.label is TraceDynamics.MONOTONIC and gradual.confidence is None


def test_a_step_must_be_shown_to_exceed_delta_not_just_observed() -> None:
    """0.25 -> 0.625 at n = 16 is an observed step of 0.375 >= delta, and significant against a
    flat curve, but nothing shows the true step is above 0.3; 0 -> 1 is shown."""
    assert classify_points(curve(4, 4, 4, 4, 4, 10, 10, 10, 10, 10, 10), None).label is TraceDynamics.MONOTONIC
    assert classify_points(curve(0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16), None).label is TraceDynamics.INSIGHT
    # A ramp whose consecutive steps are small is monotonic however far it rises in all.
    ramp = [CurvePoint(f, round(128 * (0.1 + 0.8 * f)), 128) for f in FRACTIONS]
    assert classify_points(ramp, None).label is TraceDynamics.MONOTONIC


def test_near_zero_is_an_upper_bound_of_at_most_0_1() -> None:
    """Every pre-answer point's upper bound must be <= 0.1: 0 of 16 (bound 0.17) is not near
    zero, 0 of 32 (0.09) is, 2 of 8 never is. Without it the answer's rise is an insight."""
    for n in (8, 16):
        assert classify_points(curve(*[0] * 10, n, n=n), 1.0).label is TraceDynamics.INSIGHT
    assert classify_points(curve(*[0] * 10, 32, n=32), 1.0).label is TraceDynamics.LUCKY_GUESS
    one_high = curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 64, n=64)  # 0.25 just before the answer
    assert classify_points(one_high, 1.0).label is TraceDynamics.INSIGHT


def test_the_answer_fraction_decides_lucky_guess_against_insight() -> None:
    shape = curve(0, 0, 0, 0, 0, 0, 0, 64, 64, 64, 64, n=64)
    assert classify_points(shape, 0.7).label is TraceDynamics.LUCKY_GUESS
    assert classify_points(shape, 1.0).label is TraceDynamics.INSIGHT
    assert classify_points(shape, None).label is TraceDynamics.INSIGHT


def test_a_small_n_needs_a_larger_step() -> None:
    """The same 0 -> 0.5 step is shown above 0.3 with 128 samples, not with 4."""
    many = [CurvePoint(f, 0 if f < 0.5 else 64, 128) for f in FRACTIONS]
    few = [CurvePoint(f, 0 if f < 0.5 else 2, 4) for f in FRACTIONS[:6]]
    assert classify_points(many, 1.0).label is TraceDynamics.INSIGHT
    assert classify_points(few, None).label is TraceDynamics.MONOTONIC


def test_parameters_change_the_labels() -> None:
    shape = curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 56, 64, n=64)
    assert classify_points(shape, 1.0).label is TraceDynamics.LATE_SPIKE
    # With nothing late, the rise at 0.9 is an ordinary step; the 0.9 prefix is pre-answer, so no lucky guess.
    assert classify_points(shape, 1.0, DynamicsParameters(late_fraction=1.0)).label is TraceDynamics.INSIGHT
    step = curve(0, 0, 0, 0, 0, 11, 11, 11, 11, 11, 11)
    assert classify_points(step, None).label is TraceDynamics.INSIGHT
    assert classify_points(step, None, DynamicsParameters(delta=0.5)).label is TraceDynamics.MONOTONIC
    assert classify_points(step, None, DynamicsParameters(false_positive_rate=1e-6)).label is TraceDynamics.MONOTONIC


def test_unordered_and_partial_curves() -> None:
    points = [CurvePoint(1.0, 64, 64), CurvePoint(0.0, 0, 64), CurvePoint(0.5, 0, 64)]
    assert classify_points(points, 1.0).label is TraceDynamics.LUCKY_GUESS
    assert classify_points([CurvePoint(0.0, 5, 16)], None).label is TraceDynamics.MONOTONIC


def test_rows_of_different_n_are_tested_as_they_are() -> None:
    points = [CurvePoint(0.0, 0, 8), CurvePoint(0.5, 0, 128), CurvePoint(1.0, 120, 128)]
    label = classify_points(points, None)
    assert (label.label, label.from_fraction, label.fraction) == (TraceDynamics.INSIGHT, 0.5, 1.0)


def test_adaptive_rows_are_tested_under_optional_stopping() -> None:
    """The same counts are weaker evidence when the rows may have stopped on them: the anytime
    test needs more samples than the fixed-n one."""
    fixed = curve(0, 0, 0, 0, 0, 14, 14, 14, 14, 14, 14)
    assert classify_points(fixed, None).label is TraceDynamics.INSIGHT
    stopped = [CurvePoint(point.fraction, point.num_correct, point.n, adaptive=True) for point in fixed]
    assert classify_points(stopped, None).label is TraceDynamics.MONOTONIC
    long = [CurvePoint(f, 0 if f < 0.5 else 112, 128, adaptive=True) for f in FRACTIONS]
    assert classify_points(long, None).label is TraceDynamics.INSIGHT
    # Near zero under stopping takes the confidence sequence: 0 of 32 is not enough, 0 of 64 is.
    for n, expected in ((32, TraceDynamics.INSIGHT), (64, TraceDynamics.LUCKY_GUESS)):
        points = [CurvePoint(f, n if f == 1.0 else 0, n, adaptive=True) for f in FRACTIONS]
        assert classify_points(points, 1.0).label is expected


def test_classify_curves_matches_classify_points() -> None:
    rng = np.random.default_rng(11)
    k = rng.binomial(16, rng.uniform(0, 1, (300, 11)))
    answer = rng.integers(-1, 11, 300)
    batch = classify_curves(FRACTIONS, k, 16, answer)
    for row in range(300):
        one = classify_points(curve(*k[row]), None if answer[row] < 0 else FRACTIONS[answer[row]])
        assert batch.labels()[row] is one.label
        if one.label is not TraceDynamics.MONOTONIC:
            assert FRACTIONS[batch.step[row] + 1] == one.fraction
            assert 1 - batch.adjusted_p[row] == pytest.approx(one.confidence)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one point"):
        classify_points([], None)
    with pytest.raises(ValueError, match="delta"):
        classify_points(curve(*[0] * 11), None, DynamicsParameters(delta=0.0))
    with pytest.raises(ValueError, match="false_positive_rate"):
        classify_points(curve(*[0] * 11), None, DynamicsParameters(false_positive_rate=1.0))
    with pytest.raises(ValueError, match="n >= 1"):
        classify_points([CurvePoint(0.0, 0, 0)], None)
    with pytest.raises(ValueError, match="num_correct"):
        classify_points([CurvePoint(0.0, 9, 8), CurvePoint(1.0, 0, 8)], None)


def test_holm_matches_statsmodels() -> None:
    p_values = np.random.default_rng(3).uniform(0, 0.2, (4, 25))
    expected = [multipletests(row, method="holm")[1] for row in p_values]
    np.testing.assert_allclose(holm_adjusted(p_values), expected)


def test_answer_fraction_is_the_first_prefix_stating_it() -> None:
    assert answer_fraction([1.0, 0.5, 0.0], [True, True, False]) == 0.5
    assert answer_fraction([0.0, 1.0], [False, None]) is None


def test_count_labels_lists_every_label() -> None:
    counts = count_labels([TraceDynamics.INSIGHT, TraceDynamics.INSIGHT, TraceDynamics.TANGENT])
    assert counts == {"monotonic": 0, "insight": 2, "tangent": 1, "late_spike": 0, "lucky_guess": 0}
