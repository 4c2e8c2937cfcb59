"""Reading a results folder: ``run.json``, ``results.jsonl``, ``strong.jsonl``, ``errors.jsonl``.

The folder holds what the runner writes:

* ``run.json``: fractions, samples per prefix, thresholds, grader, models, settings hash;
* ``results.jsonl``: one row per (problem, fraction) with ``n``, ``num_correct`` and the leak
  flags ``answer_in_prefix`` (lenient) and ``answer_stated_in_prefix`` (strict,
  ``cot_transfer.domain.leaks``); rows with ``"role": "strong"`` are the strong model's
  self-potential, the rest the weak model's;
* ``strong.jsonl`` (optional): per problem the strong model's CoT, answer, correctness, its
  prefixes and whether the CoT ran out of budget inside its reasoning;
* ``errors.jsonl`` (optional): the problems that could not be run.

A run may still be in progress or may have crashed, so the reader is forgiving where that
is what happened: a last line cut off mid-write is ignored, a (role, problem, fraction)
written twice (a resumed run redoing work) keeps its last row, and rows from other
settings (``settings_hash`` differs from ``run.json``'s) are left out. Those lines are
counted in ``summary.json`` under ``ignored``. A malformed line anywhere else is an error.

Folders written before rows carried both leak flags are read too. Their ``answer_in_prefix``
read answer statements only, so a True there implies both flags; otherwise both are judged
here from the stored prefix text with the run's grader (``leaks.judge_prefix``) against the
reference answer (from the problems file named in ``run.json``, else the strong model's
answer when it was graded correct). Where neither is at hand, or a prefix states an answer
that the grader cannot compare here (the math grader's math-verify runs in the service) and
nothing else settles it, a flag stays unknown (None), and unknown rows are left out of the
rate without the answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cot_transfer.domain.analysis import PROBLEM_ERROR, REASONING_TRUNCATED, Analysis, analyze, fraction_key
from cot_transfer.domain.answers import get_grader
from cot_transfer.domain.dynamics import DEFAULT_DYNAMICS_PARAMETERS, DynamicsParameters
from cot_transfer.domain.errors import InvalidArgumentError, NotFoundError
from cot_transfer.domain.leaks import PrefixLeak, judge_prefix
from cot_transfer.domain.receivers import ANSWER_MODES, FREE, primary_key
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.statistics import DEFAULT_CONFIDENCE
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.domain.truncation import with_baseline
from cot_transfer.experiment.problem_errors import load_problem_errors

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
STRONG_FILE = "strong.jsonl"

WEAK_ROLE = "weak"
STRONG_ROLE = "strong"


class ReportError(ValueError):
    """A run folder is missing a file or holds a malformed line."""


@dataclass(frozen=True)
class StrongRecord:
    problem_id: str
    cot: str
    answer: str | None
    correct: bool | None
    cot_num_tokens: int | None
    # Fraction -> prefix text, as the strong model cut it.
    prefixes: Mapping[float, str] = field(default_factory=dict)
    reasoning_truncated: bool = False


@dataclass(frozen=True)
class IgnoredLines:
    truncated: int = 0
    other_settings: int = 0
    superseded: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "truncated_last_lines": self.truncated,
            "rows_from_other_settings": self.other_settings,
            "superseded_rows": self.superseded,
        }


@dataclass(frozen=True)
class RunResults:
    run_dir: Path
    settings: dict[str, Any]
    fractions: tuple[float, ...]
    n_samples: int | None
    thresholds: Thresholds
    weak_rows: tuple[FractionResult, ...]
    strong_rows: tuple[FractionResult, ...]
    strong_records: dict[str, StrongRecord] = field(hash=False)
    ignored: IgnoredLines
    # Problem id -> why it is left out of the statistics (analysis.REASONING_TRUNCATED, PROBLEM_ERROR).
    excluded: dict[str, str] = field(default_factory=dict, hash=False)
    # How many weak rows had no leak flags on disk and had them judged here (old folders).
    answer_in_prefix_judged: int = 0
    # Every receiver's rows by (receiver, mode) (receiver "" in a run that named none);
    # ``weak_rows`` are those of ``primary``, the first weak receiver in free mode.
    receiver_rows: dict[tuple[str, str], tuple[FractionResult, ...]] = field(default_factory=dict, hash=False)
    primary: tuple[str, str] = ("", FREE)

    def strong_correct(self) -> dict[str, bool]:
        return {pid: record.correct for pid, record in self.strong_records.items() if record.correct is not None}

    def analyze(
        self,
        rows: Sequence[FractionResult],
        *,
        confidence: float = DEFAULT_CONFIDENCE,
        dynamics_parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS,
        with_problems: bool = True,
    ) -> Analysis:
        """``analyze`` of some of this run's receiver rows under the run's own thresholds, fractions,
        strong answers and exclusions (the report, the receivers table and ``load`` read the same)."""
        return analyze(
            rows,
            thresholds=self.thresholds,
            fractions=self.fractions,
            strong_correct=self.strong_correct(),
            excluded_problems=self.excluded,
            confidence=confidence,
            dynamics_parameters=dynamics_parameters,
            with_problems=with_problems,
        )


def _read_jsonl(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """(line number, object) per line, and 1 when the last line was cut off mid-write, else 0."""
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    records: list[tuple[int, dict[str, Any]]] = []
    for position, (number, line) in enumerate(numbered):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            if position == len(numbered) - 1:
                return records, 1
            raise ReportError(f"{path}:{number}: bad JSON: {error.msg} at column {error.colno}") from error
        if not isinstance(value, dict):
            raise ReportError(f"{path}:{number}: a line must hold a JSON object, got {type(value).__name__}")
        records.append((number, value))
    return records, 0


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_row(path: Path, number: int, raw: Mapping[str, Any]) -> tuple[str, FractionResult]:
    def fail(message: str) -> ReportError:
        return ReportError(f"{path}:{number}: {message}")

    problem_id = raw.get("problem_id")
    if not isinstance(problem_id, str | int) or isinstance(problem_id, bool):
        raise fail('"problem_id" must be a string')
    fraction = raw.get("fraction")
    if not isinstance(fraction, int | float) or isinstance(fraction, bool) or not 0.0 <= fraction <= 1.0:
        raise fail(f'"fraction" must be a number in [0, 1], got {fraction!r}')
    n = _optional_int(raw.get("n"))
    num_correct = _optional_int(raw.get("num_correct"))
    if n is None or n < 1:
        raise fail(f'"n" must be a positive integer, got {raw.get("n")!r}')
    if num_correct is None or not 0 <= num_correct <= n:
        raise fail(f'"num_correct" must be an integer in [0, n], got {raw.get("num_correct")!r}')
    role = raw.get("role") or WEAK_ROLE
    if role not in (WEAK_ROLE, STRONG_ROLE):
        raise fail(f'"role" must be "{WEAK_ROLE}" or "{STRONG_ROLE}", got {role!r}')
    leak = _stored_leak(raw)
    receiver, mode = raw.get("receiver") or "", raw.get("mode") or FREE
    if not isinstance(receiver, str) or mode not in ANSWER_MODES:
        raise fail(f'"receiver" must be a string and "mode" one of {", ".join(ANSWER_MODES)}')
    return role, FractionResult(
        problem_id=str(problem_id),
        fraction=fraction_key(fraction),
        prefix_num_tokens=_optional_int(raw.get("prefix_num_tokens")) or 0,
        cot_num_tokens=_optional_int(raw.get("cot_num_tokens")) or 0,
        n=n,
        num_correct=num_correct,
        answer_in_prefix=leak.answer_in_prefix,
        answer_stated_in_prefix=leak.answer_stated_in_prefix,
        receiver=receiver,
        mode=mode,
        rounds=_optional_int(raw.get("rounds")) or 0,
        stop_reason=str(raw.get("stop_reason") or ""),
        rao_blackwell_potential=_rao_blackwell_potential(raw.get("rao_blackwell_potential")),
    )


def _stored_leak(raw: Mapping[str, Any]) -> PrefixLeak:
    """A row's leak flags as written; None where a flag is missing or not a boolean."""
    lenient = raw.get("answer_in_prefix")
    lenient = lenient if isinstance(lenient, bool) else None
    if "answer_stated_in_prefix" not in raw:
        # A row from before the two flags: its flag read answer statements only (module docstring).
        both = True if lenient is True else None
        return PrefixLeak(answer_stated_in_prefix=both, answer_in_prefix=both)
    strict = raw["answer_stated_in_prefix"]
    return PrefixLeak(answer_stated_in_prefix=strict if isinstance(strict, bool) else None, answer_in_prefix=lenient)


