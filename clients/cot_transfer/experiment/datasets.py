r"""Problem datasets as JSONL: one problem per line.

A record is a JSON object with

* ``problem`` (string, required);
* ``answer`` (string, or a number as AIME sets store it), or else ``solution`` (string) whose
  last ``\boxed{}`` is the answer, as in MATH;
* ``id`` (string or integer, optional): defaults to the 1-based line number; ids are unique;
* ``choices`` (list of strings, optional) for multiple-choice problems;
* ``metadata`` (object, optional). Any other field (``solution``, ``level``, ``type``, ...) is
  kept in ``metadata`` too, so nothing in the source is lost; ``metadata`` wins on a clash.

Blank lines are skipped. Any malformed record raises ``DatasetError`` naming the file, the
line and what is wrong.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cot_transfer.domain.grading import last_boxed_content

_RECORD_FIELDS = frozenset({"id", "problem", "answer", "choices", "metadata"})


class DatasetError(ValueError):
    """A dataset file or one of its records is malformed."""

    def __init__(self, path: Path, line_number: int | None, message: str) -> None:
        location = f"{path}:{line_number}" if line_number is not None else str(path)
        super().__init__(f"{location}: {message}")
        self.path = path
        self.line_number = line_number


@dataclass(frozen=True)
class ProblemRecord:
    id: str
    problem: str
    answer: str
    choices: tuple[str, ...] | None = None
    # A dict is not hashable; records hash by their other fields.
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"id": self.id, "problem": self.problem, "answer": self.answer}
        if self.choices is not None:
            record["choices"] = list(self.choices)
        if self.metadata:
            record["metadata"] = self.metadata
        return record


def load_problems(path: str | Path) -> list[ProblemRecord]:
    """The problems of a JSONL file, in file order; raises ``DatasetError`` on a bad record."""
    source = Path(path)
    records: list[ProblemRecord] = []
    first_line_of_id: dict[str, int] = {}
    for line_number, raw_line in enumerate(source.read_bytes().splitlines(), start=1):
        try:
            line = raw_line.decode("utf-8-sig" if line_number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise DatasetError(source, line_number, f"not UTF-8 text ({error.reason})") from error
        if not line.strip():
            continue
        record = _parse_record(source, line_number, line)
        if record.id in first_line_of_id:
            raise DatasetError(
                source, line_number, f"duplicate id {record.id!r} (first used on line {first_line_of_id[record.id]})"
            )
        first_line_of_id[record.id] = line_number
        records.append(record)
    if not records:
        raise DatasetError(source, None, "contains no problems")
    return records


class _RecordError(Exception):
    """What is wrong with one record; ``load_problems`` adds the file and line."""


def _parse_record(source: Path, line_number: int, line: str) -> ProblemRecord:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as error:
        raise DatasetError(source, line_number, f"bad JSON: {error.msg} at column {error.colno}") from error
    try:
        if not isinstance(raw, dict):
            raise _RecordError(f"a record must be a JSON object, got {type(raw).__name__}")
        return ProblemRecord(
            id=_record_id(raw, line_number),
            problem=_record_problem(raw),
            answer=_record_answer(raw),
            choices=_record_choices(raw),
            metadata=_record_metadata(raw),
        )
    except _RecordError as error:
        raise DatasetError(source, line_number, str(error)) from None


def _record_problem(raw: dict[str, Any]) -> str:
    problem = raw.get("problem")
    if problem is None:
        raise _RecordError('missing field "problem"')
    if not isinstance(problem, str):
        raise _RecordError(f'field "problem" must be a string, got {type(problem).__name__}')
    if not problem.strip():
        raise _RecordError('field "problem" is empty')
    return problem


def _record_id(raw: dict[str, Any], line_number: int) -> str:
    if raw.get("id") is None:
        return str(line_number)
    value = raw["id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _RecordError(f'field "id" must be a string or an integer, got {type(value).__name__}')
    text = str(value)
    if not text.strip():
        raise _RecordError('field "id" is empty')
    return text


def _record_answer(raw: dict[str, Any]) -> str:
    if raw.get("answer") is not None:
        value = raw["answer"]
        # bool is an int subclass, but true/false is no answer to a math problem.
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _RecordError(f'field "answer" must be a string or a number, got {type(value).__name__}')
        answer = str(value).strip()
        if not answer:
            raise _RecordError('field "answer" is empty')
        return answer
    solution = raw.get("solution")
    if solution is None:
        raise _RecordError('missing field "answer" (or a "solution" with a \\boxed{} answer)')
    if not isinstance(solution, str):
        raise _RecordError(f'field "solution" must be a string, got {type(solution).__name__}')
    boxed = last_boxed_content(solution)
    if not boxed:
        raise _RecordError('no "answer" field and no \\boxed{} answer in "solution"')
    return boxed


def _record_choices(raw: dict[str, Any]) -> tuple[str, ...] | None:
    value = raw.get("choices")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(choice, str) for choice in value):
        raise _RecordError('field "choices" must be a list of strings')
    if not value:
        raise _RecordError('field "choices" is empty')
    return tuple(value)


def _record_metadata(raw: dict[str, Any]) -> dict[str, Any]:
    explicit = raw.get("metadata")
    if explicit is not None and not isinstance(explicit, dict):
        raise _RecordError(f'field "metadata" must be a JSON object, got {type(explicit).__name__}')
    extra = {key: value for key, value in raw.items() if key not in _RECORD_FIELDS}
    return {**extra, **(explicit or {})}


def write_problems(records: Iterable[ProblemRecord], path: str | Path) -> int:
    """Writes ``records`` as JSONL that ``load_problems`` reads back unchanged; returns the count.

    The file appears complete or not at all (written to a temporary file, then renamed).
    """
    target = Path(path)
    lines: list[str] = []
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            raise DatasetError(target, None, f"duplicate id {record.id!r} among the records to write")
        seen.add(record.id)
        lines.append(json.dumps(record.to_json(), ensure_ascii=False))
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write("".join(f"{line}\n" for line in lines))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(lines)
