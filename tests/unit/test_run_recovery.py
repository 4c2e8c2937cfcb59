"""What the experiment client does when the service fails one problem, through the real client,
runner and results folder against the service's own RPC bodies in process (no Ray, no vLLM):
a transient failure is run again after a backoff until the run is whole; a stored prefix that a
receiver refuses for good on resume is that problem's error alone; and a second `cot-transfer
run` into a folder being written is refused by the CLI itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from cot_transfer.client import CotTransferClient, RetryPolicy
from cot_transfer.domain.errors import OutOfRangeError, UnavailableError
from cot_transfer.domain.requests import Problem
from cot_transfer.engine.base import GenerationOutput, GenerationRequest
from cot_transfer.experiment.problem_errors import ERRORS_FILE
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from tests.conftest import IN_PROCESS_MAX_MODEL_LEN, LOCAL_CONFIG, REPO, InProcessService
from tests.fakes import ScriptedEngine

FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.02)
SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2)
MARKED = "4+5"  # the problem the failing receiver picks out of its prompt


def problems() -> list[Problem]:
    return [Problem("p0", "1+2", "3"), Problem("p1", MARKED, "9"), Problem("p2", "2+2", "4")]


class FailingOnMarked(ScriptedEngine):
    """Answers like ``ScriptedEngine`` but raises ``error`` for the marked problem's prompts while
    ``failures_left`` lasts (None: for ever)."""

    def __init__(self, error: Exception, failures_left: int | None) -> None:
        super().__init__(["Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
        self.error = error
        self.failures_left = failures_left
        self.failed = 0

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        if MARKED in self.tokenizer.decode(request.prompt_token_ids) and self.failures_left != 0:
            self.failed += 1
            if self.failures_left is not None:
                self.failures_left -= 1
            raise self.error
        async for output in super().generate(request, request_id):
            yield output


def strong_engine() -> ScriptedEngine:
    return ScriptedEngine(["1+2 makes 3. Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)


def rows_of(out: Path) -> list[tuple[str, float]]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return sorted((row["problem_id"], row["fraction"]) for row in map(json.loads, lines))


WHOLE = sorted((problem.id, fraction) for problem in problems() for fraction in (0.0, 0.5, 1.0))


async def test_a_transient_problem_error_is_run_again_after_a_backoff_and_the_run_is_whole(tmp_path: Path) -> None:
    weak = FailingOnMarked(UnavailableError("the replica restarted"), failures_left=2)
    async with (
        InProcessService(strong_engine(), {LOCAL_CONFIG.weak.engine.name: weak}) as service,
        CotTransferClient(service.address, retry=FAST) as client,
    ):
        summary = await run_experiment(client, problems(), SETTINGS, tmp_path / "run", retry=FAST)
    assert weak.failed == 2
    # The first Run had all three problems; each later one, after a backoff, only the one that failed.
    assert service.run_problems[0] == ["p0", "p1", "p2"]
    assert len(service.run_problems) >= 2 and all(run == ["p1"] for run in service.run_problems[1:])
    assert rows_of(tmp_path / "run") == WHOLE  # every row once
    assert summary["failed_problems"] == []
    errors_file = tmp_path / "run" / ERRORS_FILE
    stands = [json.loads(line) for line in errors_file.read_text().splitlines()] if errors_file.exists() else []
    assert all(error["problem_id"] == "p1" and error["code"] == "UNAVAILABLE" for error in stands)


async def test_a_stored_prefix_refused_for_good_on_resume_is_that_problems_error_alone(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # First run: p1's completions fail transiently past the retries; its CoT and prefixes are stored.
    weak = FailingOnMarked(UnavailableError("the replica restarted"), failures_left=None)
    async with (
        InProcessService(strong_engine(), {LOCAL_CONFIG.weak.engine.name: weak}) as service,
        CotTransferClient(service.address, retry=FAST) as client,
    ):
        first = await run_experiment(client, problems(), SETTINGS, out, retry=FAST)
    assert [error["problem_id"] for error in first["failed_problems"]] == ["p1"]
    assert rows_of(out) == [row for row in WHOLE if row[0] != "p1"]

    # Resume: the service now refuses p1's stored prefixes for good (as past a smaller context).
    refusing = FailingOnMarked(OutOfRangeError("prefix", "past the receiver's context"), failures_left=None)
    async with InProcessService(strong_engine(), {LOCAL_CONFIG.weak.engine.name: refusing}) as service:
        async with CotTransferClient(service.address, retry=FAST) as client:
            resumed = await run_experiment(client, problems(), SETTINGS, out, resume=True, retry=FAST)
        # Through the stored prefixes (a resumed problem), not a new CoT; and not retried: it is final.
        assert service.run_problems == [["p1"]]
        assert service.runs[0].resumed["p1"].prefixes != ()
    assert refusing.failed >= 1
    assert [(error["problem_id"], error["code"]) for error in resumed["failed_problems"]] == [("p1", "OUT_OF_RANGE")]
    errors = [json.loads(line) for line in (out / ERRORS_FILE).read_text().splitlines()]
    assert ("p1", "OUT_OF_RANGE", True) in [(e["problem_id"], e["code"], e["permanent"]) for e in errors]
    assert rows_of(out) == [row for row in WHOLE if row[0] != "p1"]  # the others' rows untouched


async def test_a_second_cli_run_into_a_folder_being_written_is_refused(tmp_path: Path) -> None:
    """Two `cot-transfer run` processes, one folder: the second exits 2 at once, the first finishes."""
    slow = ScriptedEngine(["Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN, delay_s=0.5)
    problems_file = tmp_path / "problems.jsonl"
    problems_file.write_text(
        "".join(json.dumps({"id": p.id, "problem": p.problem, "answer": p.answer}) + "\n" for p in problems())
    )
    out = tmp_path / "run"
    async with InProcessService(strong_engine(), {LOCAL_CONFIG.weak.engine.name: slow}) as service:
        cli = [sys.executable, "-m", "cot_transfer.cli.main", "run", "--address", service.address]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        new_run = [*cli, "--problems", str(problems_file), "--out", str(out), "--fractions", "0.5,1.0", "--n", "2"]
        first = await asyncio.create_subprocess_exec(*new_run, cwd=REPO, env=env, stderr=subprocess.PIPE)
        while not (out / "run.json").exists():  # the first holds the folder's lock from here on
            assert first.returncode is None
            await asyncio.sleep(0.05)
        second = await asyncio.create_subprocess_exec(
            *cli, "--resume", str(out), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _, second_err = await asyncio.wait_for(second.communicate(), timeout=120)
        assert first.returncode is None  # refused while the first was still writing
        _, first_err = await asyncio.wait_for(first.communicate(), timeout=300)
    assert second.returncode == 2, second_err.decode()
    assert "being written by another process" in second_err.decode()
    assert "Traceback" not in second_err.decode()
    assert first.returncode == 0, first_err.decode()
    assert rows_of(out) == WHOLE
