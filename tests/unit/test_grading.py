from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cot_transfer.domain.errors import NotFoundError
from cot_transfer.domain.grading import (
    DEFAULT_GRADER,
    ChoiceGrader,
    ExactGrader,
    GradedAnswer,
    MathGrader,
    choice_letter,
    compare_math_in_process,
    final_answer_statement,
    get_grader,
    grade,
    grader_names,
    last_boxed_content,
    math_answers_equivalent,
)

# (completion text, reference, grader, expected correct)
GRADING_TABLE = [
    # math: fractions, decimals, LaTeX forms
    (r"So the result is \boxed{\frac{1}{2}}.", "0.5", "math", True),
    (r"\boxed{\dfrac{1}{2}}", "1/2", "math", True),
    (r"\boxed{\tfrac{3}{4}}", "0.75", "math", True),
    (r"\boxed{\frac12}", r"\frac{1}{2}", "math", True),
    (r"\boxed{2/4}", r"\frac{1}{2}", "math", True),
    (r"\boxed{0.3333}", r"\frac{1}{3}", "math", False),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", "math", False),
    (r"\boxed{3.0}", "3", "math", True),
    (r"\boxed{12.50}", "12.5", "math", True),
    (r"\boxed{1,000}", "1000", "math", True),
    (r"\boxed{-3}", "3", "math", False),
    (r"\boxed{12}", "13", "math", False),
    # roots and powers
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", "math", True),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\sqrt{3}/2", "math", True),
    (r"\boxed{2}", r"\sqrt{4}", "math", True),
    (r"\boxed{10^3}", "1000", "math", True),
    (r"\boxed{\sqrt{2}}", r"\sqrt{3}", "math", False),
    # percentages
    (r"\boxed{50\%}", "0.5", "math", True),
    (r"\boxed{25\%}", r"\frac{1}{4}", "math", True),
    (r"\boxed{50\%}", "0.4", "math", False),
    # sets, tuples, intervals, equations, expressions
    (r"\boxed{\{1, 2\}}", r"\{2, 1\}", "math", True),
    (r"\boxed{(1, 2)}", r"\left(1,2\right)", "math", True),
    (r"\boxed{(2, 1)}", "(1, 2)", "math", False),
    (r"\boxed{[1, 2)}", "[1, 2)", "math", True),
    (r"\boxed{x = 3}", "3", "math", True),
    (r"\boxed{(x+1)^2}", "x^2+2x+1", "math", True),
    (r"\boxed{\frac{\pi}{4}}", r"\dfrac{\pi}{4}", "math", True),
    (r"\boxed{\pi}", "3.14159", "math", False),
    (r"\boxed{90^\circ}", "90", "math", True),
    (r"\boxed{5 \text{ cm}}", "5", "math", True),
    (r"\boxed{\infty}", r"\infty", "math", True),
    # math: answer statements instead of a box
    ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "0.75", "math", True),
    ("We are done.\nAnswer: 42", "42", "math", True),
    ("**Final Answer**\n\n$\\sqrt{2}$", r"\sqrt{2}", "math", True),
    ("The answer is 7. This is because 3 + 4 = 7.", "7", "math", True),
    ("We get 42 in the end", "42", "math", False),
    ("", "1", "math", False),
    # math: plain text answers fall back to exact comparison
    (r"\boxed{\text{Monday}}", r"\text{Monday}", "math", True),
    # choice
    ("Answer: (B)", "B", "choice", True),
    (r"\boxed{C}", "c", "choice", True),
    ("So the answer is D", "D", "choice", True),
    ("so the answer is (b).", "B", "choice", True),
    (r"\boxed{\text{(E)}}", "(E)", "choice", True),
    ("Final answer: Option C", "C", "choice", True),
    ("Answer: (B)", "C", "choice", False),
    ("The answer is a bit unclear", "A", "choice", False),
    ("The answer is F", "F", "choice", False),
    ("Working...\n\n(A)", "A", "choice", True),
    # exact keeps its behaviour
    (r"\boxed{42}", "42", "exact", True),
    ("Answer: 1/2", "0.5", "exact", False),
    ("the total is 17", "17", "exact", True),
]


@pytest.mark.parametrize(("text", "reference", "grader_name", "expected"), GRADING_TABLE)
def test_grading_table(text: str, reference: str, grader_name: str, expected: bool) -> None:
    assert grade(get_grader(grader_name), text, reference).correct is expected


def test_table_is_large_and_mixed() -> None:
    assert len(GRADING_TABLE) >= 30
    assert {expected for *_, expected in GRADING_TABLE} == {True, False}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"first \boxed{1} then \boxed{\frac{a}{b}}.", r"\frac{a}{b}"),
        (r"\boxed{\{1, \{2\}\}}", r"\{1, \{2\}\}"),
        (r"\boxed 5$", "5"),
        (r"\fbox{7}", "7"),
        (r"\boxed{1} and at the end \boxed{2", None),
        ("no box here {x}", None),
        (r"\boxed", None),
    ],
)
def test_last_boxed_content(text: str, expected: str | None) -> None:
    assert last_boxed_content(text) == expected


