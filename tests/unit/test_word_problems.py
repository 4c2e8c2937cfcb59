"""datasets/word-problems.jsonl: the written solutions imported as CoTs by `make real-demo`.

Each record carries the arithmetic of its answer (``check``); it is evaluated here in exact
rational arithmetic, so a reference answer that does not follow from its problem fails.
"""

from __future__ import annotations

import ast
import json
import math
import operator
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

from cot_transfer.domain.answers import ExactGrader, states_answer
from cot_transfer.experiment.imported_cots import load_cots

PATH = Path(__file__).resolve().parents[2] / "datasets" / "word-problems.jsonl"
RECORDS = [json.loads(line) for line in PATH.read_text().splitlines()]
_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_ROUNDING = {"ceil": math.ceil, "floor": math.floor}


def exact_value(expression: str) -> Fraction:
    """``expression`` (numbers, + - * / **, ceil(), floor()) evaluated without rounding."""

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Fraction(str(node.value))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ROUNDING:
            (argument,) = node.args
            return Fraction(_ROUNDING[node.func.id](value(argument)))
        raise ValueError(f"not allowed in a check: {ast.dump(node)}")

    return value(ast.parse(expression, mode="eval").body)


def test_the_dataset_is_large_and_varied() -> None:
    assert len(RECORDS) >= 40
    assert len({record["id"] for record in RECORDS}) == len(RECORDS)
    subjects = Counter(record["subject"] for record in RECORDS)
    assert set(subjects) == {"money", "time", "rates", "fractions", "geometry", "multi-step"}
    assert min(subjects.values()) >= 6


@pytest.mark.parametrize("record", RECORDS, ids=[record["id"] for record in RECORDS])
def test_every_reference_answer_follows_from_its_arithmetic(record: dict[str, str]) -> None:
    assert exact_value(record["check"]) == Fraction(record["answer"])


@pytest.mark.parametrize("record", RECORDS, ids=[record["id"] for record in RECORDS])
def test_every_worked_solution_is_steps_then_its_answer_line(record: dict[str, str]) -> None:
    *steps, last = record["cot"].splitlines()
    assert len(steps) >= 2
    assert last == f"Answer: {record['answer']}"
    # Only the final line states the answer as an answer: earlier prefixes carry the working only.
    assert not states_answer(ExactGrader(), "\n".join(steps), record["answer"])
    assert states_answer(ExactGrader(), record["cot"], record["answer"])


def test_the_file_imports_as_cots() -> None:
    problems = load_cots(PATH)
    assert [problem.id for problem in problems] == [record["id"] for record in RECORDS]
    assert all(problem.cot_format == "plain" and problem.cot for problem in problems)
    assert problems[0].metadata["subject"] == "money"


def test_the_checker_refuses_anything_but_arithmetic() -> None:
    assert exact_value("ceil(200 / 14)") == 15
    assert exact_value("2 * 314/100 * 5") == Fraction("31.4")
    with pytest.raises(ValueError, match="not allowed"):
        exact_value("__import__('os')")
