"""The files researchers keep datasets in, read record by record with each record's position.

* JSONL (``.jsonl``, ``.ndjson``, and any other name): one JSON object per line, blank lines
  skipped; a ``.json`` file that does not start with ``[`` is JSONL too, as Hugging Face's
  ``to_json`` writes it;
* a JSON array (``.json``): each element's line is found, for errors that point at it;
* CSV (``.csv``): a header row, then one record per row; an empty cell is a missing value;
* parquet (``.parquet``, ``.pq``) and Arrow (``.arrow``) files;
* a folder written by Hugging Face ``datasets``' ``save_to_disk``: read with
  ``datasets.load_from_disk`` when that package is installed, else straight from its Arrow files
  (``state.json`` lists them). A ``DatasetDict`` folder with several splits needs the split's
  own folder.

Nothing is ever downloaded.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


class DatasetError(ValueError):
    """A dataset file or one of its records is malformed."""

    def __init__(self, path: Path, line_number: int | None, message: str, *, row: int | None = None) -> None:
        if line_number is not None:
            location = f"{path}:{line_number}"
        elif row is not None:
            location = f"{path}: row {row}"
        else:
            location = str(path)
        super().__init__(f"{location}: {message}")
        self.path = path
        self.line_number = line_number
        self.row = row


@dataclass(frozen=True)
class Position:
    """Where a record is: its 1-based place among the records, and its line where a text file has one."""

    row: int
    line: int | None = None
    # JSONL records have always been numbered by line (blank lines count); the rest by row.
    numbered_by_line: bool = False

    @property
    def default_id(self) -> str:
        return str(self.line if self.numbered_by_line and self.line is not None else self.row)

    def error(self, path: Path, message: str) -> DatasetError:
        return DatasetError(path, self.line, message, row=None if self.line is not None else self.row)

    def describe(self) -> str:
        return f"line {self.line}" if self.line is not None else f"row {self.row}"


Record = tuple[Position, Any]

_DATASET_STATE = "state.json"
_DATASET_DICT = "dataset_dict.json"


def read_records(path: Path) -> Iterator[Record]:
    """Each record of the file or folder at ``path`` with its position; raises ``DatasetError``."""
    if not path.exists():
        raise DatasetError(path, None, "no such file or folder")
    if path.is_dir():
        yield from _read_saved_dataset(path)
        return
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        yield from _read_parquet(path)
    elif suffix == ".arrow":
        yield from _read_table_rows(path, _read_arrow_file(path))
    elif suffix == ".csv":
        yield from _read_csv(path)
    elif suffix == ".json" and _text(path).lstrip().startswith("["):
        yield from _read_json_array(path)
    else:
        yield from _read_jsonl(path)


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DatasetError(path, line, f"not UTF-8 text ({error.reason})") from error


def _read_jsonl(path: Path) -> Iterator[Record]:
    row = 0
    for line_number, raw_line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw_line.decode("utf-8-sig" if line_number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise DatasetError(path, line_number, f"not UTF-8 text ({error.reason})") from error
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(path, line_number, f"bad JSON: {error.msg} at column {error.colno}") from error
        row += 1
        yield Position(row, line_number, numbered_by_line=True), value


def _read_json_array(path: Path) -> Iterator[Record]:
    text = _text(path)
    decoder = json.JSONDecoder()

    def line_at(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    def skip_space(offset: int) -> int:
        while offset < len(text) and text[offset] in " \t\r\n":
            offset += 1
        return offset

    offset = skip_space(0) + 1  # past the "["
    row = 0
    while True:
        offset = skip_space(offset)
        if offset < len(text) and text[offset] == "]" and row == 0:
            break
        try:
            value, end = decoder.raw_decode(text, offset)
        except json.JSONDecodeError as error:
            raise DatasetError(path, error.lineno, f"bad JSON: {error.msg} at column {error.colno}") from error
        row += 1
        yield Position(row, line_at(offset)), value
        offset = skip_space(end)
        if offset < len(text) and text[offset] == ",":
            offset += 1
        elif offset < len(text) and text[offset] == "]":
            break
        else:
            raise DatasetError(path, line_at(offset), 'bad JSON: expected "," or "]" after a record')
    if skip_space(offset + 1) != len(text):
        raise DatasetError(path, line_at(offset + 1), "bad JSON: text after the closing ]")


def _read_csv(path: Path) -> Iterator[Record]:
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise DatasetError(path, reader.line_num, f"bad CSV: {error}") from error
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DatasetError(path, 1, f"the header names a column twice: {', '.join(duplicates)}")
    row = 0
    previous_end = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DatasetError(path, reader.line_num, f"bad CSV: {error}") from error
        line, previous_end = previous_end + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            raise DatasetError(path, line, f"{len(cells)} cells, but the header names {len(header)} columns")
        row += 1
        padded = cells + [""] * (len(header) - len(cells))
        yield Position(row, line), {name: cell or None for name, cell in zip(header, padded, strict=True)}


def _read_parquet(path: Path) -> Iterator[Record]:
    # pyarrow is imported for the files that need it: reading JSONL or CSV does without.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise DatasetError(path, None, f"not a parquet file: {error}") from error
    row = 0
    for batch in file.iter_batches(batch_size=1024):
        for value in batch.to_pylist():
            row += 1
            yield Position(row), value


def _read_arrow_file(path: Path) -> pa.Table:
    """An Arrow IPC stream (what ``datasets`` writes) or an Arrow IPC file."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).read_all()
    except (pa.ArrowInvalid, OSError):
        pass
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as error:
        raise DatasetError(path, None, f"not an Arrow file: {error}") from error