def test_boxed_without_brace_does_not_take_a_later_brace() -> None:
    assert last_boxed_content(r"\boxed 5 and {x}") == "5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Final Answer: The final answer is $5$. I hope it is correct.", "5"),
        ("The final answer is \\(\\sqrt{2}\\).", "\\sqrt{2}"),
        ("**Answer:** 12", "12"),
        ("## Final Answer\n\n$$x = 3$$\n", "x = 3"),
        ("Answer: 10, so we stop", "10"),
        ("**Answer:** $a_n = 2n$", "a_n = 2n"),
        ("Answer: 2*3", "2*3"),
        ("Answer: 1\nmore work\nAnswer: 2", "2"),
        ("nothing stated", None),
    ],
)
def test_final_answer_statement(text: str, expected: str | None) -> None:
    assert final_answer_statement(text) == expected


def test_math_extract_prefers_the_box_and_has_no_last_number_fallback() -> None:
    grader = MathGrader()
    assert grader.extract("Answer: 3\n\\boxed{4}") == "4"
    assert grader.extract("the sum is 3 + 4 = 7") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("(b)", "B"),
        ("C) 42", "C"),
        ("Option D", "D"),
        ("**E**", "E"),
        ("*B*", "B"),
        ("$A$", "A"),
        ("All", None),
        ("b and more", None),
    ],
)
def test_choice_letter(text: str, expected: str | None) -> None:
    assert choice_letter(text) == expected


def test_choice_extract_returns_upper_case_letter() -> None:
    assert ChoiceGrader().extract(r"thinking... \boxed{b}") == "B"
    assert ChoiceGrader().extract("no letter here") is None


def test_choice_against_a_reference_that_is_not_a_letter_is_wrong() -> None:
    assert not ChoiceGrader().is_correct("B", "42")


@pytest.mark.parametrize("grader", [ExactGrader(), MathGrader(), ChoiceGrader()])
def test_nothing_extracted_is_not_correct(grader: ExactGrader | MathGrader | ChoiceGrader) -> None:
    assert grader.is_correct(None, "1") is False


@pytest.mark.parametrize(
    "answer",
    [
        r"10^{10^{10}}",
        r"9^{9^{9^{9}}}",
        r"(10^{10})!",
        r"(x+1)^{10^{10}}",
        r"\frac{",
        "}}}{{{",
        r"\sqrt[",
        "x" * 5000,
        "1/0",
        r"\begin{pmatrix}",
    ],
)
def test_math_grader_never_raises_or_hangs_on_hostile_answers(answer: str) -> None:
    started = time.monotonic()
    assert MathGrader().is_correct(answer, "5") is False
    assert time.monotonic() - started < 5


def test_a_runaway_comparison_is_cut_off_and_the_grader_recovers() -> None:
    grader = MathGrader(timeout_seconds=1.0)
    started = time.monotonic()
    # Neither guard catches this binomial; sympy would compute it for hours.
    assert grader.is_correct(r"\binom{10^{9}}{5 \cdot 10^{8}}", "5") is False
    assert time.monotonic() - started < 4
    assert grader.is_correct(r"\frac{1}{2}", "0.5") is True


def test_in_process_comparison_matches_the_worker() -> None:
    assert compare_math_in_process(r"\frac{1}{2}", "0.5") is True
    assert compare_math_in_process(r"10^{10^{10}}", "5") is False
    assert compare_math_in_process("Monday", "monday") is True


def test_math_grader_needs_a_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout_seconds"):
        MathGrader(timeout_seconds=0)


def test_math_grader_works_off_the_main_thread() -> None:
    # math-verify's default signal-based timeouts raise outside the main thread.
    def grade_in_worker(answer: str) -> tuple[bool, bool]:
        return threading.current_thread() is threading.main_thread(), math_answers_equivalent(answer, "0.5")

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(grade_in_worker, [r"\frac{1}{2}", "1/2", "50\\%", "0.6"]))
    assert [on_main for on_main, _ in results] == [False] * 4
    assert [correct for _, correct in results] == [True, True, True, False]


def test_grade_returns_the_extracted_answer() -> None:
    assert grade(get_grader("math"), r"\boxed{0.5}", "1/2") == GradedAnswer(extracted="0.5", correct=True)


def test_grader_registry() -> None:
    assert grader_names() == ["choice", "exact", "math"]
    assert DEFAULT_GRADER == "exact"
    assert get_grader("").name == "exact"
    for name in grader_names():
        assert get_grader(name).name == name


def test_unknown_grader_names_the_known_ones() -> None:
    with pytest.raises(NotFoundError, match=r"'latex'.*choice, exact, math"):
        get_grader("latex")
