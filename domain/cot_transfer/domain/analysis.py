"""The one analysis of a transfer experiment: every statistic, from (problem, fraction) results.

``analyze`` feeds the service's RunSummary, the running experiment gauges, ``cot-transfer
report``, the testbed evaluation and the benchmarks. It works on any subset of results (a
run in progress, one group of problems) and on a varying n per row. Definitions (the README's
"Statistics" section states the estimand):

* potential, *unsolved at baseline*, *unlocked*: ``cot_transfer.domain.transfer.Thresholds``;
  problems without a fraction-0 result cannot be judged and stay out of the unlock statistics;
* unlock rate at f: unlocked at f / baseline-unsolved problems with a result at f
  (``unsolved_evaluated``); a missing result is neither a success nor a failure;
* any-correct rate at f: the same denominator, problems with at least one correct sample;
* unlock rate without the answer at f: the same, over the baseline-unsolved problems whose
  prefix at f is known not to state the reference answer;
* mean potential at f: over every problem with a result at f;
* intervals: ``cot_transfer.domain.statistics`` (Clopper-Pearson over problems for the rates);
* ``p_unlocked`` of a (problem, fraction): for a baseline-unsolved problem, the posterior
  probability (Jeffreys prior) that its true potential there reaches tau; None otherwise;
* dynamics: ``cot_transfer.domain.dynamics``, the answer located by ``answer_in_prefix``.

Problems in ``excluded_problems`` (a strong CoT cut off inside its reasoning, a per-problem
error) are left out of every statistic and counted by reason.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cot_transfer.domain.dynamics import (
    DEFAULT_DYNAMICS_PARAMETERS,
    MONOTONIC,
    CurvePoint,
    DynamicsLabel,
    DynamicsParameters,
    TraceDynamics,
    answer_fraction,
    classify_points,
    count_labels,
)
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.statistics import (
    DEFAULT_CONFIDENCE,
    check_confidence,
    posterior_at_least,
    potential_intervals,
    rate_intervals,
    ratio,
    to_interval,
)
from cot_transfer.domain.transfer import FractionSummary, Interval, RunSummary, Thresholds

REASONING_TRUNCATED = "reasoning_truncated"
PROBLEM_ERROR = "error"

INTERVAL_METHODS = {
    "rates": "Clopper-Pearson over problems (statsmodels proportion_confint, method='beta')",
    "mean_potential": "Clopper-Pearson of the sum of potentials over problems (conservative for means in [0, 1])",
    "potential": "Wilson score interval of num_correct of n",
    "p_unlocked": "posterior P(true potential >= tau) under the Jeffreys prior Beta(1/2, 1/2)",
}

# A running analysis that took t seconds is not redone for 10 t.
_GAUGE_COST_FACTOR = 10.0

# Fractions are compared as keys; 0.30000000000000004 from arithmetic and 0.3 from JSON are one.
_FRACTION_DECIMALS = 9


def fraction_key(value: float) -> float:
    return round(float(value), _FRACTION_DECIMALS)


@dataclass(frozen=True)
class ProblemPoint:
    """One (problem, fraction) row of the analysis."""

    fraction: float
    n: int
    num_correct: int
    potential: float
    potential_low: float
    potential_high: float
    unlocked: bool
    p_unlocked: float | None
    answer_in_prefix: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "n": self.n,
            "num_correct": self.num_correct,
            "potential": self.potential,
            "potential_interval": {"low": self.potential_low, "high": self.potential_high},
            "unlocked": self.unlocked,
            "p_unlocked": self.p_unlocked,
            "answer_in_prefix": self.answer_in_prefix,
        }


@dataclass(frozen=True)
class ProblemAnalysis:
    problem_id: str
    # None when the problem has no fraction-0 result yet.
    baseline_unsolved: bool | None
    first_unlock_fraction: float | None
    answer_fraction: float | None
    dynamics: DynamicsLabel
    strong_correct: bool | None
    points: tuple[ProblemPoint, ...]

    def curve(self) -> dict[float, float]:
        return {point.fraction: point.potential for point in self.points}

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem_id,
            "baseline_unsolved": self.baseline_unsolved,
            "first_unlock_fraction": self.first_unlock_fraction,
            "answer_fraction": self.answer_fraction,
            "dynamics": self.dynamics.to_dict(),
            "strong_correct": self.strong_correct,
            "points": [point.to_dict() for point in self.points],
        }


@dataclass(frozen=True)
class Analysis:
    fractions: tuple[float, ...]
    thresholds: Thresholds
    confidence: float
    n_problems: int
    problems_without_baseline: int
    baseline_unsolved: int
    per_fraction: tuple[FractionSummary, ...]
    problems: tuple[ProblemAnalysis, ...]
    strong_solve_rate: float | None
    excluded: Mapping[str, int] = field(default_factory=dict)
    dynamics_parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS
    # The one n of every row, None when rows differ (adaptive sampling) or there are none.
    n_samples: int | None = None

    @property
    def truncated_cots(self) -> int:
        return self.excluded.get(REASONING_TRUNCATED, 0)

    @property
    def problem_errors(self) -> int:
        return self.excluded.get(PROBLEM_ERROR, 0)

    def unlock_rates(self) -> dict[float, float]:
        """Fraction -> unlock rate where it is defined (the running gauges)."""
        return {stats.fraction: stats.unlock_rate for stats in self.per_fraction if stats.unlock_rate is not None}

    def run_summary(self, n_samples: int) -> RunSummary:
        return RunSummary(
            fractions=self.fractions,
            n_samples=n_samples,
            n_problems=self.n_problems,
            baseline_unsolved=self.baseline_unsolved,
            per_fraction=self.per_fraction,
            strong_solve_rate=self.strong_solve_rate,
            thresholds=self.thresholds,
            truncated_cots=self.truncated_cots,
            problem_errors=self.problem_errors,
        )

    def to_dict(self) -> dict[str, Any]:
        """The analysis part of ``summary.json`` (JSON-ready; undefined values are None)."""
        per_fraction = self.per_fraction

        def pairs(name: str) -> list[list[float] | None]:
            intervals = [getattr(stats, name) for stats in per_fraction]
            return [None if value is None else [value.low, value.high] for value in intervals]

        return {
            "fractions": list(self.fractions),
            "n_samples": self.n_samples,
            "n_problems": self.n_problems,
            "baseline_unsolved": self.baseline_unsolved,
            "problems_without_baseline": self.problems_without_baseline,
            "truncated_cots": self.truncated_cots,
            "problem_errors": self.problem_errors,
            "excluded": dict(self.excluded),
            "unlocked": [stats.unlocked for stats in per_fraction],
            "unlock_rate": [stats.unlock_rate for stats in per_fraction],
            "unlock_rate_interval": pairs("unlock_rate_interval"),
            "unlock_rate_without_answer": [stats.unlock_rate_without_answer for stats in per_fraction],
            "unlock_rate_without_answer_interval": pairs("unlock_rate_without_answer_interval"),
            "answer_in_prefix": [stats.answer_in_prefix for stats in per_fraction],
            "any_correct_rate": [stats.any_correct_rate for stats in per_fraction],
            "any_correct_rate_interval": pairs("any_correct_rate_interval"),
            "weak_potential_mean": [stats.mean_potential for stats in per_fraction],
            "weak_potential_interval": pairs("mean_potential_interval"),
            "strong_solve_rate": self.strong_solve_rate,
            "per_fraction": [stats.to_dict() for stats in per_fraction],
            "thresholds": self.thresholds.to_dict(),
            "confidence": self.confidence,
            "intervals": dict(INTERVAL_METHODS),
            "dynamics": {
                "parameters": self.dynamics_parameters.to_dict(),
                "answer_fraction": "the first fraction whose prefix states the reference answer (answer_in_prefix)",
                "counts": count_labels(problem.dynamics.label for problem in self.problems),
                "counts_baseline_unsolved": count_labels(
                    problem.dynamics.label for problem in self.problems if problem.baseline_unsolved
                ),
            },
            "problems": [problem.to_dict() for problem in self.problems],
        }


@dataclass(frozen=True)
class _Table:
    """Results as (problem, fraction) arrays; ``has`` marks the cells with a result."""

    problem_ids: list[str]
    fractions: tuple[float, ...]
    has: np.ndarray
    k: np.ndarray
    n: np.ndarray
    # 1: the prefix states the answer, 0: it does not, -1: unknown.
    answer: np.ndarray


def _table(results: Sequence[FractionResult], fractions: Sequence[float] | None) -> _Table:
    chosen = {fraction_key(result.fraction) for result in results} if fractions is None else set()
    chosen.update(fraction_key(value) for value in fractions or ())
    chosen.add(0.0)
    ordered = tuple(sorted(chosen))
    column = {fraction: index for index, fraction in enumerate(ordered)}
    problem_ids = sorted({result.problem_id for result in results})
    row = {problem_id: index for index, problem_id in enumerate(problem_ids)}
    shape = (len(problem_ids), len(ordered))
    has = np.zeros(shape, dtype=bool)
    k = np.zeros(shape, dtype=np.int64)
    n = np.ones(shape, dtype=np.int64)
    answer = np.full(shape, -1, dtype=np.int8)
    for result in results:
        key = fraction_key(result.fraction)
        if key not in column:
            continue
        cell = (row[result.problem_id], column[key])
        if has[cell]:
            raise ValueError(f"duplicate result for problem {result.problem_id!r} at fraction {result.fraction}")
        if result.n < 1 or not 0 <= result.num_correct <= result.n:
            raise ValueError(f"bad counts for problem {result.problem_id!r}: {result.num_correct} of {result.n}")
        has[cell] = True
        k[cell] = result.num_correct
        n[cell] = result.n
        if result.answer_in_prefix is not None:
            answer[cell] = int(result.answer_in_prefix)
    return _Table(problem_ids, ordered, has, k, n, answer)


def _rate(
    count: np.ndarray, total: np.ndarray, confidence: float
) -> tuple[list[float | None], list[tuple[float, float]]]:
    low, high = rate_intervals(count, total, confidence)
    rates = [ratio(float(c), float(t)) for c, t in zip(count, total, strict=True)]
    return rates, list(zip(low.tolist(), high.tolist(), strict=True))


def analyze(
    results: Sequence[FractionResult],
    *,
    thresholds: Thresholds,
    fractions: Sequence[float] | None = None,
    strong_correct: Mapping[str, bool] | None = None,
    excluded_problems: Mapping[str, str] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    dynamics_parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS,
    with_dynamics: bool = True,
    with_problems: bool = True,
) -> Analysis:
    """Every statistic of ``results`` (see the module docstring).

    ``fractions`` defaults to every fraction in ``results``; 0 is always included. Results at
    other fractions are ignored; a repeated (problem, fraction) is an error.
    ``with_dynamics=False`` labels every curve monotonic and ``with_problems=False`` leaves the
    per-problem rows out (``problems`` is empty): both for cheap running updates.
    """
    thresholds.check()
    check_confidence(confidence)
    excluded = dict(excluded_problems or {})
    kept = [result for result in results if result.problem_id not in excluded]
    table = _table(kept, fractions)
    potentials = np.where(table.has, table.k / table.n, 0.0)
    baseline_known = table.has[:, 0]
    unsolved = baseline_known & thresholds.unsolved_at_baseline(potentials[:, 0])
    evaluated = unsolved[:, None] & table.has
    unlocked = evaluated & thresholds.reaches_unlock(potentials)
    any_correct = evaluated & (table.k > 0)
    without_answer = evaluated & (table.answer == 0)

    n_with_result = table.has.sum(axis=0)
    potential_sum = potentials.sum(axis=0)
    mean_low, mean_high = rate_intervals(potential_sum, n_with_result, confidence)
    unlock_rates, unlock_bounds = _rate(unlocked.sum(axis=0), evaluated.sum(axis=0), confidence)
    any_rates, any_bounds = _rate(any_correct.sum(axis=0), evaluated.sum(axis=0), confidence)
    free_rates, free_bounds = _rate((unlocked & without_answer).sum(axis=0), without_answer.sum(axis=0), confidence)
    stated = (table.has & (table.answer == 1)).sum(axis=0)
    unknown = (table.has & (table.answer == -1)).sum(axis=0)

    per_fraction = []
    for index, fraction in enumerate(table.fractions):
        count = int(n_with_result[index])
        per_fraction.append(
            FractionSummary(
                fraction=fraction,
                n_problems=count,
                mean_potential=ratio(float(potential_sum[index]), count),
                mean_potential_interval=to_interval(mean_low[index], mean_high[index]),
                unsolved_evaluated=int(evaluated[:, index].sum()),
                unlocked=int(unlocked[:, index].sum()),
                unlock_rate=unlock_rates[index],
                unlock_rate_interval=to_interval(*unlock_bounds[index]),
                any_correct=int(any_correct[:, index].sum()),
                any_correct_rate=any_rates[index],
                any_correct_rate_interval=to_interval(*any_bounds[index]),
                answer_in_prefix=None if count and unknown[index] == count else int(stated[index]),
                answer_in_prefix_unknown=int(unknown[index]),
                unsolved_without_answer=int(without_answer[:, index].sum()),
                unlocked_without_answer=int((unlocked & without_answer)[:, index].sum()),
                unlock_rate_without_answer=free_rates[index],
                unlock_rate_without_answer_interval=to_interval(*free_bounds[index]),
            )
        )

    problems = (
        _problem_rows(
            table,
            potentials,
            unsolved,
            unlocked,
            thresholds,
            confidence,
            strong_correct or {},
            dynamics_parameters,
            with_dynamics,
        )
        if with_problems
        else ()
    )
    known_strong = [strong_correct[pid] for pid in table.problem_ids if strong_correct and pid in strong_correct]
    n_values = np.unique(table.n[table.has])
    return Analysis(
        fractions=table.fractions,
        thresholds=thresholds,
        confidence=confidence,
        n_problems=len(table.problem_ids),
        problems_without_baseline=int((~baseline_known).sum()),
        baseline_unsolved=int(unsolved.sum()),
        per_fraction=tuple(per_fraction),
        problems=problems,
        strong_solve_rate=ratio(sum(known_strong), len(known_strong)),
        excluded=dict(Counter(excluded.values())),
        dynamics_parameters=dynamics_parameters,
        n_samples=int(n_values[0]) if n_values.size == 1 else None,
    )


def _problem_rows(
    table: _Table,
    potentials: np.ndarray,
    unsolved: np.ndarray,
    unlocked: np.ndarray,
    thresholds: Thresholds,
    confidence: float,
    strong_correct: Mapping[str, bool],
    parameters: DynamicsParameters,
    with_dynamics: bool,
) -> tuple[ProblemAnalysis, ...]:
    low, high = potential_intervals(table.k, table.n, confidence)
    p_reach = posterior_at_least(table.k, table.n, thresholds.unlock_min_potential)
    rows = []
    for row, problem_id in enumerate(table.problem_ids):
        columns = np.flatnonzero(table.has[row])
        baseline = bool(unsolved[row]) if table.has[row, 0] else None
        points = tuple(
            ProblemPoint(
                fraction=table.fractions[column],
                n=int(table.n[row, column]),
                num_correct=int(table.k[row, column]),
                potential=float(potentials[row, column]),
                potential_low=float(low[row, column]),
                potential_high=float(high[row, column]),
                unlocked=bool(unlocked[row, column]),
                p_unlocked=float(p_reach[row, column]) if baseline else None,
                answer_in_prefix=None if table.answer[row, column] < 0 else bool(table.answer[row, column]),
            )
            for column in columns
        )
        answer_at = answer_fraction([p.fraction for p in points], [p.answer_in_prefix for p in points])
        label = (
            classify_points([CurvePoint(p.fraction, p.num_correct, p.n) for p in points], answer_at, parameters)
            if with_dynamics and points
            else MONOTONIC
        )
        rows.append(
            ProblemAnalysis(
                problem_id=problem_id,
                baseline_unsolved=baseline,
                first_unlock_fraction=next(
                    (p.fraction for p in points if p.fraction > 0.0 and thresholds.reaches_unlock(p.potential)), None
                ),
                answer_fraction=answer_at,
                dynamics=label,
                strong_correct=strong_correct.get(problem_id),
                points=points,
            )
        )
    return tuple(rows)


class RunningAnalysis:
    """The analysis of a run in progress, for the experiment gauges.

    ``add`` is O(1); ``unlock_rates_due`` reruns the one ``analyze`` (per-fraction statistics
    only) at most once per ``min_interval_s``.
    """

    def __init__(
        self,
        thresholds: Thresholds,
        fractions: Sequence[float],
        *,
        min_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._thresholds = thresholds
        self._fractions = tuple(fractions)
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._results: list[FractionResult] = []
        self._excluded: dict[str, str] = {}
        self._due: float | None = None

    @property
    def results(self) -> list[FractionResult]:
        return self._results

    def add(self, result: FractionResult) -> None:
        self._results.append(result)

    def exclude(self, problem_id: str, reason: str) -> None:
        self._excluded[problem_id] = reason

    def analysis(self, *, strong_correct: Mapping[str, bool] | None = None) -> Analysis:
        """The per-fraction statistics so far (no per-problem rows: neither the gauges nor the
        RunSummary carry them)."""
        return analyze(
            self._results,
            thresholds=self._thresholds,
            fractions=self._fractions,
            strong_correct=strong_correct,
            excluded_problems=self._excluded,
            with_dynamics=False,
            with_problems=False,
        )

    def unlock_rates_due(self, *, force: bool = False) -> dict[float, float] | None:
        """The unlock rates so far, or None when they are not due yet: the next ones are due
        ``min_interval_s`` later, or ten times as long as this analysis took if that is longer,
        so the gauges never take more than a tenth of the caller's time, however large the run."""
        start = self._clock()
        if not force and self._due is not None and start < self._due:
            return None
        rates = self.analysis().unlock_rates()
        elapsed = self._clock() - start
        self._due = start + max(self._min_interval_s, _GAUGE_COST_FACTOR * elapsed)
        return rates


__all__ = [
    "Analysis",
    "FractionSummary",
    "Interval",
    "ProblemAnalysis",
    "ProblemPoint",
    "RunSummary",
    "RunningAnalysis",
    "Thresholds",
    "TraceDynamics",
    "analyze",
]
