r"""Exact tests of how far one binomial potential lies above another, and of "near zero".

``rise_p_values`` tests the shifted null H0: p_after - p_before <= delta against "the true rise
exceeds delta", from k_before of n_before and k_after of n_after samples (independent binomials).
It is an exact unconditional test (Chan 1998; Röhmel 2005 for the monotone hull):

* The outcomes are ordered by the score statistic of Farrington and Manning (the difference
  minus delta over its standard error at the maximum-likelihood point of the null boundary).
* The p-value of an outcome is the largest probability, over the nuisance p_before on the
  boundary p_after = p_before + delta, of an outcome ordered at least as extreme.
* The p-values are then made monotone: an outcome with fewer successes before or more after
  never gets a larger p-value. The rejection region of every level is then monotone, so its
  probability grows with p_after and shrinks with p_before, and its supremum over the whole
  null lies on the boundary: the test holds its level for every pair of potentials with
  p_after - p_before <= delta, delta itself included, at every n (unequal ones too).

The supremum is taken on a grid of ``_NUISANCE_GRID`` points of the boundary; the tables are
exact sums, cached per (n_before, n_after, delta). Above ``_EXACT_OUTCOMES`` outcome pairs
(n of about 380 on both sides) the score test's normal approximation is used instead, which is
accurate there.

Rows drawn adaptively (stopped once their unlock decision settles) are not binomial with a fixed
n: k / n at an early stop is biased, and the exact test loses its level on them (a curve whose
ten steps alternate by exactly delta was labelled 5.6% of the time). ``anytime_rise_p_values``
holds its level under any stopping rule: each row's Beta-binomial mixture martingale M(p) (the
stopping rule's own, ``sequential.log_mixture``) has mean 1 at its true potential, and so does
the product of two rows' (their samples are independent, drawn round by round), so by Markov's
inequality 1 / inf over the null of M_before(p_before) * M_after(p_after) is a p-value. log M is
convex in p, so the infimum lies at the two estimates, or, when the observed rise exceeds delta,
on the boundary, found by golden-section search. It is valid whatever the stopping, and weaker.

``upper_bounds`` is the one-sided Clopper-Pearson upper confidence bound of a potential: a
potential is shown near zero when it is at most ``near_zero`` (an exact equivalence test of
H0: p > near_zero, level alpha).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from cot_transfer.domain.sequential import log_mixture

FloatArray = NDArray[np.float64]

_NUISANCE_GRID = 401
_EXACT_OUTCOMES = 150_000
# Ties in the score statistic (symmetric outcomes) must share one p-value.
_TIE_SLACK = 1e-9
_BISECTION_STEPS = 60
_GOLDEN_STEPS = 80
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def restricted_before(before_k: ArrayLike, before_n: int, after_k: ArrayLike, after_n: int, delta: float) -> FloatArray:
    """The maximum-likelihood p_before on the null boundary p_after = p_before + delta, elementwise.

    The log-likelihood along the boundary is a sum of logs of affine functions of p_before, so
    it is concave on [0, 1 - delta] and its derivative can be bisected, ends included (8 of 16
    before and 16 of 16 after has its maximum at the end p_before = 0.7, statistic 1.75, where
    statsmodels' ``score_test_proportions_2indep`` gives 1.33).
    """
    bk = np.asarray(before_k, dtype=float)
    ak = np.asarray(after_k, dtype=float)
    bf = before_n - bk
    af = after_n - ak
    low = np.zeros(np.broadcast(bk, ak).shape)
    high = np.full(low.shape, 1.0 - delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(_BISECTION_STEPS):
            middle = (low + high) / 2
            slope = (
                np.where(bk > 0, bk / middle, 0.0)
                - np.where(bf > 0, bf / (1.0 - middle), 0.0)
                + np.where(ak > 0, ak / (middle + delta), 0.0)
                - np.where(af > 0, af / (1.0 - delta - middle), 0.0)
            )
            rising = slope > 0
            low = np.where(rising, middle, low)
            high = np.where(rising, high, middle)
    return (low + high) / 2


def score_statistics(before_k: ArrayLike, before_n: int, after_k: ArrayLike, after_n: int, delta: float) -> FloatArray:
    """The Farrington-Manning score statistic of "p_after - p_before > delta", elementwise: the
    observed rise minus delta over its standard error at the null boundary's maximum-likelihood
    point."""
    bk = np.asarray(before_k, dtype=float)
    ak = np.asarray(after_k, dtype=float)
    before = restricted_before(bk, before_n, ak, after_n, delta)
    after = before + delta
    error = np.sqrt(before * (1.0 - before) / before_n + after * (1.0 - after) / after_n)
    excess = ak / after_n - bk / before_n - delta
    # The error is 0 only where both boundary points sit at 0 or 1 (delta = 1); keep the sign.
    return np.asarray(excess / np.maximum(error, 1e-12), dtype=float)


@lru_cache(maxsize=64)
def _exact_table(before_n: int, after_n: int, delta: float) -> FloatArray:
    """p-values of every outcome: row k_before, column k_after."""
    k_before = np.arange(before_n + 1)
    k_after = np.arange(after_n + 1)
    statistic = score_statistics(k_before[:, None], before_n, k_after[None, :], after_n, delta).ravel()
    order = np.argsort(-statistic, kind="stable")
    ranked = statistic[order]
    # The last outcome of each outcome's tie group: P(T >= t) counts the whole group.
    tie_end = np.searchsorted(-ranked, -ranked + _TIE_SLACK, side="right") - 1
    nuisance = np.linspace(0.0, 1.0 - delta, _NUISANCE_GRID)
    tails = np.zeros(statistic.size)
    for chunk in np.array_split(nuisance, max(1, _NUISANCE_GRID * statistic.size // 2_000_000)):
        before = stats.binom.pmf(k_before[None, :], before_n, chunk[:, None])
        after = stats.binom.pmf(k_after[None, :], after_n, np.minimum(chunk + delta, 1.0)[:, None])
        joint = (before[:, :, None] * after[:, None, :]).reshape(len(chunk), -1)[:, order]
        tails = np.maximum(tails, np.cumsum(joint, axis=1).max(axis=0))
    p_values = np.empty(statistic.size)
    p_values[order] = tails[tie_end]
    table = p_values.reshape(before_n + 1, after_n + 1)
    # Monotone hull: the largest p-value among the outcomes at least as extreme (fewer before,
    # more after), so that every rejection region is monotone.
    table = np.maximum.accumulate(table, axis=0)
    table = np.maximum.accumulate(table[:, ::-1], axis=1)[:, ::-1]
    table = np.minimum(table, 1.0)
    table.setflags(write=False)
    return table


def rise_p_values(
    before_k: ArrayLike, before_n: ArrayLike, after_k: ArrayLike, after_n: ArrayLike, delta: float
) -> FloatArray:
    """p-values of H0: p_after - p_before <= delta, elementwise (see the module docstring)."""
    if not 0.0 < delta <= 1.0:
        raise ValueError(f"delta must be in (0, 1], got {delta}")
    arrays = np.broadcast_arrays(
        np.asarray(before_k, dtype=int),
        np.asarray(before_n, dtype=int),
        np.asarray(after_k, dtype=int),
        np.asarray(after_n, dtype=int),
    )
    bk, bn, ak, an = (array.ravel() for array in arrays)
    shape = arrays[0].shape
    out = np.ones(bk.size)
    if delta >= 1.0:
        return out.reshape(shape)  # no rise can exceed 1
    pairs = np.unique(np.stack([bn, an]), axis=1)
    for before_n_, after_n_ in pairs.T:
        where = (bn == before_n_) & (an == after_n_)
        if (before_n_ + 1) * (after_n_ + 1) <= _EXACT_OUTCOMES:
            out[where] = _exact_table(int(before_n_), int(after_n_), float(delta))[bk[where], ak[where]]
        else:
            statistic = score_statistics(bk[where], int(before_n_), ak[where], int(after_n_), delta)
            out[where] = stats.norm.sf(statistic)
    return out.reshape(shape)


def upper_bounds(k: ArrayLike, n: ArrayLike, alpha: float) -> FloatArray:
    """One-sided Clopper-Pearson upper bounds at level 1 - alpha, elementwise (1 when k = n)."""
    k_ = np.asarray(k, dtype=float)
    n_ = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        bound = stats.beta.ppf(1.0 - alpha, k_ + 1.0, np.maximum(n_ - k_, 1e-300))
    return np.asarray(np.where(k_ >= n_, 1.0, bound), dtype=float)


def anytime_rise_p_values(
    before_k: ArrayLike, before_n: ArrayLike, after_k: ArrayLike, after_n: ArrayLike, delta: float
) -> FloatArray:
    """p-values of H0: p_after - p_before <= delta that hold under optional stopping (see the
    module docstring), elementwise."""
    if not 0.0 < delta <= 1.0:
        raise ValueError(f"delta must be in (0, 1], got {delta}")
    arrays = np.broadcast_arrays(before_k, before_n, after_k, after_n)
    bk, bn, ak, an = (np.asarray(array, dtype=float) for array in arrays)
    out = np.ones(bk.shape)
    rising = ak / an - bk / bn > delta
    if delta >= 1.0 or not rising.any():
        return out
    bk, bn, ak, an = bk[rising], bn[rising], ak[rising], an[rising]

    def log_e(before: FloatArray) -> FloatArray:
        return log_mixture(bk, bn, before) + log_mixture(ak, an, np.minimum(before + delta, 1.0))

    low = np.zeros(bk.shape)
    high = np.full(bk.shape, 1.0 - delta)
    for _ in range(_GOLDEN_STEPS):
        left = high - _GOLDEN * (high - low)
        right = low + _GOLDEN * (high - low)
        keep_left = log_e(left) <= log_e(right)
        high = np.where(keep_left, right, high)
        low = np.where(keep_left, low, left)
    # The ends of the boundary too: the minimum may sit at p_before = 0 or p_after = 1.
    ends = np.minimum(log_e(np.zeros(bk.shape)), log_e(np.full(bk.shape, 1.0 - delta)))
    smallest = np.minimum(log_e((low + high) / 2), ends)
    out[rising] = np.minimum(1.0, np.exp(-smallest))
    return out


def anytime_below(k: ArrayLike, n: ArrayLike, bound: float, alpha: float) -> NDArray[np.bool_]:
    """Whether the row's confidence sequence at level alpha lies wholly below ``bound``, which
    holds under optional stopping (the near-zero test of adaptive rows)."""
    k_ = np.asarray(k, dtype=float)
    n_ = np.asarray(n, dtype=float)
    return np.asarray((k_ < bound * n_) & (log_mixture(k_, n_, bound) >= np.log(1.0 / alpha)))
