"""A results folder on disk: its files, its lock, and rows appended durably one at a time.

Rows are appended, flushed and synced one at a time, so a crash loses at most the row being
written; a partial last line is dropped when the folder is read again. A lock file keeps a second
process from writing the same folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from cot_transfer.domain.cut_search import Probe
from cot_transfer.domain.kept_answers import chosen_completions
from cot_transfer.domain.receivers import FREE
from cot_transfer.domain.requests import FractionResult, Prefix, ProblemError, ServiceInfo, StrongCot
from cot_transfer.experiment.cut_settings import ALL_COMPLETIONS
from cot_transfer.experiment.problem_errors import ERRORS_FILE, error_record, load_problem_errors
from cot_transfer.experiment.provenance import Tally
from cot_transfer.experiment.settings import ExperimentSettings, model_fingerprints, service_changes

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
STRONG_FILE = "strong.jsonl"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".lock"


class RunFolderError(Exception):
    """The results folder cannot be used for this run as asked."""


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


def clear_folder(out_dir: Path) -> None:
    """Empties ``out_dir`` for a fresh run (``demo --out``) while holding its lock, so a run or a
    resume writing it is never deleted under its feet (that raises ``RunFolderError`` instead). The
    lock file itself stays: a process waiting on it keeps locking the same file."""
    if not out_dir.exists():
        return
    with folder_lock(out_dir):
        for entry in out_dir.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


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
    """A crash or power loss leaves the old file or the new one, whole: the new text goes to a
    temporary file in the same folder, synced, replaces ``path`` in one rename, and the folder is
    synced so the rename itself is on disk."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide run.json from the folder's other readers
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _prefix_from_record(prefix: dict[str, Any]) -> Prefix:
    fields = {**prefix, "token_ids": tuple(prefix.get("token_ids", ()))}
    if "answer_stated_in_prefix" not in prefix:
        # Written before the two leak flags: that answer_in_prefix read answer statements only,
        # so its True implies both flags and its False neither (left to be judged again).
        known = True if prefix.get("answer_in_prefix") is True else None
        fields["answer_in_prefix"] = fields["answer_stated_in_prefix"] = known
    return Prefix(**fields)


@dataclass
class RunState:
    """What a results folder already holds for the current settings."""

    # (problem, fraction, receiver, mode) of every row on disk; receiver "" in a run that named none.
    done: set[tuple[str, float, str, str]] = field(default_factory=set)
    strong: dict[str, StrongCot] = field(default_factory=dict)
    # The errors that stand (see problem_errors.load_problem_errors); permanent ones are final.
    errors: dict[str, ProblemError] = field(default_factory=dict)
    # Each row's samples by (problem, receiver, mode) and fraction: a search run's resume replays
    # its search over them (``cut_settings.problem_rows``).
    probes: dict[tuple[str, str, str], dict[float, Probe]] = field(default_factory=dict)

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

    def update_run(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Rewrites ``run.json`` as ``change`` makes it (the provenance; never the settings)."""
        write_json_atomically(self.run_file, change(self.read_run()))

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
                prefixes = tuple(_prefix_from_record(prefix) for prefix in record.get("prefixes", ()))
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
                problem_id, fraction, receiver, mode = row_key(record, named)
                state.done.add((problem_id, fraction, receiver, mode))
                if int(record.get("n", 0)) > 0:
                    state.probes.setdefault((problem_id, receiver, mode), {})[fraction] = Probe(
                        int(record["num_correct"]), int(record["n"]), float(record.get("potential", 0.0))
                    )
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
    def __init__(
        self,
        out_dir: Path,
        run_hash: str,
        on_row: Callable[[FractionResult], None] | None,
        *,
        kept_completions: int = ALL_COMPLETIONS,
        tally: Tally | None = None,
        info: ServiceInfo | None = None,
    ) -> None:
        self._hash = run_hash
        self._info = info
        self._tally = tally
        self._kept_completions = kept_completions
        self._strong_log = _DurableJsonl(out_dir / STRONG_FILE)
        self._results_log = _DurableJsonl(out_dir / RESULTS_FILE)
        self._errors_log = _DurableJsonl(out_dir / ERRORS_FILE)
        self._on_row = on_row
        self.new_errors: list[ProblemError] = []

    def add_strong(self, record: StrongCot) -> None:
        if self._tally is not None:
            self._tally.add_strong(record)
        self._strong_log.append({**asdict(record), **self._fingerprints(None), "settings_hash": self._hash})

    def add_result(self, record: FractionResult) -> None:
        if self._tally is not None:  # before the completions the folder does not keep are dropped
            self._tally.add_result(record)
        if self._kept_completions != ALL_COMPLETIONS and record.completions:
            # The service sends every completion of a row; the folder keeps a chosen few.
            record = replace(record, completions=tuple(chosen_completions(record.completions, self._kept_completions)))
        prints = self._fingerprints(record.receiver)
        self._results_log.append(
            {**asdict(record), **prints, "potential": record.potential, "settings_hash": self._hash}
        )
        if self._on_row is not None:
            self._on_row(record)

    def _fingerprints(self, receiver: str | None) -> dict[str, dict[str, str]]:
        """``model_fingerprints``: the fingerprint of each model a row was drawn with (the strong
        model and, for a result row, its ``receiver``: "" is the weak model), as GetInfo reported
        them; the runner checks them again before each batch. Rows written before this field, or
        from a service that reports none, have no such key."""
        prints = model_fingerprints(self._info) if self._info is not None else {}
        if self._info is None or not prints:
            return {}
        names = [self._info.strong_model]
        if receiver is not None:
            names.append(receiver or self._info.weak_model)
        return {"model_fingerprints": {name: prints.get(name, "") for name in names}}

    def add_error(self, error: ProblemError) -> None:
        self._errors_log.append(error_record(error, self._hash))
        self.new_errors.append(error)
        logger.warning("problem %r could not be run: %s %s", error.problem_id, error.code, error.message)

    def close(self) -> None:
        self._strong_log.close()
        self._results_log.close()
        self._errors_log.close()


def row_key(record: dict[str, Any], named_receivers: bool) -> tuple[str, float, str, str]:
    """A results.jsonl row's (problem, fraction, receiver, mode). In a run that named no receiver
    the receiver is "" whatever the service wrote (the weak model), as in rows from before receivers."""
    receiver = str(record.get("receiver") or "") if named_receivers else ""
    return record["problem_id"], float(record["fraction"]), receiver, str(record.get("mode") or FREE)
