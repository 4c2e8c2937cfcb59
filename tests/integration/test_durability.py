"""Experiments survive a killed client (resume) and a killed model replica (retry)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from cot_transfer.client import RpcFailedError
from cot_transfer.domain.requests import Problem, StrongCot
from cot_transfer.domain.transfer import RunSummary
from cot_transfer.experiment.datasets import load_problems
from tests.conftest import REPO, RunningService, descendants
from tests.integration.test_reliability import health

pytestmark = pytest.mark.integration

PROBLEMS = REPO / "datasets" / "testbed-demo.jsonl"


def run_command(service: RunningService, *args: str) -> list[str]:
    return [sys.executable, "-m", "cot_transfer.cli.main", "run", "--address", service.address, *args]


def start(service: RunningService, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        run_command(service, *args),
        cwd=REPO,
        env={**os.environ, "COT_TRANSFER_TOKEN": service.token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def complete_rows(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


def wait_for_rows(path: Path, count: int, process: subprocess.Popen[str], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while len(complete_rows(path)) < count:
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        assert time.monotonic() < deadline, f"fewer than {count} rows in {timeout_s} s"
        time.sleep(0.2)


def keys(rows: list[str]) -> list[tuple[str, float]]:
    return [(row["problem_id"], row["fraction"]) for row in map(json.loads, rows)]


def kill_mid_run_and_resume(service: RunningService, out: Path, *settings: str) -> tuple[list[str], list[str]]:
    """Starts `run SETTINGS --out OUT`, kills it with SIGKILL once 5 rows are on disk, and resumes
    it: the rows written before the kill and those after the resume."""
    process = start(service, *settings, "--out", str(out))
    wait_for_rows(out / "results.jsonl", 5, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before_kill = complete_rows(out / "results.jsonl")
    resumed = service.cli("run", "--resume", str(out), timeout_s=900)
    assert resumed.returncode == 0, resumed.stderr
    after = complete_rows(out / "results.jsonl")
    assert after[: len(before_kill)] == before_kill, "rows written before the kill changed"
    return before_kill, after


def test_a_run_killed_with_sigkill_resumes_without_missing_or_duplicated_rows(
    service: RunningService, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    settings = ("--problems", str(PROBLEMS), "--limit", "6", "--n", "4", "--fractions", "0.3,0.6,1")
    before_kill, after = kill_mid_run_and_resume(service, out, *settings)
    assert 5 <= len(before_kill) < 6 * 4, "the kill should land mid-run"
    expected = sorted(
        (f"testbed-demo-{index:04d}", fraction) for index in range(6) for fraction in (0.0, 0.3, 0.6, 1.0)
    )
    assert sorted(keys(after)) == expected
    assert json.loads((out / "summary.json").read_text())["n_problems"] == 6


def test_resume_refuses_changed_settings(service: RunningService, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = service.cli(
        "run", "--problems", str(PROBLEMS), "--limit", "1", "--n", "2", "--fractions", "1", "--out", str(out)
    )
    assert first.returncode == 0, first.stderr
    changed = subprocess.run(
        run_command(service, "--resume", str(out), "--n", "8"), cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert changed.returncode == 2
    assert "--resume takes the settings from the run folder" in changed.stderr
    again = service.cli("run", "--problems", str(PROBLEMS), "--limit", "1", "--out", str(out), timeout_s=60)
    assert again.returncode == 2
    assert "already holds a run" in again.stderr


def weak_replica_pids() -> list[int]:
    listed = subprocess.run(["pgrep", "-f", "ray::ServeReplica:cot_transfer:WeakModel"], capture_output=True, text=True)
    return [int(pid) for pid in listed.stdout.split()]


def test_a_weak_replica_killed_mid_run_is_restarted_and_the_run_finishes(
    service: RunningService, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    process = start(
        service, "--problems", str(PROBLEMS), "--n", "8", "--fractions", "0.2,0.4,0.6,0.8,1", "--out", str(out)
    )
    wait_for_rows(out / "results.jsonl", 4, process)
    victims = weak_replica_pids()
    assert victims, "no weak-model replica process found"
    for pid in victims:
        # The replica's vLLM engine processes go with it, as they would with the pod or node.
        for process_id in [*descendants(pid), pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process_id, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr
    rows = complete_rows(out / "results.jsonl")
    problem_ids = [json.loads(line)["id"] for line in PROBLEMS.read_text().splitlines() if line.strip()]
    fractions = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    expected = sorted((problem_id, fraction) for problem_id in problem_ids for fraction in fractions)
    assert sorted(keys(rows)) == expected, "a row is missing or duplicated"
    assert "unlock rate" in stdout
    assert health(service) == health_pb2.HealthCheckResponse.SERVING


async def test_a_call_with_take_over_ends_the_run_holding_its_id_through_the_proxy(service: RunningService) -> None:
    # The run a killed client's call leaves going (Ray's proxy drops a disconnect that lands while
    # it writes) is stood in for by one whose reader is still there, so its end can be read.
    problems = [Problem(problem.id, problem.problem, problem.answer) for problem in load_problems(PROBLEMS)[:6]]
    experiment = f"take-over-{os.getpid()}"
    async with service.client() as holder, service.client() as resumer:
        held = holder.run_transfer(problems, [0.3, 0.6, 1.0], n=64, experiment_id=experiment)
        assert isinstance(await anext(held), StrongCot)
        with pytest.raises(RpcFailedError) as refused:
            [event async for event in resumer.run_transfer(problems[:1], [1.0], n=1, experiment_id=experiment)]
        assert refused.value.code == grpc.StatusCode.ALREADY_EXISTS

        events = [
            event
            async for event in resumer.run_transfer(problems[:1], [1.0], n=1, experiment_id=experiment, take_over=True)
        ]
        assert isinstance(events[-1], RunSummary)
        with pytest.raises(RpcFailedError) as ended:
            async for _ in held:
                pass
    assert ended.value.code == grpc.StatusCode.ABORTED
    assert "taken over" in ended.value.details
