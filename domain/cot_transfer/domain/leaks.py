r"""Answer leaks: whether a CoT prefix already holds the reference answer, in two strengths.

A receiver that is handed the answer can copy it, so rows whose prefix holds it are counted
apart. How sure one can be that a prefix holds the answer varies, so there are two flags:

* **strict**, ``answer_stated_in_prefix``: the prefix *states* the reference as its answer:
  an answer statement (any ``\boxed{}``, "Answer: X", "The final answer is X", not only the
  last) equal to the reference under the run's grader or the value equivalence below, or a
  concluding value statement: in one sentence a conclusion cue ("so", "thus", "therefore",
  "hence", "finally", "answer", "final", ``\Rightarrow``, ...) and then "=", "is", "be",
  "equals", "gives", ... followed by a value equal to the reference ("so x = 1/2.",
  "Therefore the probability is $\frac{1}{2}$", "The final answer should be 1/2", "So the
  total is 12 apples").
* **lenient**, ``answer_in_prefix``: the prefix *may* give the answer away: the strict flag,
  or the reference stands anywhere in the prefix as a whole number or maths span (a number
  not glued to an operator, a ``\frac``, a side of an equation or list inside ``$...$``), a
  rounded decimal of it included; or the cut sits inside an answer statement whose text so far
  can still become the reference (``\boxed{14`` for 144; "The answer is 1" for 1/2) or right
  after an answer marker or a concluding "is"/"=" ("x = 12\n\nAnswer:").

Equivalence: ``cot_transfer.domain.maths_values`` (fractions, decimals, LaTeX, percentages,
units and "x =" stripped), plus the grader's own equivalence for its answer statements (the
math grader's math-verify in the service). A number only *looks* like the reference when it
is part of another: 12 in 120, 1/2 in 1/20, 12 in 2024-01-12 or 12:30, 3 in 3+4: none of these
count. A number that merely equals the reference by chance (an intermediate result of 6 in a
problem whose answer is 6) does count for the lenient flag: text alone cannot tell it apart,
which is what "lenient" means; the README gives its measured false-positive rate.

Answers that are not numbers: a maths answer (``\sqrt{2}``, "(1, 2)") is compared as
normalised text with each maths span; a word answer ("Monday") counts for the lenient flag
wherever it stands as a whole word; an option letter (the choice grader) counts where it is
named as an option ("(C)", "option C").
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

from cot_transfer.domain.answers import CHOICE_LETTERS, Grader, choice_letter, states_answer
from cot_transfer.domain.errors import UnavailableError
from cot_transfer.domain.maths_values import MathValue, parse_value, renderings, same_value

# The form that set a flag, strongest first; strict forms set both flags.
ANSWER_STATEMENT = "answer_statement"
CONCLUDING_STATEMENT = "concluding_statement"
VALUE = "value"
CUT_INSIDE_ANSWER = "cut_inside_answer"
CUT_AFTER_MARKER = "cut_after_marker"
STRICT_FORMS = (ANSWER_STATEMENT, CONCLUDING_STATEMENT)
LENIENT_FORMS = (*STRICT_FORMS, VALUE, CUT_INSIDE_ANSWER, CUT_AFTER_MARKER)


@dataclass(frozen=True)
class PrefixLeak:
    """Both flags of one prefix; None where they cannot be decided (the math grader's
    equivalence is not at hand and nothing else settles it)."""

    answer_stated_in_prefix: bool | None
    answer_in_prefix: bool | None
    # The strongest form found (``LENIENT_FORMS``), "" when none.
    form: str = ""


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    text: str


# Numbers: "12", "1,000", "0.5", "1/2", "1 / 2", "50%", "50\%", "50 percent".
_NUMBER = re.compile(
    r"(?:\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?(?:\s*(?:\\%|%)|\s+percent\b)?"
)
_LATEX_FRACTION = re.compile(r"\\[dtc]?frac\s*(?:\{[^{}]*\}|\d)\s*(?:\{[^{}]*\}|\d)")
_OPERATOR_BEFORE = re.compile(r"(?:[-+*/^×·÷△−]|\\times|\\cdot|\\div|\\pm|\\mp)\s*$")
_OPERATOR_AFTER = re.compile(r"^\s*(?:[-+*/^×·÷△−!]|\\times|\\cdot|\\div|\\pm|\\mp)")
# What a binary minus follows: a digit, a one-letter variable or a closing bracket ("x - 3"),
# not a word ("equals -3").
_OPERAND_END = re.compile(r"(?:\d|(?<![A-Za-z])[A-Za-z]|[)\]}!])\s*$")
_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_MONTH_BEFORE = re.compile(rf"\b(?:{_MONTHS})\.?\s*$", re.IGNORECASE)
# Labels and list numbers are no values: "Step 3", "Case 2", a line starting "1." or "2)".
_LABEL_BEFORE = re.compile(
    r"\b(?:step|case|part|line|equation|eq|figure|fig|section|problem|question|example|page|item|round|stage)\.?\s*#?\s*$",
    re.IGNORECASE,
)
_LINE_START = re.compile(r"(?:^|\n)[ \t*#>-]*$")
_THOUSANDS = re.compile(r",\d{3}(?!\d)")
# A number glued to letters is a coefficient or an ordinal ("5x", "2nd"), not a value; a
# longer word is a unit ("12cm").
_GLUED_LETTERS = re.compile(r"^(?:[a-zA-Z](?![a-zA-Z])|st\b|nd\b|rd\b|th\b)")

_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_SEPARATOR = re.compile(
    r"=|≈|≠|≤|≥|<|>|→|⇒|⟹|;|\\(?:approx|equiv|neq?|leq?|geq?|to|rightarrow|Rightarrow|implies|q?quad)(?![a-zA-Z])"
    r"|\\text\s*\{[^{}]*\}"
)

_ASSIGNMENT = re.compile(
    r"(?:=|≈|\\approx(?![a-zA-Z])|\b(?:is|are|was|were|be|equals?|gives?|get|gets|got|becomes?|yields?|makes?"
    r"|comes?\s+to|results?\s+in)\b(?:\s+(?:equal\s+to|exactly|about|approximately|roughly|just|then|now|simply|still|indeed|also))*)",
    re.IGNORECASE,
)
_CUE = re.compile(
    r"\b(?:so|thus|therefore|hence|finally|consequently|altogether|overall|in\s+total|in\s+all|final|answer)\b"
    r"|\\therefore|∴|\\Rightarrow|\\implies|\\Longrightarrow|⇒|⟹",
    re.IGNORECASE,
)
# A sentence ends at ". " (not a decimal point), a blank line, or a line break that does not
# lead into a formula ("Therefore,\n\[ x = 1 \]" is one sentence).
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n\s*\n|(?<![:,\[$])\n")
# What may stand between an answer marker or an assignment and its value.
_GAP = re.compile(r"[\s$*:]*(?:\\[(\[]\s*)?(?:\\(?:boxed|fbox)\s*\{\s*)?\s*")
_MARKUP_ONLY = re.compile(r"[\s$*:]*(?:\\[(\[])?\s*(?:\\(?:boxed|fbox)\s*\{?)?\s*")
_ANSWER_MARKER = re.compile(
    r"\b(?:final\s+)?answer\s*(?:\bis\b\s*[:=]?|[:=])|\bfinal\s+answer\s*(?:\bis\b|:|=)|\bthe\s+(?:correct\s+)?answer\s+is\b"
    r"|\bfinal\s+answer\b[\s*#:]*$",
    re.IGNORECASE,
)
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)\b")
_PLAIN_PARTIAL = re.compile(r"[+-]?[\d.,/]*%?")
_WORD_ANSWER = re.compile(r"[a-z][a-z '\-]*[a-z]")
_MAX_PARTIAL_CHARS = 60
_CONTEXT_CHARS = 40
_CURRENCY_BEFORE = re.compile(r"(?<![$\\])[$€£¥]$")


def _glued_left(text: str, start: int) -> tuple[bool, int]:
    """Whether the span starting at ``start`` is part of a larger expression on its left, and
    where its sign starts (a unary minus belongs to the value: "x = -3")."""
    # What decides is a few characters to the left; anchored searches over the whole text
    # would make a long CoT quadratic.
    before = text[max(0, start - _CONTEXT_CHARS) : start]
    if before and (before[-1].isalnum() or before[-1] in "._^/{\\:"):
        return True, start
    # A currency sign stands between an operator and its operand: "$12 + $2".
    before = _CURRENCY_BEFORE.sub("", before)
    stripped = before.rstrip()
    if stripped and stripped[-1] in "-+−":
        if _OPERAND_END.search(stripped[:-1]):
            return True, start
        return False, len(stripped) - 1
    if _OPERATOR_BEFORE.search(before) or _MONTH_BEFORE.search(before) or _LABEL_BEFORE.search(before):
        return True, start
    return False, start


def _glued_right(text: str, end: int) -> bool:
    after = text[end : end + _CONTEXT_CHARS]
    if not after:
        return False
    if _GLUED_LETTERS.match(after) or after[0] in "^_({" or re.match(r"[.:,]\d", after):
        return True
    return bool(_OPERATOR_AFTER.match(after))


def _standalone(text: str, pattern: re.Pattern[str]) -> Iterator[_Span]:
    for match in pattern.finditer(text):
        start, end = match.start(), match.end()
        if pattern is _NUMBER and start > 0 and (text[start - 1].isdigit() or text[start - 1] == "."):
            continue
        glued, start = _glued_left(text, start)
        line_start = _LINE_START.search(text, max(0, start - _CONTEXT_CHARS), start) is not None
        enumeration = line_start and re.match(r"[.)]\s", text[end : end + 2])
        if not glued and not enumeration and not _glued_right(text, end):
            yield _Span(start, end, text[start:end])


def _split_sides(content: str, offset: int) -> Iterator[_Span]:
    """The sides of a formula: split at relations, ";" and commas (not "1,000") at depth 0."""
    depth, start, index = 0, 0, 0
    while index < len(content):
        char = content[index]
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth = max(0, depth - 1)
        elif depth == 0:
            thousands = char == "," and index > 0 and content[index - 1].isdigit()
            if char == "," and not (thousands and _THOUSANDS.match(content, index)):
                yield _Span(offset + start, offset + index, content[start:index])
                start = index = index + 1
                continue
            separator = _SEPARATOR.match(content, index)
            if separator:
                yield _Span(offset + start, offset + index, content[start:index])
                start = index = separator.end()
                continue
        index += 1
    yield _Span(offset + start, offset + len(content), content[start:])


def value_spans(text: str) -> list[_Span]:
    """Every number and maths span of ``text`` that stands as a value, in order of position."""
    spans = [*_standalone(text, _NUMBER), *_standalone(text, _LATEX_FRACTION)]
    for match in _MATH_SPAN.finditer(text):
        group = next(index for index in range(1, 5) if match.group(index) is not None)
        spans.extend(side for side in _split_sides(match.group(group), match.start(group)) if side.text.strip())
    return sorted(spans, key=lambda span: (span.start, -span.end))


def _may_become(partial: str, reference: MathValue, reference_text: str, choice: bool) -> bool:
    """Whether an answer cut off after ``partial`` may still turn out to be the reference."""
    cleaned = re.sub(r"\\(?:boxed|fbox)\s*\{?|\$|\\[(\[]|\*", "", partial)
    if choice:
        letters = re.findall(rf"(?<![a-zA-Z])[{CHOICE_LETTERS}](?![a-z])", cleaned)
        return not letters or letters[0] == choice_letter(reference_text)
    compact = re.sub(r"\s+", "", cleaned)
    compact = compact.split("=")[-1].lower().replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    compact = re.sub(r"(?<=\d),(?=\d)", "", compact)
    if not compact:
        return True
    forms = {form.replace(",", "") for form in renderings(reference)}
    if any(form.startswith(compact) for form in forms):
        return True
    # Only a plain number can be seen not to be on its way to the reference.
    return not _PLAIN_PARTIAL.fullmatch(compact)


def _cut_in_answer(text: str, reference: MathValue, reference_text: str, choice: bool) -> str:
    """The cut form when ``text`` ends inside an answer statement or right after its marker."""
    boxes = list(_BOX_COMMAND.finditer(text))
    if boxes:
        after = text[boxes[-1].end() :]
        opened = after.lstrip()
        if not opened:
            return CUT_AFTER_MARKER
        if opened.startswith("{"):
            depth = 0
            for char in opened:
                depth += {"{": 1, "}": -1}.get(char, 0)
                if depth == 0:
                    break
            if depth > 0 and not opened[1:].strip():
                return CUT_AFTER_MARKER
            if depth > 0 and _may_become(opened[1:], reference, reference_text, choice):
                return CUT_INSIDE_ANSWER
    last_line_start = text.rfind("\n", 0, len(text.rstrip())) + 1
    markers = list(_ANSWER_MARKER.finditer(text, last_line_start))
    if not markers:
        return ""
    rest = text[markers[-1].end() :]
    if _MARKUP_ONLY.fullmatch(rest):
        return CUT_AFTER_MARKER
    if "\n" in rest or len(rest) > _MAX_PARTIAL_CHARS or _finished(rest):
        return ""
    return CUT_INSIDE_ANSWER if _may_become(rest, reference, reference_text, choice) else ""


def _finished(statement: str) -> bool:
    """Whether an answer statement at the end of a prefix is complete: followed by a space, ended
    by a full stop (not a decimal point: "0." may become "0.5"), or by its closed box or formula."""
    stripped = statement.rstrip()
    if stripped != statement:
        return True
    if stripped.endswith(("!", "?")) or (stripped.endswith(".") and not stripped[-2:-1].isdigit()):
        return True
    balanced = stripped.count("{") == stripped.count("}") and stripped.count("$") % 2 == 0
    return balanced and stripped.endswith(("}", "$", ")", "\\)", "\\]"))


def _concluding(text: str, reference: MathValue, spans: list[_Span], reference_words: str | None) -> tuple[bool, str]:
    """(a concluding statement states the reference, the cut form when the text ends right after
    or inside one)."""
    starts = [span.start for span in spans]
    sentence_ends = [match.end() for match in _SENTENCE_END.finditer(text)]
    end_of_text = len(text.rstrip())
    cut = ""
    for assignment in _ASSIGNMENT.finditer(text):
        ends_before = bisect.bisect_right(sentence_ends, assignment.start())
        sentence = sentence_ends[ends_before - 1] if ends_before else 0
        if not _CUE.search(text, sentence, assignment.start()):
            continue
        gap = _GAP.match(text, assignment.end())
        value_start = gap.end() if gap else assignment.end()
        if value_start >= end_of_text:
            cut = CUT_AFTER_MARKER
            continue
        if reference_words is not None:
            if re.match(rf"{re.escape(reference_words)}\b", text[value_start:], re.IGNORECASE):
                return True, ""
            continue
        index = bisect.bisect_left(starts, value_start - 1)
        while index < len(spans) and starts[index] <= value_start + 1:
            span = spans[index]
            if same_value(parse_value(span.text), reference):
                return True, ""
            if span.end >= end_of_text and _may_become(span.text, reference, "", False):
                cut = CUT_INSIDE_ANSWER
            index += 1
    return False, cut


def _word_reference(reference_text: str, reference: MathValue) -> str | None:
    """The reference as words to look for ("Monday"), or None for a maths answer."""
    words = " ".join(reference_text.strip().strip(".").split())
    if reference.number is None and _WORD_ANSWER.fullmatch(words.lower()) and "\\" not in words:
        return words
    return None


def _named_option(text: str, letter: str) -> bool:
    """Whether ``text`` names option ``letter`` (an upper-case A-E): "(C)", "option C", a line "C)"."""
    pattern = rf"\(\s*{letter}\s*\)|\b(?:option|choice|answer)\s*\(?\s*{letter}\b|(?:^|\n)\s*{letter}[).:]"
    return re.search(pattern, text) is not None


def judge_prefix(grader: Grader, text: str, reference: str) -> PrefixLeak:
    """Both leak flags of ``text`` (a CoT prefix) against ``reference`` (see the module docstring).

    The grader's own equivalence is called only on its answer statements that the value
    equivalence did not already settle; where it raises ``UnavailableError`` (the math grader
    without math-verify, on a client) the strict flag is None unless something else settles it.
    """
    if not reference.strip():
        return PrefixLeak(None, None)  # no reference: nothing to compare with
    value = parse_value(reference)
    choice = grader.name == "choice"
    words = None if choice else _word_reference(reference, value)
    undecided = False
    stated_form = ""

    try:
        if states_answer(grader, text, reference):
            stated_form = ANSWER_STATEMENT
    except UnavailableError:
        undecided = True

    spans = [] if choice else value_spans(text)
    concluded, cut = (False, "") if choice else _concluding(text, value, spans, words)
    if not stated_form and concluded:
        stated_form = CONCLUDING_STATEMENT
    if stated_form:
        return PrefixLeak(True, True, stated_form)

    lenient_form = ""
    if choice:
        letter = choice_letter(reference)
        if letter is not None and _named_option(text, letter):
            lenient_form = VALUE
    elif words is not None:
        if re.search(rf"(?<!\w){re.escape(words)}(?!\w)", text, re.IGNORECASE):
            lenient_form = VALUE
    elif any(same_value(parse_value(span.text), value, approximate=True) for span in spans):
        lenient_form = VALUE
    lenient_form = lenient_form or _cut_in_answer(text, value, reference, choice) or cut
    strict = None if undecided else False
    if lenient_form:
        return PrefixLeak(strict, True, lenient_form)
    return PrefixLeak(strict, None if undecided else False, "")
