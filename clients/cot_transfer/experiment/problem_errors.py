"""The problems a run could not run, as the results folder keeps them (``errors.jsonl``).

One line per ProblemError the service sent (or a Complete the client could not make), with the
run's settings hash like every other row. A permanent error (OUT_OF_RANGE, INVALID_ARGUMENT) is
final: a resumed run keeps it and does not run the problem again. A transient one counts only
while its problem is unfinished: a resume runs the problem again, and once all its rows are on
disk the old error no longer applies.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from cot_transfer.domain.requests import ProblemError

ERRORS_FILE = "errors.jsonl"


def error_record(error: ProblemError, run_hash: str) -> dict[str, object]:
    return {
        "problem_id": error.problem_id,
        "code": error.code,
        "message": error.message,
        "permanent": error.permanent,
        "settings_hash": run_hash,
    }


def load_problem_errors(run_dir: Path, run_hash: str | None, finished: Collection[str] = ()) -> dict[str, ProblemError]:
    """The errors that stand, by problem id: a permanent error always (the first one wins: it is
    final), a transient one unless its problem is in ``finished``, and only for ``run_hash``
    when given. Lines cut off by a crash are skipped."""
    path = run_dir / ERRORS_FILE
    if not path.is_file():
        return {}
    errors: dict[str, ProblemError] = {}
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.endswith("\n") or not line.strip():
            continue
        raw = json.loads(line)
        if run_hash and raw.get("settings_hash") != run_hash:
            continue
        error = ProblemError(problem_id=str(raw["problem_id"]), code=str(raw["code"]), message=str(raw["message"]))
        standing = errors.get(error.problem_id)
        if standing is not None and standing.permanent:
            continue
        errors[error.problem_id] = error
    return {pid: error for pid, error in errors.items() if error.permanent or pid not in finished}