def _rao_blackwell_potential(value: Any) -> float | None:
    # An adaptive row's estimate (FractionResult.rao_blackwell_potential); absent in older folders.
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    return None


def _read_settings(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise ReportError(f"{path}: missing; is {run_dir} a run folder?")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: bad JSON: {error.msg} at line {error.lineno}") from error
    if not isinstance(settings, dict):
        raise ReportError(f"{path}: must hold a JSON object")
    fractions = settings.get("fractions", [])
    if not isinstance(fractions, list) or not all(
        isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0 for value in fractions
    ):
        raise ReportError(f'{path}: "fractions" must be a list of numbers in [0, 1]')
    return settings


def _read_thresholds(path: Path, settings: Mapping[str, Any]) -> Thresholds:
    raw = settings.get("thresholds") or {}
    try:
        return Thresholds(
            baseline_max_potential=float(raw.get("baseline_max_potential", Thresholds.baseline_max_potential)),
            unlock_min_potential=float(raw.get("unlock_min_potential", Thresholds.unlock_min_potential)),
        ).check()
    except (TypeError, ValueError, AttributeError, InvalidArgumentError) as error:
        raise ReportError(f'{path}: bad "thresholds": {error}') from error


def _prefix_texts(raw: Any) -> dict[float, str]:
    texts: dict[float, str] = {}
    for prefix in raw if isinstance(raw, list) else ():
        if isinstance(prefix, dict) and isinstance(prefix.get("fraction"), int | float):
            text = prefix.get("text")
            texts[fraction_key(prefix["fraction"])] = text if isinstance(text, str) else ""
    return texts


def _read_strong_records(run_dir: Path, run_hash: str | None) -> tuple[dict[str, StrongRecord], int]:
    path = run_dir / STRONG_FILE
    if not path.is_file():
        return {}, 0
    lines, truncated = _read_jsonl(path)
    records: dict[str, StrongRecord] = {}
    for number, raw in lines:
        if run_hash and raw.get("settings_hash") and raw.get("settings_hash") != run_hash:
            continue
        problem_id = raw.get("problem_id")
        if not isinstance(problem_id, str | int) or isinstance(problem_id, bool):
            raise ReportError(f'{path}:{number}: "problem_id" must be a string')
        cot = raw.get("cot")
        answer = raw.get("answer")
        correct = raw.get("correct")
        records[str(problem_id)] = StrongRecord(
            problem_id=str(problem_id),
            cot=cot if isinstance(cot, str) else "",
            answer=None if answer is None else str(answer),
            correct=correct if isinstance(correct, bool) else None,
            cot_num_tokens=_optional_int(raw.get("cot_num_tokens")),
            prefixes=_prefix_texts(raw.get("prefixes")),
            reasoning_truncated=raw.get("reasoning_truncated") is True,
        )
    return records, truncated


def _references(settings: Mapping[str, Any]) -> dict[str, str]:
    """Problem id -> reference answer from the problems file ``run.json`` names, if it still reads."""
    # Imported here: the datasets module is only needed for old folders, and then only once.
    from cot_transfer.experiment.datasets import load_problems

    path = settings.get("problems_path")
    if not isinstance(path, str) or not Path(path).is_file():
        return {}
    try:
        return {problem.id: problem.answer for problem in load_problems(path)}
    except Exception:  # any unreadable file just leaves the flag unknown, as documented
        return {}


def _judge_answer_in_prefix(
    rows: list[FractionResult], records: Mapping[str, StrongRecord], settings: Mapping[str, Any]
) -> tuple[list[FractionResult], int]:
    """Rows with the leak flags judged from the stored prefix texts where they are missing."""
    missing = [
        index for index, row in enumerate(rows) if row.answer_in_prefix is None or row.answer_stated_in_prefix is None
    ]
    if not missing:
        return rows, 0
    try:
        grader = get_grader(str(settings.get("grader") or ""))
    except NotFoundError:
        return rows, 0
    references = _references(settings)
    judged = 0
    for index in missing:
        row = rows[index]
        record = records.get(row.problem_id)
        if record is None:
            continue
        reference = references.get(row.problem_id) or (record.answer if record.correct else None)
        text = record.prefixes.get(row.fraction)
        if text is None and row.fraction == 0.0:
            text = ""
        if reference is None or text is None:
            continue
        leak = judge_prefix(grader, text, reference) if text else PrefixLeak(False, False)
        if leak.answer_in_prefix is None and leak.answer_stated_in_prefix is None:
            continue  # the prefix states some answer the grader cannot compare here
        rows[index] = replace(
            row, answer_in_prefix=leak.answer_in_prefix, answer_stated_in_prefix=leak.answer_stated_in_prefix
        )
        judged += 1
    return rows, judged


def load_run(run_dir: str | Path) -> RunResults:
    """The results of a run folder (see the module docstring for what is tolerated)."""
    folder = Path(run_dir)
    settings = _read_settings(folder)
    thresholds = _read_thresholds(folder / RUN_FILE, settings)
    results_path = folder / RESULTS_FILE
    lines, truncated = _read_jsonl(results_path) if results_path.is_file() else ([], 0)
    run_hash = settings.get("settings_hash")
    rows: dict[tuple[str, str, str, str, float], FractionResult] = {}
    named = bool(settings.get("receivers"))
    other_settings = 0
    superseded = 0
    for number, raw in lines:
        row_hash = raw.get("settings_hash")
        if run_hash and row_hash and row_hash != run_hash:
            other_settings += 1
            continue
        role, row = _parse_row(results_path, number, raw)
        if not named:
            row = replace(row, receiver="")  # one weak model, whatever name the service wrote
        key = (role, row.receiver, row.mode, row.problem_id, row.fraction)
        if key in rows:
            superseded += 1
        rows[key] = row
    strong_records, strong_truncated = _read_strong_records(folder, run_hash)
    ordered = sorted(rows.items(), key=lambda item: (item[1].problem_id, item[1].fraction))
    received, judged = _judge_answer_in_prefix(
        [row for (role, *_), row in ordered if role == WEAK_ROLE], strong_records, settings
    )
    primary = _primary(settings)
    by_receiver: dict[tuple[str, str], list[FractionResult]] = {}
    for row in received:
        by_receiver.setdefault((row.receiver, row.mode), []).append(row)
    weak_rows = by_receiver.get(primary, [])

    excluded = {pid: REASONING_TRUNCATED for pid, record in strong_records.items() if record.reasoning_truncated}
    finished = _finished_problems(weak_rows, len(with_baseline(settings.get("fractions", []))))
    for problem_id in load_problem_errors(folder, run_hash if isinstance(run_hash, str) else None, finished):
        excluded[problem_id] = PROBLEM_ERROR

    fraction_set = {fraction_key(value) for value in settings.get("fractions", [])}
    fraction_set.update(row.fraction for _, row in ordered)
    return RunResults(
        run_dir=folder,
        settings=settings,
        fractions=with_baseline(sorted(fraction_set)),
        n_samples=_optional_int(settings.get("n_samples")),
        thresholds=thresholds,
        weak_rows=tuple(weak_rows),
        strong_rows=tuple(row for (role, *_), row in ordered if role == STRONG_ROLE),
        strong_records=strong_records,
        ignored=IgnoredLines(
            truncated=truncated + strong_truncated, other_settings=other_settings, superseded=superseded
        ),
        excluded=excluded,
        answer_in_prefix_judged=judged,
        receiver_rows={key: tuple(value) for key, value in by_receiver.items()},
        primary=primary,
    )


def _primary(settings: Mapping[str, Any]) -> tuple[str, str]:
    """The (receiver, mode) whose rows are the run's weak rows (``receivers.primary_key``)."""
    receivers = [str(name) for name in settings.get("receivers") or ()]
    modes = [str(mode) for mode in settings.get("modes") or ()]
    if not receivers:
        return "", FREE if FREE in modes or not modes else modes[0]
    return primary_key(receivers, modes, [str(settings.get("weak_model") or "")])


def _finished_problems(rows: list[FractionResult], fractions: int) -> set[str]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.problem_id] = counts.get(row.problem_id, 0) + 1
    return {pid for pid, count in counts.items() if count >= fractions}
