"""Synthetic multi-step task: chains of single-digit arithmetic mod 10, evaluated left to right.

A problem is a chain such as ``3+7-5*2``; its value is ((3+7)-5)*2 mod 10 = 0. The CoT
rewrites the chain once per operation: each line does the first operation (``3+7=0``) and
then restates what is left with the result in front (``0-5*2``)::

    3+7=0, 0-5*2
    0-5=5, 5*2
    5*2=0
    Answer: 0

Restating the rest of the chain keeps every fact the next line needs in the line just
above it. A model that can only rewrite short chains is then stuck at the start of a long
problem but can finish it once a stronger model's CoT has shortened the chain far enough,
which is exactly the unlocking this testbed demonstrates. The number of operations
(``steps``) sets the difficulty; the CoT grows quadratically with it.

Problems are split into a training and a held-out part by a hash of the problem text, so
evaluation sets are disjoint from anything training can draw, whatever the seeds.

Run ``python -m testbed.tasks --help`` to export JSONL. Pure Python: no torch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TextIO

MODULUS = 10
OPERATORS = ("+", "-", "*")
ANSWER_PREFIX = "Answer: "
MIN_STEPS = 1
# Beyond this the shipped models' context (512 positions) would no longer hold the CoT.
MAX_STEPS = 14
# One problem in HELDOUT_BUCKETS is held out, chosen by hash so the split ignores seeds.
HELDOUT_BUCKETS = 8


class Split(StrEnum):
    TRAIN = "train"
    HELDOUT = "heldout"
    ANY = "any"


def apply_operator(left: int, operator: str, right: int) -> int:
    if operator == "+":
        return (left + right) % MODULUS
    if operator == "-":
        return (left - right) % MODULUS
    if operator == "*":
        return (left * right) % MODULUS
    raise ValueError(f"unknown operator {operator!r}; known: {' '.join(OPERATORS)}")


@dataclass(frozen=True)
class Step:
    left: int
    operator: str
    right: int
    result: int

    def render(self) -> str:
        return f"{self.left}{self.operator}{self.right}={self.result}"


@dataclass(frozen=True)
class ChainProblem:
    """``digits[0] operators[0] digits[1] operators[1] ...``, one operator per step."""

    digits: tuple[int, ...]
    operators: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.digits) != len(self.operators) + 1:
            raise ValueError(f"{len(self.operators)} operators need {len(self.operators) + 1} digits")
        if not self.operators:
            raise ValueError("a chain needs at least one operator")
        if any(not 0 <= digit < MODULUS for digit in self.digits):
            raise ValueError(f"digits must be in [0, {MODULUS}), got {self.digits}")
        unknown = set(self.operators) - set(OPERATORS)
        if unknown:
            raise ValueError(f"unknown operators {sorted(unknown)}")

    @property
    def num_steps(self) -> int:
        return len(self.operators)

    @property
    def text(self) -> str:
        return _render_chain(self.digits[0], self.operators, self.digits[1:])

    def steps(self) -> list[Step]:
        steps: list[Step] = []
        value = self.digits[0]
        for operator, right in zip(self.operators, self.digits[1:], strict=True):
            result = apply_operator(value, operator, right)
            steps.append(Step(value, operator, right, result))
            value = result
        return steps

    @property
    def answer(self) -> str:
        return str(self.steps()[-1].result)

    def cot_lines(self) -> list[str]:
        lines: list[str] = []
        for index, step in enumerate(self.steps()):
            rest_operators = self.operators[index + 1 :]
            if rest_operators:
                rest = _render_chain(step.result, rest_operators, self.digits[index + 2 :])
                lines.append(f"{step.render()}, {rest}")
            else:
                lines.append(step.render())
        return lines

    def completion(self) -> str:
        """What a model must write after the prompt (its end-of-sequence token not included)."""
        return "\n".join([*self.cot_lines(), f"{ANSWER_PREFIX}{self.answer}"])


def _render_chain(first: int, operators: Sequence[str], digits: Sequence[int]) -> str:
    return str(first) + "".join(f"{operator}{digit}" for operator, digit in zip(operators, digits, strict=True))


def parse_problem(text: str) -> ChainProblem:
    """Inverse of ``ChainProblem.text``."""
    if len(text) < 3 or len(text) % 2 == 0:
        raise ValueError(f"not a chain of single digits and operators: {text!r}")
    digit_chars, operators = text[0::2], text[1::2]
    if not digit_chars.isdigit():
        raise ValueError(f"not a chain of single digits and operators: {text!r}")
    return ChainProblem(tuple(int(char) for char in digit_chars), tuple(operators))


def split_of(problem_text: str) -> Split:
    bucket = hashlib.sha256(problem_text.encode()).digest()[0] % HELDOUT_BUCKETS
    return Split.HELDOUT if bucket == 0 else Split.TRAIN


def check_steps(steps: int) -> int:
    if not MIN_STEPS <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in [{MIN_STEPS}, {MAX_STEPS}], got {steps}")
    return steps


def sample_problem(rng: random.Random, steps: int, split: Split = Split.ANY) -> ChainProblem:
    """A uniformly random chain of ``steps`` operations from ``split``; draws only from ``rng``."""
    check_steps(steps)
    while True:
        digits = tuple(rng.randrange(MODULUS) for _ in range(steps + 1))
        operators = tuple(rng.choice(OPERATORS) for _ in range(steps))
        problem = ChainProblem(digits, operators)
        if split is Split.ANY or split_of(problem.text) is split:
            return problem


def generate_problems(count: int, steps: int, seed: int, split: Split = Split.ANY) -> list[ChainProblem]:
    """``count`` distinct problems; the same arguments always give the same list."""
    check_steps(steps)
    rng = random.Random(f"cot-transfer-testbed:{seed}:{steps}")
    seen: set[str] = set()
    problems: list[ChainProblem] = []
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise ValueError(f"cannot draw {count} distinct {steps}-step problems from split {split.value}")
        problem = sample_problem(rng, steps, split)
        if problem.text not in seen:
            seen.add(problem.text)
            problems.append(problem)
    return problems


def to_record(problem: ChainProblem, problem_id: str) -> dict[str, object]:
    return {
        "id": problem_id,
        "problem": problem.text,
        "answer": problem.answer,
        "metadata": {"steps": problem.num_steps},
    }


def write_jsonl(problems: Sequence[ChainProblem], id_prefix: str, stream: TextIO) -> None:
    for index, problem in enumerate(problems):
        record = to_record(problem, f"{id_prefix}-{index:04d}")
        stream.write(json.dumps(record, separators=(",", ":")) + "\n")


def read_jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, required=True, help="operations per chain (difficulty)")
    parser.add_argument("--count", type=int, required=True, help="number of distinct problems")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--split", choices=[split.value for split in Split], default=Split.HELDOUT.value)
    parser.add_argument("--id-prefix", default=None, help="record ids are <prefix>-0000, ...")
    parser.add_argument("--output", type=Path, default=None, help="JSONL file; stdout when omitted")
    args = parser.parse_args(argv)
    problems = generate_problems(args.count, args.steps, args.seed, Split(args.split))
    id_prefix = args.id_prefix or f"chain{args.steps}-seed{args.seed}"
    if args.output is None:
        write_jsonl(problems, id_prefix, sys.stdout)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w", encoding="utf-8") as stream:
            write_jsonl(problems, id_prefix, stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
