r"""Answer leaks: whether a CoT prefix already holds the reference answer (the strict flag
``answer_stated_in_prefix`` and the lenient ``answer_in_prefix``, ``cot_transfer.domain.leaks``),
and how both travel from the service to the client and through results folders."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from cot_transfer.client.convert import strong_event_from_proto, transfer_event_from_proto
from cot_transfer.domain.answers import ChoiceGrader, ExactGrader, Grader, MathGrader, get_grader, states_answer
from cot_transfer.domain.leaks import (
    ANSWER_STATEMENT,
    CONCLUDING_STATEMENT,
    CUT_AFTER_MARKER,
    CUT_INSIDE_ANSWER,
    VALUE,
    PrefixLeak,
    judge_prefix,
)
from cot_transfer.domain.maths_values import parse_value, same_value
from cot_transfer.domain.requests import FractionResult, Prefix, StrongCot
from cot_transfer.experiment.results_folder import load_run
from cot_transfer.experiment.run_folder import RESULTS_FILE, STRONG_FILE, RunFolder, _RowWriter
from cot_transfer.serving.edge.encode import strong_event_to_proto, transfer_event_to_proto
from cot_transfer.serving.replicas.graders import service_grader as serving_grader


def never_equal(extracted: str, reference: str) -> bool:
    """A math grader equivalence that finds nothing: what is caught is caught by the leak check."""
    return False


GRADERS: dict[str, Grader] = {"exact": ExactGrader(), "math": MathGrader(never_equal)}

# form -> (prefix, reference): every form the answer stands in. Every one sets the lenient flag;
# only a statement of the answer sets the strict one.
LEAK_FORMS: dict[str, list[tuple[str, str]]] = {
    CONCLUDING_STATEMENT: [
        ("Adding them up, so x = 1/2.", "1/2"),
        (r"Therefore the probability is $\frac{1}{2}$", "1/2"),
        ("The final answer should be 1/2", "1/2"),
        ("So the total is 12 apples", "12"),
        ("Hence, x equals -3.", "-3"),
        ("Therefore,\n\\[\nx = \\dfrac{1}{2}\n\\]", "0.5"),
    ],
    ANSWER_STATEMENT: [
        ("So the answer is 1,000.", "1000"),
        (r"\boxed{\frac{1}{2}}", "1/2"),
        ("The answer is 0.5", "1/2"),
        (r"\boxed{\tfrac12} is what we get", "0.5"),
        ("Answer: 50%", "1/2"),
    ],
    # Cut right after the answer marker: the next token is the answer.
    CUT_AFTER_MARKER: [
        ("We check the cases.\n\nAnswer:", "12"),
        ("Thus the probability is", "1/2"),
        ("The sum is \\boxed{", "144"),
    ],
    # Cut inside an answer statement that can still become the reference.
    CUT_INSIDE_ANSWER: [
        (r"\boxed{14", "144"),
        ("The answer is 14", "144"),
        (r"The answer is $\frac{1", "1/2"),
        ("so x = 1", "1/2"),
    ],
    # Anywhere as a whole number or maths span.
    VALUE: [
        ("x = 12\n\nAnswer:", "12"),  # cut after the marker, but the value already stands before it
        ("3 + 9 = 12, then we look at the rest", "12"),
        ("We need 12 apples for the pie", "12"),
        (r"so far we have $\frac{1}{2}$ of the area", "0.5"),
        ("the probability is 50\\% here", "1/2"),
        ("which is about 0.333 of the total", "1/3"),
        ("The values are 1,000 and 3", "1000"),
        ("we know $\\sqrt{2}$ is irrational", r"\sqrt2"),
    ],
}
STATEMENT_FORMS = (CONCLUDING_STATEMENT, ANSWER_STATEMENT)

# (prefix, reference): numbers that only look like the reference.
NOT_LEAKS = [
    ("We have 120 apples", "12"),
    ("Take 1/20 of it", "1/2"),
    (r"Take $\frac{1}{20}$ of it", "1/2"),
    ("The meeting was on 2024-01-12 in the morning", "12"),
    ("It was March 12 when we started", "12"),
    ("The train leaves at 12:30 sharp", "12"),
    ("The area is 2144 square feet", "144"),
    ("The length is 14.4 m", "144"),
    ("Then 1440 divided by ten", "144"),
    ("We compute 3 + 9 first", "12"),  # an expression worth the answer is not the answer
    ("Step 12: add the rows", "12"),
    ("1. Expand\n2. Collect terms", "2"),
    ("the term $x^{12}$ dominates", "12"),
    ("so 5x + 3 = 2y", "5"),
    ("this is the 2nd try", "2"),
    ("x - 3 = 0 has one root", "3"),
    (r"and \boxed{7", "144"),  # a box on its way to another number
    ("The answer is 13.", "12"),
    ("", "7"),
]


@pytest.mark.parametrize("grader_name", sorted(GRADERS))
@pytest.mark.parametrize(
    ("text", "reference", "form"),
    [(text, reference, form) for form, cases in LEAK_FORMS.items() for text, reference in cases],
)
def test_every_form_of_the_answer_is_caught(grader_name: str, text: str, reference: str, form: str) -> None:
    leak = judge_prefix(GRADERS[grader_name], text, reference)
    assert (leak.answer_stated_in_prefix, leak.answer_in_prefix, leak.form) == (form in STATEMENT_FORMS, True, form)


@pytest.mark.parametrize("grader_name", sorted(GRADERS))
@pytest.mark.parametrize(("text", "reference"), NOT_LEAKS)
def test_numbers_that_only_look_like_the_reference_are_no_leak(grader_name: str, text: str, reference: str) -> None:
    leak = judge_prefix(GRADERS[grader_name], text, reference)
    assert (leak.answer_stated_in_prefix, leak.answer_in_prefix) == (False, False), leak.form


def test_the_lenient_flag_catches_a_chance_value_the_strict_one_does_not() -> None:
    # The testbed's lines: an intermediate result that happens to equal the answer.
    text = "3+7=0→0△5×2-4\n0△5=5→5×2-4\n"
    assert judge_prefix(ExactGrader(), text, "5") == PrefixLeak(False, True, VALUE)
    assert judge_prefix(ExactGrader(), text, "6").answer_in_prefix is False  # operands are no values


def test_the_flags_are_monotone_over_the_prefixes_of_a_cot() -> None:
    """Every cut before the statement holds no leak; every cut after it holds both flags."""
    opening = "Let me think. We have a bag with 3 red and 3 blue balls, and we draw one ball. "
    for statement, reference in (
        ("So the probability is $\\frac{1}{2}$.", "1/2"),
        ("Therefore the total is 144 marbles.", "144"),
        ("The answer is \\boxed{0.5}.", "1/2"),
    ):
        cot = opening + statement + " That settles it, with 7 more words to come here."
        start, end = len(opening), len(opening) + len(statement)
        for cut in range(len(cot) + 1):
            leak = judge_prefix(ExactGrader(), cot[:cut], reference)
            if cut <= start:
                assert (leak.answer_stated_in_prefix, leak.answer_in_prefix) == (False, False), cot[:cut]
            elif cut >= end:
                assert (leak.answer_stated_in_prefix, leak.answer_in_prefix) == (True, True), cot[:cut]
            if leak.answer_stated_in_prefix:
                assert leak.answer_in_prefix


def test_choice_and_word_answers() -> None:
    choice = ChoiceGrader()
    assert judge_prefix(choice, "so the answer is C", "C") == judge_prefix(choice, "Answer: (C)", "C")
    assert judge_prefix(choice, "Option (C) does not fit the data", "C").answer_in_prefix is True
    assert judge_prefix(choice, "Answer: (B", "C").answer_in_prefix is False
    assert judge_prefix(choice, "Answer: (", "C").form == CUT_INSIDE_ANSWER
    assert judge_prefix(choice, "A total of 3 options remain", "A").answer_in_prefix is False
    exact = ExactGrader()
    assert judge_prefix(exact, "So the day is Monday.", "Monday").answer_stated_in_prefix is True
    assert judge_prefix(exact, "It was a Monday.", "Monday").answer_in_prefix is True
    assert judge_prefix(exact, "Mondays are busy.", "Monday").answer_in_prefix is False


def test_undecided_without_the_math_graders_equivalence() -> None:
    # On a client the math grader cannot compare \sqrt{8} with 2\sqrt{2}; numbers it can.
    math = get_grader("math")
    leak = judge_prefix(math, r"We find \boxed{\sqrt{8}}.", r"2\sqrt{2}")
    assert (leak.answer_stated_in_prefix, leak.answer_in_prefix) == (None, None)
    assert judge_prefix(math, r"We find \boxed{12}.", "13").answer_stated_in_prefix is False
    assert judge_prefix(math, r"We find \boxed{\frac{24}{2}}.", "12").answer_stated_in_prefix is True
    # Something else settles the lenient flag.
    assert judge_prefix(math, "x = 12\n\\boxed{\\sqrt{8}}\nAnswer:", "12").answer_in_prefix is True


def test_value_equivalence_follows_the_graders() -> None:
    def same(stated: str, reference: str, approximate: bool = False) -> bool:
        return same_value(parse_value(stated), parse_value(reference), approximate=approximate)

    assert same(r"\dfrac{3}{6}", "1/2") and same("0.50", r"\frac12") and same("12.50", "12.5")
    assert same("50\\%", "0.5") and same("50%", "50") and same("1{,}000", "1000") and same("x = 3", "3")
    assert same(r"45^\circ", "45") and same(r"12\text{ cm}", "12") and same("(12)", "12")
    # math-verify rounds a float to 6 places; the lenient flag accepts a shorter rounding.
    assert same("0.333333", "1/3") and not same("0.3333", "1/3") and same("0.3333", "1/3", approximate=True)
    assert not same("0.33", "1/3", approximate=True)  # too few digits to stand for 1/3
    assert not same("-3", "3") and not same("1/20", "1/2") and not same("120", "12")
    assert same(r"\sqrt2", r"\sqrt{2}") and not same(r"2\sqrt2", r"\sqrt8")  # the graders decide those


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
        # A prefix cut inside the box states nothing yet (the lenient flag catches it).
        (r"so the result is \boxed{7", "7", False),
        ("Answer: 1,000", "1000", True),
        # The exact grader's statements, compared by value.
        (r"\boxed{\frac{1}{2}}", "1/2", True),
        ("The answer is 0.5", "1/2", True),
        ("Answer: 12 apples, which we counted", "12", True),
        ("", "7", False),
    ],
)
def test_states_answer_with_the_exact_grader(text: str, reference: str, expected: bool) -> None:
    assert states_answer(ExactGrader(), text, reference) is expected


def test_states_answer_uses_the_graders_own_equivalence() -> None:
    math = serving_grader("math")
    assert states_answer(math, r"so x = \frac{1}{2}, hence \boxed{0.5}", "1/2") is True
    assert states_answer(math, r"hence \boxed{2\sqrt{2}}", r"\sqrt{8}") is True
    assert states_answer(math, r"x is \frac{1}{2} here", "1/2") is False
    assert states_answer(ChoiceGrader(), "Answer: (c)\nor rather", "C") is True
    assert states_answer(ChoiceGrader(), "A total of 3 options remain", "A") is False


def test_states_answer_compares_each_distinct_statement_once() -> None:
    compared: list[str] = []

    def equivalent(extracted: str, reference: str) -> bool:
        compared.append(extracted)
        return False

    grader: Grader = get_grader("math", math_equivalence=equivalent)
    assert states_answer(grader, "Answer: y+1\n\\boxed{y+1}\nAnswer: 2y", "5") is False
    assert compared == ["y+1", "2y"]
    # Two numbers that differ need no grader.
    assert states_answer(grader, "Answer: 4\n\\boxed{6}", "5") is False
    assert compared == ["y+1", "2y"]


def test_the_judgement_travels_from_the_service_to_the_client() -> None:
    prefix = Prefix(0.5, "Answer: 7", 3, 6, answer_in_prefix=True, answer_stated_in_prefix=True)
    cut = Prefix(0.25, "Answer:", 2, 6, answer_in_prefix=True, answer_stated_in_prefix=False)
    strong = StrongCot("p1", "Answer: 7", "7", True, 6, prefixes=(prefix, cut, Prefix(0.0, "", 0, 6)))
    cot = transfer_event_from_proto(transfer_event_to_proto(strong))
    assert isinstance(cot, StrongCot)
    assert [(p.answer_in_prefix, p.answer_stated_in_prefix) for p in cot.prefixes] == [
        (True, True),
        (True, False),
        (None, None),
    ]
    for lenient, strict in ((True, True), (True, False), (False, False), (None, None)):
        row = FractionResult("p1", 0.5, 3, 6, 4, 2, answer_in_prefix=lenient, answer_stated_in_prefix=strict)
        back = transfer_event_from_proto(transfer_event_to_proto(row))
        assert isinstance(back, FractionResult)
        assert (back.answer_in_prefix, back.answer_stated_in_prefix) == (lenient, strict)


def test_a_prefix_streamed_on_its_own_is_not_judged() -> None:
    # StreamPrefixes knows no reference answer: the fields stay unset, not False.
    message = strong_event_to_proto(Prefix(0.5, "Answer: 7", 3, 6))
    assert not message.prefix.HasField("answer_in_prefix")
    assert not message.prefix.HasField("answer_stated_in_prefix")
    back = strong_event_from_proto(message)
    assert isinstance(back, Prefix)
    assert (back.answer_in_prefix, back.answer_stated_in_prefix) == (None, None)


def test_the_results_folder_keeps_the_judgement_and_reads_old_folders(tmp_path: Path) -> None:
    writer = _RowWriter(tmp_path, "abc", on_row=None)
    prefixes = (
        Prefix(0.0, "", 0, 6, answer_in_prefix=False, answer_stated_in_prefix=False),
        Prefix(1.0, "Answer: 7", 6, 6, answer_in_prefix=True, answer_stated_in_prefix=True),
    )
    writer.add_strong(StrongCot("p1", "Answer: 7", "7", True, 6, prefixes=prefixes))
    writer.add_result(FractionResult("p1", 1.0, 6, 6, 4, 4, answer_in_prefix=True, answer_stated_in_prefix=True))
    writer.close()
    row = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert (row["answer_in_prefix"], row["answer_stated_in_prefix"]) == (True, True)
    stored = json.loads((tmp_path / STRONG_FILE).read_text())
    assert [prefix["answer_in_prefix"] for prefix in stored["prefixes"]] == [False, True]
    state = RunFolder(tmp_path).load_state("abc")
    assert [prefix.answer_stated_in_prefix for prefix in state.strong["p1"].prefixes] == [False, True]

    # A folder written before the two flags: its flag read answer statements only, so a True
    # still implies both, and anything else is unknown until judged again.
    old = tmp_path / "old"
    old.mkdir()
    for prefix in stored["prefixes"]:
        del prefix["answer_stated_in_prefix"]
    del stored["prefixes"][1]["answer_in_prefix"]
    (old / STRONG_FILE).write_text(json.dumps(stored) + "\n")
    state = RunFolder(old).load_state("abc")
    assert [(p.answer_in_prefix, p.answer_stated_in_prefix) for p in state.strong["p1"].prefixes] == [
        (None, None),
        (None, None),
    ]


def _old_folder(folder: Path, cot: str, rows: Sequence[Mapping[str, object]]) -> Path:
    """A results folder as the runner wrote it before the strict flag (one problem, four cuts)."""
    folder.mkdir()
    fractions = [0.0, 0.25, 0.5, 1.0]
    (folder / "run.json").write_text(json.dumps({"fractions": fractions, "grader": "exact", "settings_hash": "h"}))
    prefixes = [
        {"fraction": f, "text": cot[: int(f * len(cot))], "num_tokens": 0, "cot_num_tokens": 0} for f in fractions
    ]
    strong = {"problem_id": "p", "cot": cot, "answer": "12", "correct": True, "cot_num_tokens": 0, "prefixes": prefixes}
    (folder / STRONG_FILE).write_text(json.dumps({**strong, "settings_hash": "h"}) + "\n")
    base = {"problem_id": "p", "n": 4, "num_correct": 0, "prefix_num_tokens": 0, "cot_num_tokens": 0}
    lines = [json.dumps({**base, "settings_hash": "h", **row}) for row in rows]
    (folder / RESULTS_FILE).write_text("\n".join(lines) + "\n")
    return folder


def test_old_results_folders_are_judged_again_from_their_prefixes(tmp_path: Path) -> None:
    from cot_transfer.experiment.load import load

    # The old flag said False at 0.5: the prefix ends in "x = 12", which the lenient flag catches.
    cot = "Counting the apples in each basket gives x = 12 here. Then we check. So the answer is \\boxed{12}."
    rows = [{"fraction": f, "answer_in_prefix": f == 1.0} for f in (0.0, 0.25, 0.5, 1.0)]
    run = load_run(_old_folder(tmp_path / "old", cot, rows))
    flags = [(row.answer_in_prefix, row.answer_stated_in_prefix) for row in run.weak_rows]
    assert flags == [(False, False), (False, False), (True, False), (True, True)]
    assert run.answer_in_prefix_judged == 3
    frame = load(tmp_path / "old").results.sort_values("fraction")
    assert list(frame["answer_in_prefix"]) == [False, False, True, True]
    assert list(frame["answer_stated_in_prefix"]) == [False, False, False, True]

    # Without the prefix texts an old False stays unknown; an old True still holds.
    bare = _old_folder(tmp_path / "bare", cot, rows)
    (bare / STRONG_FILE).unlink()
    flags = [(row.answer_in_prefix, row.answer_stated_in_prefix) for row in load_run(bare).weak_rows]
    assert flags == [(None, None), (None, None), (None, None), (True, True)]


@pytest.mark.parametrize(
    "text",
    ["1" * 50_000, "\\boxed{" * 5_000, "1,000," * 5_000, "{" * 20_000, "so x = " * 5_000, "$" * 20_000],
    ids=["digits", "open-boxes", "thousands", "braces", "assignments", "dollars"],
)
def test_pathological_prefixes_stay_linear(text: str) -> None:
    """A long CoT is judged at every fraction: no input may make the check quadratic."""
    started = time.perf_counter()
    judge_prefix(ExactGrader(), text, "1/2")
    assert time.perf_counter() - started < 2.0


def test_no_reference_leaves_both_flags_unknown() -> None:
    assert judge_prefix(ExactGrader(), "so x = 12.", " ") == PrefixLeak(None, None)
