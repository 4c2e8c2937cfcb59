"""The results folder: durable rows, settings hashing, and what a resume may continue."""

import json
from pathlib import Path

import pytest

from cot_transfer.client import Sampling
from cot_transfer.domain.requests import ServiceInfo
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.experiment.datasets import ProblemRecord
from cot_transfer.experiment.runner import (
    ExperimentSettings,
    RunFolder,
    RunFolderError,
    _DurableJsonl,
    experiment_id,
    settings_hash,
)

INFO = ServiceInfo("strong", "weak", ("exact",), "exact", 1024, 10000, 101)
PROBLEMS = [ProblemRecord("p1", "1+2", "3"), ProblemRecord("p2", "2*3", "6")]
SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=4, weak_sampling=Sampling(temperature=0.6, seed=3))


def test_settings_round_trip_through_run_json() -> None:
    data = json.loads(json.dumps(SETTINGS.to_json()))
    assert ExperimentSettings.from_json(data).to_json() == SETTINGS.to_json()
    assert SETTINGS.measured_fractions() == (0.0, 0.5, 1.0)


def test_hash_changes_with_every_result_changing_input() -> None:
    base = settings_hash(SETTINGS, PROBLEMS, INFO)
    assert base == settings_hash(SETTINGS, list(PROBLEMS), INFO)
    variants = [
        settings_hash(ExperimentSettings(fractions=(0.5,), n=4), PROBLEMS, INFO),
        settings_hash(ExperimentSettings(fractions=(0.5, 1.0), n=8), PROBLEMS, INFO),
        settings_hash(ExperimentSettings((0.5, 1.0), 4, weak_sampling=Sampling(temperature=0.7)), PROBLEMS, INFO),
        settings_hash(ExperimentSettings((0.5, 1.0), 4, thresholds=Thresholds(0.0, 0.6)), PROBLEMS, INFO),
        settings_hash(SETTINGS, PROBLEMS[:1], INFO),
        settings_hash(SETTINGS, PROBLEMS, ServiceInfo("strong", "weak-2", ("exact",), "exact", 1024, 10000, 101)),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_a_partial_last_line_is_cut_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3')
    log = _DurableJsonl(path)
    log.append({"a": 4})
    log.close()
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n{"a": 4}\n'


def test_a_new_run_refuses_a_used_folder_and_a_resume_refuses_other_settings(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    run = {**SETTINGS.to_json(), "settings_hash": "abc"}
    folder.start(run, resume=False)
    with pytest.raises(RunFolderError, match="already holds a run"):
        folder.start(run, resume=False)
    with pytest.raises(RunFolderError, match="never mixed"):
        folder.start({**run, "settings_hash": "other"}, resume=True)
    with pytest.raises(RunFolderError, match="no run to resume"):
        RunFolder(tmp_path / "empty").start(run, resume=True)


def test_resume_state_keeps_only_complete_rows_of_the_same_settings(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    strong = {
        "problem_id": "p1",
        "cot": "1+2=3. Answer: 3",
        "answer": "3",
        "correct": True,
        "cot_num_tokens": 8,
        "prefixes": [{"fraction": 0.5, "text": "1+2", "num_tokens": 4, "cot_num_tokens": 8}],
        "settings_hash": "abc",
    }
    (tmp_path / "strong.jsonl").write_text(json.dumps(strong) + "\n" + json.dumps({**strong, "settings_hash": "x"}))
    rows = [
        {"problem_id": "p1", "fraction": 0.0, "settings_hash": "abc"},
        {"problem_id": "p1", "fraction": 0.5, "settings_hash": "old"},
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows) + '{"problem_id": "p1"')
    state = folder.load_state("abc")
    assert state.done == {("p1", 0.0)}
    assert set(state.strong) == {"p1"}
    assert state.strong["p1"].prefixes[0].text == "1+2"


def test_experiment_id_is_a_valid_metrics_label(tmp_path: Path) -> None:
    assert experiment_id(tmp_path / "my run: #1") == "my-run---1"
    assert len(experiment_id(tmp_path / ("x" * 200))) == 64
