"""The true unlock rate: bounds that hold for the share of truly unsolved problems whose true
potential at f reaches tau, whatever n measured them.

Estimand. Problems are drawn from a population; each has a true baseline potential p0 and a
true potential q at fraction f. The *true unlock rate* at f is

    R = P(q >= tau | p0 <= tau0) = A / (A + C),  A = P(p0 <= tau0, q >= tau),  C = P(p0 <= tau0, q < tau).

It is a ratio of two population shares, both unknown: which problems are truly unsolved is as
uncertain as which are truly unlocked.

Two stages. (1) Per problem, one-sided Clopper-Pearson bounds at the per-problem error ``e``
(``STATUS_ERROR``; the baseline's may be raised up to 0.05 where that makes 0 of the run's n
decidable: ``baseline_error_for``) decide its baseline status (surely unsolved: upper bound <= tau0; surely not:
lower bound > tau0) and its unlock status (surely reaches tau: lower bound >= tau; surely not:
upper bound < tau); the rest is *undecided*. A "surely" is wrong with probability at most ``e``
for every true potential (an adaptive row, which stopped by looking at its own samples, uses
the mixture confidence sequence instead, valid at any stopping time). (2) Over problems, four
counts out of the N problems with a baseline and a result at f:

* S: surely unsolved and surely reaching tau; its share's mean is at most A + e (1 - A);
* C+: possibly unsolved and possibly not reaching tau; its mean is at least C (1 - 2 e);
* A+: possibly unsolved and possibly reaching tau; its mean is at least A (1 - 2 e);
* C-: surely unsolved and surely not reaching tau; its mean is at most C + e (1 - C)

(with two errors, e is the larger where one wrong call suffices and 2 e their sum where either
of two misses does).

Each count is binomial over problems (problems are drawn independently, and a problem's
statuses depend only on its own samples), so one-sided Clopper-Pearson bounds at (1 - level)/4
each bound A from below and C from above (for the low end of R) and A from above and C from
below (for the high end), after removing the per-problem error as above. R increases with A and
decreases with C, so

    low = A_low / (A_low + C_high),   high = A_high / (A_high + C_low)

cover R with probability at least ``confidence`` (Bonferroni over the four bounds). Undecided
problems count both ways, so the interval's width has two parts: the undecided share (which
more samples per row shrink) and the sampling of problems (which more problems shrink).

What the data cannot identify. With tau0 = 0 no problem is ever *surely* unsolved: a true
baseline potential of 0.001 gives 0 of n correct at any affordable n, exactly like 0. Then S and
C- are 0 and the interval is [0, 1] whenever undecided problems go both ways: the honest answer.
The rate the data do identify is the *true unlock rate of the measured-unsolved problems*,
R_m = P(q >= tau | the baseline row measured <= tau0): the selection is by the baseline samples
(which are independent of the samples at f), only the unlock status is uncertain, and its
interval uses the same two stages with (1 - level)/2 per side.

Point estimate (``estimate``): the mean, over the measured-unsolved problems, of each one's
posterior probability that q >= tau under a beta prior fitted to those rows (empirical Bayes,
``statistics.beta_prior``). It estimates R_m, not R: it takes the measured baseline as the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from cot_transfer.domain.sequential import confidence_sequence
from cot_transfer.domain.statistics import DEFAULT_CONFIDENCE, check_confidence, exact_bounds
from cot_transfer.domain.transfer import Thresholds

FloatArray = NDArray[np.float64]

# Each per-problem status call is wrong with probability at most this. Smaller values make more
# problems undecided, larger ones remove more error from the counts: 0.005, 0.01, 0.02 and 0.04
# gave mean widths within 0.03 of each other over the populations of tests/simulation.py.
STATUS_ERROR = 0.005
# Thresholds are compared with the slack of ``Thresholds`` (4/8 meets tau = 0.5).
_SLACK = 1e-9
# The report's "how many samples would shrink the interval": doublings of n up to this.
MAX_PROJECTED_N = 4096
# The baseline calls may spend up to this error where it makes 0 correct decidable (see
# ``baseline_error_for``).
MAX_BASELINE_ERROR = 0.05
TARGET_UNDECIDED_SHARE = 0.1


@dataclass(frozen=True)
class Statuses:
    """Per-problem statuses (arrays of one shape): ``*_in`` surely true, ``*_out`` surely false."""

    unsolved_in: NDArray[np.bool_]
    unsolved_out: NDArray[np.bool_]
    reaches_in: NDArray[np.bool_]
    reaches_out: NDArray[np.bool_]
    # The per-call errors of the two statuses (the bounds remove them from the counts).
    baseline_error: float = STATUS_ERROR
    unlock_error: float = STATUS_ERROR


def _bounds(k: Any, n: Any, anytime: Any, error: float) -> tuple[FloatArray, FloatArray]:
    """One-sided bounds at ``error``: Clopper-Pearson for fixed-n rows, and where ``anytime``
    (an adaptive row, stopped by looking at its own samples) the mixture confidence sequence at
    level ``error``, which holds at whatever sample the row stopped."""
    counts, totals, sequential_rows = np.broadcast_arrays(np.asarray(k), np.asarray(n), np.asarray(anytime, dtype=bool))
    low, high = exact_bounds(counts, totals, error)
    if sequential_rows.any():
        low, high = low.copy(), high.copy()
        low[sequential_rows], high[sequential_rows] = confidence_sequence(
            counts[sequential_rows], totals[sequential_rows], error
        )
    return low, high


def baseline_error_for(thresholds: Thresholds, baseline_n: Any, status_error: float = STATUS_ERROR) -> float:
    """The baseline calls' error: ``status_error``, raised (up to ``MAX_BASELINE_ERROR``) to the
    error at which 0 correct of the run's typical baseline n is just surely <= tau0, where that
    makes a problem decidable at all. Without it, tau0 = 0.1 needs n >= 51 at baseline; with it,
    n >= 29 (the bounds then remove the larger error from the counts). It depends on n only (the
    design), never on the counts, so the bounds stay valid."""
    tau0 = thresholds.baseline_max_potential
    sizes = np.asarray(baseline_n, dtype=float)
    if tau0 <= 0.0 or sizes.size == 0:
        return status_error
    needed = float((1 - tau0) ** float(np.median(sizes)))
    return needed if status_error < needed <= MAX_BASELINE_ERROR else status_error


def statuses(
    baseline_k: Any,
    baseline_n: Any,
    k: Any,
    n: Any,
    thresholds: Thresholds,
    status_error: float = STATUS_ERROR,
    *,
    baseline_error: float | None = None,
    baseline_anytime: Any = False,
    anytime: Any = False,
) -> Statuses:
    """Baseline and unlock statuses of each problem from its counts (broadcasting arrays);
    ``*anytime`` marks adaptive rows (see ``_bounds``); ``baseline_error`` defaults to
    ``baseline_error_for``."""
    base_error = baseline_error_for(thresholds, baseline_n, status_error) if baseline_error is None else baseline_error
    base_low, base_high = _bounds(baseline_k, baseline_n, baseline_anytime, base_error)
    low, high = _bounds(k, n, anytime, status_error)
    tau0 = thresholds.baseline_max_potential
    tau = thresholds.unlock_min_potential
    return Statuses(
        unsolved_in=base_high <= tau0 + _SLACK,
        unsolved_out=base_low > tau0 + _SLACK,
        reaches_in=low >= tau - _SLACK,
        reaches_out=high < tau - _SLACK,
        baseline_error=base_error,
        unlock_error=status_error,
    )


def _lower(count: Any, total: Any, tail: float) -> FloatArray:
    counts = np.asarray(count, dtype=float)
    totals = np.maximum(np.asarray(total, dtype=float), 1.0)
    with np.errstate(invalid="ignore"):
        bound = np.where(counts > 0, stats.beta.ppf(tail, counts, totals - counts + 1), 0.0)
    return np.asarray(bound, dtype=float)


def _upper(count: Any, total: Any, tail: float) -> FloatArray:
    counts = np.asarray(count, dtype=float)
    totals = np.maximum(np.asarray(total, dtype=float), 1.0)
    with np.errstate(invalid="ignore"):
        bound = np.where(counts < totals, stats.beta.ppf(1 - tail, counts + 1, totals - counts), 1.0)
    return np.asarray(bound, dtype=float)


def _share_at_least(share: FloatArray, error: float) -> FloatArray:
    """A lower bound of p from a lower bound of a share whose mean is at most p + e (1 - p)."""
    return np.asarray(np.clip((share - error) / (1 - error), 0.0, 1.0), dtype=float)


def _share_at_most(share: FloatArray, error: float) -> FloatArray:
    """An upper bound of p from an upper bound of a share whose mean is at least p (1 - error)."""
    return np.asarray(np.clip(share / (1 - error), 0.0, 1.0), dtype=float)


def _ratio(a: FloatArray, c: FloatArray, empty: float) -> FloatArray:
    total = a + c
    return np.asarray(np.where(total > 0, a / np.where(total > 0, total, 1.0), empty), dtype=float)


def true_rate_bounds(
    status: Statuses, mask: Any, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[FloatArray, FloatArray]:
    """Bounds of R over the last axis (problems) where ``mask`` holds; NaN where no problem is."""
    check_confidence(confidence)
    kept = np.asarray(mask, dtype=bool)
    total = kept.sum(axis=-1)
    possibly_unsolved = kept & ~status.unsolved_out
    surely_unsolved = kept & status.unsolved_in
    tail = (1 - confidence) / 4
    # A wrong "surely in" needs one wrong call (either one's error); a miss, either of two.
    one = max(status.baseline_error, status.unlock_error)
    either = status.baseline_error + status.unlock_error
    a_low = _share_at_least(_lower((surely_unsolved & status.reaches_in).sum(axis=-1), total, tail), one)
    c_high = _share_at_most(_upper((possibly_unsolved & ~status.reaches_in).sum(axis=-1), total, tail), either)
    a_high = _share_at_most(_upper((possibly_unsolved & ~status.reaches_out).sum(axis=-1), total, tail), either)
    c_low = _share_at_least(_lower((surely_unsolved & status.reaches_out).sum(axis=-1), total, tail), one)
    low = _ratio(a_low, c_high, 0.0)
    high = _ratio(a_high, c_low, 1.0)
    undefined = total == 0
    return np.where(undefined, np.nan, low), np.where(undefined, np.nan, high)


def measured_unsolved_bounds(
    status: Statuses, mask: Any, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[FloatArray, FloatArray]:
    """Bounds of R_m over the last axis, ``mask`` marking the measured-unsolved problems with a
    result at f; NaN where there is none."""
    check_confidence(confidence)
    kept = np.asarray(mask, dtype=bool)
    total = kept.sum(axis=-1)
    tail = (1 - confidence) / 2
    low = _share_at_least(_lower((kept & status.reaches_in).sum(axis=-1), total, tail), status.unlock_error)
    high = _share_at_most(_upper((kept & ~status.reaches_out).sum(axis=-1), total, tail), status.unlock_error)
    undefined = total == 0
    return np.where(undefined, np.nan, low), np.where(undefined, np.nan, high)


def undecided(status: Statuses, mask: Any) -> NDArray[np.bool_]:
    """Problems that could fall on either side of R's numerator or denominator."""
    kept = np.asarray(mask, dtype=bool)
    decided = status.unsolved_out | (status.unsolved_in & (status.reaches_in | status.reaches_out))
    return kept & ~decided


