from __future__ import annotations

import pytest

from cot_transfer.domain.dynamics import (
    DynamicsParameters,
    TraceDynamics,
    answer_char_position,
    answer_fraction_from_cot,
    classify_curve,
    count_labels,
)

FRACTIONS = [round(index / 10, 1) for index in range(11)]


def curve(*potentials: float) -> dict[float, float]:
    assert len(potentials) == len(FRACTIONS)
    return dict(zip(FRACTIONS, potentials, strict=True))


@pytest.mark.parametrize(
    ("potentials", "expected"),
    [
        # gradual rise, flat zero, flat one, small noisy dips
        ((0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1), TraceDynamics.MONOTONIC),
        ((0,) * 11, TraceDynamics.MONOTONIC),
        ((1,) * 11, TraceDynamics.MONOTONIC),
        ((0, 0.2, 0.1, 0.3, 0.2, 0.4, 0.3, 0.5, 0.4, 0.6, 0.7), TraceDynamics.MONOTONIC),
        # one step of >= delta upwards
        ((0, 0, 0, 0.5, 0.6, 0.6, 0.7, 0.8, 0.8, 0.9, 1), TraceDynamics.INSIGHT),
        ((0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.9), TraceDynamics.INSIGHT),
        # a drop of >= delta anywhere
        ((0.8, 0.8, 0.4, 0.4, 0.4, 0.5, 0.6, 0.6, 0.6, 0.7, 0.8), TraceDynamics.TANGENT),
        ((0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.1), TraceDynamics.TANGENT),
        # near zero until 90%, high at 90% while the answer shows only at 100%
        ((0, 0, 0, 0, 0, 0, 0, 0, 0.1, 0.7, 1), TraceDynamics.LATE_SPIKE),
        ((0, 0.1, 0, 0, 0, 0, 0, 0, 0, 0.5, 0.4), TraceDynamics.LATE_SPIKE),
        # near zero until the answer shows at 100%
        ((0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1), TraceDynamics.LUCKY_GUESS),
        ((0, 0.1, 0, 0.05, 0, 0, 0.1, 0, 0, 0.1, 0.6), TraceDynamics.LUCKY_GUESS),
    ],
)
def test_each_label(potentials: tuple[float, ...], expected: TraceDynamics) -> None:
    assert classify_curve(curve(*potentials)) is expected


def test_lucky_guess_needs_a_large_enough_jump_at_the_answer() -> None:
    assert classify_curve(curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 0.1, 0.3)) is TraceDynamics.MONOTONIC


def test_lucky_guess_at_an_earlier_answer_fraction() -> None:
    shape = curve(0, 0, 0, 0, 0, 0, 0, 0.9, 1, 1, 1)
    assert classify_curve(shape, answer_fraction=0.7) is TraceDynamics.LUCKY_GUESS
    # Without knowing the answer shows at 70%, the same curve is an insight.
    assert classify_curve(shape) is TraceDynamics.INSIGHT


def test_lucky_guess_takes_precedence_over_a_later_drop() -> None:
    shape = curve(0, 0, 0, 0, 0, 0, 0, 0, 1, 0.5, 0.6)
    assert classify_curve(shape, answer_fraction=0.8) is TraceDynamics.LUCKY_GUESS


def test_late_spike_takes_precedence_over_tangent_and_insight() -> None:
    assert classify_curve(curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 0.8, 0.2)) is TraceDynamics.LATE_SPIKE


def test_late_spike_needs_the_rise_before_the_answer_shows() -> None:
    shape = curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 0.8, 1)
    assert classify_curve(shape, answer_fraction=0.9) is TraceDynamics.LUCKY_GUESS


def test_tangent_takes_precedence_over_insight() -> None:
    assert classify_curve(curve(0, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)) is TraceDynamics.TANGENT


