"""`--track`: a real results folder (a run through the service's RPC bodies in process) logged to
the real MLflow, read back through ``MlflowClient``, and to W&B offline, read back from the
offline run file it writes; the metrics per fraction, the parameters and the artifacts."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cot_transfer.client import CotTransferClient
from cot_transfer.domain.requests import Problem
from cot_transfer.engine.base import GenerationOutput, GenerationRequest
from cot_transfer.experiment import tracking
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from cot_transfer.experiment.tracking import (
    Tracker,
    TrackingError,
    check_installed,
    fraction_metrics,
    mlflow_uri,
    parse_tracker,
    track_run,
)
from tests.conftest import IN_PROCESS_MAX_MODEL_LEN, LOCAL_CONFIG, InProcessService
from tests.fakes import ScriptedEngine

PROBLEMS = [Problem("p1", "1+2", "3"), Problem("p2", "2+1", "3")]
SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2)


class HintedEngine(ScriptedEngine):
    """A weak model that answers right only once the prefix says "makes": every problem is
    unsolved at fraction 0 and unlocked from 0.5 on, so every rate has a value."""

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        prompt = "".join(chr(token) for token in request.prompt_token_ids if token < 0x110000)
        self.continuations = ["Answer: 3"] if "makes" in prompt else ["Answer: 4"]
        async for output in super().generate(request, request_id):
            yield output


async def run_on(service: InProcessService, out: Path) -> None:
    async with CotTransferClient(service.address) as client:
        await run_experiment(client, PROBLEMS, SETTINGS, out)


@pytest.fixture(scope="module")
async def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results folder for the module: the trackers only read it."""
    out = tmp_path_factory.mktemp("tracking") / "demo-run"
    strong = ScriptedEngine(["1+2 makes 3. Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
    weak = HintedEngine([], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
    async with InProcessService(strong, {LOCAL_CONFIG.weak.engine.name: weak}) as service:
        await run_on(service, out)
    assert summary_of(out)["per_fraction"][-1]["unlock_rate"] == 1.0  # the fake does what it says
    return out


def summary_of(out: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def expected_artifacts(out: Path) -> set[str]:
    names = {"run.json", "summary.json", "report.md", "results.csv", "view.html"}
    return {name for name in names if (out / name).is_file()} | {
        path.name for path in out.iterdir() if path.suffix in (".png", ".svg")
    }


def test_mlflow_run_reads_back_through_mlflow_client(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    store = tmp_path / "store"
    (place,) = track_run(results, [parse_tracker(f"mlflow:{store}")])
    assert store.as_uri() in place
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("cot-transfer")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "demo-run" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["n_samples"] == "2" and json.loads(params["fractions"]) == [0.0, 0.5, 1.0]
    assert params["grader"] == "exact" and params["n_problems"] == "2" and "settings_hash" in params
    assert params["thresholds.unlock_min_potential"] == "0.5"
    assert run.data.tags["cot_transfer.settings_hash"] == params["settings_hash"]
    assert "server.python" in run.data.tags

    per_fraction = summary_of(results)["per_fraction"]
    expected = {
        "fraction": [entry["fraction"] for entry in per_fraction],
        "unlock_rate": [entry["unlock_rate"] for entry in per_fraction],
        "mean_potential": [entry["mean_potential"] for entry in per_fraction],
        "mean_potential_interval_low": [entry["mean_potential_interval"]["low"] for entry in per_fraction],
    }
    for name, values in expected.items():
        history = sorted(client.get_metric_history(run.info.run_id, name), key=lambda metric: metric.step)
        assert [metric.step for metric in history] == list(range(len(per_fraction)))
        assert [metric.value for metric in history] == pytest.approx(values)
    artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert artifacts == expected_artifacts(results)
    assert {"summary.json", "report.md", "view.html"} <= artifacts and any(name.endswith(".png") for name in artifacts)


def test_mlflow_defaults_to_mlruns_in_the_working_directory(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    track_run(results, [Tracker("mlflow")])
    assert (tmp_path / "mlruns").is_dir()
    assert mlflow_uri("") == (tmp_path / "mlruns").as_uri()
    assert mlflow_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert mlflow_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def wandb_records(run_file: Path) -> list[Any]:
    """The records of a W&B offline run file: W&B's header (7 bytes), then LevelDB-log chunks in
    32 KiB blocks (7-byte chunk headers: crc, length, type: full 1, first 2, middle 3, last 4)."""
    from wandb.proto import wandb_internal_pb2

    data, block = run_file.read_bytes(), 32768
    assert data[:4] == b":W&B"
    position, chunks, pending = 7, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind in (2, 3):
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
            pending = b""
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        record.ParseFromString(chunk)
        records.append(record)
    return records


def test_wandb_offline_run_holds_the_config_metrics_and_artifacts(
    results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")  # overridden: the tracker never goes online
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    (place,) = track_run(results, [parse_tracker("wandb:transfer")])
    (offline,) = (results / "wandb").glob("offline-run-*")
    assert str(offline) in place
    import os

    assert os.environ["WANDB_MODE"] == "online"  # the environment is given back
    records = wandb_records(next(offline.glob("run-*.wandb")))
    kinds = [record.WhichOneof("record_type") for record in records]
    assert kinds.count("run") == 1 and kinds[-1] == "exit", kinds
    (run,) = [record.run for record in records if record.WhichOneof("record_type") == "run"]
    assert run.display_name == "demo-run" and run.project == "transfer"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["n_samples"] == "2" and json.loads(config["fractions"]) == [0.0, 0.5, 1.0]
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]
    per_fraction = summary_of(results)["per_fraction"]
    assert [row["_step"] for row in history] == list(range(len(per_fraction)))
    assert [row["unlock_rate"] for row in history] == pytest.approx([entry["unlock_rate"] for entry in per_fraction])
    assert [row["fraction"] for row in history] == [entry["fraction"] for entry in per_fraction]
    (artifact,) = [record.artifact for record in records if record.WhichOneof("record_type") == "artifact"]
    assert {entry.path for entry in artifact.manifest.contents} == expected_artifacts(results)


def test_per_fraction_metrics_take_every_number_and_each_receiver_block() -> None:
    entry: dict[str, Any] = {"fraction": 0.5, "unlock_rate": 0.25, "true_unlock_rate": 0.2, "unlocked": 1, "flag": True}
    entry["unlock_rate_interval"] = {"low": 0.1, "high": 0.4}
    summary: dict[str, Any] = {
        "per_fraction": [{**entry, "fraction": 0.0}, entry],
        "receivers": {"strong": {"free": {"per_fraction": [{"fraction": 0.0, "unlock_rate": 1.0}]}}, "weak": {}},
    }
    steps = fraction_metrics(summary)
    assert steps[1] == {
        "fraction": 0.5,
        "unlock_rate": 0.25,
        "true_unlock_rate": 0.2,
        "unlocked": 1.0,
        "unlock_rate_interval_low": 0.1,
        "unlock_rate_interval_high": 0.4,
    }
    summary["receivers"]["weak"] = {"free": {"per_fraction": [{"fraction": 0.0, "unlock_rate": 0.5}]}}
    steps = fraction_metrics(summary)
    assert steps[0]["strong/free/unlock_rate"] == 1.0 and steps[0]["weak/free/unlock_rate"] == 0.5
    assert "strong/free/unlock_rate" not in steps[1]


def test_an_unknown_tracker_or_a_missing_package_is_refused_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(TrackingError, match="mlflow"):
        parse_tracker("tensorboard")
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TrackingError, match=r"pip install 'cot-transfer\[track\]'"):
        check_installed([Tracker("wandb")])
    from cot_transfer.cli.main import main

    # Refused before anything runs: no service at this address is ever called.
    argv = ["run", "--address", "127.0.0.1:1", "--problems", "x.jsonl", "--out", str(tmp_path / "o")]
    assert main([*argv, "--track", "mlflow"]) == 2
    assert "needs the mlflow package" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
