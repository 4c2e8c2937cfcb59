r"""The value of a short maths text ("1/2", "\dfrac{1}{2}", "0.50", "50\%", "12 apples", "x = 3"),
and whether two such texts state the same answer, in pure Python.

The leak check (``cot_transfer.domain.leaks``) compares hundreds of numbers per prefix with a
reference answer; math-verify (the math grader's equivalence) runs in worker processes and
cannot be called that often, and this package imports no sympy. So a value is read here with
``fractions.Fraction`` and ``decimal.Decimal`` after a small LaTeX normalisation, following the
math grader where the two meet:

* ``\frac``, ``\dfrac``, ``\tfrac``, ``\cfrac`` (also ``\frac12``), ``a/b``, decimals and
  thousands separators ("1,000", "1{,}000") are exact rationals;
* ``\boxed{}``, math delimiters, ``\left``/``\right``, spacing, degrees, a leading "x =" (the
  last side of an equation) and unit words after a number ("12 apples", "12\text{ cm}") are
  stripped;
* a percentage reads both ways, as math-verify reads it: "50%" equals 50 and 0.5;
* a decimal equals a rational when they agree to 6 decimal places (math-verify's float
  rounding), so "0.333333" states 1/3; ``approximate=True`` (the lenient leak flag) also
  accepts a decimal of at least 3 significant digits that is the reference rounded or cut to
  its places ("0.333", "0.3333");
* anything else (roots, sets, expressions) is compared as normalised text, so "\sqrt2" and
  "\sqrt{2}" match but "2\sqrt2" and "\sqrt8" do not: the graders decide those.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

# A number literal longer than this is no answer anyone states; Fraction(Decimal(...)) of
# such a string would cost time for nothing.
MAX_LITERAL_CHARS = 100
# Longer texts are compared as they stand (a whole paragraph is no answer to normalise).
MAX_TEXT_CHARS = 2000
# math-verify compares a float with a number after rounding both to this many places.
FLOAT_ROUNDING_PLACES = 6
_APPROXIMATE_MIN_SIGNIFICANT_DIGITS = 3

_DELIMITERS = re.compile(r"\$+|\\[()\[\]]")
_SIZING = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])|\\displaystyle|\\textstyle")
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad(?![a-zA-Z])|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_FRAC_VARIANT = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
# \frac12, \frac1{2}, \frac{1}2: single-character arguments without braces.
_FRAC_SHORT = re.compile(r"\\frac\s*(\{[^{}]*\}|[0-9a-zA-Z])\s*(\{[^{}]*\}|[0-9a-zA-Z])")
_SQRT_SHORT = re.compile(r"\\sqrt\s*([0-9a-zA-Z])")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PERCENT_WORD = re.compile(r"\s*(?:\\%|%|\bper\s*cent\b|\bpercent\b)", re.IGNORECASE)
_CURRENCY = re.compile(r"\\\$|[€£¥₹]")
_BRACED_COMMA = re.compile(r"\{,\}")

# Unambiguous on purpose ("\d+\.?\d*" backtracks quadratically on a long digit run).
_NUMBER = r"[+-]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+)"
# A number followed by words only (a unit, a noun): "12 apples", "12 cm^2", "3 hours.".
# A glued single letter is a variable ("2x"), not a unit.
_NUMBER_WITH_WORDS = re.compile(rf"({_NUMBER}(?:/\d+)?%?)(?:\s+[a-zA-Z]|[a-zA-Z]{{2}})[a-zA-Z\s.]*(?:\^\{{?\d\}}?)?")
_WHOLE_NUMBER = re.compile(rf"{_NUMBER}(?:/\d+)?%?")
_DECIMAL_LITERAL = re.compile(rf"({_NUMBER})(%?)")
_SLASH_LITERAL = re.compile(r"([+-]?\d+)/(\d+)(%?)")
_FRAC_LITERAL = re.compile(r"([+-]?)\\frac\{([+-]?[\d.]+)\}\{([+-]?[\d.]+)\}(%?)")
_TRAILING_PUNCTUATION = " .,;:!?"


@dataclass(frozen=True)
class MathValue:
    """A text read as a value: ``number`` when it is one number literal (then ``percent`` and
    ``decimal_places`` say how it was written), and always its normalised ``text``."""

    text: str
    number: Fraction | None = None
    percent: bool = False
    # Digits after the decimal point when written as a decimal ("0.50": 2); None otherwise.
    decimal_places: int | None = None
    significant_digits: int = 0


def _unwrap_boxes(text: str) -> str:
    """``\\boxed{X}`` -> X for every closed box (nested braces balanced)."""
    while True:
        match = _BOX.search(text)
        if match is None:
            return text
        depth, start = 1, match.end()
        for index in range(start, len(text)):
            if text[index] == "{":
                depth += 1
            elif text[index] == "}":
                depth -= 1
                if depth == 0:
                    text = text[: match.start()] + text[start:index] + text[index + 1 :]
                    break
        else:
            return text[: match.start()] + text[start:]


def _strip_outer(text: str) -> str:
    """Outer braces or parentheses around a whole number: "{12}", "(12)"."""
    while len(text) > 2 and (text[0], text[-1]) in (("{", "}"), ("(", ")")):
        inner = text[1:-1]
        if not _WHOLE_NUMBER.fullmatch(inner):
            break
        text = inner
    return text


def _last_side(text: str) -> str:
    """The last side of an equation at brace depth 0 ("x = 3" -> "3"); ``text`` otherwise."""
    depth, cut = 0, -1
    for index, char in enumerate(text):
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth -= 1
        elif char == "=" and depth == 0:
            cut = index
    return text[cut + 1 :] if cut >= 0 else text


def normalize_maths(text: str) -> str:
    r"""The comparable form of a maths text: delimiters, boxes, sizing, spacing, degrees and
    text wrappers removed, ``\dfrac`` read as ``\frac``, short forms braced, lower case, no
    spaces. Unit words after a number are dropped; a leading "x =" is dropped."""
    value = unicodedata.normalize("NFKC", text)
    value = _DELIMITERS.sub(" ", _unwrap_boxes(value))
    value = _SIZING.sub("", value)
    value = _SPACING.sub(" ", value)
    value = _DEGREES.sub("", value)
    value = _TEXT_WRAPPER.sub(r" \1", value)
    value = _FRAC_VARIANT.sub(r"\\frac", value)
    value = _FRAC_SHORT.sub(lambda m: rf"\frac{{{m.group(1).strip('{}')}}}{{{m.group(2).strip('{}')}}}", value)
    value = _SQRT_SHORT.sub(r"\\sqrt{\1}", value)
    value = _BRACED_COMMA.sub(",", value)
    value = _CURRENCY.sub("", value)
    value = _PERCENT_WORD.sub("%", value)
    value = _last_side(value).strip().strip(_TRAILING_PUNCTUATION)
    with_words = _NUMBER_WITH_WORDS.fullmatch(value)
    if with_words:
        value = with_words.group(1)
    value = re.sub(r"\s+", "", value).lower()
    return _strip_outer(value)


def _decimal_value(literal: str) -> tuple[Fraction, int | None, int] | None:
    """(value, decimal places or None, significant digits) of a decimal literal."""
    plain = literal.replace(",", "")
    try:
        number = Decimal(plain)
    except InvalidOperation:
        return None
    digits = plain.lstrip("+-").replace(".", "").lstrip("0")
    places = len(plain.split(".", 1)[1]) if "." in plain else None
    return Fraction(number), places, len(digits)


def parse_value(text: str) -> MathValue:
    """``text`` as a ``MathValue`` (``number`` None unless it is one number literal)."""
    if len(text) > MAX_TEXT_CHARS:
        return MathValue(re.sub(r"\s+", "", text).lower())
    normalized = normalize_maths(text)
    if len(normalized) > MAX_LITERAL_CHARS:
        return MathValue(normalized)
    decimal = _DECIMAL_LITERAL.fullmatch(normalized)
    if decimal:
        parsed = _decimal_value(decimal.group(1))
        if parsed is not None:
            number, places, significant = parsed
            return MathValue(normalized, number, bool(decimal.group(2)), places, significant)
    slash = _SLASH_LITERAL.fullmatch(normalized)
    if slash and int(slash.group(2)) != 0:
        return MathValue(normalized, Fraction(int(slash.group(1)), int(slash.group(2))), bool(slash.group(3)))
    frac = _FRAC_LITERAL.fullmatch(normalized)
    if frac:
        numerator, denominator = _decimal_value(frac.group(2)), _decimal_value(frac.group(3))
        if numerator is not None and denominator is not None and denominator[0] != 0:
            sign = -1 if frac.group(1) == "-" else 1
            return MathValue(normalized, sign * numerator[0] / denominator[0], bool(frac.group(4)))
    return MathValue(normalized)


def _rounded(value: Fraction, places: int, rounding: str) -> Decimal:
    quantum = Decimal(1).scaleb(-places)
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(quantum, rounding=rounding)


def _numbers_equal(stated: MathValue, reference: MathValue, approximate: bool) -> bool:
    assert stated.number is not None and reference.number is not None
    readings = {stated.number} | ({stated.number / 100} if stated.percent else set())
    targets = {reference.number} | ({reference.number / 100} if reference.percent else set())
    if readings & targets:
        return True
    if stated.decimal_places is None and reference.decimal_places is None:
        return False
    # A float on either side: math-verify rounds both to 6 places.
    for reading in readings:
        for target in targets:
            if _rounded(reading, FLOAT_ROUNDING_PLACES, ROUND_HALF_UP) == _rounded(
                target, FLOAT_ROUNDING_PLACES, ROUND_HALF_UP
            ):
                return True
    places = stated.decimal_places
    if not approximate or not places or stated.significant_digits < _APPROXIMATE_MIN_SIGNIFICANT_DIGITS:
        return False
    shown = Decimal(stated.number.numerator) / Decimal(stated.number.denominator)
    return any(shown in (_rounded(t, places, ROUND_HALF_UP), _rounded(t, places, ROUND_DOWN)) for t in targets)


def same_value(stated: MathValue, reference: MathValue, *, approximate: bool = False) -> bool:
    """Whether ``stated`` states ``reference`` (see the module docstring)."""
    if stated.number is not None and reference.number is not None:
        return _numbers_equal(stated, reference, approximate)
    return bool(stated.text) and stated.text == reference.text


def renderings(reference: MathValue) -> set[str]:
    r"""Compact ways to write ``reference`` ("1/2", "\frac{1}{2}", "0.5", ...), for telling
    whether a cut-off answer ("\boxed{14") may still become it."""
    forms = {reference.text}
    number = reference.number
    if number is None:
        return forms
    for value in {number} | ({number / 100} if reference.percent else set()):
        sign = "-" if value < 0 else ""
        magnitude = abs(value)
        if magnitude.denominator == 1:
            forms.add(f"{sign}{magnitude.numerator}")
        else:
            p, q = magnitude.numerator, magnitude.denominator
            forms.update({f"{sign}{p}/{q}", f"{sign}\\frac{{{p}}}{{{q}}}"})
        exact = Decimal(magnitude.numerator) / Decimal(magnitude.denominator)
        if Fraction(exact) == magnitude:
            forms.add(sign + format(exact.normalize(), "f"))
    return forms
