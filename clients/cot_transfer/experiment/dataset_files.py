"""Dataset files, folders and Hub ids read with Hugging Face ``datasets``, record by record with
each record's position: its row, and in a JSON file its line, which ``datasets`` does not name."""

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
        return str(self.line or self.row)

    def error(self, path: Path, message: str) -> DatasetError:
        return DatasetError(path, self.line, message, row=self.row)

    def describe(self) -> str:
        return f"line {self.line}" if self.line else f"row {self.row}"


# The ``load_dataset`` builder of each suffix; any other file is JSON or JSONL.
_LOADER = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".arrow": "arrow", ".json": "json", ".jsonl": "json"}


def is_hub_id(source: str | Path) -> bool:
    """``org/name`` without a data file's suffix: a Hub dataset, not a missing local file."""
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", str(source))) and Path(source).suffix.lower() not in _LOADER


def read_records(
    source: str | Path, *, split: str | None = None, revision: str | None = None
) -> Iterator[tuple[Position, Any]]:
    """Each record of the file, folder or Hub dataset ``source`` with its position; raises ``DatasetError``."""
    # Any: mypy takes this repository's datasets/ folder for the package.
    datasets: Any = importlib.import_module("datasets")
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    path = Path(source)
    builder = _LOADER.get(path.suffix.lower(), "json")
    chunks = _json_chunks(path) if path.is_file() and builder == "json" else []
    try:
        if path.is_file() and not path.read_bytes().strip(b" \t\r\n[]"):
            records = []  # datasets refuses an empty file; the caller says it holds no problems
        elif (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            records = _saved(datasets, path, split)
        elif path.exists() or is_hub_id(source):
            records = _load(datasets, path, builder, split, revision)
        else:
            raise DatasetError(path, None, "no such file or folder")
    except DatasetError:
        raise
    except Exception as error:  # datasets wraps what failed (pyarrow, pandas, the Hub) in its own errors
        raise _explained(path, chunks, error) from error
    lines = [number for number, _ in chunks if number]
    for row, record in enumerate(records, start=1):
        yield Position(row, lines[row - 1] if lines else None), record


def _load(datasets: Any, path: Path, builder: str, split: str | None, revision: str | None) -> list[dict[str, Any]]:
    """A file, a dataset repository folder (data files and a README) or a Hub id through ``load_dataset``."""
    options: dict[str, Any] = {"path": builder, "data_files": str(path)} if path.is_file() else {"path": str(path)}
    if builder == "csv" and path.is_file():
        with path.open(encoding="utf-8-sig", newline="") as stream:
            header = next(csv.reader(stream), [])
        if twice := sorted({name for name in header if header.count(name) > 1}):
            raise DatasetError(path, 1, f"the header names a column twice: {', '.join(twice)}")
        # Text as written: "007" is no 7, and an answer column is not a number column.
        options.update(features=datasets.Features({name: datasets.Value("string") for name in header}), index_col=False)
    # A local source is prepared in a temporary cache, removed after reading; a Hub id uses the Hub's cache.
    with tempfile.TemporaryDirectory(prefix="cot-transfer-datasets-") as cache, warnings.catch_warnings():
        # pandas drops a first row's extra cells with only a warning.
        warnings.filterwarnings("error", "Length of header or names does not match")
        local = {"cache_dir": cache} if path.exists() else {"revision": revision}
        return list(datasets.load_dataset(split=split or "train", **options, **local).to_list())


def _saved(datasets: Any, folder: Path, split: str | None) -> list[dict[str, Any]]:
    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.DatasetDict):
        if split is None and len(loaded) > 1:
            raise DatasetError(folder, None, f"a dataset with the splits {', '.join(loaded)}: choose one with --split")
        if split is not None and split not in loaded:
            raise DatasetError(folder, None, f"no split {split!r}; it has {', '.join(loaded)}")
        loaded = loaded[split or next(iter(loaded))]
    return list(loaded.to_list())


def _json_chunks(path: Path) -> list[tuple[int, str]]:
    """A JSONL file's records as (line number, text), blank lines skipped; a JSON array as (0, all of it)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(path, data[: error.start].count(b"\n") + 1, f"not UTF-8 text ({error.reason})") from None
    if text.lstrip().startswith("["):
        return [(0, text)]
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _explained(path: Path, chunks: list[tuple[int, str]], error: Exception) -> DatasetError:
    """``error`` from ``datasets``, pointed at the line that caused it where a JSON file has one."""
    if not path.exists():
        return DatasetError(path, None, f"no such file or folder, nor a dataset in the Hugging Face cache ({error})")
    for number, text in chunks:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as bad:
            return DatasetError(path, number or bad.lineno, f"bad JSON: {bad.msg} at column {bad.colno}")
        if not isinstance(value, dict | list) or (number and isinstance(value, list)):
            return DatasetError(path, number or None, f"a record must be a JSON object, got {type(value).__name__}")
    kind = _LOADER.get(path.suffix.lower(), "json") if path.is_file() else "a dataset"
    return DatasetError(path, None, f"cannot be read as {kind}: {error.__cause__ or error.__context__ or error}")
