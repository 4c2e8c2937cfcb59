r"""Trace dynamics: the shape of one problem's potential curve, decided by tests on the counts.

A curve is the weak model's (num_correct, n) at each truncation fraction of the strong model's
CoT, fraction 0 (no CoT) included. The *answer fraction* is the first fraction whose prefix
states the reference answer (the rows' ``answer_in_prefix``, judged by the grader on the exact
prefix text); None when no prefix states it or that is unknown. Points before it are
*pre-answer* points.

Every label rests on one-sided Fisher exact tests (the hypergeometric tail of scipy) of "the
potential rose" (or "fell") between two sets of samples:

* a rise at a step (``insight``): the pooled samples up to the step against the pooled samples
  after it;
* a fall at a step (``tangent``): the point before the step against the pooled samples after it;
* ``lucky_guess``: the pooled pre-answer samples against the answer fraction's;
* ``late_spike``: the pooled samples below ``late_fraction`` against each pre-answer point at
  or above it.

All tests of a curve form one family, adjusted with Holm's step-down method at
``false_positive_rate`` (default 0.05): a curve whose true potential is
flat gets any label other than ``monotonic`` with probability at most that, at every n
(Fisher's test is exact, Holm controls the family-wise error under any dependence). Besides
being significant, an event must be large: its observed step is at least ``delta`` (default
0.3). The first label, in this order, whose condition holds wins:

1. ``lucky_guess``: the reasoning carries nothing the weak model can use; only seeing the
   answer helps. Every pre-answer point is near zero (none is significantly above
   ``near_zero``, default 0.1, by a one-sided binomial test at ``false_positive_rate``), the
   potential at the answer fraction is at least ``delta`` above their pooled potential, and its
   test rejects.
2. ``late_spike``: the help comes only at the very end of the reasoning, before the answer
   shows. Every point below ``late_fraction`` (default 0.9) is near zero, and some pre-answer
   point at or above it is at least ``delta`` above their pooled potential, with its test
   rejecting.
3. ``tangent``: somewhere the CoT leads the weak model astray: a fall of at least ``delta``
   between consecutive fractions, with the fall test at that step rejecting.
4. ``insight``: a single step of the CoT carries a key idea: a rise of at least ``delta``
   between consecutive fractions, with the rise test at that step rejecting.
5. ``monotonic``: none of these; changes are gradual or within the sampling noise.

Each label comes with its step (from and to fraction, observed size) and its confidence, one
minus the Holm-adjusted p-value of the test that carries it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats

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
        return {
            "delta": self.delta,
            "near_zero": self.near_zero,
            "late_fraction": self.late_fraction,
            "false_positive_rate": self.false_positive_rate,
        }


DEFAULT_DYNAMICS_PARAMETERS = DynamicsParameters()


@dataclass(frozen=True)
class CurvePoint:
    fraction: float
    num_correct: int
    n: int

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
        return {
            "label": self.label.value,
            "fraction": self.fraction,
            "from_fraction": self.from_fraction,
            "step": self.step,
            "confidence": self.confidence,
        }


MONOTONIC = DynamicsLabel(TraceDynamics.MONOTONIC)


@dataclass(frozen=True)
class _Test:
    label: TraceDynamics
    from_fraction: float
    fraction: float
    step: float
    # Observed size and the label's near-zero precondition both hold.
    large: bool


def _rise_p_values(before_k: np.ndarray, before_n: np.ndarray, after_k: np.ndarray, after_n: np.ndarray) -> np.ndarray:
    """One-sided Fisher p-values of "after's potential is higher": P(K >= after_k) for K
    hypergeometric with the two groups' pooled successes."""
    total = before_n + after_n
    successes = before_k + after_k
    return np.asarray(stats.hypergeom.sf(after_k - 1, total, successes, after_n), dtype=float)