def baseline_samples_to_decide(thresholds: Thresholds) -> int | None:
    """The smallest baseline n at which 0 of n correct makes a problem *surely* unsolved (at the
    largest baseline error ``baseline_error_for`` spends); None at tau0 = 0 (no n tells a true
    baseline potential of 0 from a small positive one)."""
    tau0 = thresholds.baseline_max_potential
    if tau0 <= 0.0:
        return None
    if tau0 >= 1.0:
        return 1
    return max(1, math.ceil(math.log(MAX_BASELINE_ERROR) / math.log(1 - tau0) - 1e-9))


def projected_undecided_share(
    potentials: Sequence[float] | FloatArray, n: int, thresholds: Thresholds, status_error: float = STATUS_ERROR
) -> float:
    """The expected share of problems whose unlock status stays undecided at ``n`` samples, if
    their true potentials were ``potentials`` (the report uses posterior means)."""
    values = np.asarray(potentials, dtype=float)
    if values.size == 0:
        return 0.0
    counts = np.arange(n + 1)
    low, high = exact_bounds(counts, np.full(n + 1, n), status_error)
    tau = thresholds.unlock_min_potential
    open_counts = (low < tau - _SLACK) & (high >= tau - _SLACK)
    probability = stats.binom.pmf(counts[None, :], n, values[:, None])
    return float((probability * open_counts[None, :]).sum(axis=1).mean())


def samples_to_decide(
    potentials: Sequence[float] | FloatArray,
    n: int,
    thresholds: Thresholds,
    target: float = TARGET_UNDECIDED_SHARE,
    status_error: float = STATUS_ERROR,
) -> int | None:
    """The smallest of n, 2n, 4n, ... (up to ``MAX_PROJECTED_N``) at which the projected share of
    undecided unlock statuses is at most ``target``; None when none is."""
    current = max(1, n)
    while current <= MAX_PROJECTED_N:
        if projected_undecided_share(potentials, current, thresholds, status_error) <= target:
            return current
        current *= 2
    return None
