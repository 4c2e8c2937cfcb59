"""One bad problem never sinks a run: the real client, runner and results folder against the
service's own RPC bodies in process (``tests.conftest.InProcessService``: no Ray, no vLLM)."""

from __future__ import annotations

import json
import multiprocessing
from multiprocessing.connection import Connection
from pathlib import Path

from cot_transfer.client import CotTransferClient, RetryPolicy
from cot_transfer.domain.requests import Problem, ProblemError
from cot_transfer.experiment.problem_errors import ERRORS_FILE
from cot_transfer.experiment.run_folder import RunFolderError, folder_lock
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from tests.conftest import IN_PROCESS_MAX_MODEL_LEN, InProcessService

FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)


def problems() -> list[Problem]:
    records = [Problem(f"p{index}", f"{index}+2", "3") for index in range(8)]
    # Past the context: the strong model cannot even read it.
    records[5] = Problem("p5", "9" * (IN_PROCESS_MAX_MODEL_LEN * 2), "3")
    return records


SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2)


async def test_a_problem_past_the_context_is_one_error_and_the_other_seven_finish(
    in_process_service: InProcessService, tmp_path: Path
) -> None:
    servicer, address = in_process_service, in_process_service.address
    out = tmp_path / "run"
    async with CotTransferClient(address, retry=FAST) as client:
        summary = await run_experiment(client, problems(), SETTINGS, out, retry=FAST)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {row["problem_id"] for row in rows} == {f"p{index}" for index in range(8)} - {"p5"}
    assert len(rows) == 7 * 3
    errors = [json.loads(line) for line in (out / ERRORS_FILE).read_text().splitlines()]
    assert [(error["problem_id"], error["code"], error["permanent"]) for error in errors] == [
        ("p5", "OUT_OF_RANGE", True)
    ]
    assert [error["problem_id"] for error in summary["failed_problems"]] == ["p5"]
    assert summary["problem_errors"] == 1 and summary["n_problems"] == 7  # the report leaves it out
    assert servicer.run_problems == [[f"p{index}" for index in range(8)]]

    # The resume has nothing left to do: the failed problem is final, not run again.
    drawn = len(servicer.completions)
    async with CotTransferClient(address, retry=FAST) as client:
        again = await run_experiment(client, problems(), SETTINGS, out, resume=True, retry=FAST)
    assert servicer.run_problems == [[f"p{index}" for index in range(8)]]
    assert len(servicer.completions) == drawn
    assert [error["problem_id"] for error in again["failed_problems"]] == ["p5"]
    assert len((out / "results.jsonl").read_text().splitlines()) == 7 * 3


async def test_the_wire_carries_the_problem_error_and_the_summary_counts_it(
    in_process_service: InProcessService,
) -> None:
    address = in_process_service.address
    async with CotTransferClient(address, retry=FAST) as client:
        events = [event async for event in client.run_transfer(problems(), SETTINGS.measured_fractions(), n=2)]
    errors = [event for event in events if isinstance(event, ProblemError)]
    assert len(errors) == 1 and errors[0].problem_id == "p5" and errors[0].permanent
    assert "p5" not in {getattr(event, "problem_id", None) for event in events if not isinstance(event, ProblemError)}
    summary = events[-1]
    assert getattr(summary, "problem_errors", None) == 1
    assert getattr(summary, "n_problems", None) == 7


def _try_to_write(folder: Path, outcome: Connection) -> None:
    try:
        with folder_lock(folder):
            outcome.send("wrote")
    except RunFolderError as error:
        outcome.send(str(error))


def _in_another_process(folder: Path) -> str:
    # Forked, so the child starts at once with everything imported; it opens the lock file anew,
    # as a second `cot-transfer run` would.
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_try_to_write, args=(folder, sender))
    child.start()
    child.join(60)
    return str(receiver.recv())


def test_a_second_process_cannot_write_a_folder_that_is_being_written(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with folder_lock(folder):
        assert "being written by another process" in _in_another_process(folder)
    # The lock goes with its holder: once released, the other process may write.
    assert _in_another_process(folder) == "wrote"