def holm_adjusted(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (as statsmodels ``multipletests(method="holm")``,
    which runs a full garbage collection on every call: 75 ms, per curve)."""
    order = np.argsort(p_values, kind="stable")
    ranked = p_values[order] * np.arange(len(p_values), 0, -1)
    adjusted = np.empty_like(ranked)
    adjusted[order] = np.minimum(np.maximum.accumulate(ranked), 1.0)
    return adjusted


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
    fractions = np.array([point.fraction for point in ordered])
    k = np.array([point.num_correct for point in ordered], dtype=float)
    n = np.array([point.n for point in ordered], dtype=float)
    values = k / n
    tests: list[_Test] = []
    p_values: list[np.ndarray] = []

    reveal = None
    if answer_fraction is not None:
        at_or_after = np.flatnonzero(fractions >= answer_fraction - _FRACTION_SLACK)
        reveal = int(at_or_after[0]) if at_or_after.size else None
    pre = np.arange(len(ordered)) if reveal is None else np.arange(reveal)

    # "Near zero" is judged against the noise: no point is significantly above near_zero (one
    # correct sample of 8 is 0.125, yet says nothing against a potential of 0.05).
    near_zero = stats.binom.sf(k - 1, n, parameters.near_zero) > parameters.false_positive_rate

    if reveal is not None and pre.size:
        pooled = float(k[pre].sum() / n[pre].sum())
        step = float(values[reveal]) - pooled
        tests.append(
            _Test(
                TraceDynamics.LUCKY_GUESS,
                float(fractions[pre[-1]]),
                float(fractions[reveal]),
                step,
                bool(near_zero[pre].all()) and step >= parameters.delta - _STEP_SLACK,
            )
        )
        p_values.append(_rise_p_values(k[pre].sum(), n[pre].sum(), k[reveal], n[reveal]).reshape(1))

    early = np.flatnonzero(fractions < parameters.late_fraction - _FRACTION_SLACK)
    late = pre[fractions[pre] >= parameters.late_fraction - _FRACTION_SLACK]
    if early.size and late.size:
        pooled = float(k[early].sum() / n[early].sum())
        for index in late:
            step = float(values[index]) - pooled
            tests.append(
                _Test(
                    TraceDynamics.LATE_SPIKE,
                    float(fractions[early[-1]]),
                    float(fractions[index]),
                    step,
                    bool(near_zero[early].all()) and step >= parameters.delta - _STEP_SLACK,
                )
            )
        p_values.append(_rise_p_values(k[early].sum(), n[early].sum(), k[late], n[late]))

    if len(ordered) > 1:
        steps = np.diff(values)
        for index, step in enumerate(steps):
            before, after = float(fractions[index]), float(fractions[index + 1])
            tests.append(
                _Test(TraceDynamics.TANGENT, before, after, float(step), -step >= parameters.delta - _STEP_SLACK)
            )
        # Pooled samples carry the power at small n: the point before a drop against every
        # point after it, and every point up to a rise against every point after it.
        k_after = np.cumsum(k[::-1])[::-1][1:]
        n_after = np.cumsum(n[::-1])[::-1][1:]
        p_values.append(_rise_p_values(k_after, n_after, k[:-1], n[:-1]))
        for index, step in enumerate(steps):
            before, after = float(fractions[index]), float(fractions[index + 1])
            tests.append(
                _Test(TraceDynamics.INSIGHT, before, after, float(step), step >= parameters.delta - _STEP_SLACK)
            )
        p_values.append(_rise_p_values(np.cumsum(k)[:-1], np.cumsum(n)[:-1], k_after, n_after))

    if not tests:
        return MONOTONIC
    adjusted = holm_adjusted(np.concatenate(p_values))
    rejected = adjusted <= parameters.false_positive_rate
    for label in (TraceDynamics.LUCKY_GUESS, TraceDynamics.LATE_SPIKE, TraceDynamics.TANGENT, TraceDynamics.INSIGHT):
        found = [
            (float(adjusted[index]), test)
            for index, test in enumerate(tests)
            if test.label is label and test.large and rejected[index]
        ]
        if found:
            p_value, test = min(found, key=lambda item: item[0])
            return DynamicsLabel(label, test.fraction, test.from_fraction, test.step, 1.0 - p_value)
    return MONOTONIC


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
