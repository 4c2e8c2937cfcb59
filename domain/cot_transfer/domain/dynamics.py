r"""Trace dynamics: the shape of one problem's potential curve, decided by tests on the counts.

A curve is the weak model's (num_correct, n) at each truncation fraction of the strong model's
CoT, fraction 0 (no CoT) included. The *answer fraction* is the first fraction whose prefix
states the reference answer (the rows' ``answer_in_prefix``); None when no prefix states it or
that is unknown. Points before it are *pre-answer* points. A *step* is the change of the true
potential between two consecutive measured fractions.

Every label is a claim about the true potentials, and is given only when the data show it:

* a step *rises by more than delta* (default 0.3) when the exact test of H0: p_after - p_before
  <= delta rejects (``step_tests.rise_p_values``: an exact unconditional test on the two
  points' counts, which holds its level at a true step of exactly delta, at every n, unequal
  ones included); it *falls by more than delta* when the same test of the mirrored null
  rejects. Each step is one hypothesis (its true size lies in [-delta, delta]; no step can
  both rise and fall by more than delta), with the smaller of its two one-sided p-values.
  The steps of a curve form one family, adjusted with Holm's step-down method at
  ``false_positive_rate`` (default 0.05).
* a point is *near zero* when its one-sided Clopper-Pearson upper bound at 1 -
  ``false_positive_rate`` is at most ``near_zero`` (default 0.1): an equivalence test of H0:
  p > near_zero. 0 of 8 (bound 0.31) and 0 of 16 (0.17) are not near zero; it takes 0 of 29.
  "Every point is near zero" is an intersection-union test: each point at the full level.

Only the two points of a step carry evidence about it: a curve that rises by delta in one step
and by less in its neighbours (0.15, ..., 0.15, 0.35, 0.65, 0.85, ..., 0.85) differs from a
single jump of 0.7 only at those two points, so no test that holds its level on the first can
pool the plateaus around a step.

Rows drawn adaptively (``CurvePoint.adaptive``) are stopped once their unlock decision
settles, so their counts are not binomial at a fixed n; steps touching them use
``step_tests.anytime_rise_p_values`` and their near-zero test the stopping rule's confidence
sequence (``step_tests.anytime_below``), both valid under any stopping.

The first label, in this order, whose condition holds wins:

1. ``lucky_guess``: only seeing the answer helps. Every pre-answer point is near zero and the
   step into the answer fraction rises by more than delta.
2. ``late_spike``: the help comes only at the very end of the reasoning, before the answer
   shows. Every point below ``late_fraction`` (default 0.9) is near zero, and a step into a
   pre-answer point at or above it rises by more than delta.
3. ``tangent``: somewhere the CoT leads the weak model astray: a step falls by more than delta.
4. ``insight``: a single step of the CoT carries a key idea: a step rises by more than delta.
5. ``monotonic``: none of these is shown; changes are gradual, smaller than delta, or within
   the sampling noise.

So a curve with no true step of delta or more gets a label other than ``monotonic`` with
probability at most ``false_positive_rate`` (Holm over exact tests), whatever its shape (ramps,
plateaus, several steps just under delta) and n; a real step that starts above near zero is
never called a lucky guess or late spike more often than that (each near-zero claim is a test at
that level). Measured in ``tests/unit/test_dynamics_calibration.py``.

Each label comes with its step (from and to fraction, observed size) and its confidence, one
minus the Holm-adjusted p-value of the step.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike

from cot_transfer.domain import step_tests
from cot_transfer.domain.json_fields import json_fields

DEFAULT_JUMP_DELTA = 0.3
DEFAULT_NEAR_ZERO = 0.1
DEFAULT_LATE_FRACTION = 0.9
DEFAULT_FALSE_POSITIVE_RATE = 0.05

# Fractions arrive as 0.30000000000000004 and the like; compare with a little slack.
_FRACTION_SLACK = 1e-9
_STEP_SLACK = 1e-9


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
    false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE

    def check(self) -> DynamicsParameters:
        for name in ("delta", "near_zero", "late_fraction"):
            value = getattr(self, name)
            if math.isnan(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.delta == 0.0:
            raise ValueError("delta must be above 0, or every step would be a jump")
        if math.isnan(self.false_positive_rate) or not 0.0 < self.false_positive_rate < 1.0:
            raise ValueError(f"false_positive_rate must be in (0, 1), got {self.false_positive_rate}")
        return self

    def to_dict(self) -> dict[str, float]:
        return json_fields(self)


DEFAULT_DYNAMICS_PARAMETERS = DynamicsParameters()


@dataclass(frozen=True)
class CurvePoint:
    fraction: float
    num_correct: int
    n: int
    # Drawn adaptively (stopped when its unlock decision settled): its tests must hold under
    # optional stopping.
    adaptive: bool = False

    @property
    def potential(self) -> float:
        return self.num_correct / self.n


@dataclass(frozen=True)
class DynamicsLabel:
    """A curve's label and the event behind it (all None for ``monotonic``).

    ``step`` is the observed potential change from ``from_fraction`` to ``fraction`` (for
    ``lucky_guess`` and ``late_spike``: from the pooled earlier points, the last of which is
    ``from_fraction``); ``confidence`` is one minus the Holm-adjusted p-value of its test.
    """

    label: TraceDynamics
    fraction: float | None = None
    from_fraction: float | None = None
    step: float | None = None
    confidence: float | None = None

    def to_dict(self) -> dict[str, object]:
        return json_fields(self)


MONOTONIC = DynamicsLabel(TraceDynamics.MONOTONIC)


LABEL_CODES = (
    TraceDynamics.MONOTONIC,
    TraceDynamics.INSIGHT,
    TraceDynamics.TANGENT,
    TraceDynamics.LATE_SPIKE,
    TraceDynamics.LUCKY_GUESS,
)


@dataclass(frozen=True)
class CurveLabels:
    """Labels of many curves on one fraction grid (``classify_curves``), one entry per curve.

    ``label``: an index into ``LABEL_CODES``; ``step``: the index s of the step from fraction s
    to s + 1 that carries the label (-1 for monotonic); ``adjusted_p``: its Holm-adjusted
    p-value (nan for monotonic); ``observed``: its observed potential change.
    """

    label: np.ndarray
    step: np.ndarray
    adjusted_p: np.ndarray
    observed: np.ndarray

    def labels(self) -> list[TraceDynamics]:
        return [LABEL_CODES[code] for code in self.label]


def holm_adjusted(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values along the last axis (as statsmodels
    ``multipletests(method="holm")`` per row, which runs a full garbage collection on every
    call: 75 ms, per curve)."""
    values = np.asarray(p_values, dtype=float)
    count = values.shape[-1]
    order = np.argsort(values, axis=-1, kind="stable")
    ranked = np.take_along_axis(values, order, axis=-1) * np.arange(count, 0, -1)
    adjusted = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def _check_counts(k: np.ndarray, n: np.ndarray) -> None:
    if np.any(n < 1):
        raise ValueError(f"every point needs n >= 1, got {int(n.min())}")
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("every point needs 0 <= num_correct <= n")


