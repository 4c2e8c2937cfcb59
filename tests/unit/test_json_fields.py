"""The result records' ``to_dict`` (``cot_transfer.domain.json_fields``): results files are
compared across versions, so their JSON is pinned here to the byte, key order included."""

from __future__ import annotations

import json

from cot_transfer.domain.analysis import ProblemAnalysis, ProblemPoint
from cot_transfer.domain.comparison import FractionComparison
from cot_transfer.domain.dynamics import DynamicsLabel, TraceDynamics
from cot_transfer.domain.transfer import FractionSummary, Interval


def test_a_problem_is_written_with_its_label_value_and_its_points_intervals_joined() -> None:
    point = ProblemPoint(0.5, 8, 6, 0.75, 0.4, 0.9, True, 0.01, False, None)
    problem = ProblemAnalysis(
        "p1", True, 0.5, None, DynamicsLabel(TraceDynamics.INSIGHT, 0.5, 0.0, 0.75, 0.99), None, (point,)
    )
    assert json.dumps(problem.to_dict()) == (
        '{"problem_id": "p1", "baseline_unsolved": true, "first_unlock_fraction": 0.5, "answer_fraction": null, '
        '"dynamics": {"label": "insight", "fraction": 0.5, "from_fraction": 0.0, "step": 0.75, "confidence": 0.99}, '
        '"strong_correct": null, "points": [{"fraction": 0.5, "n": 8, "num_correct": 6, "potential": 0.75, '
        '"potential_interval": {"low": 0.4, "high": 0.9}, "unlocked": true, "p_unlocked": 0.01, '
        '"answer_in_prefix": false, "answer_stated_in_prefix": null}]}'
    )


def test_a_comparison_joins_its_difference_interval_where_low_stood() -> None:
    comparison = FractionComparison(1.0, 10, 1, 7, 1, 0.6, 0.2, 0.8, 0.07, 0.14)
    assert json.dumps(comparison.to_dict()) == (
        '{"fraction": 1.0, "problems": 10, "unlocked_by_both": 1, "unlocked_by_first_only": 7, '
        '"unlocked_by_second_only": 1, "difference": 0.6, "difference_interval": {"low": 0.2, "high": 0.8}, '
        '"p_value": 0.07, "p_value_holm": 0.14}'
    )


def test_a_fraction_summary_writes_its_intervals_as_dicts_and_absent_ones_as_null() -> None:
    summary = FractionSummary(0.5, 4, 0.5, Interval(0.25, 0.75), 2, 1, 0.5, None).to_dict()
    assert list(summary)[:8] == [
        "fraction",
        "n_problems",
        "mean_potential",
        "mean_potential_interval",
        "unsolved_evaluated",
        "unlocked",
        "unlock_rate",
        "unlock_rate_interval",
    ]
    assert summary["mean_potential_interval"] == {"low": 0.25, "high": 0.75}
    assert summary["unlock_rate_interval"] is None
