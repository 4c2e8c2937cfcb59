"""The stopping rules of adaptive sampling: when a (problem, fraction) has drawn enough samples.

Samples of a (problem, fraction) row are drawn in rounds (``SamplingPlan.schedule``: K looks,
the last at n_max). After each round the row stops when

* ``decided``: its unlock decision is settled at the plan's error rate (below), or
* ``width``: its potential's interval (``StoppingRule.interval``) is narrower than ``target_width``, or
* ``n_max``: it has drawn ``n_max`` samples (what brute force draws for every row).

Two rules settle a decision, chosen by ``SamplingPlan.rule`` (part of the run's settings hash):

* ``bonferroni_cp`` (default): one-sided Clopper-Pearson bounds at level alpha / K at every look.
  A decision is wrong only if the bound on the wrong side fails at one of the K looks, so by the
  union bound the row is decided wrongly with probability at most K x alpha / K = alpha, however
  the looks turn out. The looks are fixed in advance (the schedule), which is what the split
  needs; a fixed-n interval rechecked at every look without the split does not hold alpha
  (``tests/unit/test_sequential.py``).
* ``mixture_cs``: Robbins' mixture confidence sequence. The Beta-binomial mixture martingale
  ``M_t(p) = B(a + S_t, b + F_t) / B(a, b) / (p^S_t (1 - p)^F_t)`` (prior Beta(1/2, 1/2)) is a
  nonnegative martingale with mean 1 under the true potential p, so by Ville's inequality
  ``P(exists t: M_t(p) >= 1 / alpha) <= alpha``: ``{p: M_t(p) < 1 / alpha}`` covers the true
  potential at every sample at once, whatever decides when to look. It needs no schedule, and pays
  for it: at the default plan and a potential of 0.3 it draws about a third more samples than
  ``bonferroni_cp``.

The decision of a row at fraction f has two parts: its problem is unsolved at baseline
(potential at 0 <= tau0) and its own potential reaches tau.

* Own part (f > 0): settled "reaches" when the rule's lower bound is above tau, "below" when its
  upper bound is below tau.
* Baseline part, tau0 > 0: the same test against tau0.
* Baseline part, tau0 = 0: "potential <= 0" can never be confirmed from finite samples; it is
  settled relative to brute force. One correct sample settles "solved" (brute force on the same
  sample stream would see it too); "unsolved" is only ever called at n_max, exactly as brute
  force calls it. This part then adds no error beyond brute force's own.
* A row whose problem is solved at baseline is decided (not unlocked at any fraction) whatever
  its potential: it stops after the round it is in.

Guarantee, per row and at every true potential p (tau included): with tau0 > 0 each part is tested
at ``error_rate / 2``, with tau0 = 0 the own part gets the whole ``error_rate``, so

    P(the row stops as decided and its call is on the wrong side of tau) <= error_rate,

the wrong side being "below" for p >= tau and "reaches" for p < tau (``Thresholds`` counts p = tau
as reaching). It is not a bound on the share of *decided* rows that are wrong: near tau few rows
are decided, and those split about evenly between the two sides. A row that reaches n_max is called
on its n_max samples, like brute force. Simulated in ``tests/unit/test_sequential.py`` and computed
exactly over the path tree in ``tests/unit/test_sequential_estimates.py``.
What a stopped row's potential and interval estimate: ``cot_transfer.domain.sequential_estimates``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from cot_transfer.domain.sampling_plan import (
    BONFERRONI_CP,
    DEFAULT_ERROR_RATE,
    DEFAULT_ROUNDS,
    DEFAULT_RULE,
    MIXTURE_CS,
    RULES,
    SamplingPlan,
)
from cot_transfer.domain.transfer import Thresholds

# The plan and the rule names, re-exported beside the rules.
__all__ = [
    "BONFERRONI_CP",
    "DEFAULT_ERROR_RATE",
    "DEFAULT_ROUNDS",
    "DEFAULT_RULE",
    "MIXTURE_CS",
    "RULES",
    "SamplingPlan",
]

DECIDED = "decided"
WIDTH = "width"
N_MAX = "n_max"
STOP_REASONS = (DECIDED, WIDTH, N_MAX)

# The mixing prior Beta(a, b) of the martingale: Jeffreys', which is tight near 0 and 1 where
# most potentials of a transfer curve lie (8 incorrect samples of 8 already exclude 0.5).
_PRIOR_A = 0.5
_PRIOR_B = 0.5
_BISECTION_STEPS = 50

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def log_mixture(successes: ArrayLike, trials: ArrayLike, p: ArrayLike) -> FloatArray:
    """log M_t(p) of the Beta-binomial mixture martingale, elementwise (p in [0, 1])."""
    s = np.asarray(successes, dtype=float)
    t = np.asarray(trials, dtype=float)
    f = t - s
    q = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # 0 * log 0 = 0: p = 0 with no successes (or p = 1 with no failures) has likelihood 1.
        log_likelihood = np.where(s > 0, s * np.log(q), 0.0) + np.where(f > 0, f * np.log1p(-q), 0.0)
    marginal = special.betaln(_PRIOR_A + s, _PRIOR_B + f) - special.betaln(_PRIOR_A, _PRIOR_B)
    return np.asarray(marginal - log_likelihood, dtype=float)


def excludes(successes: ArrayLike, trials: ArrayLike, p: ArrayLike, alpha: float) -> BoolArray:
    """Whether the confidence sequence at level alpha excludes p after ``successes`` of ``trials``."""
    return np.asarray(log_mixture(successes, trials, p) >= math.log(1.0 / alpha))


def confidence_sequence(successes: ArrayLike, trials: ArrayLike, alpha: float) -> tuple[FloatArray, FloatArray]:
    """The anytime-valid interval {p: M_t(p) < 1/alpha}, elementwise, by bisection on each side
    of the point estimate (the set is an interval around it)."""
    s = np.asarray(successes, dtype=float)
    t = np.asarray(trials, dtype=float)
    s, t = np.broadcast_arrays(s, t)
    estimate = np.divide(s, t, out=np.full(s.shape, 0.5), where=t > 0)

    def edge(inside: FloatArray, outside: FloatArray) -> FloatArray:
        outside_excluded = excludes(s, t, outside, alpha)
        boundary = outside.copy()
        inner, outer = inside.copy(), outside.copy()
        for _ in range(_BISECTION_STEPS):
            middle = (inner + outer) / 2
            out = excludes(s, t, middle, alpha)
            outer = np.where(out, middle, outer)
            inner = np.where(out, inner, middle)
        # Where even the end of [0, 1] is inside the set, the interval reaches it.
        return np.where(outside_excluded, (inner + outer) / 2, boundary)

    low = edge(estimate, np.zeros(s.shape))
    high = edge(estimate, np.ones(s.shape))
    return low, high


def clopper_pearson_bounds(
    successes: ArrayLike, trials: ArrayLike, one_sided_alpha: float
) -> tuple[FloatArray, FloatArray]:
    """One-sided Clopper-Pearson bounds, elementwise: P(low > p) <= alpha and P(high < p) <= alpha
    at every true p (0 and 1 where there are no successes or no failures)."""
    s = np.asarray(successes, dtype=float)
    t = np.asarray(trials, dtype=float)
    s, t = np.broadcast_arrays(s, t)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(s > 0, stats.beta.ppf(one_sided_alpha, np.maximum(s, 1), t - s + 1), 0.0)
        high = np.where(s < t, stats.beta.ppf(1 - one_sided_alpha, s + 1, np.maximum(t - s, 1)), 1.0)
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def side_of(successes: ArrayLike, trials: ArrayLike, threshold: float, alpha: float) -> NDArray[np.int8]:
    """The confidence sequence's side of ``threshold``: +1 where its interval lies wholly above,
    -1 wholly below, 0 while it holds it."""
    s = np.asarray(successes, dtype=float)
    t = np.asarray(trials, dtype=float)
    out = excludes(s, t, threshold, alpha)
    above = s > threshold * t
    return np.asarray(np.where(out, np.where(above, 1, -1), 0), dtype=np.int8)


@dataclass(frozen=True)
class StoppingRule:
    """The plan's stopping rule (``plan.rule``) under a run's thresholds; every method works
    elementwise."""

    plan: SamplingPlan
    thresholds: Thresholds

    @property
    def looks(self) -> int:
        """K: the rounds of the schedule, each a look the error rate is split over."""
        return len(self.plan.schedule())

    @property
    def part_error_rate(self) -> float:
        """The level each part is tested at: the two parts share the error rate when both are tested."""
        alpha = self.plan.error_rate
        return alpha / 2 if self.thresholds.baseline_max_potential > 0 else alpha

    def side(self, successes: ArrayLike, trials: ArrayLike, threshold: float) -> NDArray[np.int8]:
        """+1 settled above ``threshold``, -1 settled below, 0 not settled, at the part error rate."""
        if self.plan.rule == MIXTURE_CS:
            return side_of(successes, trials, threshold, self.part_error_rate)
        low, high = clopper_pearson_bounds(successes, trials, self.part_error_rate / self.looks)
        return np.asarray(np.where(low > threshold, 1, np.where(high < threshold, -1, 0)), dtype=np.int8)

    def interval(self, successes: ArrayLike, trials: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """The row's interval for its potential, covering it at level 1 - error_rate at whatever
        look the row stopped: the confidence sequence (every sample at once), or Clopper-Pearson
        at alpha / (2K) a side (all K looks at once, by the union bound)."""
        if self.plan.rule == MIXTURE_CS:
            return confidence_sequence(successes, trials, self.plan.error_rate)
        return clopper_pearson_bounds(successes, trials, self.plan.error_rate / (2 * self.looks))

    def baseline_solved(self, successes: ArrayLike, trials: ArrayLike) -> NDArray[np.int8]:
        """+1 settled solved at baseline, -1 settled unsolved, 0 not settled (for tau0 = 0,
        relative to the brute-force call at n_max)."""
        s = np.asarray(successes, dtype=float)
        t = np.asarray(trials, dtype=float)
        side = self.baseline_side(s, t)
        at_end = t >= self.plan.n_max
        # At n_max the call is brute force's: the plug-in predicate.
        plug_in = np.where(self.thresholds.unsolved_at_baseline(np.divide(s, np.maximum(t, 1))), -1, 1)
        return np.asarray(np.where(at_end, plug_in, side), dtype=np.int8)

    def baseline_side(self, successes: ArrayLike, trials: ArrayLike) -> NDArray[np.int8]:
        """The baseline part as the test settles it (+1 solved, -1 unsolved, 0 not yet); for
        tau0 = 0 only "solved" is ever settled."""
        tau0 = self.thresholds.baseline_max_potential
        if tau0 > 0:
            return self.side(successes, trials, tau0)
        return np.asarray(np.where(np.asarray(successes) > 0, 1, 0), dtype=np.int8)

    def own_part(self, successes: ArrayLike, trials: ArrayLike) -> NDArray[np.int8]:
        """+1 settled as reaching tau, -1 settled below it, 0 not settled."""
        return self.side(successes, trials, self.thresholds.unlock_min_potential)

    def narrow(self, successes: ArrayLike, trials: ArrayLike) -> BoolArray:
        width = self.plan.target_width
        s = np.asarray(successes, dtype=float)
        if width is None:
            return np.zeros(s.shape, dtype=bool)
        low, high = self.interval(s, trials)
        return np.asarray(high - low < width)

    def own_stop(self, baseline: bool) -> LookStop:
        """Where the row's own samples stop it at a look: decided or narrow, by successes
        0..total. A row above fraction 0 may also stop because its baseline is seen solved, which
        depends only on the baseline's samples; and every row stops at n_max."""
        return lambda total: _own_stop_mask(self, baseline, total)

    def stop_reason(self, baseline: bool, successes: int, trials: int, baseline_state: int) -> str | None:
        """Why a row stops after ``successes`` of ``trials``; None when it draws another round.
        ``baseline``: the row is the problem's fraction-0 row. ``baseline_state``: the baseline
        part so far (``baseline_solved`` of the fraction-0 row: +1, -1 or 0)."""
        if baseline:
            decided = bool(self.baseline_side(successes, trials) != 0)
        else:
            decided = baseline_state > 0 or bool(self.own_part(successes, trials) != 0)
        if decided:
            return DECIDED
        if bool(self.narrow(successes, trials)):
            return WIDTH
        if trials >= self.plan.n_max:
            return N_MAX
        return None


