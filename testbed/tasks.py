"""Synthetic reasoning task with one insight step: chains of digit operations mod 10, left to right.

A problem is a chain such as ``3+7△5×2-4``. ``+ - ×`` are routine; ``△`` is the **insight**
operator, a△b = a×b + a + b (mod 10). A model that lacks the insight reads ``△`` as ``+``
(the "naive" rule), which is wrong whenever a×b is not 0 mod 10. The CoT, written inside a
``<think>`` block, does one operation per line and restates what is left with the result in
front, so the next line needs only the line above it::

    <think>
    3+7=0→0△5×2-4
    0△5=5, no: 0△5=3→3×2-4
    3×2=6→6-4
    6-4=2
    </think>

    \\boxed{2}

Phenomena, each fixed by what the problem shows, so the strong model reproduces them and the
generator knows where they sit:

* **insight**: the ``△`` line. The weak model is trained on naive-rule CoTs, so alone it gets
  the answer wrong; once a prefix holds the ``△`` result it finishes with routine steps. The
  ``△`` sits at different steps, so the unlock fraction varies per problem.
* **tangent**: when the digit after ``△`` is in ``TANGENT_DIGITS`` the strong model first
  writes the naive result, then ``, no:`` and the right one (the second line above).
* **lucky guess**: a chain that ends in ``×0`` is 0 whatever came before; the strong model
  jumps to the answer (``last step ×0→0``) without the work.

Each record's ``metadata.positions`` gives the token index (in the reasoning tokens, the ones
between ``<think>`` and ``</think>``) and the fraction f = (index + 1) / L at which a cut of
floor(f × L) tokens first holds the insight result, the tangent and the answer.

Problems are split into a training and a held-out part by a hash of the problem text, so
evaluation sets are disjoint from anything training can draw, whatever the seeds.

Run ``python -m testbed.tasks --help`` to export JSONL. No torch: only ``tokenizers``.
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

from testbed import tokenizer as vocab

MODULUS = 10
ROUTINE_OPERATORS = ("+", "-", "×")
INSIGHT = "△"
OPERATORS = (*ROUTINE_OPERATORS, INSIGHT)
ARROW = "→"
TANGENT_DIGITS = (3, 7)
TANGENT_MARK = ", no: "
LUCKY_LINE = f"last step ×0{ARROW}0"
MIN_STEPS = 2
# Beyond this the shipped models' context (512 positions) would no longer hold the CoT.
MAX_STEPS = 12
# One problem in HELDOUT_BUCKETS is held out, chosen by hash so the split ignores seeds.
HELDOUT_BUCKETS = 8


class Split(StrEnum):
    TRAIN = "train"
    HELDOUT = "heldout"
    ANY = "any"


class Rule(StrEnum):
    INSIGHT = "insight"  # what the strong model learns
    NAIVE = "naive"  # what the weak model learns: △ read as +


def apply_operator(left: int, operator: str, right: int, rule: Rule = Rule.INSIGHT) -> int:
    if operator == "+":
        return (left + right) % MODULUS
    if operator == "-":
        return (left - right) % MODULUS
    if operator == "×":
        return (left * right) % MODULUS
    if operator == INSIGHT:
        extra = left * right if rule is Rule.INSIGHT else 0
        return (extra + left + right) % MODULUS
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
class Position:
    token: int
    fraction: float

    def to_json(self) -> dict[str, object]:
        return {"token": self.token, "fraction": round(self.fraction, 4)}


@dataclass(frozen=True)
class GroundTruth:
    """Where the phenomena sit in the strong model's reasoning tokens."""

    reasoning_tokens: int
    insight: Position | None
    tangent_start: Position | None
    tangent_end: Position | None
    answer: Position


