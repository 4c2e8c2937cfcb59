"""``load_runs``: several results folders side by side, one tidy table per level; and
``results.parquet`` / ``results.csv`` carrying every per-row field under one name per concept."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cot_transfer.experiment import load, load_runs
from cot_transfer.experiment.load import PARQUET_FILE, write_results_parquet
from cot_transfer.experiment.results_folder import load_run
from cot_transfer.experiment.summary import CSV_COLUMNS, analyze_run, build_summary, csv_rows
from tests.viewer_runs import write_synthetic_run

PROBLEMS = 12


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    small = write_synthetic_run(root / "n8", PROBLEMS, n=8, seed=1)
    wide = write_synthetic_run(root / "n16", PROBLEMS, n=16, receivers=("weak-model", "other-weak"), seed=2)
    # The second run is adaptive on one row, and has provenance and a sampled selection.
    run = json.loads((wide / "run.json").read_text())
    run["sampling_plan"] = {"rule": "mixture_cs", "rounds": [4, 12], "error_rate": 0.05}
    run["dataset"] = {"format": "math", "group_by": ["level"], "selection": {"sample": 12, "seed": 3, "ids": []}}
    run["provenance"] = {
        "started_at": "2026-12-06T10:00:00+00:00",
        "wall_time_s": 12.5,
        "tool": {"name": "cot-transfer", "version": "0.1.0", "git_commit": "abc123"},
        "samples_drawn": {"weak-model": 1000},
        "generated_tokens": {"strong-model": 2400},
    }
    (wide / "run.json").write_text(json.dumps(run))
    lines = (wide / "results.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first.update(n=4, num_correct=0, rounds=1, stop_reason="decided_low")
    (wide / "results.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    (small / "summary.json").write_text(json.dumps(build_summary(load_run(small))))
    return small, wide


def test_one_table_per_level_keyed_by_run(two_runs: tuple[Path, Path]) -> None:
    small, wide = two_runs
    tables = load_runs([small, wide])
    fractions = 11
    assert tables.results.columns[0] == "run"
    sizes = tables.results.groupby(["run", "receiver"]).size().to_dict()
    assert sizes == {
        ("n8", "weak-model"): PROBLEMS * fractions,
        ("n16", "weak-model"): PROBLEMS * fractions,
        ("n16", "other-weak"): PROBLEMS * fractions,
    }
    # (run, problem, fraction, receiver, mode) is a key.
    assert not tables.results.duplicated(["run", "problem_id", "fraction", "receiver", "mode"]).any()
    assert tables.problems.groupby("run").size().to_dict() == {"n8": PROBLEMS, "n16": PROBLEMS}
    assert {"answer", "correct", "cot_num_tokens", "level"} <= set(tables.problems.columns)
    assert set(tables.summary.run) == {"n8"}  # the run with a summary.json (see the fixture)


def test_the_runs_table_compares_settings_and_provenance(two_runs: tuple[Path, Path]) -> None:
    runs = load_runs({"base": two_runs[0], "wide": two_runs[1]}).runs.set_index("run")
    assert runs.loc["base", "n_samples"] == 8 and runs.loc["wide", "n_samples"] == 16
    assert runs.loc["wide", "receivers"] == "weak-model,other-weak" and pd.isna(runs.loc["base", "receivers"])
    assert (runs.loc["wide", "adaptive"], runs.loc["wide", "stopping_rule"]) == (True, "mixture_cs")
    assert not runs.loc["base", "adaptive"]
    assert (runs.loc["wide", "format"], runs.loc["wide", "sample"], runs.loc["wide", "sample_seed"]) == ("math", 12, 3)
    assert runs.loc["wide", "git_commit"] == "abc123" and runs.loc["wide", "wall_time_s"] == 12.5
    assert runs.loc["wide", "generated_tokens:strong-model"] == 2400
    assert pd.isna(runs.loc["base", "git_commit"])
    assert runs.loc["base", "n_problems"] == PROBLEMS and runs.loc["base", "settings_hash"] == "5eed5eed"


def test_rows_carry_the_analysis_intervals_and_adaptive_fields(two_runs: tuple[Path, Path]) -> None:
    results = load(two_runs[1]).results
    assert results.potential_low.notna().all() and results.potential_high.notna().all()
    assert (results.potential_low <= results.potential).all() and (results.potential <= results.potential_high).all()
    adaptive = results[results.rounds > 0]
    assert len(adaptive) == 1 and adaptive.stop_reason.iloc[0] == "decided_low"
    fixed = results[(results.rounds == 0) & (results.receiver == "weak-model")].iloc[0]
    # The adaptive row's interval is the wider confidence sequence, not Wilson's at the same counts.
    assert adaptive.potential_high.iloc[0] - adaptive.potential_low.iloc[0] > 0.5
    assert fixed.dynamics in {"monotonic", "insight", "flat", "tangent", "noisy", "answer_only", "unclassified"}
    by_problem = results.groupby(["receiver", "problem_id"])
    assert (by_problem.baseline_unsolved.nunique(dropna=False) == 1).all()
    # unlocked only where the baseline was unsolved, and p_unlocked where it is defined.
    assert not results[results.baseline_unsolved.eq(False)].unlocked.any()
    assert results.p_unlocked.dropna().between(0, 1).all()
    assert results.level.notna().all()  # the problems' metadata


def test_parquet_carries_every_row_field_with_intervals_as_columns(two_runs: tuple[Path, Path]) -> None:
    folder = two_runs[1]
    frame = pd.read_parquet(write_results_parquet(folder))
    wanted = {
        "receiver",
        "potential_low",
        "potential_high",
        "unlocked",
        "p_unlocked",
        "baseline_unsolved",
        "dynamics",
        "rounds",
        "stop_reason",
        "answer_in_prefix",
        "answer_stated_in_prefix",
        "step_importance_low",
        "step_importance_high",
        "level",
    }
    assert wanted <= set(frame.columns)
    assert frame.potential_low.dtype == float and len(frame) == len(load(folder).results)
    assert not any(frame[column].map(lambda value: isinstance(value, list)).any() for column in wanted)
    assert (folder / PARQUET_FILE).is_file()


def test_the_csv_names_the_receiver_as_the_parquet_does(two_runs: tuple[Path, Path]) -> None:
    run = load_run(two_runs[0])
    rows = csv_rows(run, analyze_run(run))
    assert (
        "role" not in CSV_COLUMNS
        and "role" not in rows[0]
        and {row["receiver"] for row in rows} <= {"weak-model", "strong-model"}
    )
    parquet = pd.read_parquet(write_results_parquet(two_runs[0]))
    assert {row["receiver"] for row in rows if row["receiver"] != "strong-model"} == set(parquet.receiver)
    summary = load(two_runs[0]).summary
    assert {"mean_potential_low", "mean_potential_high", "unlock_rate_low", "unlock_rate_high"} <= set(summary.columns)
    assert not any(column.endswith("_interval") for column in summary.columns)


def test_an_old_folder_with_role_rows_names_the_strong_model(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    run = {"fractions": [0.0, 1.0], "n_samples": 4, "grader": "exact", "strong_model": "s", "weak_model": "w"}
    (folder / "run.json").write_text(json.dumps(run))
    rows = [
        {"problem_id": "a", "fraction": f, "n": 4, "num_correct": 2, "prefix_num_tokens": 1, "cot_num_tokens": 2}
        for f in (0.0, 1.0)
    ]
    rows += [{**row, "role": "strong"} for row in rows]
    (folder / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    results = load(folder).results
    assert sorted(results.receiver) == ["s", "s", "w", "w"]
    assert results.potential_low.notna().all()


def test_load_runs_refuses_nothing_and_labels_folders_of_one_name(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        load_runs([])
    twin = write_synthetic_run(tmp_path / "n8", 3, n=4)
    assert list(load_runs([two_runs[0], twin]).runs.run) == ["n8", "n8-2"]
