"""Dataset files read with Hugging Face ``datasets``, record by record with each record's position:
a file by its suffix (``load_dataset("json" | "csv" | "parquet" | "arrow", data_files=...)``; CSV
cells stay text), a ``save_to_disk`` folder (``load_from_disk``), a local dataset repository folder,
or a Hub id with a split and revision (offline, ``HF_DATASETS_OFFLINE=1``: from the local cache).
Local sources are prepared in a temporary cache, removed after reading; a JSON line that does not
parse is found again here to name its line, as ``datasets`` names only the file.
"""

from __future__ import annotations

import csv
import importlib
import json
import re
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DatasetError(ValueError):
    """A dataset file or one of its records is malformed."""

    def __init__(self, path: Path, line_number: int | None, message: str, *, row: int | None = None) -> None:
        location = f"{path}:{line_number}" if line_number else f"{path}: row {row}" if row else str(path)
        super().__init__(f"{location}: {message}")
        self.path, self.line_number, self.row = path, line_number, row


@dataclass(frozen=True)
class Position:
    """A record's 1-based place among the records, and its line in a JSONL file (blank lines count)."""

    row: int
    line: int | None = None

    @property
    def default_id(self) -> str:
        return str(self.line if self.line is not None else self.row)

    def error(self, path: Path, message: str) -> DatasetError:
        return DatasetError(path, self.line, message, row=None if self.line is not None else self.row)

    def describe(self) -> str:
        return f"line {self.line}" if self.line is not None else f"row {self.row}"


_BUILDERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".arrow": "arrow"}


def read_records(
    source: str | Path, *, split: str | None = None, revision: str | None = None
) -> Iterator[tuple[Position, Any]]:
    """Each record of the file, folder or Hub dataset ``source`` with its position; raises ``DatasetError``."""
    # Any: mypy takes this repository's datasets/ folder for the package.
    datasets: Any = importlib.import_module("datasets")
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    path = Path(source)
    try:
        if path.is_file() and not path.read_bytes().strip(b" \t\r\n[]"):
            records = []  # datasets refuses an empty file; the caller says it holds no problems
        elif path.exists():
            with tempfile.TemporaryDirectory(prefix="cot-transfer-datasets-") as cache:
                records = _folder(datasets, path, split, cache) if path.is_dir() else _file(datasets, path, cache)
        elif is_hub_id(source):
            records = datasets.load_dataset(str(source), split=split or "train", revision=revision).to_list()
        else:
            raise DatasetError(path, None, "no such file or folder")
    except DatasetError:
        raise
    except Exception as error:  # datasets wraps what failed (pyarrow, pandas, the Hub) in its own errors
        raise _explained(path, error) from error
    lines = _record_lines(path) if _builder(path) == "json" and path.is_file() else None
    for row, record in enumerate(records, start=1):
        yield Position(row, lines[row - 1] if lines else None), record


def is_hub_id(source: str | Path) -> bool:
    """``org/name`` without a data file's suffix: a Hub dataset, not a missing local file."""
    suffix = Path(source).suffix.lower()
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", str(source))) and suffix not in (*_BUILDERS, ".json", ".jsonl")


def _builder(path: Path) -> str:
    return _BUILDERS.get(path.suffix.lower(), "json")


def _file(datasets: Any, path: Path, cache: str) -> list[dict[str, Any]]:
    import pandas

    options: dict[str, Any] = {}
    if _builder(path) == "csv":
        with path.open(encoding="utf-8-sig", newline="") as stream:
            header = next(csv.reader(stream), [])
        if len(set(header)) < len(header):
            twice = sorted({name for name in header if header.count(name) > 1})
            raise DatasetError(path, 1, f"the header names a column twice: {', '.join(twice)}")
        # Text as written: "007" is no 7, and an answer column is not a number column.
        features = datasets.Features({name: datasets.Value("string") for name in header})
        options = {"features": features, "index_col": False}
    with warnings.catch_warnings():
        # pandas drops a first row's extra cells with only a warning.
        warnings.simplefilter("error", pandas.errors.ParserWarning)
        dataset = datasets.load_dataset(_builder(path), data_files=str(path), split="train", cache_dir=cache, **options)
    return list(dataset.to_list())


def _folder(datasets: Any, folder: Path, split: str | None, cache: str) -> list[dict[str, Any]]:
    if not ((folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()):
        return list(datasets.load_dataset(str(folder), split=split or "train", cache_dir=cache).to_list())
    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.DatasetDict):
        if split is None and len(loaded) > 1:
            raise DatasetError(folder, None, f"a dataset with the splits {', '.join(loaded)}: choose one with --split")
        if split is not None and split not in loaded:
            raise DatasetError(folder, None, f"no split {split!r}; it has {', '.join(loaded)}")
        loaded = loaded[split or next(iter(loaded))]
    return list(loaded.to_list())


def _record_lines(path: Path) -> list[int] | None:
    """The line of each JSONL record (blank lines skipped), or None for a JSON array."""
    text = _text(path)
    if text.lstrip().startswith("["):
        return None
    return [number for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(path, data[: error.start].count(b"\n") + 1, f"not UTF-8 text ({error.reason})") from None


def _explained(path: Path, error: Exception) -> DatasetError:
    """``error`` from ``datasets``, pointed at the line that caused it where a JSON file has one."""
    cause = error.__cause__ or error.__context__ or error
    if not path.exists():
        return DatasetError(path, None, f"no such file or folder, nor a dataset in the Hugging Face cache ({error})")
    if _builder(path) != "json" or not path.is_file():
        return DatasetError(
            path, None, f"cannot be read as {_builder(path) if path.is_file() else 'a dataset'}: {cause}"
        )
    text = _text(path)
    lines = [(0, text)] if text.lstrip().startswith("[") else list(enumerate(text.splitlines(), start=1))
    for number, line in lines:
        try:
            value = json.loads(line) if line.strip() else {}
        except json.JSONDecodeError as bad:
            return DatasetError(path, number or bad.lineno, f"bad JSON: {bad.msg} at column {bad.colno}")
        if not isinstance(value, dict | list) or (number and isinstance(value, list)):
            return DatasetError(path, number or None, f"a record must be a JSON object, got {type(value).__name__}")
    return DatasetError(path, None, f"cannot be read as JSON: {cause}")
