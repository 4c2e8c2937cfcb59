r"""A run with imported CoTs that state their answer in every form the leak check knows: the
service flags ``answer_in_prefix`` on every prefix that holds the statement and on none that
ends before it, including cuts inside ``\boxed{14`` and right after "Answer:"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed import tokenizer as vocab
from tests.conftest import RunningService

pytestmark = pytest.mark.integration

OPENING = (
    "We read the problem again and set up the count with care.\nNothing is decided yet, so we keep every case open.\n"
)
TAIL = "\nThat settles it, and we stop here.\n"
# (problem id, statement, reference): the CoT is OPENING + statement + TAIL.
FORMS = [
    ("so-x", "so x = 1/2.", "1/2"),
    ("probability", "Therefore the probability is $\\frac{1}{2}$.", "1/2"),
    ("should-be", "The final answer should be 1/2.", "1/2"),
    ("apples", "So the total is 12 apples.", "12"),
    ("marker", "x = 12\n\nAnswer: 12", "12"),
    ("box", "The answer is \\boxed{144}.", "144"),
    ("boxed-frac", "The answer is \\boxed{\\frac{1}{2}}.", "1/2"),
    ("decimal", "The answer is 0.5.", "1/2"),
]
# (problem id, the text a prefix must end with): a cut inside the box, and one right after the marker.
SPECIAL_CUTS = [("box", "\\boxed{14"), ("marker", "x = 12\n\nAnswer:")]
GRID = [round(0.1 * step, 1) for step in range(1, 10)]


def cot_of(statement: str) -> str:
    return OPENING + statement + TAIL


def fraction_ending_at(cot: str, text: str) -> float:
    """A fraction whose cut, floor(f * L) strong-model tokens, ends right after ``text``."""
    end = cot.index(text) + len(text)
    tokens, total = len(vocab.encode_text(cot[:end])), len(vocab.encode_text(cot))
    assert vocab.decode_ids(vocab.encode_text(cot)[:tokens]) == cot[:end], "the cut must fall on a token boundary"
    return (tokens + 0.5) / total


def test_answer_in_prefix_from_the_statement_on(service: RunningService, tmp_path: Path) -> None:
    cots = {problem_id: cot_of(statement) for problem_id, statement, _ in FORMS}
    special = {problem_id: fraction_ending_at(cots[problem_id], text) for problem_id, text in SPECIAL_CUTS}
    fractions = sorted({*GRID, *(round(value, 6) for value in special.values())})
    records = [
        {"id": problem_id, "problem": "How many are there?", "answer": reference, "cot": cots[problem_id]}
        for problem_id, _, reference in FORMS
    ]
    path = tmp_path / "cots.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "run"
    done = service.cli(
        "run", "--cots", str(path), "--n", "1", "--fractions", ",".join(map(str, fractions)), "--out", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr

    strong_lines = (out / "strong.jsonl").read_text().splitlines()
    strong = {record["problem_id"]: record for record in map(json.loads, strong_lines)}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    checked = {"before": 0, "after": 0, "special": 0}
    for problem_id, statement, _ in FORMS:
        cot = cots[problem_id]
        start, end = len(OPENING), len(OPENING) + len(statement)
        texts = {prefix["fraction"]: prefix["text"] for prefix in strong[problem_id]["prefixes"]}
        for row in (row for row in rows if row["problem_id"] == problem_id):
            text = texts[row["fraction"]]
            assert cot.startswith(text)
            flags = (row["answer_in_prefix"], row["answer_stated_in_prefix"])
            if len(text) <= start:
                assert flags == (False, False), (problem_id, text)
                checked["before"] += 1
            elif len(text) >= end:
                # Both flags: each statement is an answer statement or a concluding one.
                assert flags == (True, True), (problem_id, text)
                checked["after"] += 1
        for special_id, ending in SPECIAL_CUTS:
            if special_id == problem_id:
                fraction = min(texts, key=lambda value: abs(value - special[problem_id]))
                assert texts[fraction].endswith(ending), texts[fraction]
                row = next(row for row in rows if row["problem_id"] == problem_id and row["fraction"] == fraction)
                assert (row["answer_in_prefix"], row["answer_stated_in_prefix"]) == (True, False)
                checked["special"] += 1
    # Each CoT has prefixes on both sides of its statement.
    assert checked["before"] >= 2 * len(FORMS) and checked["after"] >= len(FORMS) and checked["special"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_fraction"][-1]["answer_in_prefix"] == len(FORMS)
    assert summary["per_fraction"][0]["answer_in_prefix"] == 0
