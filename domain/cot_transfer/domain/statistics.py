"""Uncertainty of potential and unlock statistics.

Definitions (thresholds as in ``cot_transfer.domain.transfer.Thresholds``):

* potential of a (problem, fraction) result: ``num_correct / n``; its 95% interval is the
  Wilson score interval, which stays inside [0, 1] and is not degenerate at 0/n or n/n.
* baseline-unsolved problem: its potential at fraction 0 is <= tau0. Problems without a
  fraction-0 result cannot be judged and are left out of the unlock statistics.
* unlocked at fraction f: baseline-unsolved and potential at f >= tau.
* unlock rate at f: unlocked at f / baseline-unsolved problems that have a result at f.
  With complete results the denominator is simply the number of baseline-unsolved problems;
  with partial results (a run still in progress) a missing result is neither a success nor
  a failure.
* any-correct rate at f: share of the same denominator with at least one correct sample at f
  (pass@n of the prefix among problems the weak model could not solve alone). It bounds the
  unlock rate from above whenever tau > 0 and shows prefixes that help some samples without
  lifting the potential to tau.
* mean potential at f: mean over all problems with a result at f.

Intervals of the rates and of the mean potential are bootstrap percentile intervals over
problems: each resample draws problems with replacement and recomputes which are
baseline-unsolved and which unlocked, so the interval covers both sources of variation. A
resample without any baseline-unsolved problem has no unlock rate and is left out of that
interval; a rate that is undefined on the data itself (no baseline-unsolved problem) is None.
Resampling is deterministic under ``seed``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from statistics import NormalDist
from typing import Any

from cot_transfer.domain.transfer import FractionOutcome, Thresholds, baseline_unsolved, potential, potential_table

DEFAULT_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP_RESAMPLES = 2000
DEFAULT_BOOTSTRAP_SEED = 0
DEFAULT_THRESHOLDS = Thresholds()


def _check_confidence(confidence: float) -> float:
    if math.isnan(confidence) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


def _two_sided_z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + _check_confidence(confidence) / 2)


def wilson_interval(num_correct: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of the success probability after ``num_correct`` of ``n`` successes."""
    observed = potential(num_correct, n)
    z = _two_sided_z(confidence)
    z_squared = z * z
    denominator = 1 + z_squared / n
    center = (observed + z_squared / (2 * n)) / denominator
    half_width = z / denominator * math.sqrt(observed * (1 - observed) / n + z_squared / (4 * n * n))
    # At 0/n and n/n one bound is exactly 0 or 1; floating point would land a hair off it.
    low = 0.0 if num_correct == 0 else max(0.0, center - half_width)
    high = 1.0 if num_correct == n else min(1.0, center + half_width)
    return low, high


def percentile(sorted_values: Sequence[float], quantile: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) on already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    position = (len(sorted_values) - 1) * quantile
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (position - below) * (sorted_values[above] - sorted_values[below])


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


def _percentile_interval(values: list[float], confidence: float) -> Interval | None:
    if not values:
        return None
    values.sort()
    tail = (1 - confidence) / 2
    return Interval(percentile(values, tail), percentile(values, 1 - tail))


@dataclass(frozen=True)
class FractionStatistics:
    """Statistics at one truncation fraction; see the module docstring for definitions.

    ``unsolved_evaluated`` is the unlock-rate denominator. Rates and their intervals are
    None when it is 0.
    """

    fraction: float
    n_problems: int
    mean_potential: float | None
    mean_potential_interval: Interval | None
    unsolved_evaluated: int
    unlocked: int
    unlock_rate: float | None
    unlock_rate_interval: Interval | None
    any_correct: int
    any_correct_rate: float | None
    any_correct_rate_interval: Interval | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "n_problems": self.n_problems,
            "mean_potential": self.mean_potential,
            "mean_potential_interval": _interval_dict(self.mean_potential_interval),
            "unsolved_evaluated": self.unsolved_evaluated,
            "unlocked": self.unlocked,
            "unlock_rate": self.unlock_rate,
            "unlock_rate_interval": _interval_dict(self.unlock_rate_interval),
            "any_correct": self.any_correct,
            "any_correct_rate": self.any_correct_rate,
            "any_correct_rate_interval": _interval_dict(self.any_correct_rate_interval),
        }


def _interval_dict(interval: Interval | None) -> dict[str, float] | None:
    return interval.to_dict() if interval is not None else None


@dataclass(frozen=True)
class TransferStatistics:
    fractions: tuple[float, ...]
    thresholds: Thresholds
    confidence: float
    bootstrap_resamples: int
    bootstrap_seed: int
    n_problems: int
    problems_without_baseline: int
    baseline_unsolved: int
    per_fraction: tuple[FractionStatistics, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fractions": list(self.fractions),
            "thresholds": {
                "baseline_max_potential": self.thresholds.baseline_max_potential,
                "unlock_min_potential": self.thresholds.unlock_min_potential,
            },
            "confidence": self.confidence,
            "bootstrap_resamples": self.bootstrap_resamples,
            "bootstrap_seed": self.bootstrap_seed,
            "n_problems": self.n_problems,
            "problems_without_baseline": self.problems_without_baseline,
            "baseline_unsolved": self.baseline_unsolved,
            "per_fraction": [stats.to_dict() for stats in self.per_fraction],
        }


