"""Two receivers (or answer modes) compared on the problems both have.

Each receiver's unlock rate is over its own baseline-unsolved problems, so two rates side by side
mix a difference of receivers with a difference of problem sets. Here, per fraction, the pairs
are the problems that both receivers leave unsolved at baseline and both have a result for; the
difference of their unlock rates on those problems has Newcombe's paired interval, and McNemar's
exact test (on the problems unlocked by one receiver only) is Holm-adjusted over the fractions
(``cot_transfer.domain.statistics``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cot_transfer.domain.analysis import UnlockStatuses
from cot_transfer.domain.json_fields import json_fields
from cot_transfer.domain.statistics import DEFAULT_CONFIDENCE, holm, paired_difference


@dataclass(frozen=True)
class FractionComparison:
    fraction: float
    problems: int
    unlocked_by_both: int
    unlocked_by_first_only: int
    unlocked_by_second_only: int
    # Unlock rate of the first minus that of the second, on the paired problems.
    difference: float
    low: float
    high: float
    p_value: float
    p_value_holm: float

    def to_dict(self) -> dict[str, Any]:
        return json_fields(self, difference_interval=("low", "high"))


def compare_unlocks(
    first: UnlockStatuses, second: UnlockStatuses, confidence: float = DEFAULT_CONFIDENCE
) -> list[FractionComparison]:
    """Per fraction > 0 that both have, the paired comparison (fractions without a paired
    problem are left out)."""
    shared = sorted(set(first.problem_ids) & set(second.problem_ids))
    rows_first = [first.problem_ids.index(problem_id) for problem_id in shared]
    rows_second = [second.problem_ids.index(problem_id) for problem_id in shared]
    found = []
    for column, fraction in enumerate(first.fractions):
        if fraction <= 0 or fraction not in second.fractions:
            continue
        other = second.fractions.index(fraction)
        paired = first.evaluated[rows_first, column] & second.evaluated[rows_second, other]
        if not paired.any():
            continue
        a = first.unlocked[rows_first, column][paired]
        b = second.unlocked[rows_second, other][paired]
        result = paired_difference(a, b, confidence)
        assert result is not None
        found.append((fraction, result))
    adjusted = holm([result.p_value for _, result in found], 1 - confidence)
    return [
        FractionComparison(
            fraction=fraction,
            problems=result.problems,
            unlocked_by_both=result.both,
            unlocked_by_first_only=result.a_only,
            unlocked_by_second_only=result.b_only,
            difference=result.difference,
            low=result.low,
            high=result.high,
            p_value=result.p_value,
            p_value_holm=float(np.clip(value, 0.0, 1.0)),
        )
        for (fraction, result), value in zip(found, adjusted, strict=True)
    ]
