"""Problem datasets: the files researchers already have, as ``Problem``s with their own ids.

``load_problems`` reads what ``dataset_files`` reads through Hugging Face ``datasets`` (JSONL,
JSON arrays, CSV, parquet, Arrow, a ``save_to_disk`` folder, a local dataset repository, a Hub id
from the local cache) in any format ``dataset_formats`` knows (generic, MATH/MATH-500, AIME,
GSM8K, AMC/OlympiadBench). The format is recognised from the first record's fields unless
chosen, and every record must fit it; command-line field names map any other file. Every field
that is not the id, the problem or the answer is kept as the problem's metadata (level, subject,
year, ...), which goes into the results folder. Ids are unique; a record without one is numbered
by its line (JSONL) or row (the other files).

A malformed, ambiguous or unknown record raises ``DatasetError`` naming the file, the line (or
row) and what is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.dataset_files import DatasetError, Position, read_records
from cot_transfer.experiment.dataset_formats import (
    FORMAT_NAMES,
    FORMATS,
    RecordError,
    RecordFormat,
    detect_format,
)
from cot_transfer.experiment.selection import Selection, SelectionError, read_ids, select

__all__ = [
    "DATASET_OPTIONS",
    "DEFAULT_GROUP_FIELDS",
    "RUN_PROBLEMS_FILE",
    "DatasetError",
    "DatasetOptions",
    "Problem",
    "Selection",
    "SelectionError",
    "add_dataset_arguments",
    "choose",
    "dataset_options_from_args",
    "load_problems",
    "load_run_problems",
    "problem_to_json",
    "save_run_problems",
    "write_problems",
]

# A results folder's copy of its problems, as generic JSONL.
RUN_PROBLEMS_FILE = "problems.jsonl"

# The fields a problem's ``metadata`` is grouped by when no field is named.
DEFAULT_GROUP_FIELDS = ("level", "subject")


class DatasetOptions(BaseModel):
    """How to read a dataset: its format (``auto``: from the first record's fields), the fields
    that hold the id, the problem and the answer when they are not the format's own, and the
    metadata fields the report breaks results down by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["auto", "generic", "math", "aime", "gsm8k", "olympiad"] = "auto"
    id_field: str | None = None
    problem_field: str | None = None
    answer_field: str | None = None
    group_by: tuple[str, ...] = ()
    # A Hub dataset's (or a folder's) split and revision; a local file has one split.
    split: str | None = None
    revision: str | None = None
    # Which of the problems the run uses (``selection``): recorded in run.json with the rest.
    selection: Selection = Selection()

    @property
    def names_fields(self) -> bool:
        return any((self.id_field, self.problem_field, self.answer_field))


def load_problems(path: str | Path, options: DatasetOptions | None = None) -> list[Problem]:
    """The problems of a dataset file or folder, in file order; raises ``DatasetError``."""
    source = Path(path)
    options = options or DatasetOptions()
    chosen: RecordFormat | None = None if options.format == "auto" else FORMATS[options.format]
    detected_at: Position | None = None
    problems: list[Problem] = []
    first_place_of_id: dict[str, Position] = {}
    for position, raw in read_records(path, split=options.split, revision=options.revision):
        if not isinstance(raw, dict):
            raise position.error(source, f"a record must be a JSON object, got {type(raw).__name__}")
        try:
            if chosen is None:
                chosen, detected_at = detect_format(raw, fields_named=options.names_fields), position
            record_format = chosen.mapped(
                id_field=options.id_field, problem_field=options.problem_field, answer_field=options.answer_field
            )
            record_id, text, answer, metadata = record_format.parse(raw)
        except RecordError as error:
            reading = f" (reading as {chosen.name}" if chosen is not None else ""
            if reading:
                reading += f", recognised at {detected_at.describe()})" if detected_at is not None else ")"
            raise position.error(source, f"{error}{reading}") from None
        problem = Problem(record_id or position.default_id, text, answer, metadata)
        if problem.id in first_place_of_id:
            raise position.error(
                source, f"duplicate id {problem.id!r} (first used on {first_place_of_id[problem.id].describe()})"
            )
        first_place_of_id[problem.id] = position
        problems.append(problem)
    if not problems:
        raise DatasetError(source, None, "contains no problems")
    return problems


def choose(problems: Sequence[Problem], options: DatasetOptions) -> list[Problem]:
    """The problems ``options.selection`` chooses, stratified by ``options.group_by``; raises ``SelectionError``."""
    return select(problems, options.selection, options.group_by)


def problem_to_json(problem: Problem) -> dict[str, Any]:
    """The generic record of ``problem``, which ``load_problems`` reads back unchanged."""
    record: dict[str, Any] = {"id": problem.id, "problem": problem.problem, "answer": problem.answer}
    if problem.metadata:
        record["metadata"] = dict(problem.metadata)
    if problem.cot is not None:  # an imported CoT (``imported_cots`` reads it back)
        record["cot"] = problem.cot
        record["cot_format"] = problem.cot_format
    return record


def write_problems(problems: Iterable[Problem], path: str | Path) -> int:
    """Writes ``problems`` as generic JSONL that ``load_problems`` reads back unchanged; returns
    the count. The file appears complete or not at all (written to a temporary file, then renamed).
    """
    target = Path(path)
    lines: list[str] = []
    seen: set[str] = set()
    for problem in problems:
        if problem.id in seen:
            raise DatasetError(target, None, f"duplicate id {problem.id!r} among the problems to write")
        seen.add(problem.id)
        lines.append(json.dumps(problem_to_json(problem), ensure_ascii=False, allow_nan=False))
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write("".join(f"{line}\n" for line in lines))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(lines)


def save_run_problems(out_dir: Path, problems: Sequence[Problem]) -> None:
    """Keeps the run's problems, metadata included, in its results folder (once: a resumed run
    has the same problems, the settings hash says so)."""
    path = out_dir / RUN_PROBLEMS_FILE
    if not path.exists():
        write_problems(problems, path)


def load_run_problems(out_dir: Path) -> list[Problem] | None:
    """The problems a results folder keeps, or None for a folder written before it kept them.

    The folder's own file is read with Python's ``json``, not through ``datasets``: a resume hashes
    these problems against the ones the run started with, so every value must come back exactly
    as ``write_problems`` wrote it, and Arrow's JSON reader returned nested floats one unit in the
    last place off (0.0583 read back as 0.058300000000000005), which refused every resume."""
    path = out_dir / RUN_PROBLEMS_FILE
    if not path.is_file():
        return None
    problems = []
    with path.open(encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record_id, text, answer, metadata = FORMATS["generic"].parse(json.loads(line))
            except (ValueError, RecordError) as error:
                raise DatasetError(path, line_number, f"{error} (the folder's copy: changed by hand?)") from None
            problem = Problem(record_id or str(line_number), text, answer, metadata)
            problems.append(problem)
    return problems


# --------------------------------------------------------------------------- command line

# Options of ``add_dataset_arguments``, as argparse names them; ``run --resume`` refuses them,
# since the folder holds its problems.
DATASET_OPTIONS = (
    "format",
    "id_field",
    "problem_field",
    "answer_field",
    "split",
    "revision",
    "sample",
    "ids",
    "group_by",
)


def _field_names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("name at least one field")
    return names


def _ids(text: str) -> tuple[str, ...]:
    try:
        return read_ids(text)
    except (SelectionError, OSError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def add_dataset_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, reading: bool = True) -> None:
    """``--format`` and the field names of a dataset (``reading``), and ``--group-by``."""
    if reading:
        parser.add_argument(
            "--format",
            choices=("auto", *FORMAT_NAMES),
            help="record format of --problems (default auto: recognised from the first record's fields)",
        )
        parser.add_argument("--id-field", help="field that holds each problem's id")
        parser.add_argument("--problem-field", help="field that holds each problem's text")
        parser.add_argument("--answer-field", help="field that holds each problem's reference answer")
        parser.add_argument(
            "--split", help="split of a Hub dataset or a folder of several (default: train, or a folder's only split)"
        )
        parser.add_argument(
            "--revision",
            help="revision of a Hub dataset (offline, with HF_DATASETS_OFFLINE=1, the copy in the local cache)",
        )
        parser.add_argument(
            "--sample",
            type=_positive,
            metavar="K",
            help="a seeded sample of K problems (--seed, default 0), stratified by --group-by when given",
        )
        parser.add_argument(
            "--ids",
            type=_ids,
            metavar="FILE|LIST",
            help="only these problem ids: a file with one a line, or a comma-separated list",
        )
    parser.add_argument(
        "--group-by",
        type=_field_names,
        help="comma-separated metadata fields to break results down by (default: level and subject, when present)",
    )


def dataset_options_from_args(args: argparse.Namespace) -> DatasetOptions:
    return DatasetOptions(
        format=getattr(args, "format", None) or "auto",
        id_field=getattr(args, "id_field", None),
        problem_field=getattr(args, "problem_field", None),
        answer_field=getattr(args, "answer_field", None),
        group_by=getattr(args, "group_by", None) or (),
        split=getattr(args, "split", None),
        revision=getattr(args, "revision", None),
        selection=Selection(
            ids=getattr(args, "ids", None) or (),
            sample=getattr(args, "sample", None),
            seed=getattr(args, "seed", None) or 0,
            limit=getattr(args, "limit", None),
        ),
    )