@dataclass(frozen=True)
class _FractionIndicators:
    """Per-problem 0/1 (or potential) columns at one fraction, indexed like the problem list."""

    has_result: tuple[int, ...]
    potential: tuple[float, ...]
    unsolved_evaluated: tuple[int, ...]
    unlocked: tuple[int, ...]
    any_correct: tuple[int, ...]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def compute_transfer_statistics(
    outcomes: Sequence[FractionOutcome],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    fractions: Sequence[float] | None = None,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    bootstrap_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> TransferStatistics:
    """Per-fraction potential, unlock and any-correct statistics with their intervals.

    ``outcomes`` holds one row per (problem, fraction); a repeated pair is an error.
    ``fractions`` defaults to every fraction that occurs in ``outcomes``.
    """
    thresholds.check()
    _check_confidence(confidence)
    if bootstrap_resamples < 1:
        raise ValueError(f"bootstrap_resamples must be at least 1, got {bootstrap_resamples}")
    table = potential_table(outcomes)
    chosen_fractions = tuple(sorted(set(fractions) if fractions is not None else {o.fraction for o in outcomes}))
    problem_ids = sorted(table)
    with_baseline = {pid: row for pid, row in table.items() if 0.0 in row}
    unsolved = set(baseline_unsolved(with_baseline, thresholds))

    columns = {
        fraction: _indicators(problem_ids, table, unsolved, fraction, thresholds) for fraction in chosen_fractions
    }
    resampled = _bootstrap(columns, len(problem_ids), bootstrap_resamples, seed)
    per_fraction = []
    for fraction in chosen_fractions:
        column = columns[fraction]
        n_with_result = sum(column.has_result)
        denominator = sum(column.unsolved_evaluated)
        samples = resampled[fraction]
        per_fraction.append(
            FractionStatistics(
                fraction=fraction,
                n_problems=n_with_result,
                mean_potential=_ratio(sum(column.potential), n_with_result),
                mean_potential_interval=_percentile_interval(samples.mean_potential, confidence),
                unsolved_evaluated=denominator,
                unlocked=sum(column.unlocked),
                unlock_rate=_ratio(sum(column.unlocked), denominator),
                unlock_rate_interval=_percentile_interval(samples.unlock_rate, confidence) if denominator else None,
                any_correct=sum(column.any_correct),
                any_correct_rate=_ratio(sum(column.any_correct), denominator),
                any_correct_rate_interval=(
                    _percentile_interval(samples.any_correct_rate, confidence) if denominator else None
                ),
            )
        )
    return TransferStatistics(
        fractions=chosen_fractions,
        thresholds=thresholds,
        confidence=confidence,
        bootstrap_resamples=bootstrap_resamples,
        bootstrap_seed=seed,
        n_problems=len(problem_ids),
        problems_without_baseline=len(table) - len(with_baseline),
        baseline_unsolved=len(unsolved),
        per_fraction=tuple(per_fraction),
    )


def _indicators(
    problem_ids: Sequence[str],
    table: dict[str, dict[float, float]],
    unsolved: set[str],
    fraction: float,
    thresholds: Thresholds,
) -> _FractionIndicators:
    has_result = [int(fraction in table[pid]) for pid in problem_ids]
    potentials = [table[pid].get(fraction, 0.0) for pid in problem_ids]
    unsolved_evaluated = [int(pid in unsolved and has) for pid, has in zip(problem_ids, has_result, strict=True)]
    return _FractionIndicators(
        has_result=tuple(has_result),
        potential=tuple(potentials),
        unsolved_evaluated=tuple(unsolved_evaluated),
        unlocked=tuple(
            int(evaluated and value >= thresholds.unlock_min_potential)
            for evaluated, value in zip(unsolved_evaluated, potentials, strict=True)
        ),
        # potential > 0 is exactly "at least one of the n samples is correct".
        any_correct=tuple(
            int(evaluated and value > 0.0) for evaluated, value in zip(unsolved_evaluated, potentials, strict=True)
        ),
    )


@dataclass(frozen=True)
class _ResampledValues:
    mean_potential: list[float]
    unlock_rate: list[float]
    any_correct_rate: list[float]


def _bootstrap(
    columns: dict[float, _FractionIndicators], n_problems: int, resamples: int, seed: int
) -> dict[float, _ResampledValues]:
    values = {fraction: _ResampledValues([], [], []) for fraction in columns}
    if n_problems == 0:
        return values
    rng = random.Random(seed)
    population = range(n_problems)
    for _ in range(resamples):
        drawn = rng.choices(population, k=n_problems)
        # itemgetter picks the drawn entries in C, which keeps 2000 resamples of hundreds of
        # problems at well under a second per fraction. It returns a tuple only for two or more
        # indices, so a lone problem is drawn twice: every statistic is a ratio of two sums,
        # which doubling both leaves unchanged.
        pick = itemgetter(*drawn) if n_problems > 1 else itemgetter(drawn[0], drawn[0])
        for fraction, column in columns.items():
            target = values[fraction]
            with_result = sum(pick(column.has_result))
            if with_result:
                target.mean_potential.append(sum(pick(column.potential)) / with_result)
            denominator = sum(pick(column.unsolved_evaluated))
            if denominator:
                target.unlock_rate.append(sum(pick(column.unlocked)) / denominator)
                target.any_correct_rate.append(sum(pick(column.any_correct)) / denominator)
    return values
