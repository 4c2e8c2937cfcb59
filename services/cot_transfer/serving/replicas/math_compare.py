"""One math-verify comparison of an extracted answer with a reference, in the calling process.

math-verify bounds its own work with ``signal.alarm``, which raises off the main thread and
cancels any other SIGALRM user (servers, pytest-timeout), so its timeouts are off here
(``parsing_timeout=None``, ``timeout_seconds=None``); ``math_equivalence`` bounds the time by
running this in worker processes it can kill. Two guards keep known explosions from costing
a worker: answers longer than ``MAX_MATH_ANSWER_CHARS`` are compared as plain strings, and
parsed expressions known to run unbounded (exponent towers such as ``10^{10^{10}}``,
factorials of huge numbers) are refused before any evaluation.

Importing this module imports sympy and math-verify; the service imports it only in the
worker processes (and in-process when no worker can start).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException

from cot_transfer.domain.answers import normalize_answer
from cot_transfer.serving.replicas.math_outcome import Comparison, Outcome

MAX_MATH_ANSWER_CHARS = 1000
# Exact arithmetic on b**e or n! stalls sympy for hours once e or n reaches the billions; real
# answers stay far below these bounds. The worker's time limit catches what these miss.
MAX_NUMERIC_EXPONENT = 10_000
MAX_FACTORIAL_ARGUMENT = 10_000

_MATH_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())
_FACTORIALS = (sympy.factorial, sympy.factorial2, sympy.subfactorial)
_TIMEOUTS_DISABLED_NOTICE = "Timeout is disabled"


class _DropTimeoutsDisabledNotice(logging.Filter):
    """math-verify warns once that its timeouts are off; the worker pool bounds time itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_TIMEOUTS_DISABLED_NOTICE)


def silence_timeouts_disabled_notice() -> None:
    """For the processes that compare (the workers); installs a filter on math-verify's loggers."""
    for logger_name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(logger_name).addFilter(_DropTimeoutsDisabledNotice())


def _magnitude_exceeds(value: sympy.Basic, bound: int) -> bool:
    """Whether a numeric expression is larger than ``bound`` in absolute value; an expression
    that cannot be evaluated counts as too large, since it cannot be shown to be small."""
    try:
        magnitude = sympy.Abs(value.evalf(15))
        return bool(magnitude > bound) if magnitude.is_comparable else True
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return True


def _is_tractable(expression: object) -> bool:
    """False for expressions whose comparison is known to run unbounded (see module docstring).

    Inner nodes are checked before outer ones, so evaluating an exponent never meets an
    exponent that was not already shown to be bounded.
    """
    if isinstance(expression, sympy.MatrixBase):
        return all(_is_tractable(entry) for entry in expression)
    if not isinstance(expression, sympy.Basic):
        return True
    for node in sympy.postorder_traversal(expression):
        if isinstance(node, sympy.Pow):
            if node.exp.is_number and _magnitude_exceeds(node.exp, MAX_NUMERIC_EXPONENT):
                return False
        elif isinstance(node, _FACTORIALS):
            argument = node.args[0]
            if argument.is_number and _magnitude_exceeds(argument, MAX_FACTORIAL_ARGUMENT):
                return False
    return True


def _parse_math(answer: str) -> list[object]:
    """math-verify's parse of a bare answer; raises what math-verify raises."""
    # Delimiters make math-verify read the whole answer as one LaTeX expression rather than
    # hunting for the last number in it.
    text = answer if answer.lstrip().startswith(("$", "\\(", "\\[")) else f"${answer}$"
    parsed: list[object] = parse(text, extraction_config=_MATH_EXTRACTION, parsing_timeout=None, raise_on_error=True)
    return parsed


def _all_tractable(parsed: Iterable[object]) -> bool:
    return all(_is_tractable(item) for item in parsed)


def compare_math(extracted: str, reference: str) -> Comparison:
    """The comparison itself, in the calling thread and without a time limit; never raises.

    Falls back to normalised string equality when math-verify reads neither side, so plain
    text answers ("Monday") still compare.
    """
    if len(extracted) > MAX_MATH_ANSWER_CHARS or len(reference) > MAX_MATH_ANSWER_CHARS:
        return _by_equality(normalize_answer(extracted) == normalize_answer(reference))
    try:
        gold = _parse_math(reference)
        target = _parse_math(extracted)
        if not gold or not target:
            return _by_equality(normalize_answer(extracted) == normalize_answer(reference))
        if not (_all_tractable(gold) and _all_tractable(target)):
            return Comparison(Outcome.REFUSED, "an expression too large to evaluate")
        # verify is asymmetric: the reference goes first, as math-verify's "gold".
        equivalent = bool(verify(gold, target, timeout_seconds=None, raise_on_error=True))
    except (Exception, TimeoutException) as error:
        return Comparison(Outcome.ERROR, f"{type(error).__name__}: {error}"[:500])
    return _by_equality(equivalent)


def _by_equality(equal: bool) -> Comparison:
    return Comparison(Outcome.EQUIVALENT if equal else Outcome.DIFFERENT)
