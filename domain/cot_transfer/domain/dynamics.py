r"""Trace dynamics: the shape of one problem's potential curve over increasing fractions.

A curve is the weak model's potential at each truncation fraction of the strong model's CoT,
fraction 0 (no CoT) included. The *answer fraction* is the first fraction whose prefix
contains the strong model's final answer; by default the full CoT (fraction 1.0), and
``answer_fraction_from_cot`` estimates an earlier one from the CoT text. Points before it
are *pre-answer* points.

With ``delta`` (default 0.3), ``near_zero`` (default 0.1) and ``late_fraction`` (default 0.9),
a curve gets the first label, in this order, whose condition holds:

1. ``lucky_guess``: the reasoning carries nothing the weak model can use; only seeing the
   answer helps. There is at least one pre-answer point, every pre-answer potential is
   <= ``near_zero``, and the potential at the answer fraction is at least ``delta`` above the
   highest pre-answer potential.
2. ``late_spike``: the help comes only at the very end of the reasoning, before the answer is
   shown. Every point below ``late_fraction`` is <= ``near_zero`` (there is at least one), and
   some pre-answer point at or above ``late_fraction`` is at least ``delta`` above the highest
   of them.
3. ``tangent``: somewhere the CoT leads the weak model astray: potential drops by >= ``delta``
   between consecutive fractions (over the whole curve).
4. ``insight``: a single step of the CoT carries a key idea: potential rises by >= ``delta``
   between consecutive fractions, and nowhere drops by that much.
5. ``monotonic``: no step of size >= ``delta`` in either direction; the curve changes
   gradually (flat curves included) and dips smaller than ``delta`` count as sampling noise.

Conditions 1 and 2 are disjoint (1 needs all pre-answer points near zero, 2 needs one of
them high), and both would otherwise usually read as an insight, so they come first. A
curve with both a large rise and a large drop is a ``tangent``: the drop is the rarer and
more telling event.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise

DEFAULT_JUMP_DELTA = 0.3
DEFAULT_NEAR_ZERO = 0.1
DEFAULT_LATE_FRACTION = 0.9
FULL_COT_FRACTION = 1.0

# Fractions arrive as 0.30000000000000004 and the like; a prefix cut there still holds the answer.
_FRACTION_SLACK = 1e-9


class TraceDynamics(StrEnum):
    MONOTONIC = "monotonic"
    INSIGHT = "insight"
    TANGENT = "tangent"
    LATE_SPIKE = "late_spike"
    LUCKY_GUESS = "lucky_guess"


@dataclass(frozen=True)
class DynamicsParameters:
    delta: float = DEFAULT_JUMP_DELTA
    near_zero: float = DEFAULT_NEAR_ZERO
    late_fraction: float = DEFAULT_LATE_FRACTION

    def check(self) -> DynamicsParameters:
        for name in ("delta", "near_zero", "late_fraction"):
            value = getattr(self, name)
            if math.isnan(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.delta == 0.0:
            raise ValueError("delta must be above 0, or every step would be a jump")
        return self


DEFAULT_DYNAMICS_PARAMETERS = DynamicsParameters()


def classify_curve(
    curve: Mapping[float, float],
    answer_fraction: float | None = FULL_COT_FRACTION,
    parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS,
) -> TraceDynamics:
    """The label of a fraction -> potential curve (see the module docstring).

    ``answer_fraction`` None means no prefix shows the answer, so no curve is a lucky guess
    and every point counts as pre-answer.
    """
    parameters.check()
    if not curve:
        raise ValueError("a curve needs at least one point")
    points = sorted(curve.items())
    reveal = _first_point_at_or_after(points, answer_fraction)
    pre_answer = [value for fraction, value in points if reveal is None or fraction < reveal[0] - _FRACTION_SLACK]

    if (
        reveal is not None
        and pre_answer
        and max(pre_answer) <= parameters.near_zero
        and reveal[1] - max(pre_answer) >= parameters.delta
    ):
        return TraceDynamics.LUCKY_GUESS

    early = [value for fraction, value in points if fraction < parameters.late_fraction - _FRACTION_SLACK]
    late_pre_answer = [
        value
        for fraction, value in points
        if fraction >= parameters.late_fraction - _FRACTION_SLACK
        and (reveal is None or fraction < reveal[0] - _FRACTION_SLACK)
    ]
    if (
        early
        and late_pre_answer
        and max(early) <= parameters.near_zero
        and max(late_pre_answer) - max(early) >= parameters.delta
    ):
        return TraceDynamics.LATE_SPIKE

    steps = [after[1] - before[1] for before, after in pairwise(points)]
    # The small slack keeps a step of exactly delta (0.8 - 0.5 = 0.30000000000000004 or
    # 0.29999999999999993) on the side the definition puts it.
    if any(step <= -parameters.delta + _FRACTION_SLACK for step in steps):
        return TraceDynamics.TANGENT
    if any(step >= parameters.delta - _FRACTION_SLACK for step in steps):
        return TraceDynamics.INSIGHT
    return TraceDynamics.MONOTONIC


def _first_point_at_or_after(
    points: Sequence[tuple[float, float]], fraction: float | None
) -> tuple[float, float] | None:
    if fraction is None:
        return None
    return next((point for point in points if point[0] >= fraction - _FRACTION_SLACK), None)


def count_labels(labels: Iterable[TraceDynamics]) -> dict[str, int]:
    """How many curves got each label; every label is present, unused ones with 0."""
    counts = Counter(labels)
    return {label.value: counts.get(label, 0) for label in TraceDynamics}


_BOXED_ANSWER = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_STATEMENT = re.compile(r"final\s+answer|the\s+answer\s+is|\banswer\s*:", re.IGNORECASE)


def answer_char_position(cot: str) -> int | None:
    r"""Character offset just past the strong model's first final-answer statement in ``cot``.

    The statement is the first ``\boxed{...}`` (its closing brace ends it) or the first line
    with a final-answer marker ("final answer", "the answer is", "Answer:"; the line end ends
    it), whichever starts first. None when the CoT states no answer that way.
    """
    candidates: list[int] = []
    boxed = _BOXED_ANSWER.search(cot)
    if boxed is not None:
        candidates.append(boxed.start())
    marker = _ANSWER_STATEMENT.search(cot)
    if marker is not None:
        candidates.append(marker.start())
    if not candidates:
        return None
    start = min(candidates)
    if boxed is not None and start == boxed.start():
        depth = 0
        for index in range(boxed.end() - 1, len(cot)):
            if cot[index] == "{":
                depth += 1
            elif cot[index] == "}":
                depth -= 1
                if depth == 0:
                    return index + 1
        return len(cot)
    line_end = cot.find("\n", start)
    return len(cot) if line_end < 0 else line_end


def answer_fraction_from_cot(cot: str, fractions: Sequence[float]) -> float | None:
    """The smallest of ``fractions`` whose prefix holds the CoT's first final-answer statement.

    Prefixes are cut in tokens and only the text is at hand, so this assumes characters
    are spread evenly over tokens: a prefix at fraction f holds the first f * len(cot)
    characters. When the CoT states no answer, the full CoT (1.0, if among ``fractions``)
    is taken as the first prefix that shows it. None when no fraction qualifies.
    """
    ordered = sorted(fractions)
    position = answer_char_position(cot) if cot else None
    if position is None:
        return next((f for f in ordered if f >= FULL_COT_FRACTION - _FRACTION_SLACK), None)
    needed = position / len(cot)
    return next((f for f in ordered if f >= needed - _FRACTION_SLACK), None)
