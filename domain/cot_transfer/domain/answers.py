r"""Answers: extract the answers a text states and compare them with a reference.

A grader is chosen per request by name; ``get_grader`` raises ``NotFoundError`` for an
unknown name so the edge can answer with a clear status instead of failing mid-run.

Graders:

* ``exact``: last ``\boxed{}``, else the last answer line ("Answer: X", "The answer is X");
  equal after case/space/punctuation normalisation, with "1,000" read as 1000. A text that
  states no answer is never correct, whatever numbers stand in it: a completion cut off
  mid-computation would otherwise be graded on whatever number it happened to end with.
* ``math``: last ``\boxed{}``, else the last final-answer statement ("The final answer is X",
  "Final Answer: X", "Answer: X"). Equivalence (fractions, decimals, LaTeX, roots, sets, ...)
  is decided by math-verify, which this pure package does not import: the service injects it
  (``cot_transfer.serving.replicas.graders``) and runs it in worker processes it can kill. Without an
  injected equivalence the math grader still extracts, but comparing raises
  ``UnavailableError`` rather than grading anything wrong.
* ``choice``: a single option letter A-E ("Answer: (B)", ``\boxed{C}``, "the answer is D"),
  compared case-insensitively with the reference letter.

``states_answer`` tells whether a text (a CoT prefix) already states the reference answer in
any of its answer statements; ``cot_transfer.domain.leaks`` builds the two leak flags on it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cot_transfer.domain.errors import NotFoundError, UnavailableError
from cot_transfer.domain.maths_values import MathValue, parse_value, same_value


class Grader(Protocol):
    name: str

    def extract(self, text: str) -> str | None:
        """The final answer stated in ``text``, or None when it states none."""

    def statements(self, text: str) -> list[str]:
        """Every answer ``text`` states, final or not; includes ``extract(text)`` when set."""

    def is_correct(self, extracted: str | None, reference: str) -> bool:
        """Whether an extracted answer matches the reference answer."""


@dataclass(frozen=True)
class GradedAnswer:
    extracted: str | None
    correct: bool


def grade(grader: Grader, text: str, reference: str) -> GradedAnswer:
    extracted = grader.extract(text)
    return GradedAnswer(extracted=extracted, correct=grader.is_correct(extracted, reference))


def states_answer(grader: Grader, text: str, reference: str) -> bool:
    r"""Whether ``text`` states ``reference`` in any of its answer statements (each box, each
    answer line, each final-answer statement, not only the last).

    A statement counts when its value equals the reference (``maths_values``: "0.5" and
    ``\frac{1}{2}`` state 1/2 whatever the grader) or when the grader's own equivalence says so;
    the grader is asked only about its own statements, each distinct one once, and only when the
    values did not settle it. The math grader without math-verify raises ``UnavailableError``.
    """
    own = list(dict.fromkeys(grader.statements(text)))
    if grader.name != "choice":
        value = parse_value(reference)
        readers = [*own, *boxed_contents(text), *answer_lines(text), *final_answer_statements(text)]
        if any(_statement_value_equals(statement, value) for statement in dict.fromkeys(readers)):
            return True
        if value.number is not None:
            # Two numbers that differ differ for every grader: no need to ask math-verify.
            own = [statement for statement in own if parse_value(statement).number is None]
    return any(grader.is_correct(statement, reference) for statement in own)


# Prose after a stated value: "12 apples, which is ...", "0.5 because ...".
_AFTER_VALUE = re.compile(r",\s|;|\.\s|\s(?:since|because|as|which|so|and)\b", re.IGNORECASE)


def _statement_value_equals(statement: str, reference: MathValue) -> bool:
    head = _AFTER_VALUE.split(statement, maxsplit=1)[0]
    return any(same_value(parse_value(candidate), reference) for candidate in dict.fromkeys((statement, head)))


_BOXED = re.compile(r"\\(?:boxed|fbox)\b")


_BARE_BOX = re.compile(r"[^\s$]+")


def _closing_braces(text: str) -> dict[int, int]:
    """Each "{" position -> its matching "}" position (unclosed ones left out), in one pass."""
    closing: dict[int, int] = {}
    opened: list[int] = []
    for index, char in enumerate(text):
        if char == "{":
            opened.append(index)
        elif char == "}" and opened:
            closing[opened.pop()] = index
    return closing


def _box_content(text: str, position: int, closing: Mapping[int, int] | None = None) -> str | None:
    """The content of the box whose command ends at ``position``; None when unclosed or empty.
    ``closing`` (``_closing_braces(text)``) saves a scan per box when there are many."""
    while position < len(text) and text[position] in " \t":
        position += 1
    if position >= len(text):
        return None
    if text[position] != "{":
        bare = _BARE_BOX.match(text, position)
        return bare.group(0) if bare else None
    if closing is None:
        closing = _closing_braces(text[position:])
        end = closing.get(0)
        return None if end is None else text[position + 1 : position + end].strip()
    end = closing.get(position)
    return None if end is None else text[position + 1 : end].strip()


def last_boxed_content(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``), with nested braces balanced.

    The brace-less form ``\boxed 5`` yields ``5``. An unclosed last box (a completion cut
    off mid-answer) yields None rather than an earlier box, since the text's final answer
    is the unfinished one.
    """
    matches = list(_BOXED.finditer(text))
    return _box_content(text, matches[-1].end()) if matches else None


