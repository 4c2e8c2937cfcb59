"""``cot_transfer.experiment.run``: an experiment from plain (blocking) Python, a notebook included.

``run_experiment`` is a coroutine for code that has an event loop. ``run`` wraps it for code that
does not, and also for code inside a running loop (Jupyter runs one), where ``asyncio.run``
refuses to start: there the experiment runs on a worker thread with a loop of its own, and the
call blocks until it ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cot_transfer.client import CotTransferClient
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.datasets import DatasetOptions, load_problems
from cot_transfer.experiment.runner import resume_inputs, run_experiment
from cot_transfer.experiment.settings import STANDARD_FRACTIONS, ExperimentSettings
from cot_transfer.experiment.tracking import check_installed, parse_tracker, track_run

T = TypeVar("T")

DEFAULT_SETTINGS = ExperimentSettings(fractions=STANDARD_FRACTIONS, n=16)


def run_blocking(make: Callable[[], Awaitable[T]]) -> T:
    """The result of the coroutine ``make()``, from code with or without a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(make))
    # A loop runs on this thread (a notebook): the coroutine gets a thread and a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cot-transfer-run") as pool:
        return pool.submit(asyncio.run, _awaited(make)).result()


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def run(
    address: str,
    problems: Sequence[Problem] | str | Path | None,
    out: str | Path,
    settings: ExperimentSettings = DEFAULT_SETTINGS,
    *,
    application: str = "cot_transfer",
    token: str | None = None,
    timeout_s: float | None = None,
    dataset: DatasetOptions | None = None,
    resume: bool = False,
    track: Sequence[str] = (),
) -> dict[str, Any]:
    """Runs (or with ``resume``, continues) an experiment against the service at ``address`` into
    the results folder ``out`` and returns its summary (``summary.json``'s content, with
    ``failed_problems``), as ``cot-transfer run`` does.

    ``problems``: ``Problem``s, or a dataset file or folder (read with ``dataset``'s options);
    None with ``resume``: the folder's own problems and settings, as ``--resume`` takes them.
    ``track``: trackers as ``--track`` takes them (``"mlflow"``, ``"mlflow:URI"``, ``"wandb"``).
    Blocks until the run ends; works inside a running event loop (a notebook).
    """
    trackers = [parse_tracker(text) for text in track]
    check_installed(trackers)
    out_dir = Path(out)
    problems_path: Path | None = None
    if problems is None:
        if not resume:
            raise ValueError("problems: a new run needs problems (None is only for resume=True)")
        chosen, settings, problems_path = resume_inputs(out_dir)
    elif isinstance(problems, str | Path):
        problems_path = Path(problems).resolve()
        chosen = load_problems(problems_path, dataset)
    else:
        chosen = list(problems)

    async def experiment() -> dict[str, Any]:
        async with CotTransferClient(address, application=application, token=token, timeout_s=timeout_s) as client:
            return await run_experiment(
                client,
                chosen,
                settings,
                out_dir,
                problems_path=problems_path,
                dataset=dataset,
                resume=resume,
                origin={"interface": "python"},
            )

    summary = run_blocking(experiment)
    track_run(out_dir, trackers)
    return summary
