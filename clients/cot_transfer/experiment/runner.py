"""Runs a transfer experiment against a service and keeps every result on disk as it arrives.

A results folder holds ``run.json`` (the settings, the models and their hash),
``problems.jsonl`` (the problems with their dataset metadata; a resume reads them from there),
``strong.jsonl`` (one strong CoT per problem, with the prefix of every fraction),
``results.jsonl`` (one row per (problem, fraction)), ``errors.jsonl`` (one row per problem that
could not be run) and, once the run ends, the report: ``summary.json``, ``report.md``,
``results.csv`` and the plots. Rows are appended, flushed and synced one at a time, so a crash
loses at most the row being written, and a resumed run redoes only what is missing, always through
the service's one fan-out (``Transfer.Run``) with the run's own sampling (its ``n`` or its adaptive
plan): problems without a strong CoT are run again; a problem whose CoT is on disk is sent with its
stored prefixes and only its missing rows, so every row of a problem comes from the same CoT and
every row is drawn the same way. A problem with a permanent error is final and not run again.

The settings hash covers what changes results: the settings, the problems, and the service
behind them (each model's fingerprint and the sampling the server's defaults make effective), so
a resume against other weights or defaults is refused, naming what changed. A lock file keeps a
second process from writing the same folder.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from cot_transfer.client import CotTransferClient, RetryPolicy, RpcFailedError
from cot_transfer.client.client import RETRYABLE_CODES
from cot_transfer.client.convert import problem_wire_bytes
from cot_transfer.client.retry import RUN_RETRY_BUDGET_S
from cot_transfer.domain.requests import FractionResult, Problem, ProblemError, ResumedProblem, ServiceInfo, StrongCot
from cot_transfer.domain.run_size import cuts_counted, problem_row_count, row_samples_at_most
from cot_transfer.domain.steps import CutMode
from cot_transfer.experiment.cut_settings import problem_rows
from cot_transfer.experiment.datasets import (
    RUN_PROBLEMS_FILE,
    DatasetOptions,
    load_problems,
    load_run_problems,
    save_run_problems,
)
from cot_transfer.experiment.imported_cots import lift_cots
from cot_transfer.experiment.provenance import Session, Tally
from cot_transfer.experiment.report import write_report
from cot_transfer.experiment.run_folder import (
    RUN_FILE,
    STRONG_FILE,
    SUMMARY_FILE,
    RunFolder,
    RunFolderError,
    RunState,
    _RowWriter,
    folder_lock,
)
from cot_transfer.experiment.settings import (
    SETTINGS_HASH_VERSION,
    ExperimentSettings,
    model_changes,
    model_fingerprints,
    service_identity,
    settings_hash,
    settings_hash_version,
)

logger = logging.getLogger(__name__)

# A replica that died is back after its engine restarts: tens of seconds on CPU, ten minutes and
# more for a large model on GPU; library callers get the CLI's default budget.
STREAM_RETRY = RetryPolicy.lasting(RUN_RETRY_BUDGET_S)

RETRYABLE_CODE_NAMES = frozenset(code.name for code in RETRYABLE_CODES)

# Room a Transfer.Run request keeps for everything but its problems (fractions, sampling, ids).
REQUEST_OVERHEAD_BYTES = 64 * 1024


async def run_experiment(
    client: CotTransferClient,
    problems: Sequence[Problem],
    settings: ExperimentSettings,
    out_dir: Path,
    *,
    problems_path: Path | None = None,
    dataset: DatasetOptions | None = None,
    resume: bool = False,
    on_row: Callable[[FractionResult], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    retry: RetryPolicy | None = None,
    origin: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) the experiment into ``out_dir`` and returns ``summary.json``'s content.

    ``run.json`` records the session's provenance (``provenance``: times, tool, server, samples and
    tokens), with ``origin`` (e.g. the config file the settings came from) beside it.

    ``on_resume`` is told how many (problem, fraction) rows were already done. When the
    service fails transiently (UNAVAILABLE or RESOURCE_EXHAUSTED: a replica died, overload),
    for the whole run or a single problem, the run continues from what is on disk after a
    backoff, like a ``--resume``. A problem that cannot be run is kept in ``errors.jsonl`` and
    listed under ``failed_problems`` in the returned summary; the other problems go on.
    """
    retry = retry or STREAM_RETRY
    folder = RunFolder(out_dir)
    if not resume:
        await asyncio.to_thread(folder.refuse_used)
    info = await client.get_info()
    started = await asyncio.to_thread(folder.read_run) if resume else None
    # A resumed folder is hashed as it was started (``settings.SETTINGS_HASH_VERSION``).
    version = settings_hash_version(started) if started is not None else SETTINGS_HASH_VERSION
    run_hash = settings_hash(settings, problems, info, version)
    experiment = folder_experiment_id(out_dir, started)
    run = {
        **settings.to_json(),
        "strong_model": info.strong_model,
        "weak_model": info.weak_model,
        "problems_path": str(problems_path) if problems_path is not None else None,
        "dataset": dataset.model_dump(mode="json") if dataset is not None else None,
        "problem_ids": [problem.id for problem in problems],
        "settings_hash": run_hash,
        "settings_hash_version": version,
        "service": service_identity(settings, info, version),
        "experiment_id": experiment.id,
    }
    fractions = settings.measured_fractions()
    with folder_lock(out_dir):
        state = await asyncio.to_thread(folder.start, run, resume)
        imported = [problem.id for problem in problems if problem.cot is not None]
        session = Session(info, Tally(info.strong_model, info.weak_model, imported), resumed=resume, origin=origin)
        await asyncio.to_thread(folder.update_run, session.opened)
        await asyncio.to_thread(save_run_problems, out_dir, problems)
        if on_resume is not None:
            on_resume(len(state.done))
        for attempt in range(retry.max_attempts):
            writer = _RowWriter(
                out_dir, run_hash, on_row, kept_completions=settings.keep_completions, tally=session.tally, info=info
            )
            last_attempt = attempt + 1 == retry.max_attempts
            try:
                resumed = missing_rows(problems, settings, fractions, state)
                todo = [
                    problem
                    for problem in problems
                    if problem.id in resumed or (problem.id not in state.strong and not state.is_final(problem.id))
                ]
                if todo:
                    await _run_problems(client, todo, resumed, settings, writer, experiment, info)
                retryable = [error for error in writer.new_errors if error.code in RETRYABLE_CODE_NAMES]
                if not retryable and not last_attempt and settings.cut == CutMode.SEARCH.value:
                    # A resumed search draws one wave a call (the client replays the search over
                    # the rows on disk): the next wave goes at once, without a backoff.
                    state = await asyncio.to_thread(folder.load_state, run_hash, fractions, settings.receiver_modes())
                    if missing_rows(problems, settings, fractions, state):
                        continue
                if not retryable or last_attempt:
                    break
                logger.warning("%d problems failed transiently; running them again", len(retryable))
            except RpcFailedError as error:
                if error.code == grpc.StatusCode.ALREADY_EXISTS and not last_attempt:
                    # The service still runs an earlier call under this id, whose client was killed
                    # or cut off: Ray Serve's gRPC proxy does not always pass a client's disconnect
                    # on (RELIABILITY.md). A call under the folder's own id takes it over; a
                    # service from before take_over, or a folder named by its name alone, waits.
                    logger.warning(
                        "the service is still running an earlier call under experiment_id %r, whose client"
                        " was killed or cut off; waiting for it to end",
                        experiment.id,
                    )
                elif not error.retryable or last_attempt:  # a size refusal is never retried
                    raise
                else:
                    logger.warning("run interrupted (%s); continuing from the results on disk", error.code.name)
            finally:
                writer.close()
            await asyncio.sleep(retry.backoff_s(attempt))
            state = await asyncio.to_thread(folder.load_state, run_hash, fractions, settings.receiver_modes())
        final = await asyncio.to_thread(folder.load_state, run_hash, fractions, settings.receiver_modes())
        standing = final.errors
        summary = await asyncio.to_thread(_write_report_and_read_summary, out_dir)
        await asyncio.to_thread(folder.update_run, lambda run: session.closed(run, "completed"))
    return {
        **summary,
        "failed_problems": [
            {"problem_id": error.problem_id, "code": error.code, "message": error.message, "permanent": error.permanent}
            for error in standing.values()
        ],
        "unfinished_problems": unfinished_problems(problems, settings, fractions, final),
    }


