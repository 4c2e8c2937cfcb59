"""A run on MATH-500-style problems, end to end against the in-process service: the results
folder keeps the problems with their metadata, summary.json breaks the run down by level and
subject, and a resume reads the problems from the folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cot_transfer.client import CotTransferClient, RetryPolicy
from cot_transfer.experiment.datasets import RUN_PROBLEMS_FILE, DatasetOptions, load_problems
from cot_transfer.experiment.runner import ExperimentSettings, resume_inputs, run_experiment
from tests.conftest import InProcessService

SAMPLES = Path(__file__).resolve().parents[2] / "datasets" / "formats"
FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2)


async def test_a_math500_run_keeps_metadata_and_breaks_down_by_level(
    in_process_service: InProcessService, tmp_path: Path
) -> None:
    source = SAMPLES / "math500.parquet"
    problems = load_problems(source)
    out = tmp_path / "run"
    async with CotTransferClient(in_process_service.address, retry=FAST) as client:
        summary = await run_experiment(
            client, problems, SETTINGS, out, problems_path=source, dataset=DatasetOptions(), retry=FAST
        )
    assert load_problems(out / RUN_PROBLEMS_FILE) == problems
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["dataset"]["format"] == "auto"
    levels = summary["groups"]["level"]["values"]
    assert [entry["value"] for entry in levels] == ["1", "2", "3", "4", "5"]
    assert sum(entry["n_problems"] for entry in levels) == len(problems)
    assert all(len(entry["per_fraction"]) == 3 for entry in levels)
    assert {"unlock_rate_interval", "mean_potential_interval"} <= set(levels[0]["per_fraction"][0])
    assert len(summary["groups"]["subject"]["values"]) == 6
    assert (out / "groups_level.png").is_file() and (out / "groups_subject.png").is_file()
    with (out / "results.csv").open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {row["problem_id"] for row in rows} == {problem.id for problem in problems}
    assert {(row["problem_id"], row["level"]) for row in rows} == {
        (problem.id, str(problem.metadata["level"])) for problem in problems
    }

    resumed, _, _ = resume_inputs(out)
    assert resumed == problems
    async with CotTransferClient(in_process_service.address, retry=FAST) as client:
        again = await run_experiment(client, resumed, SETTINGS, out, resume=True, retry=FAST)
    assert again["groups"] == summary["groups"]
