"""Answer leaks: whether a CoT prefix already states the reference answer, and how that
judgement travels from the service to the client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cot_transfer.client.convert import strong_event_from_proto, transfer_event_from_proto
from cot_transfer.domain.answers import ChoiceGrader, ExactGrader, Grader, get_grader, states_answer
from cot_transfer.domain.requests import CotPrefix, FractionResult, StrongCot
from cot_transfer.experiment.run_folder import RESULTS_FILE, STRONG_FILE, RunFolder, _RowWriter
from cot_transfer.serving.edge.encode import strong_event_to_proto, transfer_event_to_proto
from cot_transfer.serving.replicas.graders import get_grader as serving_grader


@pytest.mark.parametrize(
    ("text", "reference", "expected"),
    [
        # Any statement counts, not only the last: the CoT states 7, then moves on.
        ("Answer: 7\nhmm, let me check\nAnswer: 8", "7", True),
        (r"first \boxed{7}, then \boxed{8}", "7", True),
        (r"\boxed{7} and then Answer: 9", "9", True),
        # A number in the working is no statement: not a substring match.
        ("7 + 0 = 7, so the sum of 17 and 70 is 87", "7", False),
        ("3+7=0, 0-5*2\n0-5=5", "5", False),
        ("I answered 7 of them", "7", False),
        # A prefix cut inside the box states nothing yet.
        (r"so the result is \boxed{7", "7", False),
        ("Answer: 1,000", "1000", True),
        ("", "7", False),
    ],
)
def test_states_answer_with_the_exact_grader(text: str, reference: str, expected: bool) -> None:
    assert states_answer(ExactGrader(), text, reference) is expected


def test_states_answer_uses_the_graders_own_equivalence() -> None:
    math = serving_grader("math")
    assert states_answer(math, r"so x = \frac{1}{2}, hence \boxed{0.5}", "1/2") is True
    assert states_answer(math, r"x is \frac{1}{2} here", "1/2") is False
    assert states_answer(ChoiceGrader(), "Answer: (c)\nor rather", "C") is True
    assert states_answer(ChoiceGrader(), "A total of 3 options remain", "A") is False


def test_states_answer_compares_each_distinct_statement_once() -> None:
    compared: list[str] = []

    def equivalent(extracted: str, reference: str) -> bool:
        compared.append(extracted)
        return False

    grader: Grader = get_grader("math", math_equivalence=equivalent)
    assert states_answer(grader, "Answer: 2\n\\boxed{2}\nAnswer: 3", "5") is False
    assert compared == ["2", "3"]


def test_the_judgement_travels_from_the_service_to_the_client() -> None:
    prefix = CotPrefix(0.5, "Answer: 7", 3, 6, answer_in_prefix=True)
    strong = StrongCot("p1", "Answer: 7", "7", True, 6, prefixes=(prefix, CotPrefix(0.0, "", 0, 6)))
    cot = transfer_event_from_proto(transfer_event_to_proto(strong))
    assert isinstance(cot, StrongCot)
    assert [p.answer_in_prefix for p in cot.prefixes] == [True, None]
    for judged in (True, False, None):
        row = FractionResult("p1", 0.5, 3, 6, 4, 2, answer_in_prefix=judged)
        back = transfer_event_from_proto(transfer_event_to_proto(row))
        assert isinstance(back, FractionResult)
        assert back.answer_in_prefix is judged


def test_a_prefix_streamed_on_its_own_is_not_judged() -> None:
    # StreamPrefixes knows no reference answer: the field stays unset, not False.
    message = strong_event_to_proto(CotPrefix(0.5, "Answer: 7", 3, 6))
    assert not message.prefix.HasField("answer_in_prefix")
    back = strong_event_from_proto(message)
    assert isinstance(back, CotPrefix)
    assert back.answer_in_prefix is None


def test_the_results_folder_keeps_the_judgement_and_reads_old_folders(tmp_path: Path) -> None:
    writer = _RowWriter(tmp_path, "abc", on_row=None)
    prefixes = (
        CotPrefix(0.0, "", 0, 6, answer_in_prefix=False),
        CotPrefix(1.0, "Answer: 7", 6, 6, answer_in_prefix=True),
    )
    writer.add_strong(StrongCot("p1", "Answer: 7", "7", True, 6, prefixes=prefixes))
    writer.add_result(FractionResult("p1", 1.0, 6, 6, 4, 4, answer_in_prefix=True))
    writer.close()
    row = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert row["answer_in_prefix"] is True
    stored = json.loads((tmp_path / STRONG_FILE).read_text())
    assert [prefix["answer_in_prefix"] for prefix in stored["prefixes"]] == [False, True]
    state = RunFolder(tmp_path).load_state("abc")
    assert [prefix.answer_in_prefix for prefix in state.strong["p1"].prefixes] == [False, True]

    # A folder written before leaks were judged has no such key: unknown, not False.
    old = tmp_path / "old"
    old.mkdir()
    del stored["prefixes"][1]["answer_in_prefix"]
    (old / STRONG_FILE).write_text(json.dumps(stored) + "\n")
    state = RunFolder(old).load_state("abc")
    assert [prefix.answer_in_prefix for prefix in state.strong["p1"].prefixes] == [False, None]