def unfinished_problems(
    problems: Sequence[Problem], settings: ExperimentSettings, fractions: Sequence[float], state: RunState
) -> list[str]:
    """The problems a run ends without all of their rows (no CoT, or rows missing): they are missing
    from the statistics, whatever the reason (retries ran out, a permanent error)."""
    unfinished = []
    for problem in problems:
        record = state.strong.get(problem.id)
        if record is None or any(
            (problem.id, *row) not in state.done for row in _problem_rows(settings, record, fractions, state)
        ):
            unfinished.append(problem.id)
    return unfinished


class ModelChangedError(RunFolderError):
    """The weights behind a served name changed while the run was going: it stops so that rows of
    two models are never mixed in one folder."""


async def check_models_unchanged(client: CotTransferClient, info: ServiceInfo) -> None:
    """Asks GetInfo again and raises ``ModelChangedError`` naming each model whose fingerprint is
    not the one the run started with (a redeploy with other weights)."""
    changes = model_changes(model_fingerprints(info), model_fingerprints(await client.get_info()))
    if changes:
        raise ModelChangedError(
            "the service's models changed during the run: " + "; ".join(changes) + ". The run stops so results"
            " never mix: the rows on disk were drawn with the models it started with; use a new --out"
        )


def _write_report_and_read_summary(out_dir: Path) -> dict[str, Any]:
    write_report(out_dir)
    summary: dict[str, Any] = json.loads((out_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    return summary


def missing_rows(
    problems: Sequence[Problem], settings: ExperimentSettings, fractions: Sequence[float], state: RunState
) -> dict[str, ResumedProblem]:
    """Each problem whose CoT is on disk but whose rows are not all there: the stored prefixes of
    its missing rows, and those rows (receiver "" is the weak model, as the run names it)."""
    resumed = {}
    for problem in problems:
        record = state.strong.get(problem.id)
        if record is None or state.is_final(problem.id):
            continue
        prefixes = {prefix.fraction: prefix for prefix in record.prefixes}
        rows = {
            row for row in _problem_rows(settings, record, fractions, state) if (problem.id, *row) not in state.done
        }
        if not rows:
            continue
        needed = sorted({fraction for fraction, _, _ in rows})
        lacking = [fraction for fraction in needed if fraction not in prefixes]
        if lacking:
            raise RunFolderError(f"{STRONG_FILE} has no prefix at fraction {lacking[0]} for {problem.id!r}")
        resumed[problem.id] = ResumedProblem(prefixes=tuple(prefixes[f] for f in needed), rows=frozenset(rows))
    return resumed


def _problem_rows(
    settings: ExperimentSettings, record: StrongCot, fractions: Sequence[float], state: RunState
) -> set[tuple[float, str, str]]:
    return problem_rows(settings.cut, record, fractions, settings.receiver_modes(), settings.thresholds, state.probes)


def experiment_id(out_dir: Path) -> str:
    """The results folder's name as the service's metrics label (letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", out_dir.resolve().name)[:64] or "run"


def new_experiment_id(out_dir: Path) -> str:
    """A new run's ``experiment_id``: its folder's name and 8 random hex digits. The service runs
    one call per id at a time, and folder names repeat across the people sharing a service
    (``runs/math500``), so the name alone would refuse a stranger's run; the name keeps the
    metrics label readable."""
    return f"{experiment_id(out_dir)[:55]}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class FolderExperiment:
    """The ``experiment_id`` a results folder's calls use. ``own``: the id was made for this
    folder and is kept in its ``run.json``, so a call under it may take over a run the service
    still has going under it (only this folder's earlier call can be one: this process holds the
    folder's lock); a folder from before ids were kept goes by its name, which others may share."""

    id: str
    own: bool


def folder_experiment_id(out_dir: Path, started: Mapping[str, Any] | None) -> FolderExperiment:
    """The id ``run.json`` keeps for the folder's run (its every call and resume use it), a new
    one for a new run; a folder from before ids were kept uses its name, as it did."""
    if started is None:
        return FolderExperiment(new_experiment_id(out_dir), own=True)
    kept = started.get("experiment_id")
    if isinstance(kept, str) and kept:
        return FolderExperiment(kept, own=True)
    return FolderExperiment(experiment_id(out_dir), own=False)


class RequestTooLargeError(ValueError):
    """A single problem is larger than any request the service accepts."""


def problem_batches(
    problems: Sequence[Problem],
    max_problems: int,
    max_request_bytes: int,
    wire_bytes: Callable[[Problem], int],
    max_samples: int = 0,
    samples: Callable[[Problem], int] | None = None,
) -> list[list[Problem]]:
    """Splits ``problems``, in order, into ``Transfer.Run`` calls the service accepts.

    Each batch holds at most ``max_problems`` problems; with ``max_request_bytes`` > 0 it
    serializes to fewer bytes than that, leaving ``REQUEST_OVERHEAD_BYTES`` for the rest of the
    request; with ``max_samples`` > 0 the most samples its problems may draw (``samples``, counted
    as the service counts them: ``run_size``) add up to at most that. A problem that cannot fit on
    its own raises ``RequestTooLargeError``, before any call.
    """
    if max_problems < 1:
        raise ValueError(f"max_problems must be >= 1, got {max_problems}")
    budget = max_request_bytes - REQUEST_OVERHEAD_BYTES if max_request_bytes > 0 else None
    sample_budget = max_samples if max_samples > 0 and samples is not None else None
    batches: list[list[Problem]] = []
    batch: list[Problem] = []
    batch_bytes = batch_samples = 0
    for problem in problems:
        size = wire_bytes(problem)
        drawn = samples(problem) if samples is not None else 0
        if budget is not None and size > budget:
            raise RequestTooLargeError(
                f"problem {problem.id!r} is {size} bytes; the service accepts requests up to"
                f" {max_request_bytes} bytes ({budget} for problems)"
            )
        if sample_budget is not None and drawn > sample_budget:
            raise RequestTooLargeError(
                f"problem {problem.id!r} may draw {drawn} samples (its rows x n); the service runs at most"
                f" {sample_budget} a run (limits.max_samples_per_run): use fewer fractions, receivers or modes,"
                " or a smaller n"
            )
        full = len(batch) == max_problems
        full = full or (budget is not None and batch_bytes + size > budget)
        full = full or (sample_budget is not None and batch_samples + drawn > sample_budget)
        if batch and full:
            batches.append(batch)
            batch, batch_bytes, batch_samples = [], 0, 0
        batch.append(problem)
        batch_bytes += size
        batch_samples += drawn
    if batch:
        batches.append(batch)
    return batches


async def _run_problems(
    client: CotTransferClient,
    problems: Sequence[Problem],
    resumed: Mapping[str, ResumedProblem],
    settings: ExperimentSettings,
    writer: _RowWriter,
    experiment: FolderExperiment,
    info: ServiceInfo,
) -> None:
    """Runs ``problems`` through ``Transfer.Run``: fresh ones whole, ``resumed`` ones on their
    stored prefixes, only their missing rows."""
    specs = [
        Problem(problem.id, problem.problem, problem.answer, cot=problem.cot, cot_format=problem.cot_format)
        for problem in problems
    ]

    def wire_bytes(problem: Problem) -> int:
        return problem_wire_bytes(problem, resumed.get(problem.id))

    cuts = cuts_counted(CutMode(settings.cut), len(settings.measured_fractions()), info.max_fractions)
    receiver_modes = len(settings.receiver_modes())
    per_row = row_samples_at_most(settings.n, settings.sampling_plan)

    def samples(problem: Problem) -> int:
        return problem_row_count(resumed.get(problem.id), cuts, receiver_modes) * per_row

    # One call per batch the service's limits allow; results land on disk the same way.
    batches = problem_batches(
        specs, info.max_problems_per_run, info.max_message_bytes, wire_bytes, info.max_samples_per_run, samples
    )
    for batch in batches:
        await check_models_unchanged(client, info)
        resumed_here = {problem.id: resumed[problem.id] for problem in batch if problem.id in resumed}
        run = client.run_transfer(
            batch,
            experiment_id=experiment.id,
            take_over=experiment.own,
            resumed=resumed_here,
            **settings.run_options(),
        )
        async for event in run:
            if isinstance(event, StrongCot) and event.problem_id in resumed_here:
                # A service from before Problem.prefixes ignores them and writes a new CoT: its
                # rows would mix two CoTs in one problem. Stop before any of them is written.
                raise RunFolderError(
                    f"the service wrote a new CoT for {event.problem_id!r}, which this resume completes on its"
                    " stored prefixes: it is older than this client (Transfer.Run's Problem.prefixes); upgrade it"
                )
            if isinstance(event, StrongCot):
                writer.add_strong(event)
            elif isinstance(event, FractionResult):
                writer.add_result(event)
            elif isinstance(event, ProblemError):
                writer.add_error(event)
    # The last batch's rows were drawn with the models the run started with only if they still serve.
    await check_models_unchanged(client, info)


def resume_inputs(out_dir: Path) -> tuple[list[Problem], ExperimentSettings, Path]:
    """The problems and settings a folder was started with, for ``run --resume``."""
    run = RunFolder(out_dir).read_run()
    # The folder's own copy of the problems: read as they were, whatever format the source had.
    kept = load_run_problems(out_dir)
    kept = lift_cots(kept) if kept is not None else None
    if kept is not None:
        by_id = {problem.id: problem for problem in kept}
        if any(problem_id not in by_id for problem_id in run["problem_ids"]):
            raise RunFolderError(f"{out_dir / RUN_PROBLEMS_FILE} lacks problems of the run: it was changed by hand")
        source = Path(run["problems_path"]) if run.get("problems_path") else out_dir / RUN_PROBLEMS_FILE
        return [by_id[problem_id] for problem_id in run["problem_ids"]], ExperimentSettings.from_json(run), source
    if not run.get("problems_path"):
        raise RunFolderError(f"{out_dir / RUN_FILE} does not say which problems file the run used")
    problems_path = Path(run["problems_path"])
    by_id = {problem.id: problem for problem in load_problems(problems_path)}
    missing = [problem_id for problem_id in run["problem_ids"] if problem_id not in by_id]
    if missing:
        raise RunFolderError(f"{problems_path} no longer holds problems {missing[:5]} of the run in {out_dir}")
    problems = [by_id[problem_id] for problem_id in run["problem_ids"]]
    return problems, ExperimentSettings.from_json(run), problems_path
