"""A run larger than the service's ``limits.max_samples_per_run`` is split by the client into runs
under it, counted as the service counts them (``run_size``), instead of being refused: the real
client and runner against the service's own RPC bodies and fan-out in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cot_transfer.client import CotTransferClient
from cot_transfer.domain.requests import Problem
from cot_transfer.domain.sampling_plan import SamplingPlan
from cot_transfer.experiment.runner import ExperimentSettings, RequestTooLargeError, run_experiment
from cot_transfer.serving.dataplane.fanout import most_samples
from tests.conftest import LOCAL_CONFIG, InProcessService
from tests.fakes import ScriptedEngine

CAP = 100
PROBLEMS = [Problem(f"p{index}", f"{index}+2", "3") for index in range(7)]


@pytest.fixture
async def service() -> AsyncIterator[InProcessService]:
    config = LOCAL_CONFIG.model_copy(
        update={"limits": LOCAL_CONFIG.limits.model_copy(update={"max_samples_per_run": CAP})}
    )
    strong = ScriptedEngine(["1+2 makes 3. Answer: 3"], max_model_len=512)
    weak = ScriptedEngine(["Answer: 3"], max_model_len=512)
    async with InProcessService(strong, {config.weak.engine.name: weak}, config=config) as running:
        yield running


@pytest.mark.parametrize(
    ("settings", "per_problem"),
    [
        # 3 rows (the baseline, 0.5 and 1) x n = 8
        (ExperimentSettings(fractions=(0.5, 1.0), n=8), 24),
        # 3 rows x 2 modes x the plan's n_max 16
        (
            ExperimentSettings(
                fractions=(0.5, 1.0), n=16, sampling_plan=SamplingPlan(n_max=16), modes=("free", "force_answer")
            ),
            96,
        ),
    ],
)
async def test_a_run_over_the_cap_goes_out_as_runs_under_it_and_is_whole(
    service: InProcessService, tmp_path: Path, settings: ExperimentSettings, per_problem: int
) -> None:
    async with CotTransferClient(service.address) as client:
        assert (await client.get_info()).max_samples_per_run == CAP
        summary = await run_experiment(client, PROBLEMS, settings, tmp_path / "run")
    assert summary["failed_problems"] == [] and summary["unfinished_problems"] == []
    # As many problems a run as the cap allows, counted as the service counts them.
    per_run = CAP // per_problem
    assert [len(run.problems) for run in service.runs] == [per_run] * (len(PROBLEMS) // per_run) + (
        [len(PROBLEMS) % per_run] if len(PROBLEMS) % per_run else []
    )
    assert all(most_samples(run) <= CAP for run in service.runs)


async def test_a_problem_over_the_cap_alone_is_refused_before_any_call(
    service: InProcessService, tmp_path: Path
) -> None:
    settings = ExperimentSettings(fractions=(0.25, 0.5, 0.75, 1.0), n=32)  # 5 rows x 32 = 160 > CAP
    async with CotTransferClient(service.address) as client:
        with pytest.raises(RequestTooLargeError, match=r"'p0' may draw 160 samples .* at most 100 a run"):
            await run_experiment(client, PROBLEMS, settings, tmp_path / "run")
    assert service.runs == []
