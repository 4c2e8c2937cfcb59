"""Generic JSONL records: fields, defaults, metadata, refusals with file:line, writing back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.datasets import (
    DatasetError,
    load_problems,
    load_run_problems,
    save_run_problems,
    write_problems,
)


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def as_line(record: dict[str, Any]) -> str:
    return json.dumps(record)


def test_plain_records(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "problems.jsonl",
        as_line({"id": "a", "problem": "1 + 1?", "answer": "2"}),
        "",
        as_line({"id": "b", "problem": "Pick one", "answer": "B", "choices": ["1", "2"], "metadata": {"source": "q"}}),
    )
    assert load_problems(path) == [
        Problem(id="a", problem="1 + 1?", answer="2"),
        Problem(id="b", problem="Pick one", answer="B", metadata={"choices": ["1", "2"], "source": "q"}),
    ]


def test_math_style_answer_from_the_last_box_of_the_solution(tmp_path: Path) -> None:
    solution = r"First \boxed{wrong} is not it; we get $\boxed{\frac{1}{2}}$."
    path = write_lines(
        tmp_path / "math.jsonl",
        as_line({"problem": "Half of one?", "solution": solution, "level": "Level 2", "type": "Algebra"}),
    )
    [record] = load_problems(path)
    assert record.answer == r"\frac{1}{2}"
    assert record.id == "1"
    assert record.metadata == {"solution": solution, "level": "Level 2", "type": "Algebra"}


def test_answer_field_wins_over_the_solution(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", as_line({"problem": "q", "answer": "3", "solution": r"\boxed{4}"}))
    assert load_problems(path)[0].answer == "3"


def test_integer_answer_and_integer_id(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "aime.jsonl", as_line({"id": 60, "problem": "Find N.", "answer": 204}))
    assert load_problems(path) == [Problem(id="60", problem="Find N.", answer="204")]


def test_integral_float_answers_read_as_integers(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "p.jsonl",
        as_line({"problem": "a", "answer": 142.0}),
        as_line({"problem": "b", "answer": 0.5}),
    )
    assert [problem.answer for problem in load_problems(path)] == ["142", "0.5"]


def test_id_defaults_to_the_line_number(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "p.jsonl",
        as_line({"problem": "first", "answer": "1"}),
        "",
        as_line({"problem": "third", "answer": "3"}),
    )
    assert [record.id for record in load_problems(path)] == ["1", "3"]


def test_explicit_metadata_wins_over_extra_fields(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "p.jsonl",
        as_line({"problem": "q", "answer": "1", "level": 3, "metadata": {"level": 5, "tag": "x"}}),
    )
    assert load_problems(path)[0].metadata == {"level": 5, "tag": "x"}


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + as_line({"problem": "q", "answer": "1"}).encode() + b"\n")
    assert load_problems(path)[0].problem == "q"


@pytest.mark.parametrize(
    ("lines", "line_number", "message"),
    [
        (['{"problem": "q", "answer": '], 1, "bad JSON"),
        ([as_line({"problem": "q", "answer": "1"}), "not json"], 2, "bad JSON"),
        ([as_line({"problem": "q", "answer": "1"}), '["problem", "answer"]'], 2, "must be a JSON object"),
        ([as_line({"answer": "1"})], 1, 'no known dataset format has these fields.*fields found: "answer"'),
        ([as_line({"problem": "q", "answer": "1"}), as_line({"answer": "1"})], 2, 'missing field "problem"'),
        ([as_line({"problem": 7, "answer": "1"})], 1, 'field "problem" must be a string'),
        ([as_line({"problem": "  ", "answer": "1"})], 1, 'field "problem" is empty'),
        ([as_line({"problem": "q"})], 1, 'missing field "answer".*fields found: "problem"'),
        ([as_line({"problem": "q", "answer": True})], 1, 'field "answer" must be a string or a number'),
        ([as_line({"problem": "q", "answer": ["1"]})], 1, 'field "answer" must be a string or a number'),
        ([as_line({"problem": "q", "answer": ""})], 1, 'field "answer" is empty'),
        ([as_line({"problem": "q", "answer": " "})], 1, 'field "answer" is empty'),
        ([as_line({"problem": "q", "solution": "it is 4"})], 1, 'field "solution" has no \\\\boxed{} answer'),
        ([as_line({"problem": "q", "solution": 4})], 1, 'field "solution" must be a string'),
        ([as_line({"id": 1.5, "problem": "q", "answer": "1"})], 1, 'field "id" must be a string or an integer'),
        ([as_line({"id": " ", "problem": "q", "answer": "1"})], 1, 'field "id" is empty'),
        ([as_line({"problem": "q", "answer": "1", "metadata": [1]})], 1, 'field "metadata" must be a JSON object'),
        (
            [as_line({"id": "x", "problem": "q", "answer": "1"}), as_line({"id": "x", "problem": "r", "answer": "2"})],
            2,
            "duplicate id 'x' \\(first used on line 1\\)",
        ),
        (
            [as_line({"id": "2", "problem": "q", "answer": "1"}), as_line({"problem": "r", "answer": "2"})],
            2,
            "duplicate id '2'",
        ),
    ],
)
def test_malformed_records_name_file_line_and_problem(
    tmp_path: Path, lines: list[str], line_number: int, message: str
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(DatasetError, match=message) as caught:
        load_problems(path)
    assert str(caught.value).startswith(f"{path}:{line_number}: ")
    assert caught.value.line_number == line_number
    assert isinstance(caught.value, ValueError)


def test_a_later_record_is_read_in_the_format_of_the_first(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "math.jsonl",
        as_line({"unique_id": "test/a.json", "problem": "q", "answer": "1"}),
        as_line({"problem": "r", "answer": "2"}),
    )
    with pytest.raises(DatasetError, match=r':2: missing field "unique_id".*\(reading as math, recognised at line 1\)'):
        load_problems(path)


def test_invalid_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(as_line({"problem": "q", "answer": "1"}).encode() + b'\n{"problem": "\xe9"}\n')
    with pytest.raises(DatasetError, match=r":2: not UTF-8"):
        load_problems(path)


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "empty.jsonl", "", "  ")
    with pytest.raises(DatasetError, match="contains no problems"):
        load_problems(path)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_problems(tmp_path / "nowhere.jsonl")


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    records = [
        Problem(id="1", problem="Ünïcödé √2?", answer=r"\sqrt{2}"),
        Problem(id="q2", problem="Pick", answer="C", metadata={"level": 3, "id": "other", "solution": "s"}),
    ]
    path = tmp_path / "out" / "problems.jsonl"
    assert write_problems(records, path) == 2
    assert load_problems(path) == records
    assert "Ünïcödé" in path.read_text(encoding="utf-8")
    assert [entry.name for entry in path.parent.iterdir()] == ["problems.jsonl"]


def test_write_rejects_duplicate_ids_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    records = [Problem("a", "q", "1"), Problem("a", "r", "2")]
    with pytest.raises(DatasetError, match="duplicate id 'a'"):
        write_problems(records, path)
    assert not path.exists()


def test_problems_are_hashable_despite_metadata() -> None:
    with_metadata = Problem("a", "q", "1", metadata={"x": 1})
    assert len({with_metadata, Problem("a", "q", "1", metadata={"x": 1}), Problem("b", "q", "1")}) == 2


def test_the_folder_keeps_the_problems_exactly_as_the_run_hashed_them(tmp_path: Path) -> None:
    # A resume hashes the folder's problems against the run's: a value one unit in the last place
    # off (Arrow's JSON reader did that to nested floats) refuses every resume.
    problems = load_problems(Path("datasets/testbed-demo.jsonl"))
    save_run_problems(tmp_path, problems)
    assert load_run_problems(tmp_path) == problems
