"""Receivers compared on the problems both leave unsolved (``cot_transfer.domain.comparison``)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from cot_transfer.domain.analysis import unlock_statuses
from cot_transfer.domain.comparison import compare_unlocks
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.transfer import Thresholds

THRESHOLDS = Thresholds()


def rows(table: Mapping[str, tuple[int, ...]], fractions: tuple[float, ...] = (0.0, 0.5, 1.0)) -> list[FractionResult]:
    return [
        FractionResult(problem_id, fraction, 0, 10, 8, correct)
        for problem_id, counts in table.items()
        for fraction, correct in zip(fractions, counts, strict=True)
    ]


def test_only_problems_both_leave_unsolved_are_paired() -> None:
    # 12 problems: both receivers leave p0..p9 unsolved; p10 is solved by B at baseline, p11 only
    # A has. At 1.0, A unlocks p0..p7, B unlocks p0 and p8.
    first = {f"p{i}": (0, 0, 8 if i < 8 else 0) for i in range(12)}
    second = {f"p{i}": (0, 0, 8 if i in (0, 8) else 0) for i in range(10)}
    second["p10"] = (8, 8, 8)
    a = unlock_statuses(rows(first), thresholds=THRESHOLDS)
    b = unlock_statuses(rows(second), thresholds=THRESHOLDS)
    at_half, at_full = compare_unlocks(a, b)
    assert (at_half.fraction, at_half.problems, at_half.difference, at_half.p_value) == (0.5, 10, 0.0, 1.0)
    assert (at_full.problems, at_full.unlocked_by_both) == (10, 1)
    assert (at_full.unlocked_by_first_only, at_full.unlocked_by_second_only) == (7, 1)
    # 8 of 10 against 2 of 10; McNemar exact: 2 P(Bin(8, 1/2) <= 1) = 18/256; Holm over 2 fractions.
    assert at_full.difference == pytest.approx(0.6)
    assert at_full.p_value == pytest.approx(18 / 256)
    assert at_full.p_value_holm == pytest.approx(min(1.0, 2 * 18 / 256))
    assert at_full.low < 0.6 < at_full.high
    assert set(at_full.to_dict()["difference_interval"]) == {"low", "high"}


def test_no_paired_problem_no_comparison() -> None:
    a = unlock_statuses(rows({"x": (0, 0, 8)}), thresholds=THRESHOLDS)
    b = unlock_statuses(rows({"y": (0, 0, 8)}), thresholds=THRESHOLDS)
    assert compare_unlocks(a, b) == []
