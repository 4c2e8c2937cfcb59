"""The weights behind a served name are replaced while a run is going: the run stops at its next
batch, naming the model and both fingerprints, and its run.json and rows hold the fingerprints
they were drawn with. The weak model is served from a copy in a temporary folder whose
model.safetensors is overwritten mid-run with the strong model's: same file name, same size, so
only a fingerprint of the content sees the change. GetInfo reads the fingerprints from disk at
every call (cached by size and mtime), so no redeploy is needed for the runner to see it; a
resume against the new weights is refused as in tests/unit/test_results_integrity.py."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cot_transfer.client import Sampling
from cot_transfer.domain.requests import FractionResult
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.experiment.runner import ExperimentSettings, ModelChangedError, run_experiment
from cot_transfer.serving.replicas.fingerprint import model_fingerprint
from tests.conftest import REPO, RunningService, serve_stack

pytestmark = [pytest.mark.integration, pytest.mark.own_stack]

TESTBED = REPO / "models" / "testbed"


@pytest.fixture(scope="module")
def swappable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningService, Path]]:
    root = tmp_path_factory.mktemp("swap")
    weak = root / "weak"
    shutil.copytree(TESTBED / "weak", weak)
    # One problem per Transfer.Run, so the run has batches to stop between.
    overrides = {"weak": {"engine": {"model": str(weak)}}, "limits": {"max_problems_per_run": 1}}
    with serve_stack(root, overrides) as running:
        yield running.service, weak


async def test_weights_replaced_mid_run_stop_the_run_naming_the_change(
    swappable: tuple[RunningService, Path], tmp_path: Path
) -> None:
    service, weak_folder = swappable
    strong_print = model_fingerprint(TESTBED / "strong", cache_file=tmp_path / "c.json")
    weak_print = model_fingerprint(TESTBED / "weak", cache_file=tmp_path / "c.json")
    problems = load_problems(REPO / "datasets" / "testbed-demo.jsonl")[:3]
    settings = ExperimentSettings(
        fractions=(0.5,), n=2, strong_sampling=Sampling(max_tokens=96), weak_sampling=Sampling(max_tokens=96)
    )
    out = tmp_path / "run"
    swapped: list[FractionResult] = []

    def swap_after_the_first_row(row: FractionResult) -> None:
        if not swapped:
            shutil.copyfile(TESTBED / "strong" / "model.safetensors", weak_folder / "model.safetensors")
        swapped.append(row)

    async with service.client() as client:
        info = await client.get_info()
        with pytest.raises(ModelChangedError) as stopped:
            await run_experiment(client, problems, settings, out, on_row=swap_after_the_first_row)
    prints = {model.name: model.fingerprint for model in info.models}
    assert prints == {info.strong_model: strong_print, info.weak_model: weak_print} and strong_print != weak_print
    new_print = model_fingerprint(weak_folder, cache_file=tmp_path / "c.json")
    assert new_print != weak_print
    assert f"the model behind {info.weak_model!r} changed (fingerprint {weak_print} then, {new_print} now)" in str(
        stopped.value
    )
    run = json.loads((out / "run.json").read_text())
    assert run["service"]["model_fingerprints"] == prints
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    # The first problem's batch was under way when the weights changed; no later batch was sent.
    assert {row["problem_id"] for row in rows} == {problems[0].id}
    assert all(row["model_fingerprints"] == prints for row in rows)
