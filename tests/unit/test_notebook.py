"""examples/analysis.ipynb runs top to bottom (nbclient, a real ipykernel) against two run folders
written here, and shows its figures and tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cot_transfer.experiment.results_folder import load_run
from cot_transfer.experiment.summary import build_summary
from tests.viewer_runs import write_synthetic_run

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "analysis.ipynb"


def test_the_analysis_notebook_executes_against_two_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    run = write_synthetic_run(tmp_path / "demo", 8, n=8, seed=1)
    (run / "summary.json").write_text(json.dumps(build_summary(load_run(run))), encoding="utf-8")
    other = write_synthetic_run(tmp_path / "wide", 8, n=16, receivers=("weak-model", "other-weak"), seed=2)
    monkeypatch.setenv("COT_TRANSFER_RUN", str(run))
    monkeypatch.setenv("COT_TRANSFER_OTHER_RUN", str(other))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # datasets (problems.jsonl) may not write a cache into the tester's home.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any failure

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 3  # the run's curves, the two runs' curves, the step importance histogram
    text = "\n".join(
        output.get("text", "") + output.get("data", {}).get("text/plain", "")
        for output in outputs
        if output.output_type in ("stream", "execute_result")
    )
    assert f"{run}: 8 problems" in text
    assert "other" in text and "5eed5eed" in text  # the runs table: both runs, their settings hash
    assert "steps; importance interval excludes 0" in text


def test_the_notebook_is_saved_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