def classify_curves(
    fractions: Sequence[float],
    k: ArrayLike,
    n: ArrayLike,
    answer_index: ArrayLike | None = None,
    parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS,
    adaptive: ArrayLike | None = None,
) -> CurveLabels:
    """Labels of curves on one fraction grid, vectorised: ``k`` and ``n`` are (curves, points)
    arrays in the order of ``fractions`` (increasing); ``answer_index`` is each curve's answer
    point (-1: none); ``adaptive`` marks the points drawn adaptively. See the module docstring
    for the rules."""
    parameters.check()
    grid = np.asarray(fractions, dtype=float)
    counts = np.atleast_2d(np.asarray(k, dtype=int))
    trials = np.broadcast_to(np.atleast_2d(np.asarray(n, dtype=int)), counts.shape)
    return _classify(grid, counts, trials, answer_index, parameters, adaptive)


def _classify(
    grid: np.ndarray,
    k: np.ndarray,
    n: np.ndarray,
    answer_index: ArrayLike | None,
    parameters: DynamicsParameters,
    adaptive: ArrayLike | None,
) -> CurveLabels:
    curves, points = k.shape
    if grid.shape != (points,):
        raise ValueError(f"{points} points per curve need {points} fractions, got {grid.size}")
    if points > 1 and np.any(np.diff(grid) <= 0):
        raise ValueError("fractions must increase")
    _check_counts(k, n)
    reveal = np.full(curves, -1) if answer_index is None else np.asarray(answer_index, dtype=int)
    label = np.zeros(curves, dtype=int)
    chosen = np.full(curves, -1)
    adjusted_p = np.full(curves, np.nan)
    observed = np.full(curves, np.nan)
    if points < 2:
        return CurveLabels(label, chosen, adjusted_p, observed)

    alpha = parameters.false_positive_rate
    stopped = np.zeros(k.shape, dtype=bool) if adaptive is None else np.broadcast_to(adaptive, k.shape)
    rise = step_tests.rise_p_values(k[:, :-1], n[:, :-1], k[:, 1:], n[:, 1:], parameters.delta)
    fall = step_tests.rise_p_values(k[:, 1:], n[:, 1:], k[:, :-1], n[:, :-1], parameters.delta)
    either = stopped[:, :-1] | stopped[:, 1:]
    if either.any():
        before_k, before_n, after_k, after_n = k[:, :-1][either], n[:, :-1][either], k[:, 1:][either], n[:, 1:][either]
        rise[either] = step_tests.anytime_rise_p_values(before_k, before_n, after_k, after_n, parameters.delta)
        fall[either] = step_tests.anytime_rise_p_values(after_k, after_n, before_k, before_n, parameters.delta)
    # One hypothesis per step, |true step| <= delta: a step cannot both rise and fall by more
    # than delta, so the smaller of its two one-sided p-values is its p-value.
    adjusted = holm_adjusted(np.minimum(rise, fall))
    significant = adjusted <= alpha
    rises = significant & (rise <= fall)
    falls = significant & (fall < rise)
    changes = k[:, 1:] / n[:, 1:] - k[:, :-1] / n[:, :-1]

    near_zero = np.where(
        stopped,
        step_tests.anytime_below(k, n, parameters.near_zero + _STEP_SLACK, alpha),
        step_tests.upper_bounds(k, n, alpha) <= parameters.near_zero + _STEP_SLACK,
    )
    point_index = np.arange(points)
    step_index = np.arange(points - 1)
    has_answer = reveal >= 0
    pre_answer = ~has_answer[:, None] | (point_index[None, :] < reveal[:, None])
    early = grid < parameters.late_fraction - _FRACTION_SLACK

    lucky = np.zeros((curves, points - 1), dtype=bool)
    rows = np.flatnonzero(reveal >= 1)
    all_pre_near_zero = np.all(near_zero | ~pre_answer, axis=1)
    lucky[rows, reveal[rows] - 1] = rises[rows, reveal[rows] - 1] & all_pre_near_zero[rows]
    late = (
        rises
        & ~early[None, 1:]
        & pre_answer[:, 1:]
        & np.all(near_zero[:, early], axis=1, keepdims=True)
        & bool(early.any())
    )
    undecided = np.ones(curves, dtype=bool)
    order = (
        (TraceDynamics.LUCKY_GUESS, lucky),
        (TraceDynamics.LATE_SPIKE, late),
        (TraceDynamics.TANGENT, falls),
        (TraceDynamics.INSIGHT, rises),
    )
    for name, events in order:
        code = LABEL_CODES.index(name)
        found = undecided & events.any(axis=1)
        ranked = np.where(events, adjusted, np.inf)
        best = np.argmin(ranked, axis=1)
        label[found] = code
        chosen[found] = step_index[best[found]]
        undecided &= ~found
    picked = chosen >= 0
    rows = np.flatnonzero(picked)
    adjusted_p[rows] = adjusted[rows, chosen[rows]]
    observed[rows] = changes[rows, chosen[rows]]
    return CurveLabels(label, chosen, adjusted_p, observed)


