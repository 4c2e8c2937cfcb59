"""Intervals and posterior probabilities of potentials and rates, vectorised over arrays.

* A rate over problems (unlock rate, any-correct rate, unlock rate without the answer) is a
  count of problems out of a denominator of problems: its interval is Clopper-Pearson
  (statsmodels ``proportion_confint(method="beta")``). Given the denominator, each problem's
  measured state is an independent draw, so the count is binomial in the rate the experiment
  measures, and Clopper-Pearson covers it at least at the nominal level for every problem count
  and every rate, 0 and 1 included. It is wider than Wilson or Jeffreys, both of which were
  measured below 93% coverage near rates of 0 and 1 at small problem counts
  (``tests/simulation.py``).
* A mean potential over problems: Student's t interval of the problems' potentials
  (``mean_intervals``). Each measured potential is one draw of (problem from the population, n
  samples of it), so their spread holds both stages. Below ``MIN_PROBLEMS_FOR_T`` problems (t
  covered 0.91-0.93 at 8 problems of a skewed, two-humped population: ``tests/simulation.py``)
  and where every potential is the same (all 0, all 1: t has width 0) the Clopper-Pearson
  interval of (sum of potentials) out of (problems) is used instead, which is conservative for
  any mean of values in [0, 1] (a value in [0, 1] with mean mu has at most Bernoulli variance).
* One (problem, fraction) potential: Wilson score interval of num_correct out of n.
* ``exact_bounds``: one-sided Clopper-Pearson bounds of each num_correct of n, for the
  per-problem statuses of ``cot_transfer.domain.true_rate``.
* ``simultaneous_rate_band``: the unlock curve's band over every fraction at once (max-statistic
  bootstrap over problems); ``paired_difference`` and ``holm``: receivers compared on the
  problems both have.
* ``posterior_at_least``: the probability that a true potential is at least tau after
  num_correct of n, under a Beta prior: ``beta_prior`` fits it to the rows it is used on
  (empirical Bayes, method of moments of the beta-binomial), else the Jeffreys prior Beta(1/2, 1/2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
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


JEFFREYS_PRIOR = (0.5, 0.5)
# A fitted prior is kept within these pseudo-counts: below, Beta(a, b) piles its mass on 0 and 1
# (a fit to rows that are all 0 would say a potential is exactly 0); above, the rows would be
# ignored (a fit that found no spread between problems would overrule any row).
_PRIOR_MIN_STRENGTH = 0.2
_PRIOR_MAX_STRENGTH = 1000.0
# Fewer rows than this leave the prior's two parameters unfitted: Jeffreys instead.
MIN_ROWS_FOR_PRIOR = 5


def beta_prior(num_correct: ArrayLike, n: ArrayLike) -> tuple[float, float]:
    """Beta(a, b) fitted to the rows num_correct of n (empirical Bayes, method of moments).

    Each row's num_correct is beta-binomial: with mean mu and overdispersion rho = 1/(a + b + 1),
    the potential k/n has variance mu (1 - mu) (1 + (n - 1) rho) / n. ``mu`` is the mean
    potential; rho is solved from the observed variance, averaging 1/n over the rows (varying n).
    Jeffreys for fewer than ``MIN_ROWS_FOR_PRIOR`` rows or a mean of exactly 0 or 1.
    """
    counts = np.asarray(num_correct, dtype=float).ravel()
    totals = np.asarray(n, dtype=float).ravel()
    if counts.size < MIN_ROWS_FOR_PRIOR:
        return JEFFREYS_PRIOR
    potentials = counts / totals
    mu = float(potentials.mean())
    if mu <= 0.0 or mu >= 1.0:
        return JEFFREYS_PRIOR
    variance = float(potentials.var(ddof=1))
    inverse_n = float((1.0 / totals).mean())
    spread = variance / (mu * (1 - mu))
    # spread = inverse_n + (1 - inverse_n) rho; rho in (0, 1).
    rho = (spread - inverse_n) / (1 - inverse_n) if inverse_n < 1 else 1.0
    strength = 1 / rho - 1 if rho > 0 else _PRIOR_MAX_STRENGTH
    strength = min(max(strength, _PRIOR_MIN_STRENGTH), _PRIOR_MAX_STRENGTH)
    return mu * strength, (1 - mu) * strength


def posterior_at_least(
    num_correct: ArrayLike, n: ArrayLike, threshold: float, prior: tuple[float, float] = JEFFREYS_PRIOR
) -> FloatArray:
    """P(true potential >= threshold | num_correct of n) under the Beta ``prior``, elementwise."""
    counts = np.asarray(num_correct, dtype=float)
    totals = np.asarray(n, dtype=float)
    a, b = prior
    return np.asarray(stats.beta.sf(threshold, counts + a, totals - counts + b), dtype=float)


def posterior_mean(num_correct: ArrayLike, n: ArrayLike, prior: tuple[float, float] = JEFFREYS_PRIOR) -> FloatArray:
    counts = np.asarray(num_correct, dtype=float)
    totals = np.asarray(n, dtype=float)
    a, b = prior
    return np.asarray((counts + a) / (totals + a + b), dtype=float)


def exact_bounds(num_correct: ArrayLike, n: ArrayLike, error: float) -> tuple[FloatArray, FloatArray]:
    """One-sided Clopper-Pearson bounds of each num_correct of n: the true potential is below
    ``low`` with probability at most ``error``, and above ``high`` at most ``error``."""
    counts, totals = np.broadcast_arrays(np.asarray(num_correct, dtype=float), np.asarray(n, dtype=float))
    # Beta quantiles are slow and a run has few distinct (k, n): compute each pair once.
    stride = float(totals.max()) + 1 if totals.size else 1.0
    keys, inverse = np.unique(totals.ravel() * stride + counts.ravel(), return_inverse=True)
    size, k = np.divmod(keys, stride)
    with np.errstate(invalid="ignore"):
        low = np.where(k > 0, stats.beta.ppf(error, np.maximum(k, 1), size - k + 1), 0.0)
        high = np.where(k < size, stats.beta.ppf(1 - error, k + 1, np.maximum(size - k, 1)), 1.0)
    index = inverse.ravel()
    return low[index].reshape(counts.shape), high[index].reshape(counts.shape)


MIN_PROBLEMS_FOR_T = 30


def mean_intervals(
    values: ArrayLike, mask: ArrayLike, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[FloatArray, FloatArray]:
    """Per column of ``values`` (rows: problems), Student's t interval of the mean of the values
    where ``mask`` holds, clipped to [0, 1]; NaN for an empty column, the sum's Clopper-Pearson
    interval for fewer than ``MIN_PROBLEMS_FOR_T`` values or where every value is the same (see
    the module docstring)."""
    check_confidence(confidence)
    data = np.asarray(values, dtype=float)
    kept = np.asarray(mask, dtype=bool)
    count = kept.sum(axis=0)
    total = np.where(kept, data, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.zeros(count.shape), where=count > 0)
    squares = np.where(kept, (data - mean) ** 2, 0.0).sum(axis=0)
    variance = np.divide(squares, count - 1, out=np.zeros(count.shape), where=count > 1)
    quantile = stats.t.ppf(0.5 + confidence / 2, np.maximum(count - 1, 1))
    half = quantile * np.sqrt(variance / np.maximum(count, 1))
    low = np.clip(mean - half, 0.0, 1.0)
    high = np.clip(mean + half, 0.0, 1.0)
    exact_low, exact_high = rate_intervals(total, count, confidence)
    exact = (count < MIN_PROBLEMS_FOR_T) | (variance <= 1e-15)
    low = np.where(exact, exact_low, low)
    high = np.where(exact, exact_high, high)
    low = np.where(count == 0, np.nan, low)
    high = np.where(count == 0, np.nan, high)
    return low, high


def to_interval(low: Any, high: Any) -> Interval | None:
    """An Interval from two scalar bounds, None when they are NaN (undefined)."""
    low_value, high_value = float(low), float(high)
    if math.isnan(low_value) or math.isnan(high_value):
        return None
    return Interval(low_value, high_value)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


BAND_RESAMPLES = 2000
# The band's bootstrap is seeded: one folder gives one report.
BAND_SEED = 2026


def simultaneous_rate_band(
    successes: ArrayLike,
    evaluated: ArrayLike,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = BAND_RESAMPLES,
    seed: int = BAND_SEED,
) -> tuple[FloatArray, FloatArray]:
    """A band over the columns (fractions) of a rate per column, holding at every column at once.

    Rows are problems, ``successes`` and ``evaluated`` boolean (problems x fractions). A
    max-statistic bootstrap over problems: each resample draws the problems with replacement,
    and the statistic is the largest, over fractions, of |asin sqrt(rate*) - asin sqrt(rate)|
    times 2 sqrt(problems evaluated there) (the arcsine square root makes each fraction's
    spread about the same, so no fraction dominates the maximum). Its ``confidence`` quantile c,
    kept between the pointwise and the Bonferroni normal quantiles, sets the pointwise level
    2 Phi(c) - 1 of a Clopper-Pearson interval at each fraction: the bootstrap finds how much
    the fractions move together, the exact interval keeps the band from collapsing at a rate of
    0 or 1 (where the arcsine scale alone under-covered). NaN where no problem is evaluated.
    """
    check_confidence(confidence)
    hits = np.asarray(successes, dtype=float)
    kept = np.asarray(evaluated, dtype=float)
    problems, columns = kept.shape
    total = kept.sum(axis=0)
    low = np.full(columns, np.nan)
    high = np.full(columns, np.nan)
    defined = total > 0
    if problems == 0 or not defined.any():
        return low, high
    rate = np.divide(hits.sum(axis=0), total, out=np.zeros(columns), where=defined)
    angle = np.arcsin(np.sqrt(rate))
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(problems, np.full(problems, 1.0 / problems), size=resamples).astype(float)
    drawn_total = weights @ kept
    drawn_rate = np.divide(weights @ hits, drawn_total, out=np.zeros_like(drawn_total), where=drawn_total > 0)
    scaled = np.abs(np.arcsin(np.sqrt(drawn_rate)) - angle) * 2 * np.sqrt(np.maximum(total, 1))
    scaled = np.where((drawn_total > 0) & defined, scaled, 0.0)
    # A bootstrap of few problems can be degenerate (below pointwise) or wild (above Bonferroni,
    # which is valid on its own).
    pointwise = float(stats.norm.ppf(0.5 + confidence / 2))
    bonferroni = float(stats.norm.ppf(1 - (1 - confidence) / (2 * int(defined.sum()))))
    critical = min(max(float(np.quantile(scaled.max(axis=1), confidence)), pointwise), bonferroni)
    level = min(2 * float(stats.norm.cdf(critical)) - 1, 1 - 1e-12)
    low[defined], high[defined] = rate_intervals(hits.sum(axis=0)[defined], total[defined], level)
    return low, high


@dataclass(frozen=True)
class PairedDifference:
    """Rate A - rate B on the problems both have: ``a_only`` / ``b_only`` are the discordant
    problems (a success for A only / for B only)."""

    problems: int
    both: int
    a_only: int
    b_only: int
    difference: float
    low: float
    high: float
    p_value: float


def _wilson_corrected(count: int, total: int, z: float) -> tuple[float, float]:
    """Wilson's score interval with continuity correction of count / total."""
    p = count / total
    spread = 2 * (total + z * z)
    low = (
        0.0
        if count == 0
        else (2 * total * p + z * z - 1 - z * math.sqrt(z * z - 2 - 1 / total + 4 * p * (total * (1 - p) + 1))) / spread
    )
    high = (
        1.0
        if count == total
        else (2 * total * p + z * z + 1 + z * math.sqrt(z * z + 2 - 1 / total + 4 * p * (total * (1 - p) - 1))) / spread
    )
    return max(0.0, low), min(1.0, high)


