"""How often each leak flag fires on prefixes that hold no answer yet, on real CoTs: the
testbed's and the demo's (cut in the strong model's tokens, as the service cuts them, before the
answer's token from the dataset's ground truth) and the written word-problem solutions (cut
in characters before the line that reaches the answer).

Run with ``-s`` to see the table the README quotes:
``.venv/bin/pytest tests/unit/test_leak_false_positives.py -q -s``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from cot_transfer.domain.answers import ExactGrader
from cot_transfer.domain.leaks import judge_prefix
from testbed import tokenizer as vocab
from testbed.tasks import parse_problem

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
EARLY = (0.1, 0.2, 0.3)
GRADER = ExactGrader()


def _rates(cuts: dict[float, list[tuple[bool, bool]]]) -> dict[float, tuple[int, float, float]]:
    """Per fraction: (pre-answer prefixes, strict rate, lenient rate)."""
    return {
        fraction: (len(flags), sum(s for s, _ in flags) / len(flags), sum(lenient for _, lenient in flags) / len(flags))
        for fraction, flags in cuts.items()
        if flags
    }


def _print(name: str, rates: dict[float, tuple[int, float, float]]) -> None:
    print(f"\n{name}: fraction, pre-answer prefixes, strict false-positive rate, lenient false-positive rate")
    for fraction, (count, strict, lenient) in rates.items():
        print(f"  {fraction:.1f}  {count:3d}  {strict:.3f}  {lenient:.3f}")


def _testbed_rates(name: str) -> tuple[dict[float, tuple[int, float, float]], int]:
    """Flags on the strong CoT's prefixes before its answer token; and how many full CoTs the
    lenient flag catches (the answer line is a bare "0-4=6": no cue for the strict flag)."""
    records = [json.loads(line) for line in (DATASETS / f"{name}.jsonl").read_text().splitlines()]
    cuts: dict[float, list[tuple[bool, bool]]] = {fraction: [] for fraction in FRACTIONS}
    caught = 0
    for record in records:
        reasoning = parse_problem(record["problem"]).reasoning()
        ids = vocab.encode_text(reasoning)
        answer_token = record["metadata"]["positions"]["answer"]["token"]
        for fraction in FRACTIONS:
            count = math.floor(fraction * len(ids))
            if count - 1 >= answer_token:
                continue
            # The service backs a cut off to the last whole character.
            leak = judge_prefix(GRADER, vocab.decode_ids(ids[:count]).rstrip("\ufffd"), record["answer"])
            cuts[fraction].append((bool(leak.answer_stated_in_prefix), bool(leak.answer_in_prefix)))
        caught += bool(judge_prefix(GRADER, reasoning, record["answer"]).answer_in_prefix)
    return _rates(cuts), caught


def test_on_the_testbed_the_strict_flag_never_fires_early_and_the_lenient_one_rarely() -> None:
    for name, early_bound in (("testbed-hard", 0.25), ("testbed-demo", 0.05)):
        rates, caught = _testbed_rates(name)
        _print(name, rates)
        assert all(strict == 0.0 for _, strict, _ in rates.values())
        # Chance only: an intermediate digit equal to the answer (10 possible answers).
        assert all(rates[fraction][2] <= early_bound for fraction in EARLY), rates
        assert caught == len((DATASETS / f"{name}.jsonl").read_text().splitlines())


def test_on_written_solutions_neither_flag_fires_before_the_answer_is_reached() -> None:
    records = [json.loads(line) for line in (DATASETS / "word-problems.jsonl").read_text().splitlines()]
    cuts: dict[float, list[tuple[bool, bool]]] = {fraction: [] for fraction in FRACTIONS}
    for record in records:
        cot, answer = record["cot"], record["answer"]
        # The line before "Answer: X" computes the answer: prefixes that end before it are answer-free.
        reached = cot.rindex("\n", 0, cot.rindex("\nAnswer:")) + 1
        for fraction in FRACTIONS:
            cut = math.floor(fraction * len(cot))
            if cut < reached:
                leak = judge_prefix(GRADER, cot[:cut], answer)
                cuts[fraction].append((bool(leak.answer_stated_in_prefix), bool(leak.answer_in_prefix)))
        full = judge_prefix(GRADER, cot, answer)
        assert (full.answer_stated_in_prefix, full.answer_in_prefix) == (True, True), record["id"]
    rates = _rates(cuts)
    _print("word-problems", rates)
    assert all(strict == 0.0 for _, strict, _ in rates.values())
    assert all(rates[fraction][2] <= 0.1 for fraction in EARLY if fraction in rates), rates
