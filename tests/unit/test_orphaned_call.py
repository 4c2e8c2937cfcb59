"""A killed client's call that the service has not ended yet (Ray Serve's gRPC proxy does not
always pass a disconnect on): the resume takes it over (its model work stops, its stream ends
with ABORTED) instead of failing with ALREADY_EXISTS; a folder from before ids were kept waits
for it; and runs in folders of the same name do not refuse each other. The real client and
runner against the service's own RPC bodies and fan-out in process."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cot_transfer.client import CotTransferClient, RetryPolicy
from cot_transfer.domain.errors import AbortedError
from cot_transfer.domain.requests import Problem
from cot_transfer.domain.transfer import RunSummary
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from cot_transfer.serving.dataplane.fanout import TransferEvent
from tests.conftest import InProcessService, killed_after_rows
from tests.fakes import transfer_request

SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2)
PROBLEMS = [Problem(f"p{index}", f"{index}+2", "3") for index in range(4)]
ROWS = len(PROBLEMS) * 3  # fractions 0, 0.5 and 1
FAST = RetryPolicy(max_attempts=50, initial_backoff_s=0.05, max_backoff_s=0.1)
WAITING = "the service is still running an earlier call"


def run_record(out: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads((out / "run.json").read_text())
    return record


def row_keys(out: Path) -> list[tuple[str, float]]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return [(row["problem_id"], row["fraction"]) for row in rows]


def assert_whole(out: Path, summary: dict[str, object]) -> None:
    """Every row of the run on disk once, and no problem failed or unfinished."""
    keys = row_keys(out)
    assert len(keys) == len(set(keys)) == ROWS
    assert summary["failed_problems"] == [] and summary["unfinished_problems"] == []


async def orphan_under(service: InProcessService, experiment: str) -> AsyncIterator[TransferEvent]:
    """The call a killed client left behind: a Run under ``experiment`` that no one reads and no
    one cancels, as the proxy leaves it when the disconnect lands while it writes."""
    # The killed call's own end reaches the service a moment later here (no proxy in between).
    deadline = time.monotonic() + 5
    while experiment in service.runner.running_experiments():
        assert time.monotonic() < deadline, "the killed call never ended on the service"
        await asyncio.sleep(0.01)
    orphan = service.runner.run(transfer_request(PROBLEMS[:1], experiment_id=experiment))
    await anext(orphan)
    assert experiment in service.runner.running_experiments()
    return orphan


@pytest.fixture
async def killed(in_process_service: InProcessService, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Path:
    """A results folder whose client was killed after 2 rows; the runner's warnings captured."""
    out = tmp_path / "run"
    caplog.set_level(logging.WARNING, logger="cot_transfer.experiment.runner")
    async with CotTransferClient(in_process_service.address) as client:
        await killed_after_rows(2, lambda on_row: run_experiment(client, PROBLEMS, SETTINGS, out, on_row=on_row))
    return out


async def test_a_resume_takes_over_the_killed_clients_call_still_running_on_the_service(
    in_process_service: InProcessService, killed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = killed
    async with CotTransferClient(in_process_service.address) as client:
        experiment = run_record(out)["experiment_id"]
        assert isinstance(experiment, str) and experiment.startswith("run-")
        orphan = await orphan_under(in_process_service, experiment)

        summary = await asyncio.wait_for(
            run_experiment(client, PROBLEMS, SETTINGS, out, resume=True, retry=RetryPolicy(max_attempts=1)), 30
        )

    # At the first try, without waiting: the earlier call was ended for it.
    assert not [record for record in caplog.records if WAITING in record.message]
    with pytest.raises(AbortedError, match="taken over"):
        async for _ in orphan:
            pass
    assert_whole(out, summary)
    assert run_record(out)["experiment_id"] == experiment  # the resume kept the folder's id
    assert in_process_service.runner.running_experiments() == frozenset()


async def test_a_folder_from_before_ids_were_kept_waits_for_the_call_under_its_name(
    in_process_service: InProcessService, killed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Its id is its folder's name, which another folder may share: its resume never takes over.
    out = killed
    async with CotTransferClient(in_process_service.address) as client:
        record = run_record(out)
        del record["experiment_id"]
        (out / "run.json").write_text(json.dumps(record))
        orphan = await orphan_under(in_process_service, "run")
        rows_before = row_keys(out)

        resume = asyncio.create_task(run_experiment(client, PROBLEMS, SETTINGS, out, resume=True, retry=FAST))
        await asyncio.sleep(1.0)
        assert not resume.done(), "the resume gave up while the earlier call was still running"
        assert any(WAITING in record.message for record in caplog.records)
        assert row_keys(out) == rows_before  # every try refused before any model work

        rest = [event async for event in orphan]  # the earlier call ends (here: read to its end)
        assert isinstance(rest[-1], RunSummary)
        summary = await asyncio.wait_for(resume, 30)

    assert_whole(out, summary)


async def test_runs_in_folders_of_the_same_name_run_side_by_side(
    in_process_service: InProcessService, tmp_path: Path
) -> None:
    outs = [tmp_path / person / "run" for person in ("alice", "bob")]
    async with CotTransferClient(in_process_service.address) as client:
        summaries = await asyncio.gather(
            *(run_experiment(client, PROBLEMS, SETTINGS, out, retry=RetryPolicy(max_attempts=1)) for out in outs)
        )
    assert all(summary["failed_problems"] == [] for summary in summaries)
    ids = {run_record(out)["experiment_id"] for out in outs}
    assert len(ids) == 2
    assert {run.experiment_id for run in in_process_service.runs} == ids
