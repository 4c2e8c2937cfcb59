"""Breakdowns by a dataset field: one ``analyze`` per group, natural order, table, plot, CSV columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cot_transfer.domain.analysis import analyze
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.experiment.groups import (
    build_groups,
    group_fields_of_run,
    group_value,
    groups_markdown,
    metadata_columns,
    natural_key,
    plot_file_name,
    plot_groups,
    with_metadata,
)

THRESHOLDS = Thresholds(0.0, 0.5)


def rows(problem_id: str, curve: dict[float, int], n: int = 4) -> list[FractionResult]:
    return [FractionResult(problem_id, fraction, 0, 10, n, k) for fraction, k in curve.items()]


# Level 1: both unsolved problems unlock by 0.5; level 10: one of two does, at 1.0 only.
RESULTS = [
    *rows("easy-a", {0.0: 0, 0.5: 4, 1.0: 4}),
    *rows("easy-b", {0.0: 0, 0.5: 3, 1.0: 4}),
    *rows("hard-a", {0.0: 0, 0.5: 0, 1.0: 2}),
    *rows("hard-b", {0.0: 0, 0.5: 0, 1.0: 0}),
    *rows("hard-c", {0.0: 4, 0.5: 4, 1.0: 4}),
    *rows("nolevel", {0.0: 0, 0.5: 4, 1.0: 4}),
]
METADATA: dict[str, dict[str, Any]] = {
    "easy-a": {"level": 1, "subject": "Algebra"},
    "easy-b": {"level": "1", "subject": "Algebra"},
    "hard-a": {"level": 10, "subject": "Geometry"},
    "hard-b": {"level": 10.0, "subject": "Algebra"},
    "hard-c": {"level": 10, "subject": "Geometry"},
    "nolevel": {"subject": "Geometry"},
}


def test_each_group_is_the_analysis_of_its_own_results() -> None:
    groups = build_groups(RESULTS, METADATA, ["level"], thresholds=THRESHOLDS)
    level = groups["level"]
    assert [entry["value"] for entry in level["values"]] == ["1", "10"]
    assert level["problems_without_value"] == 1
    easy, hard = level["values"]
    assert (easy["n_problems"], easy["baseline_unsolved"]) == (2, 2)
    assert (hard["n_problems"], hard["baseline_unsolved"]) == (3, 2)
    assert [stats["unlock_rate"] for stats in easy["per_fraction"]] == [0.0, 1.0, 1.0]
    assert [stats["unlock_rate"] for stats in hard["per_fraction"]] == [0.0, 0.0, 0.5]
    expected = analyze(
        [row for row in RESULTS if row.problem_id.startswith("hard")], thresholds=THRESHOLDS, with_problems=False
    )
    assert hard["per_fraction"] == [stats.to_dict() for stats in expected.per_fraction]
    interval = hard["per_fraction"][2]["unlock_rate_interval"]
    assert interval["low"] < 0.5 < interval["high"]
    assert hard["per_fraction"][2]["mean_potential_interval"] is not None


def test_excluded_problems_and_strong_correctness_stay_within_their_group() -> None:
    groups = build_groups(
        RESULTS,
        METADATA,
        ["subject"],
        thresholds=THRESHOLDS,
        excluded_problems={"hard-b": "error"},
        strong_correct={"easy-a": True, "hard-a": False},
    )
    algebra, geometry = groups["subject"]["values"]
    assert (algebra["value"], algebra["n_problems"], algebra["excluded"]) == ("Algebra", 2, {"error": 1})
    assert (geometry["value"], geometry["n_problems"], geometry["excluded"]) == ("Geometry", 3, {})


def test_group_values_and_their_order() -> None:
    assert [group_value(value) for value in (5, "5", 5.0, 2.5, True, None, "", ["a"])] == [
        "5",
        "5",
        "5",
        "2.5",
        "true",
        None,
        None,
        '["a"]',
    ]
    assert sorted(["Level 10", "Level 2", "Level 1"], key=natural_key) == ["Level 1", "Level 2", "Level 10"]
    assert sorted(["10", "9", "-1", "b", "a"], key=natural_key) == ["-1", "9", "10", "a", "b"]


def test_fields_named_then_those_of_the_run_then_level_and_subject_when_present() -> None:
    assert group_fields_of_run(METADATA, {}, ("year",)) == ("year",)
    assert group_fields_of_run(METADATA, {"dataset": {"group_by": ["type"]}}) == ("type",)
    assert group_fields_of_run(METADATA, {"dataset": None}) == ("level", "subject")
    assert group_fields_of_run({"a": {"year": 2024}}, {}) == ()


def test_markdown_table_has_a_row_per_group_and_a_column_per_fraction() -> None:
    groups = build_groups(RESULTS, METADATA, ["level"], thresholds=THRESHOLDS)
    text = "\n".join(groups_markdown(groups, 0.95))
    assert "## By level" in text
    assert "| level | problems | unsolved at 0% | 0.0% | 50.0% | 100.0% |" in text
    # Every group here has fewer than 10 baseline-unsolved problems: flagged, with the note.
    assert "| 1 † | 2 | 2 | 0.0% [" in text
    assert "| 10 † | 3 | 2 | 0.0% [" in text and "| 50.0% [" in text
    assert "† Fewer than 10 baseline-unsolved problems (2 of 2 groups)" in text
    assert all(group["few_unsolved"] for group in groups["level"]["values"])
    assert "Problems without a `level` (in no group): 1." in text
    assert f"]({plot_file_name('level')})" in text


def test_small_multiples_plot_is_written(tmp_path: Path) -> None:
    groups = build_groups(RESULTS, METADATA, ["level", "subject"], thresholds=THRESHOLDS)
    for field, breakdown in groups.items():
        path = tmp_path / plot_file_name(field)
        plot_groups(field, breakdown, 0.95, path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty.png"
    plot_groups("year", {"values": [], "problems_without_value": 3}, 0.95, empty)
    assert empty.stat().st_size > 0


def test_plot_file_names_are_safe() -> None:
    assert plot_file_name("level") == "groups_level.png"
    assert plot_file_name("a/b c") == "groups_a-b-c.png"


def test_short_scalar_metadata_become_csv_columns() -> None:
    metadata: dict[str, dict[str, Any]] = {
        "p": {"level": 3, "solution": "x" * 500, "role": "judge", "tags": ["a"]},
        "q": {"level": None},
    }
    columns = metadata_columns(metadata, taken={"problem_id", "role"})
    assert columns == {"level": "level", "role": "metadata_role"}
    rows = with_metadata([{"problem_id": "p", "n": 4}, {"problem_id": "q", "n": 4}], metadata, columns)
    assert rows == [
        {"problem_id": "p", "n": 4, "level": 3, "metadata_role": "judge"},
        {"problem_id": "q", "n": 4, "level": "", "metadata_role": ""},
    ]
