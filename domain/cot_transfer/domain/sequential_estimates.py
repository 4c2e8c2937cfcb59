"""What an adaptive row's numbers estimate once it stopped early: its potential, without the
bias of stopping, and the exact operating characteristics of a stopping rule.

A row stops when its own samples settle its decision (``StoppingRule.own_stop``), so k / t at
the stop is biased: a row that happens to start high is stopped "above tau" early and keeps its
high start. The first round's share, k1 / m1, is unbiased (the first round is always drawn
whole), and so is its conditional expectation given the sufficient statistic (S, T) = (successes,
samples at the stop), the Rao-Blackwell estimate, which uses every sample and has no larger
variance:

    potential = E[k1 / m1 | S_T = S, the row not stopped at an earlier look].

Given (S, T) every sample path with S successes in T draws has the same probability p^S (1 -
p)^(T - S), so the conditional law is uniform over the paths that reach S at look T without
meeting the stopping region at an earlier look; the estimate is counted over that path tree
(``first_round_shares``). A stop caused by the baseline being seen solved depends only on the
baseline's samples, independent of the row's, and whether the row's own rule stops it at T is a
function of (S, T): neither changes the set of paths, so one table serves every reason to stop.

The same tree gives the exact law of (S, T) under any true potential (``stopping_law``), and
with it the exact bias of any estimate, the coverage of the rule's interval at the stopping time
and the rate of wrong decisions: ``operating_characteristics``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from cot_transfer.domain.sequential import LookStop, StoppingRule, confidence_sequence
from cot_transfer.domain.statistics import potential_intervals

FloatArray = NDArray[np.float64]


def first_round_shares(stop: LookStop, looks: Sequence[int]) -> list[FloatArray]:
    """For each look j (cumulative samples ``looks[j]``), indexed by successes s = 0..looks[j]:
    E[first round's successes / its size | S = s at look j, not stopped at an earlier look], the
    average over the uniform law of such paths; NaN where no such path exists."""
    shares: list[FloatArray] = []
    first = looks[0]
    # Path counts, each scaled by 2^-t (binomial weights at 1/2) so that they fit a float: only
    # their ratios at one look matter.
    paths = _halves(first)  # paths reaching s
    first_sum = np.arange(first + 1) * paths  # their first-round successes, summed
    for index, total in enumerate(looks):
        if index > 0:
            steps = _halves(total - looks[index - 1])
            paths = np.asarray(np.convolve(paths, steps), dtype=float)
            first_sum = np.asarray(np.convolve(first_sum, steps), dtype=float)
            scale = paths.max() if paths.max() > 0 else 1.0
            paths, first_sum = paths / scale, first_sum / scale
        with np.errstate(invalid="ignore", divide="ignore"):
            shares.append(np.where(paths > 0, first_sum / (first * paths), np.nan))
        stopped = stop(total)
        paths = np.where(stopped, 0.0, paths)
        first_sum = np.where(stopped, 0.0, first_sum)
    return shares


def _halves(size: int) -> FloatArray:
    return np.asarray(stats.binom.pmf(np.arange(size + 1), size, 0.5), dtype=float)


@lru_cache(maxsize=256)
def _shares(rule: StoppingRule, baseline: bool, looks: tuple[int, ...]) -> tuple[FloatArray, ...]:
    return tuple(first_round_shares(rule.own_stop(baseline), looks))


def rao_blackwell_potential(rule: StoppingRule, baseline: bool, successes: int, looks: Sequence[int]) -> float:
    """The Rao-Blackwell potential of a row that looked after ``looks`` samples (cumulative, the
    last its total) and stopped with ``successes``; ``baseline``: the row is fraction 0. Falls back
    to successes / samples where no path of the rule leads there (a row whose samples were not
    drawn as the rule says) or, at thousands of samples, where the path count underflows."""
    looks = tuple(int(value) for value in looks)
    if not looks or looks[-1] < 1 or not 0 <= successes <= looks[-1]:
        raise ValueError(f"no potential for {successes} successes after looks {looks}")
    value = float(_shares(rule, baseline, looks)[-1][successes])
    return value if np.isfinite(value) else successes / looks[-1]


def row_potential(rule: StoppingRule, baseline: bool, successes: int, trials: int) -> float:
    """``rao_blackwell_potential`` of a row drawn on the plan's schedule (looks at every total up
    to ``trials``); successes / trials for a row whose total is not on the schedule."""
    schedule = rule.plan.schedule()
    if trials not in schedule:
        return successes / trials
    return rao_blackwell_potential(rule, baseline, successes, schedule[: schedule.index(trials) + 1])


def row_potential_intervals(
    successes: ArrayLike, trials: ArrayLike, adaptive: ArrayLike, confidence: float
) -> tuple[FloatArray, FloatArray]:
    """Each row's interval for its potential, elementwise: Wilson's for a row drawn in one go, and
    for an adaptive row the mixture confidence sequence at 1 - confidence, which covers the true
    potential at whatever sample the row stopped, under any stopping rule (a fixed-n interval at a
    data-chosen n does not). Where the plan is known, ``StoppingRule.interval`` is narrower."""
    low, high = potential_intervals(successes, trials, confidence)
    chosen = np.asarray(adaptive, dtype=bool)
    if not chosen.any():
        return low, high
    # The sequence is found by bisection: once per distinct (successes, trials).
    pairs = np.stack(np.broadcast_arrays(np.asarray(successes), np.asarray(trials)), axis=-1).reshape(-1, 2)
    distinct, inverse = np.unique(pairs, axis=0, return_inverse=True)
    sequence_low, sequence_high = confidence_sequence(distinct[:, 0], distinct[:, 1], 1 - confidence)
    shape = low.shape
    return (
        np.where(chosen, sequence_low[inverse.ravel()].reshape(shape), low),
        np.where(chosen, sequence_high[inverse.ravel()].reshape(shape), high),
    )


def stopping_law(stop: LookStop, p: float, looks: Sequence[int]) -> list[FloatArray]:
    """P(the row stops at look j with s successes), for each look j and s = 0..looks[j], under
    true potential p; the last look stops every row still drawing."""
    law: list[FloatArray] = []
    alive = np.array([1.0])
    drawn = 0
    for index, total in enumerate(looks):
        alive = np.convolve(alive, stats.binom.pmf(np.arange(total - drawn + 1), total - drawn, p))
        drawn = total
        stopped = np.ones(total + 1, dtype=bool) if index == len(looks) - 1 else stop(total)
        law.append(np.where(stopped, alive, 0.0))
        alive = np.where(stopped, 0.0, alive)
    return law


@lru_cache(maxsize=1024)
def _look_outcomes(rule: StoppingRule, baseline: bool, total: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The row interval and the settled side at a look after ``total`` samples, by successes."""
    s = np.arange(total + 1, dtype=float)
    t = np.full(total + 1, float(total))
    low, high = rule.interval(s, t)
    side = rule.baseline_side(s, t) if baseline else rule.own_part(s, t)
    return low, high, np.asarray(side, dtype=float)