def classify_points(
    points: Sequence[CurvePoint],
    answer_fraction: float | None,
    parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS,
) -> DynamicsLabel:
    """The label of one curve (see the module docstring); ``points`` in any order."""
    parameters.check()
    if not points:
        raise ValueError("a curve needs at least one point")
    ordered = sorted(points, key=lambda point: point.fraction)
    fractions = [point.fraction for point in ordered]
    reveal = -1
    if answer_fraction is not None:
        reveal = next(
            (index for index, fraction in enumerate(fractions) if fraction >= answer_fraction - _FRACTION_SLACK), -1
        )
    result = classify_curves(
        fractions,
        np.array([[point.num_correct for point in ordered]]),
        np.array([[point.n for point in ordered]]),
        np.array([reveal]),
        parameters,
        np.array([[point.adaptive for point in ordered]]),
    )
    code = int(result.label[0])
    if code == 0:
        return MONOTONIC
    step = int(result.step[0])
    return DynamicsLabel(
        LABEL_CODES[code],
        float(fractions[step + 1]),
        float(fractions[step]),
        float(result.observed[0]),
        1.0 - float(result.adjusted_p[0]),
    )


def answer_fraction(fractions: Sequence[float], answer_in_prefix: Sequence[bool | None]) -> float | None:
    """The first fraction whose prefix states the reference answer; None when none is known to."""
    for fraction, stated in sorted(zip(fractions, answer_in_prefix, strict=True), key=lambda item: item[0]):
        if stated:
            return fraction
    return None


def count_labels(labels: Iterable[TraceDynamics]) -> dict[str, int]:
    """How many curves got each label; every label is present, unused ones with 0."""
    counts = Counter(labels)
    return {label.value: counts.get(label, 0) for label in TraceDynamics}
