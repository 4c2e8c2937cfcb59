"""Dataset files through Hugging Face ``datasets``: JSON arrays, CSV, parquet, Arrow, save_to_disk
folders, local dataset repositories and Hub ids from a cache the test builds; positions in errors."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cot_transfer.experiment.datasets import DatasetError, DatasetOptions, load_problems

SAMPLES = Path(__file__).resolve().parents[2] / "datasets" / "formats"


# (file name, text, message, row, line): what a malformed file is refused with, and where: a
# record's row, or the line where the text itself breaks.
MALFORMED_FILES: list[tuple[str, str, str, int | None, int | None]] = [
    (
        "p.json",
        '[\n  {"problem": "a", "answer": "1"},\n\n  {"problem": "b"}\n]\n',
        r'p\.json: row 2: missing field "answer"',
        2,
        None,
    ),
    ("p.json", "[ ]", "contains no problems", None, None),
    ("p.json", '[{"problem": "a", "answer": "1"},]', "bad JSON", None, 1),
    (
        "p.json",
        '[{"problem": "a", "answer": "1"}\n {"problem": "b", "answer": "2"}]',
        "Expecting ',' delimiter",
        None,
        2,
    ),
    ("p.json", '[{"problem": "a", "answer": "1"}] trailing', "Extra data", None, 1),
    # a quoted newline stays inside its record, so the second record is row 2
    (
        "p.csv",
        'id,problem,answer,level\nx,"two\nlines",1,3\n\ny,second,,4\n',
        r'p\.csv: row 2: missing field "answer"',
        2,
        None,
    ),
    ("p.csv", "problem,answer,problem\nq,1,r\n", "names a column twice: problem", None, 1),
    ("p.csv", "problem,answer\nq,1,extra\n", "Length of header or names does not match", None, None),
    ("p.csv", "problem,answer\nq,1\nr,2,extra\n", "Expected 2 fields in line 3, saw 3", None, None),
    ("p.parquet", "problem,answer\n", "cannot be read as parquet", None, None),
]


@pytest.mark.parametrize(("name", "text", "message", "row", "line"), MALFORMED_FILES)
def test_malformed_files_are_refused_at_their_position(
    tmp_path: Path, name: str, text: str, message: str, row: int | None, line: int | None
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as caught:
        load_problems(path)
    assert (caught.value.row, caught.value.line_number) == (row, line)


def test_json_array_ids_are_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"}], indent=4))
    assert [problem.id for problem in load_problems(path)] == ["1", "2"]


def test_a_json_file_of_lines_is_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "to_json.json"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": "2"}\n', encoding="utf-8")
    assert [problem.problem for problem in load_problems(path)] == ["a", "b"]


def test_csv_cells_stay_text_as_written(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,problem,answer,level\n1,q,007,3\n2,r,0.50,\n", encoding="utf-8")
    assert [(p.id, p.answer, p.metadata) for p in load_problems(path)] == [
        ("1", "007", {"level": "3"}),
        ("2", "0.50", {}),
    ]


def test_csv_empty_cells_are_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("problem,answer,solution,level\nq,,so \\boxed{5},\n", encoding="utf-8")
    [problem] = load_problems(path)
    assert (problem.id, problem.answer, problem.metadata) == ("1", "5", {"solution": "so \\boxed{5}"})


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
    assert problems[0].metadata == {"level": 1, "added": "2024-05-01T00:00:00"}  # NaN: no value


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"problem": ["a", "b"], "answer": ["1", None]}), path)
    with pytest.raises(DatasetError, match=r'p\.parquet: row 2: missing field "answer"') as caught:
        load_problems(path)
    assert caught.value.row == 2 and caught.value.line_number is None


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


def _saved(folder: Path, splits: dict[str, list[dict[str, Any]]]) -> Path:
    datasets = pytest.importorskip("datasets")
    saved = datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})
    (saved["test"] if list(splits) == ["test"] else saved).save_to_disk(str(folder))
    return folder


def test_a_save_to_disk_folder_is_read_with_load_from_disk(tmp_path: Path) -> None:
    folder = _saved(
        tmp_path / "saved", {"test": [{"problem": f"p{index}", "answer": str(index)} for index in range(5)]}
    )
    assert [problem.id for problem in load_problems(folder)] == ["1", "2", "3", "4", "5"]


def test_a_dataset_dict_folder_with_one_split_reads_it_and_with_several_asks_for_one(tmp_path: Path) -> None:
    one = _saved(tmp_path / "one", {"validation": [{"problem": "a", "answer": "1"}]})
    assert [problem.problem for problem in load_problems(one)] == ["a"]
    several = _saved(
        tmp_path / "several", {"train": [{"problem": "b", "answer": "2"}], "test": [{"problem": "c", "answer": "3"}]}
    )
    with pytest.raises(DatasetError, match="the splits train, test: choose one with --split"):
        load_problems(several)
    assert [problem.problem for problem in load_problems(several, DatasetOptions(split="test"))] == ["c"]
    with pytest.raises(DatasetError, match="no split 'dev'; it has train, test"):
        load_problems(several, DatasetOptions(split="dev"))


def test_a_local_dataset_repository_folder_reads_the_split_asked_for(tmp_path: Path) -> None:
    repo = tmp_path / "repo" / "data"
    repo.mkdir(parents=True)
    (repo / "train.jsonl").write_text(json.dumps({"problem": "t", "answer": "1"}) + "\n", encoding="utf-8")
    (repo / "test.jsonl").write_text(json.dumps({"problem": "s", "answer": "2"}) + "\n", encoding="utf-8")
    assert [problem.problem for problem in load_problems(repo.parent, DatasetOptions(split="test"))] == ["s"]
    assert [problem.problem for problem in load_problems(repo.parent)] == ["t"]


def test_a_folder_that_holds_no_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=f"{tmp_path}: cannot be read as a dataset"):
        load_problems(tmp_path)


def _hub_cache(cache: Path, repo_id: str, splits: dict[str, list[dict[str, Any]]]) -> None:
    """What ``load_dataset(repo_id)`` leaves in ``HF_DATASETS_CACHE`` after one online load:
    ``{namespace}___{name}/{config}/{version}/{hash}/`` with each split's Arrow file and
    ``dataset_info.json``, which ``datasets`` reads back offline."""
    datasets = pytest.importorskip("datasets")
    namespace, name = repo_id.split("/")
    target = cache / f"{namespace}___{name}" / "default" / "0.0.0" / "0123456789abcdef"
    target.mkdir(parents=True)
    info = datasets.DatasetInfo(dataset_name=name, config_name="default")
    info.splits = datasets.SplitDict()
    for split, rows in splits.items():
        table = datasets.Dataset.from_list(rows).data.table
        with (
            pa.OSFile(str(target / f"{name}-{split}.arrow"), "wb") as sink,
            pa.ipc.new_stream(sink, table.schema) as out,
        ):
            out.write_table(table)
        info.splits.add(datasets.SplitInfo(name=split, num_examples=len(rows)))
        info.features = datasets.Features.from_arrow_schema(table.schema)
    info.write_to_directory(str(target))


@pytest.fixture
def offline_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    datasets = pytest.importorskip("datasets")
    cache = tmp_path / "hf-datasets"
    # datasets reads its environment once, at import: set both the variables and what it read.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def test_a_hub_id_is_read_offline_from_the_local_cache_with_its_split(offline_hub_cache: Path) -> None:
    _hub_cache(
        offline_hub_cache,
        "ct-org/tiny-math",
        {
            "test": [{"unique_id": "test/a.json", "problem": "one", "answer": "1", "level": 2}],
            "train": [{"unique_id": "train/b.json", "problem": "two", "answer": "2", "level": 3}],
        },
    )
    [test] = load_problems("ct-org/tiny-math", DatasetOptions(split="test", revision="main"))
    assert (test.id, test.answer, test.metadata) == ("test/a.json", "1", {"level": 2})
    [train] = load_problems("ct-org/tiny-math")
    assert train.id == "train/b.json"


def test_a_hub_id_missing_from_the_cache_is_an_error_offline(offline_hub_cache: Path) -> None:
    with pytest.raises(
        DatasetError, match="ct-org/absent: no such file or folder, nor a dataset in the Hugging Face cache"
    ):
        load_problems("ct-org/absent")


def test_reading_local_files_leaves_no_cache_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    cache = tmp_path / "hf-datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    path = tmp_path / "data" / "p.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"problem": "a", "answer": "1"}) + "\n", encoding="utf-8")
    assert len(load_problems(path)) == 1
    assert not cache.exists() and sorted(item.name for item in path.parent.iterdir()) == ["p.jsonl"]


def test_jsonl_fields_may_mix_types_across_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    lines = [{"problem": "a", "answer": "1/2", "tag": {"k": 1}}, {"problem": "b", "answer": 2, "tag": [1]}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert [(p.answer, p.metadata) for p in load_problems(path)] == [("1/2", {"tag": {"k": 1}}), ("2", {"tag": [1]})]


@pytest.mark.parametrize("name", ["missing.jsonl", "data/missing.csv", "./org/name"])
def test_a_missing_file_is_no_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=r": no such file or folder$"):
        load_problems(name)