@dataclass(frozen=True)
class OperatingCharacteristics:
    """A row's stopping rule at one true potential, computed exactly over the path tree."""

    p: float
    expected_samples: float
    # Mean of the estimate minus p, and its root-mean-square error.
    bias_rao_blackwell: float
    bias_share: float  # k / t at the stop
    rmse_rao_blackwell: float
    rmse_share: float
    interval_coverage: float  # of p by the rule's interval at the stopping time
    decided_above: float  # P(stopped as decided, called reaching the threshold)
    decided_below: float
    decided_wrong: float  # the side that is wrong at p (p >= threshold counts as reaching)


def operating_characteristics(rule: StoppingRule, baseline: bool, p: float) -> OperatingCharacteristics:
    """The row's own rule alone (no stop from a solved baseline), on the plan's schedule.
    ``baseline``: the fraction-0 row, decided against tau0; otherwise against tau."""
    looks = rule.plan.schedule()
    stop = rule.own_stop(baseline)
    law = stopping_law(stop, p, looks)
    shares = _shares(rule, baseline, looks)
    threshold = rule.thresholds.baseline_max_potential if baseline else rule.thresholds.unlock_min_potential
    samples = mean_rb = mean_share = square_rb = square_share = covered = above = below = 0.0
    for total, mass, share in zip(looks, law, shares, strict=True):
        s = np.arange(total + 1, dtype=float)
        rb = np.nan_to_num(share)  # NaN only where no path reaches, so mass is 0 there
        plug_in = s / total
        samples += total * float(mass.sum())
        mean_rb += float(mass @ rb)
        mean_share += float(mass @ plug_in)
        square_rb += float(mass @ (rb - p) ** 2)
        square_share += float(mass @ (plug_in - p) ** 2)
        low, high, side = _look_outcomes(rule, baseline, total)
        covered += float(mass @ ((low <= p) & (p <= high)))
        above += float(mass @ (side > 0))
        below += float(mass @ (side < 0))
    reaches = p > threshold if baseline else p >= threshold
    return OperatingCharacteristics(
        p=p,
        expected_samples=float(samples),
        bias_rao_blackwell=float(mean_rb - p),
        bias_share=float(mean_share - p),
        rmse_rao_blackwell=float(np.sqrt(square_rb)),
        rmse_share=float(np.sqrt(square_share)),
        interval_coverage=float(covered),
        decided_above=float(above),
        decided_below=float(below),
        decided_wrong=float(below if reaches else above),
    )