def paired_difference(a: ArrayLike, b: ArrayLike, confidence: float = DEFAULT_CONFIDENCE) -> PairedDifference | None:
    """Paired comparison of two binary outcomes on the same problems; None without problems.

    The test is McNemar's exact test (two-sided binomial test of the discordant problems at
    1/2; statsmodels ``mcnemar(exact=True)``); the interval of the difference is Newcombe's
    hybrid score interval for paired data with continuity correction (method 11 of Newcombe
    1998: the two continuity-corrected Wilson intervals combined with the phi correlation of the
    2x2 table). Method 10, without the correction, covered 0.93 at nominal 0.95 on 60 correlated
    pairs (``tests/unit/test_statistics.py``); method 11 covered 0.955-0.999."""
    check_confidence(confidence)
    first = np.asarray(a, dtype=bool)
    second = np.asarray(b, dtype=bool)
    total = int(first.size)
    if total == 0:
        return None
    both = int((first & second).sum())
    a_only = int((first & ~second).sum())
    b_only = int((~first & second).sum())
    neither = total - both - a_only - b_only
    p_value = float(mcnemar([[both, a_only], [b_only, neither]], exact=True).pvalue) if a_only + b_only else 1.0
    p1 = (both + a_only) / total
    p2 = (both + b_only) / total
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    l1, u1 = _wilson_corrected(both + a_only, total, z)
    l2, u2 = _wilson_corrected(both + b_only, total, z)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    association = float(both * neither - a_only * b_only)
    if association > 0:
        association = max(association - total / 2, 0.0)
    phi = association / math.sqrt(margins) if margins > 0 else 0.0
    difference = p1 - p2
    low = difference - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = difference + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return PairedDifference(
        problems=total,
        both=both,
        a_only=a_only,
        b_only=b_only,
        difference=difference,
        low=max(-1.0, low),
        high=min(1.0, high),
        p_value=p_value,
    )


def holm(p_values: Sequence[float], alpha: float = 1 - DEFAULT_CONFIDENCE) -> list[float]:
    """Holm-adjusted p-values (statsmodels ``multipletests(method="holm")``)."""
    if not p_values:
        return []
    return [float(value) for value in multipletests(list(p_values), alpha=alpha, method="holm")[1]]
