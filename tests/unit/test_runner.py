"""The results folder: durable rows, settings hashing, and what a resume may continue."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from cot_transfer.client import Sampling
from cot_transfer.domain.requests import ModelInfo, Problem, ServiceInfo
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.experiment.problem_errors import ERRORS_FILE
from cot_transfer.experiment.run_folder import RunFolder, RunFolderError, _DurableJsonl
from cot_transfer.experiment.runner import FolderExperiment, experiment_id, folder_experiment_id, new_experiment_id
from cot_transfer.experiment.settings import ExperimentSettings, service_identity, settings_hash
from tests.fakes import service_info

INFO = service_info()
PROBLEMS = [Problem("p1", "1+2", "3"), Problem("p2", "2*3", "6")]
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
        settings_hash(SETTINGS, PROBLEMS, dataclasses.replace(INFO, weak_model="weak-2")),
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
    assert state.done == {("p1", 0.0, "", "free")}  # (problem, fraction, receiver, mode)
    assert set(state.strong) == {"p1"}
    assert state.strong["p1"].prefixes[0].text == "1+2"


def test_experiment_id_is_a_valid_metrics_label(tmp_path: Path) -> None:
    assert experiment_id(tmp_path / "my run: #1") == "my-run---1"
    assert len(experiment_id(tmp_path / ("x" * 200))) == 64


def test_a_new_run_gets_an_id_of_its_own_and_a_resume_keeps_it(tmp_path: Path) -> None:
    first, second = (folder_experiment_id(tmp_path / parent / "run", None) for parent in ("alice", "bob"))
    assert first.id != second.id and first.own and second.own
    assert re.fullmatch(r"run-[0-9a-f]{8}", first.id), first
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", new_experiment_id(tmp_path / ("x" * 200)))
    assert folder_experiment_id(tmp_path / "run", {"experiment_id": first.id}) == first
    # A folder started before run.json kept the id resumes under the name it used then, which
    # another folder may share: its calls never take over a run under it.
    assert folder_experiment_id(tmp_path / "run", {"settings_hash": "abc"}) == FolderExperiment("run", own=False)


SERVED = service_info(
    models=(ModelInfo("strong", ("strong",), "plain", "f1"), ModelInfo("weak", ("weak",), "plain", "f2")),
    strong_sampling_defaults=SamplingParams(0.6, 0.95, 256, None),
    weak_sampling_defaults=SamplingParams(0.6, 0.95, 256, None),
)


def test_the_hash_covers_each_models_fingerprint_and_the_effective_sampling_defaults() -> None:
    base = settings_hash(SETTINGS, PROBLEMS, SERVED)
    new_weights = dataclasses.replace(
        SERVED, models=(SERVED.models[0], dataclasses.replace(SERVED.models[1], fingerprint="f3"))
    )
    new_default = dataclasses.replace(SERVED, strong_sampling_defaults=SamplingParams(0.7, 0.95, 256, None))
    assert settings_hash(SETTINGS, PROBLEMS, new_weights) != base
    assert settings_hash(SETTINGS, PROBLEMS, new_default) != base
    # A default the settings override changes nothing: the weak temperature is asked for (0.6).
    overridden = dataclasses.replace(SERVED, weak_sampling_defaults=SamplingParams(0.9, 0.95, 256, None))
    assert settings_hash(SETTINGS, PROBLEMS, overridden) == base
    # A service that reports neither keeps the hash folders made before it reported them.
    assert settings_hash(SETTINGS, PROBLEMS, INFO) != base


def test_a_resume_against_changed_weights_or_defaults_is_refused_naming_what_changed(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")

    def run_for(info: ServiceInfo) -> dict[str, object]:
        return {
            **SETTINGS.to_json(),
            "settings_hash": settings_hash(SETTINGS, PROBLEMS, info),
            "service": service_identity(SETTINGS, info),
        }

    folder.start(run_for(SERVED), resume=False)
    folder.start(run_for(SERVED), resume=True)  # same service: fine
    new_weights = dataclasses.replace(
        SERVED, models=(dataclasses.replace(SERVED.models[0], fingerprint="f9"), SERVED.models[1])
    )
    with pytest.raises(RunFolderError, match=r"the model behind 'strong' changed \(fingerprint f1 then, f9 now\)"):
        folder.start(run_for(new_weights), resume=True)
    new_default = dataclasses.replace(SERVED, strong_sampling_defaults=SamplingParams(0.6, 0.95, 512, None))
    with pytest.raises(RunFolderError, match="effective strong sampling max_tokens changed"):
        folder.start(run_for(new_default), resume=True)


def test_a_permanent_error_is_final_and_a_transient_one_stands_only_until_its_problem_finishes(
    tmp_path: Path,
) -> None:
    errors = [
        {"problem_id": "p1", "code": "OUT_OF_RANGE", "message": "too long", "settings_hash": "abc"},
        {"problem_id": "p2", "code": "UNAVAILABLE", "message": "replica died", "settings_hash": "abc"},
        {"problem_id": "p3", "code": "INTERNAL", "message": "incident 1", "settings_hash": "old"},
    ]
    (tmp_path / ERRORS_FILE).write_text("".join(json.dumps(error) + "\n" for error in errors))
    folder = RunFolder(tmp_path)
    state = folder.load_state("abc", (0.0, 1.0))
    assert set(state.errors) == {"p1", "p2"}
    assert state.is_final("p1") and not state.is_final("p2")
    # p2 ran again and finished: its old error no longer stands.
    strong = {"problem_id": "p2", "cot": "c", "answer": "6", "correct": True, "cot_num_tokens": 1, "prefixes": []}
    (tmp_path / "strong.jsonl").write_text(json.dumps({**strong, "settings_hash": "abc"}) + "\n")
    rows = [{"problem_id": "p2", "fraction": fraction, "settings_hash": "abc"} for fraction in (0.0, 1.0)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert set(folder.load_state("abc", (0.0, 1.0)).errors) == {"p1"}
