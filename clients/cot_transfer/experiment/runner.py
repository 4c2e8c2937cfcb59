"""Runs a transfer experiment against a service and keeps every result on disk as it arrives.

A results folder holds ``run.json`` (the settings, the models and their hash),
``problems.jsonl`` (the problems with their dataset metadata; a resume reads them from there),
``strong.jsonl`` (one strong CoT per problem, with the prefix of every fraction),
``results.jsonl`` (one row per (problem, fraction)), ``errors.jsonl`` (one row per problem that
could not be run) and, once the run ends, the report: ``summary.json``, ``report.md``,
``results.csv`` and the plots. Rows are appended, flushed and synced one at a time, so a crash
loses at most the row being written, and a resumed run redoes only what is missing: problems
without a strong CoT go through ``Transfer.Run`` again; fractions missing for a problem whose CoT
is on disk are completed with ``WeakModel.Complete`` on the stored prefix, so every row of a
problem comes from the same CoT. A problem with a permanent error is final and not run again.

The settings hash covers what changes results: the settings, the problems, and the service
behind them (each model's fingerprint and the sampling the server's defaults make effective), so
a resume against other weights or defaults is refused, naming what changed. A lock file keeps a
second process from writing the same folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from cot_transfer.client import CotTransferClient, RetryPolicy, RpcFailedError, Sampling
from cot_transfer.client.client import RETRYABLE_CODES
from cot_transfer.client.convert import problem_wire_bytes
from cot_transfer.domain.receivers import FREE, receiver_modes
from cot_transfer.domain.requests import CotPrefix, FractionResult, Problem, ProblemError, ServiceInfo, StrongCot
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.sampling_plan import SamplingPlan, sampling_plan_from_dict
from cot_transfer.domain.steps import EVERY_STEP_FRACTIONS, CutMode
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.domain.truncation import normalize_fractions, with_baseline
from cot_transfer.experiment.cut_settings import cut_run_options, cut_settings_json, kept_answers, resume_fractions
from cot_transfer.experiment.datasets import (
    RUN_PROBLEMS_FILE,
    DatasetOptions,
    load_problems,
    load_run_problems,
    problem_to_json,
    save_run_problems,
)
from cot_transfer.experiment.imported_cots import lift_cots
from cot_transfer.experiment.load import write_results_parquet
from cot_transfer.experiment.problem_errors import ERRORS_FILE, error_record, load_problem_errors
from cot_transfer.experiment.report import write_report

logger = logging.getLogger(__name__)

# A replica that died is back after its engine restarts: tens of seconds on CPU, minutes for
# large models on GPU; the backoff covers about five minutes in all.
STREAM_RETRY = RetryPolicy(max_attempts=12, initial_backoff_s=2.0, max_backoff_s=30.0, multiplier=2.0)

RETRYABLE_CODE_NAMES = frozenset(code.name for code in RETRYABLE_CODES)

# Room a Transfer.Run request keeps for everything but its problems (fractions, sampling, ids).
REQUEST_OVERHEAD_BYTES = 64 * 1024

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
STRONG_FILE = "strong.jsonl"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".lock"


class RunFolderError(Exception):
    """The results folder cannot be used for this run as asked."""


@dataclass(frozen=True)
class ExperimentSettings:
    fractions: tuple[float, ...]
    n: int
    strong_sampling: Sampling = field(default_factory=Sampling)
    weak_sampling: Sampling = field(default_factory=Sampling)
    thresholds: Thresholds = field(default_factory=Thresholds)
    grader: str = "exact"
    # The served models that complete the prefixes (none: the weak model) and the answer modes.
    receivers: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    # Where CoTs are cut (``cot_transfer.domain.steps``) and whether rows keep completion texts.
    cut: str = "token"
    step_boundary: str = "line"
    keep_completions: bool = False
    # Adaptive sampling; its n_max is ``n``.
    sampling_plan: SamplingPlan | None = None

    def measured_fractions(self) -> tuple[float, ...]:
        if self.cut == CutMode.EVERY_STEP.value:
            return EVERY_STEP_FRACTIONS
        return with_baseline(normalize_fractions(self.fractions))

    def receiver_modes(self) -> tuple[tuple[str, str], ...]:
        """The (receiver, mode) of every row a problem has at each fraction ("" is the weak model)."""
        return receiver_modes(self.receivers or ("",), self.modes or (FREE,))

    def to_json(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "fractions": list(self.measured_fractions()),
            "n_samples": self.n,
            "strong_sampling": asdict(self.strong_sampling),
            "weak_sampling": asdict(self.weak_sampling),
            "thresholds": asdict(self.thresholds),
            "grader": self.grader,
        }
        # Only when asked: a run of the weak model alone keeps the settings hash it always had.
        if self.receivers:
            settings["receivers"] = list(self.receivers)
        if self.modes:
            settings["modes"] = list(self.modes)
        settings.update(cut_settings_json(self.cut, self.step_boundary, self.keep_completions))
        # In the settings hash, so --resume refuses a changed plan.
        if self.sampling_plan is not None:
            settings["sampling_plan"] = self.sampling_plan.to_dict()
        return settings

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExperimentSettings:
        return cls(
            fractions=tuple(data["fractions"]),
            n=int(data["n_samples"]),
            strong_sampling=Sampling(**data["strong_sampling"]),
            weak_sampling=Sampling(**data["weak_sampling"]),
            thresholds=Thresholds(**data["thresholds"]),
            grader=str(data["grader"]),
            receivers=tuple(data.get("receivers", ())),
            modes=tuple(data.get("modes", ())),
            cut=str(data.get("cut", "token")),
            step_boundary=str(data.get("step_boundary", "line")),
            keep_completions=bool(data.get("keep_completions", False)),
            sampling_plan=sampling_plan_from_dict(data.get("sampling_plan")),
        )


def _effective_sampling(asked: Sampling, defaults: SamplingParams | None) -> dict[str, Any]:
    """The sampling a request gets: each field as asked, else the server's default."""
    effective = asdict(asked)
    if defaults is not None:
        for name, value in asdict(defaults).items():
            if effective.get(name) is None:
                effective[name] = value
    return effective


