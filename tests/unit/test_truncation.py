import math

import pytest

from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.truncation import (
    check_fractions,
    normalize_fractions,
    prefix_token_count,
    with_baseline,
)


@pytest.mark.parametrize(
    ("fraction", "total", "expected"),
    [
        (0.0, 10, 0),
        (0.1, 10, 1),
        (0.15, 10, 1),
        (0.5, 7, 3),
        (1.0, 7, 7),
        (0.29, 100, 29),  # 0.29 * 100 == 28.999999999999996 in floating point
        (0.7, 10, 7),
        (0.3, 0, 0),
        (1.0, 0, 0),
    ],
)
def test_prefix_token_count_is_floor_of_fraction_times_length(fraction: float, total: int, expected: int) -> None:
    assert prefix_token_count(fraction, total) == expected


def test_every_standard_fraction_cuts_exactly_for_all_lengths_up_to_500() -> None:
    for total in range(501):
        for step in range(11):
            fraction = round(0.1 * step, 1)
            assert prefix_token_count(fraction, total) == (step * total) // 10


def test_cuts_are_monotonic_in_the_fraction() -> None:
    fractions = [index / 37 for index in range(38)]
    counts = [prefix_token_count(fraction, 91) for fraction in fractions]
    assert counts == sorted(counts)
    assert counts[0] == 0 and counts[-1] == 91


@pytest.mark.parametrize("bad", [-0.1, 1.0001, math.nan, math.inf, -math.inf])
def test_fraction_outside_unit_interval_is_invalid_argument_naming_the_field(bad: float) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_fractions([0.5, bad])
    assert caught.value.field == "fractions[1]"
    assert "[0, 1]" in str(caught.value)


def test_empty_fractions_are_invalid() -> None:
    with pytest.raises(InvalidArgumentError, match="at least one"):
        normalize_fractions([])


def test_check_keeps_request_order_and_drops_duplicates() -> None:
    assert check_fractions([0.5, 0.0, 0.5, 1.0]) == (0.5, 0.0, 1.0)
    assert normalize_fractions([0.5, 0.0, 0.5, 1.0]) == (0.0, 0.5, 1.0)


def test_baseline_is_always_measured() -> None:
    assert with_baseline((0.5, 0.2)) == (0.0, 0.2, 0.5)
    assert with_baseline((0.0, 1.0)) == (0.0, 1.0)