def _read_table_rows(path: Path, table: pa.Table, start: int = 0) -> Iterator[Record]:
    row = start
    for batch in table.to_batches(max_chunksize=1024):
        for value in batch.to_pylist():
            row += 1
            yield Position(row), value


def _read_saved_dataset(folder: Path) -> Iterator[Record]:
    if (folder / _DATASET_DICT).is_file():
        splits = _json_file(folder / _DATASET_DICT).get("splits")
        if not isinstance(splits, list) or not splits:
            raise DatasetError(folder / _DATASET_DICT, None, 'must list its "splits"')
        if len(splits) > 1:
            raise DatasetError(
                folder,
                None,
                f"a dataset with the splits {', '.join(map(str, splits))}:"
                f" give the folder of one, e.g. {folder / str(splits[0])}",
            )
        folder = folder / str(splits[0])
    if not (folder / _DATASET_STATE).is_file():
        raise DatasetError(
            folder, None, f"not a folder written by datasets' save_to_disk (no {_DATASET_STATE} or {_DATASET_DICT})"
        )
    load_from_disk = _installed_load_from_disk()
    if load_from_disk is not None:
        for row, value in enumerate(load_from_disk(str(folder)), start=1):
            yield Position(row), value
        return
    files = _json_file(folder / _DATASET_STATE).get("_data_files")
    if not isinstance(files, list) or not all(isinstance(entry, dict) and "filename" in entry for entry in files):
        raise DatasetError(folder / _DATASET_STATE, None, 'must list its Arrow files under "_data_files"')
    row = 0
    for entry in files:
        table = _read_arrow_file(folder / str(entry["filename"]))
        for position, value in _read_table_rows(folder, table, start=row):
            row = position.row
            yield position, value


def _installed_load_from_disk() -> Any:
    """``datasets.load_from_disk`` when Hugging Face ``datasets`` is installed, else None.

    A folder named ``datasets`` on the path (this repository has one) imports as an empty
    namespace package, so the function itself is looked for.
    """
    try:
        module = importlib.import_module("datasets")
    except ImportError:
        return None
    return getattr(module, "load_from_disk", None)


def _json_file(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(_text(path))
    except json.JSONDecodeError as error:
        raise DatasetError(path, error.lineno, f"bad JSON: {error.msg} at column {error.colno}") from error
    if not isinstance(value, dict):
        raise DatasetError(path, None, "must hold a JSON object")
    return value
