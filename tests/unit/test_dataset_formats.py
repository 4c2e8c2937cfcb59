"""Native dataset formats (MATH-500, AIME, GSM8K, AMC/OlympiadBench), field mapping, ambiguity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cot_transfer.experiment.datasets import DatasetError, DatasetOptions, load_problems

SAMPLES = Path(__file__).resolve().parents[2] / "datasets" / "formats"


def jsonl(path: Path, *records: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_math500_sample_keeps_unique_ids_and_its_level_and_subject() -> None:
    problems = load_problems(SAMPLES / "math500.jsonl")
    assert [problem.id for problem in problems][:2] == ["test/prealgebra/ct-101.json", "test/algebra/ct-102.json"]
    assert problems[0].answer == "11"
    assert problems[0].metadata["level"] == 1
    assert problems[0].metadata["subject"] == "Prealgebra"
    assert "unique_id" not in problems[0].metadata and "answer" not in problems[0].metadata
    assert sorted({problem.metadata["level"] for problem in problems}) == [1, 2, 3, 4, 5]


def test_aime_sample_keeps_its_ids_and_year() -> None:
    problems = load_problems(SAMPLES / "aime.jsonl")
    assert [problem.id for problem in problems] == ["ct-2024-I-1", "ct-2024-I-2", "ct-2025-II-3", "ct-2025-II-4"]
    assert [problem.answer for problem in problems] == ["576", "49", "400", "25"]
    assert problems[0].metadata["year"] == 2024 and "url" in problems[0].metadata


def test_gsm8k_sample_takes_the_answer_after_the_hashes_without_thousands_commas() -> None:
    problems = load_problems(SAMPLES / "gsm8k.jsonl")
    assert [problem.answer for problem in problems] == ["250", "1200", "300", "28"]
    assert [problem.id for problem in problems] == ["1", "2", "3", "4"]
    assert problems[0].problem.startswith("A baker makes 12 trays")


def test_amc_and_olympiadbench_samples_take_final_answers_values_or_lists() -> None:
    amc = load_problems(SAMPLES / "amc.jsonl")
    assert [(problem.id, problem.answer) for problem in amc] == [("1", "1"), ("2", "25"), ("3", "14")]
    assert amc[0].metadata == {"year": 2023, "contest": "AMC 10A"}
    olympiad = load_problems(SAMPLES / "olympiadbench.jsonl")
    assert [(problem.id, problem.answer) for problem in olympiad] == [("3001", "0, 2"), ("3002", "36"), ("3003", "10")]
    assert olympiad[0].metadata["subfield"] == "Algebra"
    assert "unit" not in olympiad[0].metadata  # null: no value, like a field the record lacks


def test_generic_sample_mixes_ids_line_numbers_and_boxed_solutions() -> None:
    problems = load_problems(SAMPLES / "generic.jsonl")
    assert [(problem.id, problem.answer) for problem in problems] == [("g1", "42"), ("g2", "144"), ("3", "9")]


@pytest.mark.parametrize("name", ["math500.parquet", "math500.csv", "math500-saved"])
def test_other_files_of_the_math500_sample_hold_the_same_ids_and_answers(name: str) -> None:
    reference = {problem.id: problem for problem in load_problems(SAMPLES / "math500.jsonl")}
    problems = load_problems(SAMPLES / name)
    assert problems
    for problem in problems:
        assert problem.problem == reference[problem.id].problem
        assert problem.answer == reference[problem.id].answer
        assert str(problem.metadata["level"]) == str(reference[problem.id].metadata["level"])


def test_json_array_sample() -> None:
    problems = load_problems(SAMPLES / "aime.json")
    assert [(problem.id, problem.answer) for problem in problems] == [("ct-2024-I-1", "576"), ("ct-2025-II-4", "25")]


def test_math_without_unique_id_field_is_generic_with_line_ids(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "math.jsonl", {"problem": "q", "solution": r"so \boxed{3}", "level": "Level 1"})
    [problem] = load_problems(path)
    assert (problem.id, problem.answer, problem.metadata["level"]) == ("1", "3", "Level 1")


def test_capitalised_aime_fields(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "aime.jsonl", {"ID": "2024-I-1", "Problem": "q", "Solution": "s", "Answer": 73})
    [problem] = load_problems(path)
    assert (problem.id, problem.problem, problem.answer, problem.metadata) == ("2024-I-1", "q", "73", {"Solution": "s"})


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"unique_id": "a", "problem": "q", "final_answer": "1"},
            'ambiguous: the fields fit the formats math, olympiad; choose one with --format; fields found: "unique_id"',
        ),
        (
            {"id": 1, "question": "q", "problem": "p", "final_answer": ["1"]},
            'ambiguous: both "question" and "problem" are set; name the one to use with --problem-field',
        ),
        ({"question": "q", "answer": "no hashes here"}, 'no known dataset format.*"question", "answer"'),
        ({"question": "q", "answer": "x\n####  "}, 'field "answer" has nothing after "####"'),
        ({"question": "q", "final_answer": []}, 'field "final_answer" is an empty list'),
        ({"question": "q", "final_answer": {"a": 1}}, 'field "final_answer" must be a string, a number or a list'),
        ({"unique_id": 2.5, "problem": "q", "answer": "1"}, 'field "unique_id" must be a string or an integer'),
    ],
)
def test_ambiguous_unknown_and_malformed_native_records_are_refused(
    tmp_path: Path, record: dict[str, Any], message: str
) -> None:
    path = jsonl(tmp_path / "bad.jsonl", record)
    with pytest.raises(DatasetError, match=message) as caught:
        load_problems(path)
    assert str(caught.value).startswith(f"{path}:1: ")


def test_explicit_format_refuses_records_that_do_not_fit(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "p.jsonl", {"problem": "q", "answer": "1"})
    with pytest.raises(DatasetError, match=r':1: missing field "id" \(the id\).*\(reading as aime\)'):
        load_problems(path, DatasetOptions(format="aime"))
    with pytest.raises(DatasetError, match='missing field "question"'):
        load_problems(path, DatasetOptions(format="gsm8k"))


def test_field_flags_map_any_file(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "qa.jsonl", {"idx": 7, "question": "2+2?", "target": "4", "level": 2})
    options = DatasetOptions(id_field="idx", problem_field="question", answer_field="target")
    [problem] = load_problems(path, options)
    assert (problem.id, problem.problem, problem.answer, problem.metadata) == ("7", "2+2?", "4", {"level": 2})


def test_field_flags_choose_between_ambiguous_fields(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "o.jsonl", {"question": "long form", "problem": "short", "final_answer": ["1"]})
    [problem] = load_problems(path, DatasetOptions(problem_field="problem"))
    assert problem.problem == "short"
    assert problem.metadata == {"question": "long form"}


def test_a_named_id_field_must_be_present(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "p.jsonl", {"problem": "q", "answer": "1"})
    with pytest.raises(DatasetError, match='missing field "idx"'):
        load_problems(path, DatasetOptions(id_field="idx"))


def test_gsm8k_keeps_non_numeric_and_decimal_references(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "g.jsonl",
        {"question": "a", "answer": "work\n#### 1,234.5"},
        {"question": "b", "answer": "work\n#### 3, 4"},
        {"question": "c", "answer": "#### -12,000"},
    )
    assert [problem.answer for problem in load_problems(path)] == ["1234.5", "3, 4", "-12000"]


def test_olympiad_answers_lose_their_dollar_delimiters_only(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "o.jsonl",
        {"question": "a", "final_answer": ["$\\frac{1}{2}$"]},
        {"question": "b", "final_answer": "$x$ and $y$"},
        {"question": "c", "final_answer": "$"},
    )
    assert [problem.answer for problem in load_problems(path)] == ["\\frac{1}{2}", "$x$ and $y$", "$"]
