"""Dataset files: JSON arrays, CSV, parquet, Arrow and save_to_disk folders, with positions in errors."""

from __future__ import annotations

import datetime
import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cot_transfer.experiment.datasets import DatasetError, load_problems

SAMPLES = Path(__file__).resolve().parents[2] / "datasets" / "formats"


def test_json_array_errors_point_at_the_line_of_the_record(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('[\n  {"problem": "a", "answer": "1"},\n\n  {"problem": "b"}\n]\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r'p\.json:4: missing field "answer"'):
        load_problems(path)


def test_json_array_ids_are_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"}], indent=4))
    assert [problem.id for problem in load_problems(path)] == ["1", "2"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[{"problem": "a", "answer": "1"},]', 1, "bad JSON"),
        ('[{"problem": "a", "answer": "1"}\n {"problem": "b", "answer": "2"}]', 2, 'expected "," or "]"'),
        ('[{"problem": "a", "answer": "1"}] trailing', 1, "text after the closing"),
        ("[1]", 1, "must be a JSON object, got int"),
    ],
)
def test_malformed_json_arrays(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as caught:
        load_problems(path)
    assert caught.value.line_number == line


def test_an_empty_json_array_holds_no_problems(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text("[ ]", encoding="utf-8")
    with pytest.raises(DatasetError, match="contains no problems"):
        load_problems(path)


def test_a_json_file_of_lines_is_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "to_json.json"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": "2"}\n', encoding="utf-8")
    assert [problem.problem for problem in load_problems(path)] == ["a", "b"]


def test_csv_rows_with_quoted_newlines_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text('id,problem,answer,level\nx,"two\nlines",1,3\n\ny,second,,4\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r'p\.csv:5: missing field "answer"'):
        load_problems(path)


def test_csv_empty_cells_are_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("problem,answer,solution,level\nq,,so \\boxed{5},\n", encoding="utf-8")
    [problem] = load_problems(path)
    assert (problem.id, problem.answer, problem.metadata) == ("1", "5", {"solution": "so \\boxed{5}", "level": None})


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("problem,answer,problem\nq,1,r\n", 1, "names a column twice: problem"),
        ("problem,answer\nq,1,extra\n", 2, "3 cells, but the header names 2 columns"),
    ],
)
def test_malformed_csv(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "p.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as caught:
        load_problems(path)
    assert caught.value.line_number == line


def test_parquet_as_pandas_writes_it(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(
        {
            "unique_id": ["a/1.json", "a/2.json"],
            "problem": ["p1", "p2"],
            "answer": [3.0, 4.5],
            "level": [1, 5],
            "score": [float("nan"), 0.5],
            "added": [datetime.datetime(2024, 5, 1), datetime.datetime(2024, 5, 2)],
        }
    )
    path = tmp_path / "math.parquet"
    frame.to_parquet(path)
    problems = load_problems(path)
    assert [(problem.id, problem.answer) for problem in problems] == [("a/1.json", "3"), ("a/2.json", "4.5")]
    assert problems[0].metadata == {"level": 1, "score": None, "added": "2024-05-01T00:00:00"}


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"problem": ["a", "b"], "answer": ["1", None]}), path)
    with pytest.raises(DatasetError, match=r'p\.parquet: row 2: missing field "answer"') as caught:
        load_problems(path)
    assert caught.value.row == 2 and caught.value.line_number is None


def test_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    path.write_text("problem,answer\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="not a parquet file"):
        load_problems(path)


def test_binary_columns_such_as_images_stay_out_of_the_metadata(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    table = pa.table(
        {
            "question": ["q"],
            "final_answer": [["7"]],
            "image": [{"bytes": b"\x89PNG", "path": "a.png"}],
            "raw": [b"\x00\x01"],
        }
    )
    pq.write_table(table, path)
    [problem] = load_problems(path)
    assert problem.answer == "7"
    assert problem.metadata == {"image": {"path": "a.png"}}


def _arrow_stream(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def test_arrow_files_stream_or_file_format(tmp_path: Path) -> None:
    table = pa.table({"problem": ["a"], "answer": ["1"]})
    _arrow_stream(tmp_path / "stream.arrow", table)
    with pa.OSFile(str(tmp_path / "file.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    for name in ("stream.arrow", "file.arrow"):
        assert [problem.answer for problem in load_problems(tmp_path / name)] == ["1"]


def _saved_dataset(folder: Path, records: list[dict[str, Any]], shards: int = 1) -> Path:
    folder.mkdir(parents=True)
    names = [f"data-{index:05d}-of-{shards:05d}.arrow" for index in range(shards)]
    size = -(-len(records) // shards)
    for index, name in enumerate(names):
        _arrow_stream(folder / name, pa.Table.from_pylist(records[index * size : (index + 1) * size]))
    state = {"_data_files": [{"filename": name} for name in names], "_split": "test"}
    (folder / "state.json").write_text(json.dumps(state), encoding="utf-8")
    (folder / "dataset_info.json").write_text("{}", encoding="utf-8")
    return folder


def test_saved_dataset_shards_are_read_in_order_with_running_row_numbers(tmp_path: Path) -> None:
    records = [{"problem": f"p{index}", "answer": str(index)} for index in range(5)]
    folder = _saved_dataset(tmp_path / "saved", records, shards=2)
    assert [problem.id for problem in load_problems(folder)] == ["1", "2", "3", "4", "5"]


def test_a_dataset_dict_folder_with_one_split_reads_it_and_with_several_asks_for_one(tmp_path: Path) -> None:
    root = tmp_path / "dict"
    _saved_dataset(root / "test", [{"problem": "a", "answer": "1"}])
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["test"]}), encoding="utf-8")
    assert [problem.problem for problem in load_problems(root)] == ["a"]
    _saved_dataset(root / "train", [{"problem": "b", "answer": "2"}])
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}), encoding="utf-8")
    with pytest.raises(DatasetError, match=f"the splits train, test: give the folder of one, e.g. {root / 'train'}"):
        load_problems(root)
    assert [problem.problem for problem in load_problems(root / "train")] == ["b"]


def test_a_folder_that_is_no_saved_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder written by datasets' save_to_disk"):
        load_problems(tmp_path)


def test_saved_dataset_is_read_with_load_from_disk_when_datasets_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "saved"
    shutil.copytree(SAMPLES / "math500-saved", folder)
    asked: list[str] = []

    def load_from_disk(path: str) -> list[dict[str, Any]]:
        asked.append(path)
        return [{"unique_id": "x/1.json", "problem": "from datasets", "answer": "5"}]

    fake = types.ModuleType("datasets")
    fake.load_from_disk = load_from_disk  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    [problem] = load_problems(folder)
    assert asked == [str(folder)]
    assert (problem.id, problem.problem) == ("x/1.json", "from datasets")


def test_a_namespace_package_called_datasets_is_not_taken_for_hugging_face(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", types.ModuleType("datasets"))
    assert len(load_problems(SAMPLES / "math500-saved")) == 6