def test_no_answer_fraction_rules_out_lucky_guess() -> None:
    # No prefix shows the answer, so the rise at 100% is a rise late in the reasoning.
    shape = curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
    assert classify_curve(shape, answer_fraction=None) is TraceDynamics.LATE_SPIKE
    assert classify_curve(curve(0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1), answer_fraction=None) is TraceDynamics.INSIGHT


def test_answer_fraction_past_the_curve_rules_out_lucky_guess() -> None:
    shape = {0.0: 0.0, 0.5: 0.0, 0.9: 1.0}
    assert classify_curve(shape) is TraceDynamics.LATE_SPIKE


def test_step_of_exactly_delta_counts_as_a_jump() -> None:
    assert classify_curve({0.0: 0.5, 0.5: 0.8, 1.0: 0.8}) is TraceDynamics.INSIGHT
    assert classify_curve({0.0: 0.8, 0.5: 0.5, 1.0: 0.5}) is TraceDynamics.TANGENT


def test_parameters_are_configurable() -> None:
    shape = curve(0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.6)
    assert classify_curve(shape) is TraceDynamics.INSIGHT
    assert classify_curve(shape, parameters=DynamicsParameters(near_zero=0.25)) is TraceDynamics.LUCKY_GUESS
    assert classify_curve(shape, parameters=DynamicsParameters(delta=0.5)) is TraceDynamics.MONOTONIC
    late = curve(0, 0, 0, 0, 0, 0, 0, 0, 0.8, 0.9, 1)
    assert classify_curve(late) is TraceDynamics.INSIGHT
    assert classify_curve(late, parameters=DynamicsParameters(late_fraction=0.8)) is TraceDynamics.LATE_SPIKE


def test_unordered_mapping_and_single_point() -> None:
    assert classify_curve({1.0: 1.0, 0.0: 0.0, 0.5: 0.0}) is TraceDynamics.LUCKY_GUESS
    assert classify_curve({0.0: 0.3}) is TraceDynamics.MONOTONIC


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one point"):
        classify_curve({})
    with pytest.raises(ValueError, match="delta"):
        classify_curve({0.0: 0.0}, parameters=DynamicsParameters(delta=0.0))
    with pytest.raises(ValueError, match="near_zero"):
        classify_curve({0.0: 0.0}, parameters=DynamicsParameters(near_zero=1.5))


def test_count_labels_lists_every_label() -> None:
    counts = count_labels([TraceDynamics.INSIGHT, TraceDynamics.INSIGHT, TraceDynamics.TANGENT])
    assert counts == {"monotonic": 0, "insight": 2, "tangent": 1, "late_spike": 0, "lucky_guess": 0}


@pytest.mark.parametrize(
    ("cot", "expected"),
    [
        ("abc \\boxed{12} def", len("abc \\boxed{12}")),
        ("abc \\boxed{\\frac{1}{2}} def", len("abc \\boxed{\\frac{1}{2}}")),
        ("so the answer is 5\nthen we check", len("so the answer is 5")),
        ("Answer: 5", len("Answer: 5")),
        ("first the answer is 5\nlater \\boxed{5}", len("first the answer is 5")),
        ("no statement at all", None),
    ],
)
def test_answer_char_position(cot: str, expected: int | None) -> None:
    assert answer_char_position(cot) == expected


def test_answer_fraction_from_cot_rounds_up_to_the_next_fraction() -> None:
    cot = "x" * 61 + "\\boxed{7}" + "y" * 30
    # the box ends at character 70 of 100: the 70% prefix holds it
    assert answer_fraction_from_cot(cot, FRACTIONS) == 0.7
    assert answer_fraction_from_cot(cot, [0.0, 0.5, 1.0]) == 1.0


def test_answer_fraction_defaults_to_the_full_cot() -> None:
    assert answer_fraction_from_cot("no answer stated", FRACTIONS) == 1.0
    assert answer_fraction_from_cot("", FRACTIONS) == 1.0
    assert answer_fraction_from_cot("no answer stated", [0.0, 0.5]) is None