def boxed_contents(text: str) -> list[str]:
    r"""The content of every closed ``\boxed{}`` in ``text``, in order."""
    closing = _closing_braces(text)
    contents = (_box_content(text, match.end(), closing) for match in _BOXED.finditer(text))
    return [content for content in contents if content is not None]


# A marker needs ":", "=" or "is" after "answer": "check my answer again" states nothing, and
# the word boundaries keep "I answered 5" from reading as "answer" + "ed 5".
_ANSWER_LINE_MARKER = re.compile(r"\b(?:final\s+)?answer\s*(?:\bis\b\s*[:=]?|[:=])", re.IGNORECASE)


def answer_lines(text: str) -> list[str]:
    """The text after the last answer marker of each line that has one, in order."""
    found: list[str] = []
    for line in text.splitlines():
        markers = list(_ANSWER_LINE_MARKER.finditer(line))
        if markers:
            statement = line[markers[-1].end() :].strip().strip("*").strip()
            if statement:
                found.append(statement)
    return found


def last_answer_line(text: str) -> str | None:
    """The text after the last "Answer:" marker, up to the end of its line."""
    lines = answer_lines(text)
    return lines[-1] if lines else None


# "Final Answer: The final answer is $5$." has two markers; the statement starts after the last.
_FINAL_ANSWER_MARKER = re.compile(
    r"\bfinal\s+answer\s*(?:\bis\b|:|=)|\bthe\s+(?:correct\s+)?answer\s+is\b|\banswer\s*(?:\bis\b|:)",
    re.IGNORECASE,
)
# "**Final Answer**" or "## Final Answer" alone on its line heads the answer on the next line.
_FINAL_ANSWER_HEADING = re.compile(r"\s*final\s+answer\s*:?\s*", re.IGNORECASE)
# Bold and headings only: a single "*" may be multiplication and "_" a subscript.
_MARKDOWN_EMPHASIS = re.compile(r"\*\*|^\s*#{1,6}\s*")
_TRAILING_CLAUSE = re.compile(r"(?:\.\s|\s+I hope it is correct|,\s+(?:so|which|because|since)\b).*$", re.IGNORECASE)
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _strip_math_delimiters(text: str) -> str:
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for opening, closing in _MATH_DELIMITERS:
            if len(text) > len(opening) + len(closing) and text.startswith(opening) and text.endswith(closing):
                text = text[len(opening) : -len(closing)].strip()
                changed = True
    return text


def final_answer_statements(text: str) -> list[str]:
    """The answer after the last final-answer marker of each line that has one, in order.

    A heading alone on its line ("**Final Answer**") takes the next non-empty line. Trailing
    prose ("I hope it is correct", ". This is because ...") and outer math delimiters are cut.
    """
    lines = [_MARKDOWN_EMPHASIS.sub("", line) for line in text.splitlines()]
    found: list[str] = []
    for index, line in enumerate(lines):
        markers = list(_FINAL_ANSWER_MARKER.finditer(line))
        if markers:
            statement = line[markers[-1].end() :].strip(" :\t")
        elif _FINAL_ANSWER_HEADING.fullmatch(line):
            statement = ""
        else:
            continue
        if not statement:
            statement = next((later.strip() for later in lines[index + 1 :] if later.strip()), "")
        statement = _TRAILING_CLAUSE.sub("", statement).strip().rstrip(".").strip()
        statement = _strip_math_delimiters(statement).rstrip(".").strip()
        if statement:
            found.append(statement)
    return found


def final_answer_statement(text: str) -> str | None:
    """The last final-answer statement (see ``final_answer_statements``), or None."""
    statements = final_answer_statements(text)
    return statements[-1] if statements else None


# Thousands separators: "1,000" and "12,345.5" are numbers, "1,2" and "(1,000)" are not.
_GROUPED_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def normalize_answer(answer: str) -> str:
    """Case-, space- and punctuation-insensitive form for exact comparison."""
    text = unicodedata.normalize("NFKC", answer).strip().lower()
    text = text.strip("$ ")
    text = text.rstrip(".")
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\s+", "", text)
    return text.replace(",", "") if _GROUPED_NUMBER.fullmatch(text) else text


class ExactGrader:
    """Extracts the last boxed answer, else the last answer line; correct when it equals the
    reference after normalisation. A text with neither states no answer."""

    name = "exact"

    def extract(self, text: str) -> str | None:
        boxed = last_boxed_content(text)
        if boxed is not None:
            return boxed
        return last_answer_line(text)

    def statements(self, text: str) -> list[str]:
        return [*boxed_contents(text), *answer_lines(text)]

    def is_correct(self, extracted: str | None, reference: str) -> bool:
        if extracted is None:
            return False
        return normalize_answer(extracted) == normalize_answer(reference)


