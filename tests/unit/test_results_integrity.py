"""Results that never mix: rows record the fingerprints they were drawn with, a redeploy with
other weights mid-run stops the run naming the change, run.json is replaced atomically and synced,
`demo --out` clears a folder only under its lock, and `cot-transfer run` exits non-zero naming the
problems a run leaves unfinished. The real client, runner and folder against the service's own RPC
bodies in process (``tests.conftest.InProcessService``)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from cot_transfer.cli.main import main
from cot_transfer.cli.run import INCOMPLETE_EXIT
from cot_transfer.client import CotTransferClient, RetryPolicy, Sampling
from cot_transfer.client.convert import service_info_from_proto
from cot_transfer.domain.requests import FractionResult, ModelInfo, Problem, ServiceInfo
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.experiment import run_folder
from cot_transfer.experiment.run_folder import RUN_FILE, RunFolder, folder_lock, write_json_atomically
from cot_transfer.experiment.runner import ExperimentSettings, ModelChangedError, run_experiment
from cot_transfer.experiment.settings import service_changes, service_identity, settings_hash
from cot_transfer.serving.edge.encode import service_info_to_proto
from tests.conftest import IN_PROCESS_MAX_MODEL_LEN, LOCAL_CONFIG, InProcessService
from tests.fakes import ScriptedEngine, service_info

FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02)
SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2)
STRONG, WEAK = LOCAL_CONFIG.strong.engine.name, LOCAL_CONFIG.weak.engine.name
REPO = Path(__file__).resolve().parents[2]


class Redeployable(InProcessService):
    """A service whose GetInfo fingerprints a test can change, as a redeploy with other weights does."""

    def __init__(self) -> None:
        one_per_run = LOCAL_CONFIG.model_copy(
            update={"limits": LOCAL_CONFIG.limits.model_copy(update={"max_problems_per_run": 1})}
        )
        strong = ScriptedEngine(["1+2 makes 3. Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
        weak = ScriptedEngine(["Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
        super().__init__(strong, {WEAK: weak}, config=one_per_run)
        self.prints = {STRONG: "strong-v1", WEAK: "weak-v1"}

    async def _fingerprints(self) -> dict[str, str]:
        return dict(self.prints)


def rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


async def test_a_redeploy_with_other_weights_mid_run_stops_the_run_naming_the_change(tmp_path: Path) -> None:
    problems = [Problem(f"p{index}", f"{index}+2", "3") for index in range(3)]
    out = tmp_path / "run"
    service = Redeployable()
    async with service, CotTransferClient(service.address, retry=FAST) as client:

        def redeploy_after_the_first_row(row: FractionResult) -> None:
            service.prints[WEAK] = "weak-v2"

        with pytest.raises(ModelChangedError) as stopped:
            await run_experiment(client, problems, SETTINGS, out, on_row=redeploy_after_the_first_row, retry=FAST)
    assert f"the model behind {WEAK!r} changed (fingerprint weak-v1 then, weak-v2 now)" in str(stopped.value)
    # One Run per problem (max_problems_per_run 1): the second batch is never sent.
    assert service.run_problems == [["p0"]]
    written = rows(out)
    assert {row["problem_id"] for row in written} == {"p0"} and len(written) == 3
    # Every row names the fingerprints it was drawn with: the strong model's and its receiver's.
    assert all(row["model_fingerprints"] == {STRONG: "strong-v1", WEAK: "weak-v1"} for row in written)
    strong = json.loads((out / "strong.jsonl").read_text().splitlines()[0])
    assert strong["model_fingerprints"] == {STRONG: "strong-v1"}

    # A resume against the new weights is refused too, naming the same change.
    service = Redeployable()
    async with service, CotTransferClient(service.address, retry=FAST) as client:
        service.prints[WEAK] = "weak-v2"
        with pytest.raises(run_folder.RunFolderError, match=r"weak-v1 then, weak-v2 now"):
            await run_experiment(client, problems, SETTINGS, out, resume=True, retry=FAST)
        assert service.runs == []


async def test_rows_written_before_fingerprints_still_resume(tmp_path: Path) -> None:
    problems = [Problem(f"p{index}", f"{index}+2", "3") for index in range(2)]
    out = tmp_path / "run"
    service = Redeployable()
    async with service, CotTransferClient(service.address, retry=FAST) as client:
        await run_experiment(client, problems, SETTINGS, out, retry=FAST)
        lines = rows(out)
        # The folder as a client before fingerprinted rows and settings hash version 2 wrote it: its
        # run.json has no settings_hash_version and a version-1 hash, its rows no model_fingerprints,
        # and the last row is not written yet.
        run = json.loads((out / RUN_FILE).read_text())
        info = await client.get_info()
        old_hash = settings_hash(SETTINGS, problems, info, version=1)
        del run["settings_hash_version"]
        run.update(settings_hash=old_hash, service=service_identity(SETTINGS, info, version=1))
        (out / RUN_FILE).write_text(json.dumps(run))
        old = [
            {**{key: value for key, value in row.items() if key != "model_fingerprints"}, "settings_hash": old_hash}
            for row in lines[:-1]
        ]
        (out / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in old))
        strong = [
            {**json.loads(line), "settings_hash": old_hash} for line in (out / "strong.jsonl").read_text().splitlines()
        ]
        (out / "strong.jsonl").write_text("".join(json.dumps(record) + "\n" for record in strong))
        drawn = len(service.completions)
        summary = await run_experiment(client, problems, SETTINGS, out, resume=True, retry=FAST)
    # It resumes under its old hash: only the missing row is drawn, and the run is complete.
    assert summary["unfinished_problems"] == [] and summary["n_problems"] == 2
    assert json.loads((out / RUN_FILE).read_text())["settings_hash"] == old_hash
    assert len(service.completions) == drawn + 1 and service.completions[-1].n == SETTINGS.n
    assert len(rows(out)) == len(lines) and "model_fingerprints" in rows(out)[-1]
    assert rows(out)[-1]["settings_hash"] == old_hash


def test_run_json_is_synced_and_replaced_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / RUN_FILE
    write_json_atomically(path, {"settings_hash": "old"})
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(run_folder.os, "fsync", recording_fsync)
    write_json_atomically(path, {"settings_hash": "new"})
    # The new text is synced in a temporary file of the same folder, then the folder (the rename).
    assert len(synced) == 2 and Path(synced[0]).parent == tmp_path and synced[1] == str(tmp_path)
    assert json.loads(path.read_text()) == {"settings_hash": "new"}

    def failing_replace(source: str, target: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(run_folder.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        RunFolder(tmp_path).update_run(lambda run: {**run, "settings_hash": "newer"})
    assert json.loads(path.read_text()) == {"settings_hash": "new"}  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_FILE]  # no temporary left behind


def test_demo_out_refuses_a_folder_another_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)  # the demo's config and problems are relative to the checkout
    out = tmp_path / "demo"
    out.mkdir()
    (out / "results.jsonl").write_text("{}\n")
    with folder_lock(out):  # a run writing it (flock: a second open file description conflicts)
        assert main(["demo", "--out", str(out)]) == 2
    assert "is being written by another process" in capsys.readouterr().err
    assert (out / "results.jsonl").read_text() == "{}\n"  # nothing deleted
    run_folder.clear_folder(out)  # unlocked: emptied, the lock file kept for waiters
    assert [p.name for p in out.iterdir()] == [run_folder.LOCK_FILE]


async def test_the_cli_exits_non_zero_naming_the_problems_a_run_leaves_unfinished(
    in_process_service: InProcessService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    problems = tmp_path / "problems.jsonl"
    records = [{"id": "ok", "problem": "1+2", "answer": "3"}]
    records.append({"id": "too-long", "problem": "9" * (IN_PROCESS_MAX_MODEL_LEN * 2), "answer": "3"})
    problems.write_text("".join(json.dumps(record) + "\n" for record in records))
    common = ["run", "--address", in_process_service.address, "--fractions", "0.5,1", "--n", "2"]
    status = await asyncio.to_thread(main, [*common, "--problems", str(problems), "--out", str(tmp_path / "a")])
    assert status == INCOMPLETE_EXIT
    err = capsys.readouterr().err
    assert "the run ended incomplete: 1 of the problems are missing from the statistics: 'too-long'" in err
    # A complete run exits 0.
    problems.write_text(json.dumps(records[0]) + "\n")
    assert await asyncio.to_thread(main, [*common, "--problems", str(problems), "--out", str(tmp_path / "b")]) == 0


SERVED = service_info(
    models=(
        ModelInfo("strong", ("strong",), "qwen3", "f1", 4096, {"dtype": '"bfloat16"'}),
        ModelInfo("weak", ("weak",), "plain", "f2", 4096, {"dtype": '"bfloat16"'}),
    ),
    strong_sampling_defaults=SamplingParams(0.6, 0.95, 256, None),
    weak_sampling_defaults=SamplingParams(0.6, 0.95, 256, None),
    versions={"vllm": "0.11.0", "math-verify": "0.8.0", "ray": "2.50.0", "python": "3.11.7"},
)
PROBLEMS = [Problem("p1", "1+2", "3")]


def _with_model(index: int, **change: object) -> ServiceInfo:
    models = list(SERVED.models)
    models[index] = ModelInfo(**{**models[index].__dict__, **change})
    return ServiceInfo(**{**SERVED.__dict__, "models": tuple(models)})


def test_the_settings_hash_covers_reasoning_format_output_engine_settings_and_vllm_and_grader_versions() -> None:
    base = settings_hash(SETTINGS, PROBLEMS, SERVED)
    changed = {
        "reasoning format": _with_model(0, reasoning_format="deepseek_r1"),
        "context length": _with_model(1, max_model_len=2048),
        "dtype": _with_model(1, engine_settings={"dtype": '"float16"'}),
        "quantization": _with_model(0, engine_settings={"dtype": '"bfloat16"', "quantization": '"fp8"'}),
        "vllm": ServiceInfo(**{**SERVED.__dict__, "versions": {**SERVED.versions, "vllm": "0.12.0"}}),
        "grader": ServiceInfo(**{**SERVED.__dict__, "versions": {**SERVED.versions, "math-verify": "0.9.0"}}),
    }
    hashes = {what: settings_hash(SETTINGS, PROBLEMS, info) for what, info in changed.items()}
    assert base not in hashes.values() and len(set(hashes.values())) == len(hashes)
    # Packages that do not change outputs leave it alone.
    quiet = ServiceInfo(**{**SERVED.__dict__, "versions": {**SERVED.versions, "ray": "2.51.0", "python": "3.12"}})
    assert settings_hash(SETTINGS, PROBLEMS, quiet) == base
    # Version 1 (folders from before) covers none of it: its hash is the one those folders hold.
    assert {settings_hash(SETTINGS, PROBLEMS, info, version=1) for info in changed.values()} == {
        settings_hash(SETTINGS, PROBLEMS, SERVED, version=1)
    }
    # What a resume is refused for, in words.
    before = service_identity(SETTINGS, SERVED)
    assert service_changes(before, service_identity(SETTINGS, changed["dtype"])) == [
        """the engine setting dtype of 'weak' changed ("bfloat16" then, "float16" now)"""
    ]
    assert service_changes(before, service_identity(SETTINGS, changed["grader"])) == [
        "the server's math-verify changed (0.8.0 then, 0.9.0 now)"
    ]
    assert service_changes(before, service_identity(SETTINGS, changed["reasoning format"])) == [
        "the reasoning_format of 'strong' changed (qwen3 then, deepseek_r1 now)"
    ]


def test_version_1_hashes_what_the_client_before_version_2_hashed() -> None:
    # Pinned from the settings hash before it had versions: an old folder's hash must not move.
    settings = ExperimentSettings(fractions=(0.5, 1.0), n=4, weak_sampling=Sampling(temperature=0.6, seed=3))
    problems = [Problem("p1", "1+2", "3"), Problem("p2", "2*3", "6")]
    info = service_info(
        models=(
            ModelInfo("strong", ("strong",), "plain", "f1", 64, {"dtype": '"auto"'}),
            ModelInfo("weak", ("weak",), "plain", "f2"),
        ),
        strong_sampling_defaults=SamplingParams(0.6, 0.95, 256, None),
        versions={"vllm": "0.1"},
    )
    assert settings_hash(settings, problems, info, version=1) == "f5de9543ce52218e"


def test_get_info_reports_each_models_output_engine_settings() -> None:
    info = service_info_from_proto(service_info_to_proto(LOCAL_CONFIG))
    by_name = {model.name: model for model in info.models}
    engine = LOCAL_CONFIG.strong.engine
    assert by_name[STRONG].engine_settings["dtype"] == json.dumps(engine.dtype)
    assert by_name[STRONG].engine_settings["seed"] == json.dumps(engine.seed)
    assert set(by_name[WEAK].engine_settings) >= {"dtype", "max_model_len", "seed"}