# Which success counts 0..total stop a row at a look after ``total`` samples.
LookStop = Callable[[int], BoolArray]


@lru_cache(maxsize=4096)
def _own_stop_mask(rule: StoppingRule, baseline: bool, total: int) -> BoolArray:
    s = np.arange(total + 1, dtype=float)
    t = np.full(total + 1, float(total))
    settled = rule.baseline_side(s, t) if baseline else rule.own_part(s, t)
    mask = np.asarray((settled != 0) | rule.narrow(s, t))
    mask.setflags(write=False)  # shared by every caller of the cache
    return mask


def survival(stop: LookStop, p: float, schedule: Sequence[int]) -> FloatArray:
    """P(a row with true potential p is still drawing after each checkpoint of ``schedule``),
    exactly, for a row stopped at a look by ``stop``; the last entry is 0."""
    alive = np.array([1.0])  # alive[k]: P(k successes so far and not stopped)
    drawn = 0
    out = []
    for total in schedule:
        size = total - drawn
        step = stats.binom.pmf(np.arange(size + 1), size, p)
        alive = np.convolve(alive, step)
        drawn = total
        alive = np.where(stop(drawn), 0.0, alive)
        out.append(float(alive.sum()))
    out[-1] = 0.0
    return np.asarray(out)


def expected_samples(rule: StoppingRule, baseline_potential: float, potentials: Sequence[float]) -> tuple[float, ...]:
    """Expected samples of each row of one problem: the baseline row first, then one per
    potential of ``potentials``. The rows of fractions above 0 stop once their own part settles
    or the baseline settles as solved (they wait for the baseline's round before their next)."""
    schedule = rule.plan.schedule()
    sizes = np.asarray(rule.plan.round_sizes(), dtype=float)

    def solved_stop(total: int) -> BoolArray:
        return np.asarray(rule.baseline_side(np.arange(total + 1), total) > 0)

    own_stop = rule.own_stop(baseline=False)
    base_alive = survival(rule.own_stop(baseline=True), baseline_potential, schedule)
    base_unsolved_so_far = survival(solved_stop, baseline_potential, schedule)
    # Round r is drawn when the row was alive after round r - 1 (round 0 always).
    rows = [float(sizes @ np.concatenate(([1.0], base_alive[:-1])))]
    for value in potentials:
        alive = survival(own_stop, value, schedule) * base_unsolved_so_far
        rows.append(float(sizes @ np.concatenate(([1.0], alive[:-1]))))
    return tuple(rows)