@dataclass(frozen=True)
class ChainProblem:
    """``digits[0] operators[0] digits[1] operators[1] ...``, exactly one ``△`` among the operators."""

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
        if self.operators.count(INSIGHT) != 1:
            raise ValueError(f"a chain has exactly one {INSIGHT}, got {self.operators.count(INSIGHT)}")

    @property
    def num_steps(self) -> int:
        return len(self.operators)

    @property
    def insight_step(self) -> int:
        return self.operators.index(INSIGHT)

    @property
    def text(self) -> str:
        return _render_chain(self.digits[0], self.operators, self.digits[1:])

    def steps(self, rule: Rule = Rule.INSIGHT) -> list[Step]:
        steps: list[Step] = []
        value = self.digits[0]
        for operator, right in zip(self.operators, self.digits[1:], strict=True):
            result = apply_operator(value, operator, right, rule)
            steps.append(Step(value, operator, right, result))
            value = result
        return steps

    def answer_for(self, rule: Rule) -> str:
        return str(self.steps(rule)[-1].result)

    @property
    def answer(self) -> str:
        return self.answer_for(Rule.INSIGHT)

    @property
    def has_tangent(self) -> bool:
        return self.digits[self.insight_step + 1] in TANGENT_DIGITS and not self.is_lucky_guess

    @property
    def is_lucky_guess(self) -> bool:
        return self.operators[-1] == "×" and self.digits[-1] == 0 and self.insight_step < self.num_steps - 1

    @property
    def insight_matters(self) -> bool:
        """Whether the naive rule gives a wrong step (and, unless a lucky guess, a wrong answer)."""
        step = self.steps()[self.insight_step]
        if step.left * step.right % MODULUS == 0:
            return False
        return self.is_lucky_guess or self.answer_for(Rule.NAIVE) != self.answer

    def cot_lines(self, rule: Rule = Rule.INSIGHT) -> list[str]:
        """The reasoning lines: the strong model's (``INSIGHT``) or the weak model's (``NAIVE``)."""
        if rule is Rule.INSIGHT and self.is_lucky_guess:
            return [LUCKY_LINE]
        lines: list[str] = []
        for index, step in enumerate(self.steps(rule)):
            line = step.render()
            if rule is Rule.INSIGHT and index == self.insight_step and self.has_tangent:
                # The tangent is the naive rule's result, on the same (correct) left operand.
                naive = apply_operator(step.left, INSIGHT, step.right, Rule.NAIVE)
                wrong = Step(step.left, step.operator, step.right, naive)
                line = f"{wrong.render()}{TANGENT_MARK}{line}"
            rest_operators = self.operators[index + 1 :]
            if rest_operators:
                line += ARROW + _render_chain(step.result, rest_operators, self.digits[index + 2 :])
            lines.append(line)
        return lines

    def reasoning(self, rule: Rule = Rule.INSIGHT) -> str:
        """The text between ``<think>`` and ``</think>``."""
        return "\n" + "\n".join(self.cot_lines(rule)) + "\n"

    def completion(self, rule: Rule = Rule.INSIGHT) -> str:
        """What a model writes after the chat prompt (its end-of-sequence token not included)."""
        answer = self.answer_for(rule)
        return f"{vocab.THINK_START}{self.reasoning(rule)}{vocab.THINK_END}\n\n\\boxed{{{answer}}}"

    def ground_truth(self) -> GroundTruth:
        reasoning = self.reasoning(Rule.INSIGHT)
        total = len(vocab.encode_text(reasoning))

        def position(char_end: int) -> Position:
            # Digits are whole tokens and pre-token boundaries, so a text prefix ending in one
            # encodes to a prefix of the reasoning's tokens.
            count = len(vocab.encode_text(reasoning[:char_end]))
            return Position(count - 1, count / total)

        lines = self.cot_lines(Rule.INSIGHT)
        offsets = [1 + sum(len(line) + 1 for line in lines[:index]) for index in range(len(lines))]
        answer_line = lines[-1]
        answer = position(offsets[-1] + len(answer_line))
        if self.is_lucky_guess:
            return GroundTruth(total, None, None, None, answer)
        line = lines[self.insight_step]
        step = self.steps()[self.insight_step]
        result_end = line.index(step.render()) + len(step.render())
        insight = position(offsets[self.insight_step] + result_end)
        tangent_start = tangent_end = None
        if self.has_tangent:
            tangent_start = position(offsets[self.insight_step] + line.index("=") + 2)
            tangent_end = insight
        return GroundTruth(total, insight, tangent_start, tangent_end, answer)


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


