"""A killed adaptive run resumes adaptive: `cot-transfer run --n 128 --adaptive` is killed with
SIGKILL mid-run and `run --resume` finishes it through Transfer.Run with the run's own plan.

(n_max above the service's per-request cap is tests/unit/test_adaptive_resume.py: this session's
service caps a request at 1024 samples, which other tests use.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RunningService
from tests.integration.test_durability import PROBLEMS, kill_mid_run_and_resume

pytestmark = pytest.mark.integration

N_MAX = 128
PROBLEM_COUNT = 6
FRACTIONS = "0.3,0.6,1"
ROWS = PROBLEM_COUNT * 4  # the baseline and three fractions


def test_a_killed_adaptive_run_resumes_with_every_row_drawn_by_the_plan(
    service: RunningService, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    # The demo's problems without their metadata: this test is about sampling, not the dataset.
    problems = tmp_path / "problems.jsonl"
    records = [json.loads(line) for line in PROBLEMS.read_text().splitlines()[:PROBLEM_COUNT]]
    problems.write_text(
        "".join(json.dumps({key: record[key] for key in ("id", "problem", "answer")}) + "\n" for record in records)
    )
    settings = ("--problems", str(problems), "--fractions", FRACTIONS)
    before, after = kill_mid_run_and_resume(service, out, *settings, "--n", str(N_MAX), "--adaptive")
    assert 5 <= len(before) < ROWS, "the kill should land mid-run"
    rows = [json.loads(line) for line in after]
    keys = [(row["problem_id"], row["fraction"]) for row in rows]
    assert len(keys) == len(set(keys)) == ROWS
    for row in rows:
        # Drawn in rounds by the plan, with its stop reason, never past n_max: none in one call of n_max.
        assert row["rounds"] >= 1 and row["stop_reason"], row
        assert 1 <= row["n"] <= N_MAX, row
    run = json.loads((out / "run.json").read_text())
    assert run["sampling_plan"]["n_max"] == N_MAX
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_problems"] == PROBLEM_COUNT
