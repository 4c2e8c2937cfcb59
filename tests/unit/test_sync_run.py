"""``cot_transfer.experiment.run``: the blocking API, from plain code and from inside a running
event loop (as in Jupyter), against the service's RPC bodies served in process on a thread of
their own (a loop of their own: the caller's loop is blocked while it waits)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import cot_transfer.experiment as experiment
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment import ExperimentSettings, run, run_experiment
from cot_transfer.experiment.sync_run import run_blocking
from tests.conftest import IN_PROCESS_MAX_MODEL_LEN, LOCAL_CONFIG, InProcessService
from tests.fakes import ScriptedEngine

PROBLEMS = [Problem("p1", "1+2", "3"), Problem("p2", "2+1", "3")]
SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2)


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """An in-process service on a thread with its own event loop, for as long as the module runs."""
    started, stop = threading.Event(), threading.Event()
    found: list[str] = []

    async def serve() -> None:
        strong = ScriptedEngine(["1+2 makes 3. Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
        weak = ScriptedEngine(["Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
        async with InProcessService(strong, {LOCAL_CONFIG.weak.engine.name: weak}) as service:
            found.append(service.address)
            started.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(30)
    yield found[0]
    stop.set()
    thread.join(30)


def test_run_from_plain_code_writes_the_folder(address: str, tmp_path: Path) -> None:
    summary = run(address, PROBLEMS, tmp_path / "plain", SETTINGS)
    assert summary["n_problems"] == 2 and summary["fractions"] == [0.0, 0.5, 1.0]
    assert json.loads((tmp_path / "plain" / "run.json").read_text())["provenance"]["origin"] == {"interface": "python"}


async def test_run_inside_a_running_loop_as_in_a_notebook(address: str, tmp_path: Path) -> None:
    asyncio.get_running_loop()  # a loop runs here, as in Jupyter: asyncio.run would refuse
    out = tmp_path / "notebook"
    summary = run(address, PROBLEMS, out, SETTINGS)
    assert summary["n_problems"] == 2
    assert len((out / "results.jsonl").read_text().splitlines()) == 2 * 3
    # And continues it: the folder's own problems and settings.
    again = run(address, None, out, resume=True)
    assert again["run"]["settings_hash"] == summary["run"]["settings_hash"]


def test_a_problems_file_and_a_missing_one(address: str, tmp_path: Path) -> None:
    path = tmp_path / "problems.jsonl"
    path.write_text(
        "".join(json.dumps({"id": p.id, "problem": p.problem, "answer": p.answer}) + "\n" for p in PROBLEMS)
    )
    summary = run(address, path, tmp_path / "from-file", SETTINGS)
    assert summary["n_problems"] == 2
    with pytest.raises(ValueError, match="problems"):
        run(address, None, tmp_path / "nothing", SETTINGS)


def test_run_blocking_returns_the_coroutines_value_with_and_without_a_loop() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert run_blocking(answer) == 42

    async def inside() -> int:
        return run_blocking(answer)

    assert asyncio.run(inside()) == 42


def test_the_package_exports_both_apis() -> None:
    assert {"run", "run_experiment", "ExperimentSettings"} <= set(experiment.__all__)
    assert asyncio.iscoroutinefunction(run_experiment) and not asyncio.iscoroutinefunction(run)
