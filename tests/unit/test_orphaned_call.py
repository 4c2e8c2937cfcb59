"""A killed client's call that the service has not ended yet (Ray Serve's gRPC proxy does not
always pass a disconnect on): the resume waits for it instead of failing with ALREADY_EXISTS, and
runs in folders of the same name do not refuse each other. The real client and runner against
the service's own RPC bodies and fan-out in process."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from cot_transfer.client import CotTransferClient, RetryPolicy
from cot_transfer.domain.requests import Problem
from cot_transfer.domain.transfer import RunSummary
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from tests.conftest import InProcessService, killed_after_rows
from tests.fakes import transfer_request

SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2)
PROBLEMS = [Problem(f"p{index}", f"{index}+2", "3") for index in range(4)]
ROWS = len(PROBLEMS) * 3  # fractions 0, 0.5 and 1
FAST = RetryPolicy(max_attempts=50, initial_backoff_s=0.05, max_backoff_s=0.1)


def run_record(out: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads((out / "run.json").read_text())
    return record


def row_keys(out: Path) -> list[tuple[str, float]]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return [(row["problem_id"], row["fraction"]) for row in rows]


async def test_a_resume_waits_for_the_killed_clients_call_to_end_on_the_service(
    in_process_service: InProcessService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "run"
    async with CotTransferClient(in_process_service.address) as client:
        await killed_after_rows(
            2, lambda on_row: run_experiment(client, PROBLEMS, SETTINGS, out, on_row=on_row, retry=FAST)
        )
        experiment = run_record(out)["experiment_id"]
        assert isinstance(experiment, str) and experiment.startswith("run-")
        # The killed call's own end reaches the service a moment later here (no proxy in between).
        deadline = time.monotonic() + 5
        while experiment in in_process_service.runner.running_experiments():
            assert time.monotonic() < deadline, "the killed call never ended on the service"
            await asyncio.sleep(0.01)
        # The call the killed client left behind: a Run under the folder's id that no one reads
        # and no one cancels, as the proxy leaves it when the disconnect lands mid-write.
        orphan = in_process_service.runner.run(transfer_request(PROBLEMS[:1], experiment_id=experiment))
        await anext(orphan)
        assert experiment in in_process_service.runner.running_experiments()
        rows_before = row_keys(out)

        caplog.set_level(logging.WARNING, logger="cot_transfer.experiment.runner")
        resume = asyncio.create_task(run_experiment(client, PROBLEMS, SETTINGS, out, resume=True, retry=FAST))
        await asyncio.sleep(1.0)
        assert not resume.done(), "the resume gave up while the earlier call was still running"
        assert any("still running this folder's earlier call" in record.message for record in caplog.records)
        # Every try was refused before any model work: the resume has written no row yet.
        assert row_keys(out) == rows_before

        rest = [event async for event in orphan]  # the earlier call ends (here: read to its end)
        assert isinstance(rest[-1], RunSummary)
        summary = await asyncio.wait_for(resume, 30)

    keys = row_keys(out)
    assert len(keys) == len(set(keys)) == ROWS
    assert summary["failed_problems"] == [] and summary["unfinished_problems"] == []
    assert run_record(out)["experiment_id"] == experiment  # the resume kept the folder's id


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
