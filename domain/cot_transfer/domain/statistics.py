"""Intervals and posterior probabilities of potentials and rates, vectorised over arrays.

* A rate over problems (unlock rate, any-correct rate, unlock rate without the answer) is a
  count of problems out of a denominator of problems: its interval is Clopper-Pearson
  (statsmodels ``proportion_confint(method="beta")``). Given the denominator, each problem's
  measured state is an independent draw, so the count is binomial in the rate the experiment
  measures, and Clopper-Pearson covers it at least at the nominal level for every problem count
  and every rate, 0 and 1 included. It is wider than Wilson or Jeffreys, both of which were
  measured below 93% coverage near rates of 0 and 1 at small problem counts
  (``tests/simulation.py``).
* A mean potential over problems is a mean of values in [0, 1]; a value in [0, 1] with mean mu
  has at most the variance of a Bernoulli(mu), so the Clopper-Pearson interval of (sum of
  potentials) out of (problems) is a conservative interval of the mean (measured above 95%).
* One (problem, fraction) potential: Wilson score interval of num_correct out of n.
* ``posterior_at_least``: the probability that a true potential is at least tau after
  num_correct of n, under the Jeffreys prior Beta(1/2, 1/2) (posterior Beta(k + 1/2, n - k + 1/2)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from cot_transfer.domain.transfer import Interval

DEFAULT_CONFIDENCE = 0.95

FloatArray = NDArray[np.float64]


def check_confidence(confidence: float) -> float:
    if math.isnan(confidence) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


def rate_intervals(
    count: ArrayLike, total: ArrayLike, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[FloatArray, FloatArray]:
    """Clopper-Pearson bounds of count / total, elementwise; NaN where total is 0.

    ``count`` may be fractional (a sum of potentials), which the Beta quantiles take as is.
    """
    check_confidence(confidence)
    counts = np.asarray(count, dtype=float)
    totals = np.asarray(total, dtype=float)
    low = np.full(np.broadcast(counts, totals).shape, np.nan)
    high = low.copy()
    defined = np.broadcast_to(totals > 0, low.shape)
    if defined.any():
        counts_defined = np.broadcast_to(counts, low.shape)[defined]
        totals_defined = np.broadcast_to(totals, low.shape)[defined]
        low[defined], high[defined] = proportion_confint(
            counts_defined, totals_defined, alpha=1 - confidence, method="beta"
        )
        # statsmodels pins the ends only for whole counts; a fractional 0 or total still is one.
        low[defined & (np.broadcast_to(counts, low.shape) <= 0)] = 0.0
        high[defined & (np.broadcast_to(counts, low.shape) >= np.broadcast_to(totals, low.shape))] = 1.0
    return low, high


def potential_intervals(
    num_correct: ArrayLike, n: ArrayLike, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[FloatArray, FloatArray]:
    """Wilson score bounds of each potential num_correct / n (n > 0), elementwise."""
    check_confidence(confidence)
    counts = np.asarray(num_correct, dtype=float)
    totals = np.asarray(n, dtype=float)
    if np.any(totals <= 0):
        raise ValueError("n must be positive")
    low, high = proportion_confint(counts, totals, alpha=1 - confidence, method="wilson")
    # At 0/n and n/n one bound is exactly 0 or 1; floating point would land a hair off it.
    low = np.where(counts == 0, 0.0, low)
    high = np.where(counts == totals, 1.0, high)
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def posterior_at_least(num_correct: ArrayLike, n: ArrayLike, threshold: float) -> FloatArray:
    """P(true potential >= threshold | num_correct of n) under the Jeffreys prior, elementwise."""
    counts = np.asarray(num_correct, dtype=float)
    totals = np.asarray(n, dtype=float)
    return np.asarray(stats.beta.sf(threshold, counts + 0.5, totals - counts + 0.5), dtype=float)


def to_interval(low: Any, high: Any) -> Interval | None:
    """An Interval from two scalar bounds, None when they are NaN (undefined)."""
    low_value, high_value = float(low), float(high)
    if math.isnan(low_value) or math.isnan(high_value):
        return None
    return Interval(low_value, high_value)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None