def service_identity(settings: ExperimentSettings, info: ServiceInfo) -> dict[str, Any]:
    """What of the service decides results beyond its model names: every model's fingerprint and
    the sampling the server's defaults make effective for these settings."""
    return {
        "model_fingerprints": {model.name: model.fingerprint for model in info.models},
        "strong_sampling": _effective_sampling(settings.strong_sampling, info.strong_sampling_defaults),
        "weak_sampling": _effective_sampling(settings.weak_sampling, info.weak_sampling_defaults),
    }


def settings_hash(settings: ExperimentSettings, problems: Sequence[Problem], info: ServiceInfo) -> str:
    """Changes whenever something that changes results changes: models (names and fingerprints),
    settings, the effective sampling, problems."""
    payload: dict[str, Any] = {
        "models": [info.strong_model, info.weak_model],
        "settings": settings.to_json(),
        "problems": [problem_to_json(problem) for problem in problems],
    }
    if info.models or info.strong_sampling_defaults is not None or info.weak_sampling_defaults is not None:
        # A service that reports neither (an older one) keeps the hashes of the folders it made.
        payload["service"] = service_identity(settings, info)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def service_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two ``service_identity`` records, in words."""
    changes = []
    old_prints, new_prints = before.get("model_fingerprints", {}), now.get("model_fingerprints", {})
    for name in sorted(set(old_prints) | set(new_prints)):
        if old_prints.get(name) != new_prints.get(name):
            changes.append(
                f"the model behind {name!r} changed (fingerprint {old_prints.get(name) or 'none'}"
                f" then, {new_prints.get(name) or 'none'} now)"
            )
    for role in ("strong", "weak"):
        old_sampling, new_sampling = before.get(f"{role}_sampling", {}), now.get(f"{role}_sampling", {})
        for name in sorted(set(old_sampling) | set(new_sampling)):
            if old_sampling.get(name) != new_sampling.get(name):
                changes.append(
                    f"the effective {role} sampling {name} changed ({old_sampling.get(name)} then,"
                    f" {new_sampling.get(name)} now: the server's default)"
                )
    return changes


@contextlib.contextmanager
def folder_lock(out_dir: Path) -> Iterator[None]:
    """Holds ``out_dir``'s lock file for as long as this process writes the folder; a second
    process (a run, a resume) is refused instead of interleaving its rows. The OS drops the lock
    when the process dies, so a crash never leaves the folder locked."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / LOCK_FILE).open("a") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(
                f"{out_dir} is being written by another process (it holds {out_dir / LOCK_FILE});"
                " wait for it to finish or use another --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)


class _DurableJsonl:
    """Appends one JSON object per line and syncs it to disk before returning."""

    def __init__(self, path: Path) -> None:
        _drop_partial_last_line(path)
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _drop_partial_last_line(path: Path) -> None:
    """A crash mid-write leaves a line without its newline; appending after it would corrupt
    the next row, so it is cut off (it was never a complete row)."""
    if not path.exists():
        return
    with path.open("rb+") as file:
        content = file.read()
        if content and not content.endswith(b"\n"):
            file.truncate(content.rfind(b"\n") + 1)
            file.flush()
            os.fsync(file.fileno())


