"""Scoring dynamics labels against the testbed's ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testbed.score_dynamics import format_scores, read_summary, score, true_labels

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _metadata(insight: float | None, *, tangent: bool = False, lucky: bool = False) -> dict[str, Any]:
    positions = {"insight": None if insight is None else {"token": 1, "fraction": insight}}
    return {"tangent": tangent, "lucky_guess": lucky, "positions": positions}


def _problem(problem_id: str, label: str, fraction: float | None, strong_correct: bool = True) -> dict[str, Any]:
    return {
        "problem_id": problem_id,
        "strong_correct": strong_correct,
        "dynamics": {"label": label, "fraction": fraction},
        "points": [{"fraction": fraction_} for fraction_ in FRACTIONS],
    }


def test_truth_splits_insights_by_the_late_fraction_and_keeps_tangents_and_guesses() -> None:
    assert true_labels(_metadata(0.33), 0.9) == {"insight"}
    assert true_labels(_metadata(0.95), 0.9) == {"late_spike"}
    assert true_labels(_metadata(0.5, tangent=True), 0.9) == {"insight", "tangent"}
    assert true_labels(_metadata(None, lucky=True), 0.9) == {"lucky_guess"}


def test_scores_count_hits_misses_and_where_the_insight_was_found() -> None:
    summary = {
        "dynamics": {"parameters": {"late_fraction": 0.9}},
        "problems": [
            _problem("a", "insight", 0.4),  # insight ends at 0.33: first prefix holding it is 0.4
            _problem("b", "insight", 0.6),  # found, but two prefixes late
            _problem("c", "monotonic", None),  # a missed insight
            _problem("d", "insight", 0.2),  # a false insight on a lucky guess
            _problem("e", "insight", 0.1, strong_correct=False),  # not scored: the CoT is wrong
        ],
    }
    truth = {
        "a": _metadata(0.33),
        "b": _metadata(0.45, tangent=True),
        "c": _metadata(0.2),
        "d": _metadata(None, lucky=True),
        "e": _metadata(0.05),
    }
    scores = {item.label: item for item in score(summary, truth)}
    insight = scores["insight"]
    assert (insight.predicted, insight.true, insight.hits, insight.located) == (3, 3, 2, 1)
    assert insight.precision == 2 / 3 and insight.recall == 2 / 3
    assert scores["tangent"].true == 1 and scores["tangent"].recall == 0.0
    assert scores["tangent"].precision is None
    assert scores["lucky_guess"].true == 1 and scores["lucky_guess"].hits == 0
    table = format_scores(list(scores.values()))
    assert "| insight | 3 | 3 | 2 | 0.67 | 0.67 | 1/2 |" in table


def test_reads_a_results_folder_or_an_evaluation_file(tmp_path: Path) -> None:
    summary = {"dynamics": {"parameters": {"late_fraction": 0.9}}, "problems": []}
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps({"summary": summary, "problems": []}), encoding="utf-8")
    assert read_summary(folder) == summary == read_summary(evaluation)