def sample_problem(
    rng: random.Random,
    steps: int,
    split: Split = Split.ANY,
    insight_weights: Sequence[float] | None = None,
    lucky: bool | None = None,
) -> ChainProblem:
    """A random chain of ``steps`` operations from ``split`` in which the insight matters.

    ``insight_weights[i]`` weighs the insight at step i (uniform when None; missing entries
    weigh 1). ``lucky`` forces a lucky-guess chain (True) or rules one out (False). Draws only
    from ``rng``.
    """
    check_steps(steps)
    weights = [1.0] * steps
    for index, weight in enumerate((insight_weights or [])[:steps]):
        weights[index] = weight
    while True:
        insight_step = rng.choices(range(steps), weights=weights)[0]
        digits = [rng.randrange(MODULUS) for _ in range(steps + 1)]
        operators = [rng.choice(ROUTINE_OPERATORS) for _ in range(steps)]
        operators[insight_step] = INSIGHT
        if lucky and insight_step < steps - 1:
            operators[-1], digits[-1] = "×", 0
        problem = ChainProblem(tuple(digits), tuple(operators))
        if lucky is not None and problem.is_lucky_guess != lucky:
            continue
        if problem.insight_matters and (split is Split.ANY or split_of(problem.text) is split):
            return problem


# Insight weights of the evaluation sets: early insights are common (as in the paper, a large
# share unlocks by 0.2-0.3), later ones spread the rest over the CoT.
EVAL_INSIGHT_WEIGHTS = (2.0, 4.0, 2.0)


def generate_problems(
    count: int,
    steps: int | Sequence[int],
    seed: int,
    split: Split = Split.ANY,
    insight_weights: Sequence[float] | None = None,
    lucky_every: int = 0,
) -> list[ChainProblem]:
    """``count`` distinct problems; the same arguments always give the same list.

    ``steps`` is one length or the lengths to cycle through. With ``lucky_every`` = k > 0,
    every k-th problem is a lucky guess and the others are not.
    """
    lengths = [steps] if isinstance(steps, int) else list(steps)
    for length in lengths:
        check_steps(length)
    rng = random.Random(f"cot-transfer-testbed-v2:{seed}:{','.join(map(str, lengths))}")
    seen: set[str] = set()
    problems: list[ChainProblem] = []
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise ValueError(f"cannot draw {count} distinct problems of {lengths} steps from split {split.value}")
        index = len(problems)
        lucky = None if lucky_every <= 0 else (index % lucky_every == lucky_every - 1)
        problem = sample_problem(rng, lengths[index % len(lengths)], split, insight_weights, lucky)
        if problem.text not in seen:
            seen.add(problem.text)
            problems.append(problem)
    return problems


def to_record(problem: ChainProblem, problem_id: str) -> dict[str, object]:
    truth = problem.ground_truth()
    return {
        "id": problem_id,
        "problem": problem.text,
        "answer": problem.answer,
        "metadata": {
            "steps": problem.num_steps,
            "insight_step": problem.insight_step,
            "tangent": problem.has_tangent,
            "lucky_guess": problem.is_lucky_guess,
            "naive_answer": problem.answer_for(Rule.NAIVE),
            "reasoning_tokens": truth.reasoning_tokens,
            "positions": {
                "insight": truth.insight.to_json() if truth.insight else None,
                "tangent_start": truth.tangent_start.to_json() if truth.tangent_start else None,
                "tangent_end": truth.tangent_end.to_json() if truth.tangent_end else None,
                "answer": truth.answer.to_json(),
            },
        },
    }


def write_jsonl(problems: Sequence[ChainProblem], id_prefix: str, stream: TextIO) -> None:
    for index, problem in enumerate(problems):
        record = to_record(problem, f"{id_prefix}-{index:04d}")
        stream.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def _lengths(text: str) -> list[int]:
    if "-" in text:
        low, high = (int(part) for part in text.split("-", 1))
        return list(range(low, high + 1))
    return [int(text)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=_lengths, required=True, help="operations per chain: N or LOW-HIGH (cycled)")
    parser.add_argument("--count", type=int, required=True, help="number of distinct problems")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--split", choices=[split.value for split in Split], default=Split.HELDOUT.value)
    parser.add_argument("--lucky-every", type=int, default=0, help="every K-th problem is a lucky guess (0: natural)")
    parser.add_argument("--uniform-insight", action="store_true", help="insight at any step alike")
    parser.add_argument("--id-prefix", default=None, help="record ids are <prefix>-0000, ...")
    parser.add_argument("--output", type=Path, default=None, help="JSONL file; stdout when omitted")
    args = parser.parse_args(argv)
    weights = None if args.uniform_insight else EVAL_INSIGHT_WEIGHTS
    problems = generate_problems(args.count, args.steps, args.seed, Split(args.split), weights, args.lucky_every)
    id_prefix = args.id_prefix or f"chain-seed{args.seed}"
    if args.output is None:
        write_jsonl(problems, id_prefix, sys.stdout)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w", encoding="utf-8") as stream:
            write_jsonl(problems, id_prefix, stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
