"""The testbed's task generator: determinism, correct CoTs, JSONL records, held-out split."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import tasks, tokenizer
from testbed.tasks import ChainProblem, Split

STEP_LINE = re.compile(r"^(\d)([-+*])(\d)=(\d)(?:, (\d(?:[-+*]\d)*))?$")


def evaluate_left_to_right(text: str) -> int:
    value = int(text[0])
    for operator, digit in zip(text[1::2], text[2::2], strict=True):
        value = {"+": value + int(digit), "-": value - int(digit), "*": value * int(digit)}[operator] % 10
    return value


def test_same_seed_gives_same_problems_and_other_seed_differs() -> None:
    first = tasks.generate_problems(50, 6, seed=3)
    again = tasks.generate_problems(50, 6, seed=3)
    other = tasks.generate_problems(50, 6, seed=4)
    assert [problem.text for problem in first] == [problem.text for problem in again]
    assert [problem.text for problem in first] != [problem.text for problem in other]
    assert len({problem.text for problem in first}) == 50


@pytest.mark.parametrize("steps", [1, 2, 5, 8, 12])
def test_every_cot_step_is_right_and_the_answer_matches(steps: int) -> None:
    for problem in tasks.generate_problems(40, steps, seed=steps):
        assert problem.num_steps == steps
        *lines, answer_line = problem.completion().split("\n")
        assert len(lines) == steps
        remaining = problem.text
        for line in lines:
            match = STEP_LINE.match(line)
            assert match, line
            left, operator, right, result, rest = match.groups()
            # Each line does the first operation of what is left and restates the rest.
            assert remaining.startswith(f"{left}{operator}{right}")
            assert int(result) == evaluate_left_to_right(f"{left}{operator}{right}")
            expected_rest = result + remaining[3:]
            assert (rest or result) == expected_rest
            remaining = expected_rest
        assert remaining == problem.answer
        assert answer_line == f"Answer: {problem.answer}"
        assert problem.answer == str(evaluate_left_to_right(problem.text))


def test_problem_text_round_trips() -> None:
    for problem in tasks.generate_problems(20, 7, seed=1):
        assert tasks.parse_problem(problem.text) == problem


def test_known_example() -> None:
    problem = tasks.parse_problem("3+7-5*2")
    assert problem.completion() == "3+7=0, 0-5*2\n0-5=5, 5*2\n5*2=0\nAnswer: 0"


@pytest.mark.parametrize("bad", ["", "3", "3+", "3+a", "33+4", "3/4"])
def test_malformed_problem_text_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        tasks.parse_problem(bad)


def test_step_count_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError):
        tasks.generate_problems(1, tasks.MAX_STEPS + 1, seed=0)
    with pytest.raises(ValueError):
        ChainProblem((1,), ())


def test_splits_are_disjoint_and_generator_respects_them() -> None:
    heldout = tasks.generate_problems(200, 4, seed=0, split=Split.HELDOUT)
    train = tasks.generate_problems(200, 4, seed=0, split=Split.TRAIN)
    assert all(tasks.split_of(problem.text) is Split.HELDOUT for problem in heldout)
    assert all(tasks.split_of(problem.text) is Split.TRAIN for problem in train)
    assert not {problem.text for problem in heldout} & {problem.text for problem in train}


def test_jsonl_records_have_the_exported_format() -> None:
    stream = io.StringIO()
    problems = tasks.generate_problems(5, 8, seed=11, split=Split.HELDOUT)
    tasks.write_jsonl(problems, "hard", stream)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [record["id"] for record in records] == [f"hard-{index:04d}" for index in range(5)]
    for record, problem in zip(records, problems, strict=True):
        assert set(record) == {"id", "problem", "answer", "metadata"}
        assert record["problem"] == problem.text
        assert record["answer"] == str(evaluate_left_to_right(problem.text))
        assert record["metadata"] == {"steps": 8}


def test_cli_writes_the_same_records_as_the_library(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    argv = ["--steps", "3", "--count", "4", "--seed", "9", "--id-prefix", "x", "--output", str(output)]
    assert tasks.main(argv) == 0
    stream = io.StringIO()
    tasks.write_jsonl(tasks.generate_problems(4, 3, seed=9, split=Split.HELDOUT), "x", stream)
    assert output.read_text() == stream.getvalue()


def test_generator_and_tokenizer_modules_do_not_import_torch() -> None:
    # A fresh interpreter: this test session may have imported torch for other tests.
    probe = "import sys, testbed.tasks, testbed.tokenizer; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_hard_problems_fit_the_model_context() -> None:
    problem = tasks.generate_problems(1, tasks.MAX_STEPS, seed=0)[0]
    length = len(tokenizer.encode_prompt(problem.text)) + len(tokenizer.encode_text(problem.completion())) + 1
    assert length <= tokenizer.MODEL_MAX_LENGTH
