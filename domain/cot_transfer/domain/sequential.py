"""The stopping rule of adaptive sampling: when a (problem, fraction) has drawn enough samples.

Samples of a (problem, fraction) row are drawn in rounds (``SamplingPlan.schedule``). After each
round the row stops when

* ``decided``: its unlock decision is settled at the plan's error rate (below), or
* ``width``: its potential's confidence-sequence interval is narrower than ``target_width``, or
* ``n_max``: it has drawn ``n_max`` samples (what brute force draws for every row).

The test is a confidence sequence, not a repeated fixed-n interval: the Beta-binomial mixture
martingale ``M_t(p) = B(a + S_t, b + F_t) / B(a, b) / (p^S_t (1 - p)^F_t)`` (prior Beta(1/2, 1/2))
is a nonnegative martingale with mean 1 under the true potential p, so by Ville's inequality
``P(exists t: M_t(p) >= 1 / alpha) <= alpha``: the set ``{p: M_t(p) < 1 / alpha}`` covers the true
potential at every round at once, whatever rule (this one, or the state of other rows, which
are independent samples) decides when to look and when to stop. ``log M_t`` is convex in p, so
the set is an interval.

The decision of a row at fraction f has two parts: its problem is unsolved at baseline
(potential at 0 <= tau0) and its own potential reaches tau.

* Own part (f > 0): settled when the interval lies wholly above or wholly below tau.
* Baseline part, tau0 > 0: the same test against tau0.
* Baseline part, tau0 = 0: "potential <= 0" can never be confirmed from finite samples; it is
  settled relative to brute force. One correct sample settles "solved" (brute force on the same
  sample stream would see it too); "unsolved" is only ever called at n_max, exactly as brute
  force calls it. This part then adds no error beyond brute force's own.
* A row whose problem is solved at baseline is decided (not unlocked at any fraction) whatever
  its potential: it stops after the round it is in, keeping that round's potential estimate.

Guarantee: with tau0 > 0 each part is tested at ``error_rate / 2``; with tau0 = 0 the own part
gets the whole ``error_rate``. So a row stopped as ``decided`` has an unlock decision that differs
from the decision at the true potentials (for tau0 = 0: from the true own part and brute force's
baseline call) with probability at most ``error_rate``; a row that reaches n_max is decided on
its n_max samples, like brute force. Tested by simulation (``tests/unit/test_sequential.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from cot_transfer.domain.sampling_plan import DEFAULT_ERROR_RATE, DEFAULT_ROUNDS, SamplingPlan
from cot_transfer.domain.transfer import Thresholds

__all__ = ["DEFAULT_ERROR_RATE", "DEFAULT_ROUNDS", "SamplingPlan"]  # the plan, re-exported beside its rule

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


def side_of(successes: ArrayLike, trials: ArrayLike, threshold: float, alpha: float) -> NDArray[np.int8]:
    """+1 where the interval lies wholly above ``threshold``, -1 wholly below, 0 while it holds it."""
    s = np.asarray(successes, dtype=float)
    t = np.asarray(trials, dtype=float)
    out = excludes(s, t, threshold, alpha)
    above = s > threshold * t
    return np.asarray(np.where(out, np.where(above, 1, -1), 0), dtype=np.int8)


@dataclass(frozen=True)
class StoppingRule:
    """The plan's stopping rule under a run's thresholds; every method works elementwise."""

    plan: SamplingPlan
    thresholds: Thresholds

    @property
    def part_error_rate(self) -> float:
        """The level each part is tested at: the two parts share the error rate when both are tested."""
        alpha = self.plan.error_rate
        return alpha / 2 if self.thresholds.baseline_max_potential > 0 else alpha

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
            return side_of(successes, trials, tau0, self.part_error_rate)
        return np.asarray(np.where(np.asarray(successes) > 0, 1, 0), dtype=np.int8)

    def own_part(self, successes: ArrayLike, trials: ArrayLike) -> NDArray[np.int8]:
        """+1 settled as reaching tau, -1 settled below it, 0 not settled."""
        return side_of(successes, trials, self.thresholds.unlock_min_potential, self.part_error_rate)

    def narrow(self, successes: ArrayLike, trials: ArrayLike) -> BoolArray:
        width = self.plan.target_width
        s = np.asarray(successes, dtype=float)
        if width is None:
            return np.zeros(s.shape, dtype=bool)
        low, high = confidence_sequence(s, trials, self.plan.error_rate)
        return np.asarray(high - low < width)

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


def survival(stop: Callable[[FloatArray, FloatArray], BoolArray], p: float, schedule: Sequence[int]) -> FloatArray:
    """P(a row with true potential p is still drawing after each checkpoint of ``schedule``),
    exactly, for a stopping predicate of (successes, trials); the last entry is 0."""
    alive = np.array([1.0])  # alive[k]: P(k successes so far and not stopped)
    drawn = 0
    out = []
    for total in schedule:
        size = total - drawn
        step = stats.binom.pmf(np.arange(size + 1), size, p)
        alive = np.convolve(alive, step)
        drawn = total
        stopped = stop(np.arange(drawn + 1, dtype=float), np.full(drawn + 1, float(drawn)))
        alive = np.where(stopped, 0.0, alive)
        out.append(float(alive.sum()))
    out[-1] = 0.0
    return np.asarray(out)


def expected_samples(rule: StoppingRule, baseline_potential: float, potentials: Sequence[float]) -> tuple[float, ...]:
    """Expected samples of each row of one problem: the baseline row first, then one per
    potential of ``potentials``. The rows of fractions above 0 stop once their own part settles
    or the baseline settles as solved (they wait for the baseline's round before their next)."""
    schedule = rule.plan.schedule()
    sizes = np.asarray(rule.plan.round_sizes(), dtype=float)

    def baseline_stop(s: FloatArray, t: FloatArray) -> BoolArray:
        return np.asarray((rule.baseline_side(s, t) != 0) | rule.narrow(s, t))

    def solved_stop(s: FloatArray, t: FloatArray) -> BoolArray:
        return np.asarray(rule.baseline_side(s, t) > 0)

    def own_stop(s: FloatArray, t: FloatArray) -> BoolArray:
        return np.asarray((rule.own_part(s, t) != 0) | rule.narrow(s, t))

    base_alive = survival(baseline_stop, baseline_potential, schedule)
    base_unsolved_so_far = survival(solved_stop, baseline_potential, schedule)
    # Round r is drawn when the row was alive after round r - 1 (round 0 always).
    rows = [float(sizes @ np.concatenate(([1.0], base_alive[:-1])))]
    for value in potentials:
        alive = survival(own_stop, value, schedule) * base_unsolved_so_far
        rows.append(float(sizes @ np.concatenate(([1.0], alive[:-1]))))
    return tuple(rows)