MathEquivalence = Callable[[str, str], bool]
"""Whether an extracted answer (first) equals a reference (second) mathematically."""


class MathGrader:
    r"""Extracts the last ``\boxed{}``, else the last final-answer statement; correct when the
    injected ``equivalence`` (math-verify in the service) finds it equal to the reference."""

    name = "math"

    def __init__(self, equivalence: MathEquivalence | None = None) -> None:
        self._equivalence = equivalence

    def extract(self, text: str) -> str | None:
        boxed = last_boxed_content(text)
        if boxed:
            return boxed
        return final_answer_statement(text)

    def statements(self, text: str) -> list[str]:
        return [box for box in boxed_contents(text) if box] + final_answer_statements(text)

    def is_correct(self, extracted: str | None, reference: str) -> bool:
        if extracted is None or not extracted.strip():
            return False
        if self._equivalence is None:
            raise UnavailableError(
                "the math grader compares answers with math-verify, which runs in the service"
                " (install cot-transfer[serve] and use cot_transfer.serving.replicas.graders.service_grader)"
            )
        return self._equivalence(extracted, reference)


CHOICE_LETTERS = "ABCDE"
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textrm)\s*\{([^{}]*)\}")
_CHOICE_ALONE = re.compile(rf"\(?\s*([{CHOICE_LETTERS}])\s*\)?", re.IGNORECASE)
_CHOICE_PARENTHESISED = re.compile(rf"[(\[]\s*([{CHOICE_LETTERS}])\s*[)\]]", re.IGNORECASE)
# Lower case is not accepted unparenthesised in running text: "the answer is a bit off"; nor
# is "A" before a lower-case word, which is the article: "A total of 12".
_CHOICE_LEADING = re.compile(rf"(?!A\s+[a-z])([{CHOICE_LETTERS}])(?:[).:,]|\s|$)")
_CHOICE_WORD = re.compile(r"^(?:option|choice)\s+", re.IGNORECASE)


def _clean_choice_text(text: str) -> str:
    # Unlike in math answers, "*" is only ever emphasis around an option letter.
    cleaned = _LATEX_WRAPPER.sub(r"\1", text).replace("*", "")
    cleaned = _strip_math_delimiters(_MARKDOWN_EMPHASIS.sub("", cleaned)).strip().rstrip(".").strip()
    return _CHOICE_WORD.sub("", cleaned)


def choice_letter(text: str) -> str | None:
    """The option letter (upper case) that ``text`` starts with: "B", "(b)", "C) 42", "Option D"."""
    cleaned = _clean_choice_text(text)
    match = _CHOICE_ALONE.fullmatch(cleaned) or _CHOICE_PARENTHESISED.match(cleaned) or _CHOICE_LEADING.match(cleaned)
    return match.group(1).upper() if match else None


class ChoiceGrader:
    r"""Extracts one option letter A-E from ``\boxed{}``, else the last final-answer statement,
    else a last line holding only a letter; correct when it is the reference letter."""

    name = "choice"

    def extract(self, text: str) -> str | None:
        boxed = last_boxed_content(text)
        if boxed is not None:
            return choice_letter(boxed)
        statement = final_answer_statement(text)
        if statement is not None:
            return choice_letter(statement)
        last_line = next((line for line in reversed(text.splitlines()) if line.strip()), "")
        alone = _CHOICE_ALONE.fullmatch(_clean_choice_text(last_line))
        return alone.group(1).upper() if alone else None

    def statements(self, text: str) -> list[str]:
        letters = [choice_letter(stated) for stated in [*boxed_contents(text), *final_answer_statements(text)]]
        final = self.extract(text)
        return [letter for letter in [*letters, final] if letter is not None]

    def is_correct(self, extracted: str | None, reference: str) -> bool:
        if extracted is None:
            return False
        extracted_letter = choice_letter(extracted)
        return extracted_letter is not None and extracted_letter == choice_letter(reference)


DEFAULT_GRADER = "exact"
_GRADER_NAMES = ("choice", "exact", "math")


def grader_names() -> list[str]:
    return list(_GRADER_NAMES)


def get_grader(name: str, math_equivalence: MathEquivalence | None = None) -> Grader:
    """The grader called ``name`` (the default for ""). The math grader compares with
    ``math_equivalence``; without one it extracts but cannot compare (see ``MathGrader``)."""
    resolved = name or DEFAULT_GRADER
    if resolved == "exact":
        return ExactGrader()
    if resolved == "math":
        return MathGrader(math_equivalence)
    if resolved == "choice":
        return ChoiceGrader()
    raise NotFoundError(f"grader {name!r} is unknown; known graders: {', '.join(grader_names())}")
