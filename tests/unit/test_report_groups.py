"""`cot-transfer report` on a results folder whose problems have a level: groups in
summary.json, the per-level plot, the table, and the metadata columns of results.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cot_transfer.cli.main import main
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.datasets import save_run_problems
from cot_transfer.experiment.report import write_report

CURVES = {
    # level 1: both baseline-unsolved problems unlock at 0.5
    "test/algebra/1.json": (1, "Algebra", [0, 4, 4]),
    "test/algebra/2.json": (1, "Geometry", [0, 3, 4]),
    # level 5: one of three unsolved problems unlocks, at 1.0 only; one is solved alone
    "test/algebra/3.json": (5, "Algebra", [0, 0, 2]),
    "test/algebra/4.json": (5, "Algebra", [0, 0, 0]),
    "test/algebra/5.json": (5, "Geometry", [0, 1, 1]),
    "test/algebra/6.json": (5, "Geometry", [4, 4, 4]),
}
FRACTIONS = [0.0, 0.5, 1.0]


def results_folder(root: Path, *, group_by: list[str] | None = None) -> Path:
    folder = root / "run"
    folder.mkdir()
    run = {
        "fractions": FRACTIONS,
        "n_samples": 4,
        "thresholds": {"baseline_max_potential": 0.0, "unlock_min_potential": 0.5},
        "grader": "exact",
        "strong_model": "strong",
        "weak_model": "weak",
        "settings_hash": "h",
        "problems_path": None,
        "dataset": {"format": "math", "group_by": group_by or []},
        "problem_ids": list(CURVES),
    }
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    rows = [
        {
            "problem_id": problem_id,
            "fraction": fraction,
            "n": 4,
            "num_correct": k,
            "prefix_num_tokens": 0,
            "cot_num_tokens": 10,
            "settings_hash": "h",
        }
        for problem_id, (_, _, counts) in CURVES.items()
        for fraction, k in zip(FRACTIONS, counts, strict=True)
    ]
    (folder / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    problems = [
        Problem(problem_id, f"problem {problem_id}", "1", {"level": level, "subject": subject, "solution": "x" * 300})
        for problem_id, (level, subject, _) in CURVES.items()
    ]
    save_run_problems(folder, problems)
    return folder


def test_report_breaks_a_run_down_by_level_and_subject(tmp_path: Path) -> None:
    folder = results_folder(tmp_path)
    write_report(folder)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    levels = summary["groups"]["level"]["values"]
    assert [entry["value"] for entry in levels] == ["1", "5"]
    one, five = levels
    assert (one["n_problems"], one["baseline_unsolved"], five["n_problems"], five["baseline_unsolved"]) == (2, 2, 4, 3)
    assert [stats["unlock_rate"] for stats in one["per_fraction"]] == [0.0, 1.0, 1.0]
    assert [stats["unlock_rate"] for stats in five["per_fraction"]] == pytest.approx([0.0, 0.0, 1 / 3])
    final = five["per_fraction"][-1]
    assert final["unlock_rate_interval"]["low"] < 1 / 3 < final["unlock_rate_interval"]["high"]
    assert final["mean_potential_interval"] is not None
    assert [entry["value"] for entry in summary["groups"]["subject"]["values"]] == ["Algebra", "Geometry"]
    assert (folder / "groups_level.png").read_bytes()[:4] == b"\x89PNG"
    assert (folder / "groups_subject.png").is_file()
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert "## By level" in report and "![Unlock rate and potential by level](groups_level.png)" in report
    with (folder / "results.csv").open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {row["level"] for row in rows} == {"1", "5"}
    assert "solution" not in rows[0]


def test_report_command_takes_group_by(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = results_folder(tmp_path)
    assert main(["report", str(folder), "--group-by", "subject"]) == 0
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert list(summary["groups"]) == ["subject"]
    assert (folder / "groups_subject.png").is_file()
    assert "report:" in capsys.readouterr().out


def test_the_fields_the_run_was_started_with_are_used(tmp_path: Path) -> None:
    folder = results_folder(tmp_path, group_by=["subject"])
    write_report(folder)
    assert list(json.loads((folder / "summary.json").read_text(encoding="utf-8"))["groups"]) == ["subject"]


def test_a_folder_without_problems_has_no_groups(tmp_path: Path) -> None:
    folder = results_folder(tmp_path)
    (folder / "problems.jsonl").unlink()
    write_report(folder)
    assert json.loads((folder / "summary.json").read_text(encoding="utf-8"))["groups"] == {}
    assert not list(folder.glob("groups_*.png"))
