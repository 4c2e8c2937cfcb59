"""Answer extraction and the graders (``cot_transfer.domain.answers``); the math grader's table
rows compare through the service's math-verify pool (``cot_transfer.serving.replicas.graders``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cot_transfer.domain.answers import (
    DEFAULT_GRADER,
    ChoiceGrader,
    ExactGrader,
    GradedAnswer,
    Grader,
    MathGrader,
    answer_lines,
    boxed_contents,
    choice_letter,
    final_answer_statement,
    get_grader,
    grade,
    grader_names,
    last_boxed_content,
    normalize_answer,
)
from cot_transfer.domain.errors import NotFoundError, UnavailableError
from cot_transfer.serving.replicas.graders import service_grader as serving_grader
from tests.fresh_interpreter import run_fresh

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
    # exact
    (r"\boxed{42}", "42", "exact", True),
    ("Answer: 1/2", "0.5", "exact", False),
    ("The answer is 17.", "17", "exact", True),
    ("Final Answer: The final answer is 5", "5", "exact", True),
    ("**Answer:** 12", "12", "exact", True),
    # no stated answer is never correct, whatever numbers stand in the text
    ("the total is 17", "17", "exact", False),
    ("3+7=0, 0-5*2\n0-5=5, 5*2\n5*2=0", "0", "exact", False),
    # "1,000" is one number
    ("Answer: 1,000", "1000", "exact", True),
    ("Answer: 12,345.5", "12345.5", "exact", True),
    ("Answer: 1,2", "12", "exact", False),
    # the testbed's CoT format
    ("3+7=0, 0-5*2\n0-5=5, 5*2\n5*2=0\nAnswer: 0", "0", "exact", True),
]


@pytest.mark.parametrize(("text", "reference", "grader_name", "expected"), GRADING_TABLE)
def test_grading_table(text: str, reference: str, grader_name: str, expected: bool) -> None:
    assert grade(serving_grader(grader_name), text, reference).correct is expected


def test_table_is_large_and_mixed() -> None:
    assert len(GRADING_TABLE) >= 30
    assert {expected for *_, expected in GRADING_TABLE} == {True, False}


# reader -> (text, expected): what each reader takes from a text.
READINGS: dict[Callable[[str], str | None], list[tuple[str, str | None]]] = {
    # the last box, its braces balanced; an open one is no answer
    last_boxed_content: [
        (r"first \boxed{1} then \boxed{\frac{a}{b}}.", r"\frac{a}{b}"),
        (r"\boxed{\{1, \{2\}\}}", r"\{1, \{2\}\}"),
        (r"\boxed 5$", "5"),
        (r"\fbox{7}", "7"),
        (r"\boxed{1} and at the end \boxed{2", None),
        ("no box here {x}", None),
        (r"\boxed", None),
    ],
    # the final answer statement, the last one where there are several
    final_answer_statement: [
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
    # a choice letter, bare or dressed
    choice_letter: [
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
    # an answer line needs a marker that is a whole word
    ExactGrader().extract: [
        ("I answered 5 of them", None),
        ("check my answer again", None),
        ("the answers are all different", None),
        ("Answer: 5", "5"),
        ("answer = 5", "5"),
        ("The answer is: 7", "7"),
        ("So the final answer is 9", "9"),
        ("I answered 3 questions.\nAnswer: 4", "4"),
    ],
    # the article "a" is not choice A
    ChoiceGrader().extract: [
        ("The answer is: A total of 12 apples", None),
        ("Answer: a total of 12", None),
        ("Answer: A) 12", "A"),
        ("Answer: A", "A"),
        ("Answer: (A) total", "A"),
        ("Answer: B because it is larger", "B"),
    ],
}


@pytest.mark.parametrize(
    ("read", "text", "expected"),
    [(read, text, expected) for read, cases in READINGS.items() for text, expected in cases],
)
def test_what_a_reader_takes_from_a_text(read: Callable[[str], str | None], text: str, expected: str | None) -> None:
    assert read(text) == expected


def test_boxed_without_brace_does_not_take_a_later_brace() -> None:
    assert last_boxed_content(r"\boxed 5 and {x}") == "5"


def test_math_extract_prefers_the_box_and_has_no_last_number_fallback() -> None:
    grader = MathGrader()
    assert grader.extract("Answer: 3\n\\boxed{4}") == "4"
    assert grader.extract("the sum is 3 + 4 = 7") is None


def test_choice_extract_returns_upper_case_letter() -> None:
    assert ChoiceGrader().extract(r"thinking... \boxed{b}") == "B"
    assert ChoiceGrader().extract("no letter here") is None


def test_choice_against_a_reference_that_is_not_a_letter_is_wrong() -> None:
    assert not ChoiceGrader().is_correct("B", "42")


@pytest.mark.parametrize("grader", [ExactGrader(), MathGrader(), ChoiceGrader()])
def test_nothing_extracted_is_not_correct(grader: Grader) -> None:
    assert grader.is_correct(None, "1") is False


def test_exact_grader_has_no_last_number_fallback() -> None:
    grader = ExactGrader()
    assert grader.extract("the sum is 3 + 4 = 7") is None
    # A cut-off completion of the testbed's mod-10 task ends in a digit a tenth of the time.
    assert grade(grader, "3+7=0, 0-5*2\n0-5=5, 5*", "5").correct is False


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("1,000", "1000"), ("-1,234,567.25", "-1234567.25"), ("1,2", "1,2"), ("(1,000)", "(1,000)"), ("10,00", "10,00")],
)
def test_thousands_separators_are_read_only_in_whole_numbers(answer: str, expected: str) -> None:
    assert normalize_answer(answer) == expected


def test_all_statements_of_a_text() -> None:
    text = "\\boxed{1} first.\nAnswer: 2\nI answered 3.\nThe final answer is 4\n\\boxed{5"
    assert boxed_contents(text) == ["1"]
    assert answer_lines(text) == ["2", "4"]
    assert ExactGrader().statements(text) == ["1", "2", "4"]
    assert MathGrader().statements(text) == ["1", "2", "4"]
    assert ChoiceGrader().statements("Answer: (B)\n\\boxed{C}\nso (D)") == ["C", "B", "C"]


def test_math_grader_without_an_equivalence_extracts_but_refuses_to_compare() -> None:
    grader = get_grader("math")
    assert grader.extract(r"so \boxed{\frac12}") == r"\frac12"
    with pytest.raises(UnavailableError, match="math-verify"):
        grader.is_correct(r"\frac12", "0.5")


def test_math_grader_compares_with_the_injected_equivalence() -> None:
    calls: list[tuple[str, str]] = []

    def equivalent(extracted: str, reference: str) -> bool:
        calls.append((extracted, reference))
        return extracted == "1/2"

    grader = get_grader("math", math_equivalence=equivalent)
    assert grade(grader, r"\boxed{1/2}", "0.5").correct is True
    assert grade(grader, r"\boxed{2/4}", "0.5").correct is False
    assert calls == [("1/2", "0.5"), ("2/4", "0.5")]


def test_importing_answer_extraction_leaves_sympy_and_math_verify_out() -> None:
    code = (
        "import sys, logging\n"
        "import cot_transfer.domain.answers\n"
        "import cot_transfer.experiment.datasets\n"
        "loaded = sorted(name for name in ('sympy', 'math_verify') if name in sys.modules)\n"
        "names = ('math_verify.parser', 'math_verify.grader')\n"
        "filters = [f for name in names for f in logging.getLogger(name).filters]\n"
        "assert not loaded and not filters, (loaded, filters)\n"
    )
    run_fresh(code)


def test_grade_returns_the_extracted_answer() -> None:
    assert grade(serving_grader("math"), r"\boxed{0.5}", "1/2") == GradedAnswer(extracted="0.5", correct=True)


def test_grader_registry() -> None:
    assert grader_names() == ["choice", "exact", "math"]
    assert DEFAULT_GRADER == "exact"
    assert get_grader("").name == "exact"
    for name in grader_names():
        assert get_grader(name).name == name


def test_unknown_grader_names_the_known_ones() -> None:
    with pytest.raises(NotFoundError, match=r"'latex'.*choice, exact, math"):
        get_grader("latex")