def _read_complete_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n") and line.strip():
            records.append(json.loads(line))
    return records


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


@dataclass
class RunState:
    """What a results folder already holds for the current settings."""

    # (problem, fraction, receiver, mode) of every row on disk; receiver "" in a run that named none.
    done: set[tuple[str, float, str, str]] = field(default_factory=set)
    strong: dict[str, StrongCot] = field(default_factory=dict)
    # The errors that stand (see problem_errors.load_problem_errors); permanent ones are final.
    errors: dict[str, ProblemError] = field(default_factory=dict)

    def is_final(self, problem_id: str) -> bool:
        error = self.errors.get(problem_id)
        return error is not None and error.permanent


class RunFolder:
    """Owns a results folder: the settings, the durable row logs and the report."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    @property
    def run_file(self) -> Path:
        return self.out_dir / RUN_FILE

    def read_run(self) -> dict[str, Any]:
        if not self.run_file.exists():
            raise RunFolderError(f"{self.out_dir} holds no run to resume ({RUN_FILE} is missing)")
        data: dict[str, Any] = json.loads(self.run_file.read_text(encoding="utf-8"))
        return data

    def refuse_used(self) -> None:
        if self.run_file.exists():
            raise RunFolderError(f"{self.out_dir} already holds a run: resume it with --resume or use another --out")

    def start(self, run: dict[str, Any], resume: bool) -> RunState:
        """Writes ``run.json`` for a new run, or checks it and loads what is done for a resumed one."""
        if not resume:
            self.refuse_used()
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomically(self.run_file, run)
            return RunState()
        existing = self.read_run()
        changes = service_changes(existing["service"], run["service"]) if "service" in existing else []
        if changes:
            raise RunFolderError(
                f"{self.out_dir} cannot be resumed against this service: " + "; ".join(changes) + "."
                " Results are never mixed: use a new --out"
            )
        if existing.get("settings_hash") != run["settings_hash"]:
            raise RunFolderError(
                f"{self.out_dir} was run with other settings, problems or models"
                f" (hash {existing.get('settings_hash')} there, {run['settings_hash']} now);"
                " results are never mixed: use a new --out"
            )
        settings = ExperimentSettings.from_json(run)
        return self.load_state(run["settings_hash"], tuple(run["fractions"]), settings.receiver_modes())

    def load_state(
        self,
        run_hash: str,
        fractions: Sequence[float] | None = None,
        receivers: Sequence[tuple[str, str]] = (("", FREE),),
    ) -> RunState:
        """What is on disk for ``run_hash``; ``fractions`` and ``receivers`` (the run's) tell which
        problems are finished, so a transient error of a problem finished since no longer stands."""
        state = RunState()
        named = any(receiver for receiver, _ in receivers)
        for record in _read_complete_lines(self.out_dir / STRONG_FILE):
            if record.get("settings_hash") == run_hash:
                prefixes = tuple(
                    CotPrefix(**{**prefix, "token_ids": tuple(prefix.get("token_ids", ()))})
                    for prefix in record.get("prefixes", ())
                )
                state.strong[record["problem_id"]] = StrongCot(
                    problem_id=record["problem_id"],
                    cot=record["cot"],
                    answer=record["answer"],
                    correct=record["correct"],
                    cot_num_tokens=record["cot_num_tokens"],
                    prefixes=prefixes,
                    final_text=record.get("final_text", ""),
                    finish_reason=record.get("finish_reason", ""),
                    reasoning_truncated=record.get("reasoning_truncated", False),
                )
        for record in _read_complete_lines(self.out_dir / RESULTS_FILE):
            if record.get("settings_hash") == run_hash:
                state.done.add(row_key(record, named))
        finished = {
            pid
            for pid in state.strong
            if fractions is not None
            and all(
                (pid, float(fraction), receiver, mode) in state.done
                for fraction in fractions
                for receiver, mode in receivers
            )
        }
        state.errors = load_problem_errors(self.out_dir, run_hash, finished)
        return state


class _RowWriter:
    def __init__(self, out_dir: Path, run_hash: str, on_row: Callable[[FractionResult], None] | None) -> None:
        self._hash = run_hash
        self._strong_log = _DurableJsonl(out_dir / STRONG_FILE)
        self._results_log = _DurableJsonl(out_dir / RESULTS_FILE)
        self._errors_log = _DurableJsonl(out_dir / ERRORS_FILE)
        self._on_row = on_row
        self.new_errors: list[ProblemError] = []

    def add_strong(self, record: StrongCot) -> None:
        self._strong_log.append({**asdict(record), "settings_hash": self._hash})

    def add_result(self, record: FractionResult) -> None:
        self._results_log.append({**asdict(record), "potential": record.potential, "settings_hash": self._hash})
        if self._on_row is not None:
            self._on_row(record)

    def add_error(self, error: ProblemError) -> None:
        self._errors_log.append(error_record(error, self._hash))
        self.new_errors.append(error)
        logger.warning("problem %r could not be run: %s %s", error.problem_id, error.code, error.message)

    def close(self) -> None:
        self._strong_log.close()
        self._results_log.close()
        self._errors_log.close()


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
    max_concurrent_completions: int = 16,
    retry: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) the experiment into ``out_dir`` and returns ``summary.json``'s content.

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
    run_hash = settings_hash(settings, problems, info)
    run = {
        **settings.to_json(),
        "strong_model": info.strong_model,
        "weak_model": info.weak_model,
        "problems_path": str(problems_path) if problems_path is not None else None,
        "dataset": dataset.model_dump(mode="json") if dataset is not None else None,
        "problem_ids": [problem.id for problem in problems],
        "settings_hash": run_hash,
        "service": service_identity(settings, info),
    }
    fractions = settings.measured_fractions()
    with folder_lock(out_dir):
        state = await asyncio.to_thread(folder.start, run, resume)
        await asyncio.to_thread(save_run_problems, out_dir, problems)
        if on_resume is not None:
            on_resume(len(state.done))
        for attempt in range(retry.max_attempts):
            writer = _RowWriter(out_dir, run_hash, on_row)
            last_attempt = attempt + 1 == retry.max_attempts
            try:
                try:
                    await _complete_partial_problems(
                        client, problems, settings, fractions, state, writer, max_concurrent_completions
                    )
                except ExceptionGroup as failures:  # the completions' task group
                    raise _first_leaf(failures) from None
                fresh = [
                    problem for problem in problems if problem.id not in state.strong and not state.is_final(problem.id)
                ]
                if fresh:
                    await _run_fresh_problems(client, fresh, settings, writer, experiment_id(out_dir), info)
                retryable = [error for error in writer.new_errors if error.code in RETRYABLE_CODE_NAMES]
                if not retryable or last_attempt:
                    break
                logger.warning("%d problems failed transiently; running them again", len(retryable))
            except RpcFailedError as error:
                if not error.retryable or last_attempt:  # a size refusal is never retried
                    raise
                logger.warning("run interrupted (%s); continuing from the results on disk", error.code.name)
            finally:
                writer.close()
            await asyncio.sleep(retry.backoff_s(attempt))
            state = await asyncio.to_thread(folder.load_state, run_hash, fractions, settings.receiver_modes())
        standing = (await asyncio.to_thread(folder.load_state, run_hash, fractions, settings.receiver_modes())).errors
        summary = await asyncio.to_thread(_write_report_and_read_summary, out_dir)
    return {
        **summary,
        "failed_problems": [
            {"problem_id": error.problem_id, "code": error.code, "message": error.message, "permanent": error.permanent}
            for error in standing.values()
        ],
    }


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _write_report_and_read_summary(out_dir: Path) -> dict[str, Any]:
    write_report(out_dir)
    write_results_parquet(out_dir)
    summary: dict[str, Any] = json.loads((out_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    return summary


async def _complete_partial_problems(
    client: CotTransferClient,
    problems: Sequence[Problem],
    settings: ExperimentSettings,
    fractions: Sequence[float],
    state: RunState,
    writer: _RowWriter,
    max_concurrency: int,
) -> None:
    slots = asyncio.Semaphore(max_concurrency)

    async def complete_one(problem: Problem, prefix: CotPrefix, receiver: str, mode: str) -> None:
        try:
            async with slots:
                result = await client.complete(
                    problem.problem,
                    prefix=prefix.text,
                    prefix_token_ids=prefix.token_ids,
                    reference_answer=problem.answer,
                    n=settings.n,
                    sampling=settings.weak_sampling,
                    grader=settings.grader,
                    receiver=receiver,
                    mode=mode,
                )
        except RpcFailedError as error:
            if error.retryable:
                raise  # the service is down or full: the whole run backs off and continues
            # This problem cannot be completed (its prompt is past the context, ...): the others go on.
            writer.add_error(ProblemError(problem.id, error.code.name, error.details))
            return
        writer.add_result(
            FractionResult(
                problem_id=problem.id,
                fraction=prefix.fraction,
                prefix_num_tokens=prefix.num_tokens,
                cot_num_tokens=prefix.cot_num_tokens,
                n=len(result.completions),
                num_correct=result.num_correct,
                # The service judged the stored prefix when it wrote the strong CoT.
                answer_in_prefix=prefix.answer_in_prefix,
                receiver=receiver,
                mode=mode,
                **kept_answers(result, settings.keep_completions),
                num_steps=prefix.num_steps,
            )
        )

    async with asyncio.TaskGroup() as group:
        for problem in problems:
            record = state.strong.get(problem.id)
            if record is None or state.is_final(problem.id):
                continue
            prefixes = {prefix.fraction: prefix for prefix in record.prefixes}
            for fraction in resume_fractions(settings.cut, record, fractions):
                # Only the (receiver, mode) rows missing at this fraction, each on the stored prefix.
                missing = [key for key in settings.receiver_modes() if (problem.id, fraction, *key) not in state.done]
                if not missing:
                    continue
                if fraction not in prefixes:
                    raise RunFolderError(f"{STRONG_FILE} has no prefix at fraction {fraction} for {problem.id!r}")
                for receiver, mode in missing:
                    group.create_task(complete_one(problem, prefixes[fraction], receiver, mode))


def row_key(record: dict[str, Any], named_receivers: bool) -> tuple[str, float, str, str]:
    """A results.jsonl row's (problem, fraction, receiver, mode). In a run that named no receiver
    the receiver is "" whatever the service wrote (the weak model), as in rows from before receivers."""
    receiver = str(record.get("receiver") or "") if named_receivers else ""
    return record["problem_id"], float(record["fraction"]), receiver, str(record.get("mode") or FREE)


def experiment_id(out_dir: Path) -> str:
    """The results folder's name as the service's metrics label (letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", out_dir.resolve().name)[:64] or "run"


class RequestTooLargeError(ValueError):
    """A single problem is larger than any request the service accepts."""


def problem_batches(
    problems: Sequence[Problem],
    max_problems: int,
    max_request_bytes: int,
    wire_bytes: Callable[[Problem], int],
) -> list[list[Problem]]:
    """Splits ``problems``, in order, into ``Transfer.Run`` calls the service accepts.

    Each batch holds at most ``max_problems`` problems and, with ``max_request_bytes`` > 0,
    serializes to fewer bytes than that, leaving ``REQUEST_OVERHEAD_BYTES`` for the rest of the
    request. A problem that cannot fit on its own raises ``RequestTooLargeError``, before any call.
    """
    if max_problems < 1:
        raise ValueError(f"max_problems must be >= 1, got {max_problems}")
    budget = max_request_bytes - REQUEST_OVERHEAD_BYTES if max_request_bytes > 0 else None
    batches: list[list[Problem]] = []
    batch: list[Problem] = []
    batch_bytes = 0
    for problem in problems:
        size = wire_bytes(problem)
        if budget is not None and size > budget:
            raise RequestTooLargeError(
                f"problem {problem.id!r} is {size} bytes; the service accepts requests up to"
                f" {max_request_bytes} bytes ({budget} for problems)"
            )
        if batch and (len(batch) == max_problems or (budget is not None and batch_bytes + size > budget)):
            batches.append(batch)
            batch, batch_bytes = [], 0
        batch.append(problem)
        batch_bytes += size
    if batch:
        batches.append(batch)
    return batches


async def _run_fresh_problems(
    client: CotTransferClient,
    problems: Sequence[Problem],
    settings: ExperimentSettings,
    writer: _RowWriter,
    experiment: str,
    info: ServiceInfo,
) -> None:
    specs = [
        Problem(problem.id, problem.problem, problem.answer, cot=problem.cot, cot_format=problem.cot_format)
        for problem in problems
    ]
    # One call per batch the service's limits allow; results land on disk the same way.
    for batch in problem_batches(specs, info.max_problems_per_run, info.max_message_bytes, problem_wire_bytes):
        async for event in client.run_transfer(
            batch,
            settings.measured_fractions(),
            n=settings.n,
            strong_sampling=settings.strong_sampling,
            weak_sampling=settings.weak_sampling,
            thresholds=settings.thresholds,
            grader=settings.grader,
            experiment_id=experiment,
            receivers=settings.receivers,
            modes=settings.modes,
            sampling_plan=settings.sampling_plan,
            **cut_run_options(settings.cut, settings.step_boundary, settings.keep_completions),
        ):
            if isinstance(event, StrongCot):
                writer.add_strong(event)
            elif isinstance(event, FractionResult):
                writer.add_result(event)
            elif isinstance(event, ProblemError):
                writer.add_error(event)


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
