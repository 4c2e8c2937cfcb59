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
* unlock rate without the answer at f: the same, over one fixed set of problems: the
  baseline-unsolved ones whose CoT is known to state no answer before the last fraction (so the
  curve compares the same problems at every f); ``*_prefix_without_answer`` is the per-fraction
  variant (the problems whose prefix at f is known not to state it);
* true unlock rate at f: ``cot_transfer.domain.true_rate`` (the share of *truly* unsolved
  problems whose *true* potential reaches tau, with bounds that hold at any n);
* mean potential at f: over every problem with a result at f;
* intervals: ``cot_transfer.domain.statistics`` (Clopper-Pearson over problems for the measured
  rates, a t interval for the mean potential, a max-statistic bootstrap band for the unlock curve);
* ``p_unlocked`` of a (problem, fraction): for a baseline-unsolved problem, the posterior
  probability that its true potential there reaches tau, under a beta prior fitted to that
  fraction's baseline-unsolved rows (empirical Bayes); None otherwise;
* leaks: the rates without the answer read the lenient flag ``answer_in_prefix`` (a problem is
  answer-free only if no form of the answer appears); the dynamics locate the answer by the
  strict ``answer_stated_in_prefix`` (``cot_transfer.domain.leaks``);
* dynamics: ``cot_transfer.domain.dynamics``, the answer located by ``answer_stated_in_prefix``.

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
from cot_transfer.domain.json_fields import json_fields
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.sequential_estimates import row_potential_intervals
from cot_transfer.domain.statistics import (
    DEFAULT_CONFIDENCE,
    beta_prior,
    check_confidence,
    mean_intervals,
    posterior_at_least,
    posterior_mean,
    rate_intervals,
    ratio,
    simultaneous_rate_band,
    to_interval,
)
from cot_transfer.domain.transfer import FractionSummary, Interval, RunSummary, Thresholds
from cot_transfer.domain.true_rate import (
    STATUS_ERROR,
    baseline_samples_to_decide,
    measured_unsolved_bounds,
    samples_to_decide,
    statuses,
    true_rate_bounds,
    undecided,
)

REASONING_TRUNCATED = "reasoning_truncated"
PROBLEM_ERROR = "error"

INTERVAL_METHODS = {
    "rates": "Clopper-Pearson over problems (statsmodels proportion_confint, method='beta'): the rate this run's"
    " n measures",
    "true_unlock_rate": "per-problem one-sided Clopper-Pearson statuses (error 0.005 each), undecided problems"
    " counted both ways, Clopper-Pearson over problems on the four counts (Bonferroni): covers the share of truly"
    " unsolved problems whose true potential reaches tau",
    "true_unlock_rate_measured_unsolved": "the same over the problems measured unsolved: covers the share of them"
    " whose true potential reaches tau",
    "unlock_rate_band": "max-statistic bootstrap over problems (arcsine square root scale): holds at every fraction"
    " at once",
    "mean_potential": "Student's t over problems (the sum's Clopper-Pearson where every potential is the same)",
    "potential": "Wilson score interval of num_correct of n; adaptive rows: the mixture confidence sequence, which"
    " covers at the sample the row stopped at",
    "p_unlocked": "posterior P(true potential >= tau) under a beta prior fitted to the fraction's baseline-unsolved"
    " rows (empirical Bayes, method of moments; Jeffreys for fewer than 5 rows)",
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
    # The leak flags (``cot_transfer.domain.leaks``): lenient and strict.
    answer_in_prefix: bool | None
    answer_stated_in_prefix: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_fields(self, potential_interval=("potential_low", "potential_high"))


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
        return json_fields(self)


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
    # The first fraction > 0 whose unlock-rate band is above 0 (the band holds at every fraction).
    first_unlock_fraction: float | None = None
    # The report's "how many samples would shrink the interval", at the last fraction.
    samples_to_decide: Mapping[str, Any] = field(default_factory=dict)

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
            "true_unlock_rate": [stats.true_unlock_rate for stats in per_fraction],
            "true_unlock_rate_interval": pairs("true_unlock_rate_interval"),
            "first_unlock_fraction": self.first_unlock_fraction,
            "samples_to_decide": dict(self.samples_to_decide),
            "per_fraction": [stats.to_dict() for stats in per_fraction],
            "thresholds": self.thresholds.to_dict(),
            "confidence": self.confidence,
            "intervals": dict(INTERVAL_METHODS),
            "dynamics": {
                "parameters": self.dynamics_parameters.to_dict(),
                "answer_fraction": "the first fraction whose prefix states the answer (answer_stated_in_prefix)",
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
    # The lenient leak flag (answer_in_prefix), which the rates without the answer read: 1: the
    # prefix may give the answer away, 0: it does not, -1: unknown.
    answer: np.ndarray
    # The strict one (answer_stated_in_prefix), which locates the answer for the dynamics: a
    # number that equals the answer by chance is no reveal (see ``leaks``). Same coding.
    stated: np.ndarray
    # Rows drawn adaptively (a stop reason): the dynamics tests must hold under their stopping.
    adaptive: np.ndarray
    # Each row's potential (FractionResult.potential: an adaptive row's Rao-Blackwell estimate,
    # unbiased under early stopping), which means and curves read; decisions read k / n.
    estimate: np.ndarray


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
    stated = np.full(shape, -1, dtype=np.int8)
    adaptive = np.zeros(shape, dtype=bool)
    estimate = np.zeros(shape)
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
        adaptive[cell] = bool(result.stop_reason)
        estimate[cell] = result.potential
        if result.answer_in_prefix is not None:
            answer[cell] = int(result.answer_in_prefix)
        # A row with the lenient flag only (a simulation, another producer) is located by it.
        located = result.answer_in_prefix if result.answer_stated_in_prefix is None else result.answer_stated_in_prefix
        if located is not None:
            stated[cell] = int(located)
    return _Table(problem_ids, ordered, has, k, n, answer, stated, adaptive, estimate)


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
    per-problem rows, the unlock-rate band and ``samples_to_decide`` out: both for cheap running
    updates.
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
    prefix_without_answer = evaluated & (table.answer == 0)
    answer_free = _answer_free(table)
    without_answer = evaluated & answer_free[:, None]

    n_with_result = table.has.sum(axis=0)
    estimates = np.where(table.has, table.estimate, 0.0)
    potential_sum = estimates.sum(axis=0)
    mean_low, mean_high = mean_intervals(estimates, table.has, confidence)
    unlock_rates, unlock_bounds = _rate(unlocked.sum(axis=0), evaluated.sum(axis=0), confidence)
    any_rates, any_bounds = _rate(any_correct.sum(axis=0), evaluated.sum(axis=0), confidence)
    free_rates, free_bounds = _rate((unlocked & without_answer).sum(axis=0), without_answer.sum(axis=0), confidence)
    prefix_rates, prefix_bounds = _rate(
        (unlocked & prefix_without_answer).sum(axis=0), prefix_without_answer.sum(axis=0), confidence
    )
    stated = (table.has & (table.answer == 1)).sum(axis=0)
    unknown = (table.has & (table.answer == -1)).sum(axis=0)
    stated_as_answer = (table.has & (table.stated == 1)).sum(axis=0)
    stated_unknown = (table.has & (table.stated == -1)).sum(axis=0)
    true = _true_rates(table, evaluated, without_answer, thresholds, confidence)
    # The band's bootstrap is the costliest statistic: only for full analyses (the report), not
    # for the running gauges and the served summary, which do not carry it.
    band_low, band_high = (
        simultaneous_rate_band(unlocked[unsolved], evaluated[unsolved], confidence)
        if with_problems
        else (np.full(len(table.fractions), np.nan), np.full(len(table.fractions), np.nan))
    )

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
                answer_stated_in_prefix=(
                    None if count and stated_unknown[index] == count else int(stated_as_answer[index])
                ),
                unsolved_without_answer=int(without_answer[:, index].sum()),
                unlocked_without_answer=int((unlocked & without_answer)[:, index].sum()),
                unlock_rate_without_answer=free_rates[index],
                unlock_rate_without_answer_interval=to_interval(*free_bounds[index]),
                true_unlock_rate=_value(true.estimate[index]),
                true_unlock_rate_interval=to_interval(true.low[index], true.high[index]),
                true_unlock_rate_measured_unsolved_interval=to_interval(
                    true.measured_low[index], true.measured_high[index]
                ),
                true_unlock_undecided=int(true.undecided[index]),
                true_unlock_rate_without_answer=_value(true.free_estimate[index]),
                true_unlock_rate_without_answer_interval=to_interval(true.free_low[index], true.free_high[index]),
                unlock_rate_band=to_interval(band_low[index], band_high[index]) if fraction > 0 else None,
                unsolved_prefix_without_answer=int(prefix_without_answer[:, index].sum()),
                unlocked_prefix_without_answer=int((unlocked & prefix_without_answer)[:, index].sum()),
                unlock_rate_prefix_without_answer=prefix_rates[index],
                unlock_rate_prefix_without_answer_interval=to_interval(*prefix_bounds[index]),
            )
        )

    problems = (
        _problem_rows(
            table,
            estimates,
            unsolved,
            unlocked,
            true.p_unlocked,
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
        first_unlock_fraction=next(
            (
                fraction
                for fraction, low in zip(table.fractions, band_low, strict=True)
                if fraction > 0 and not np.isnan(low) and low > 0
            ),
            None,
        ),
        samples_to_decide=_samples_to_decide(table, evaluated, true.p_unlocked_prior, thresholds)
        if with_problems
        else {},
    )


def _value(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _answer_free(table: _Table) -> np.ndarray:
    """Problems whose CoT is known to state no answer before the last fraction: a known "does not
    state it" at every fraction below the last (fraction 0's empty prefix states nothing)."""
    before_last = table.answer[:, :-1] if len(table.fractions) > 1 else table.answer[:, :0]
    known_free = before_last == 0
    if len(table.fractions) > 1:
        known_free[:, 0] = True
    return np.asarray(known_free.all(axis=1), dtype=bool)


@dataclass(frozen=True)
class _TrueRates:
    """Per fraction (arrays over ``table.fractions``), and per (problem, fraction) ``p_unlocked``."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    measured_low: np.ndarray
    measured_high: np.ndarray
    undecided: np.ndarray
    free_estimate: np.ndarray
    free_low: np.ndarray
    free_high: np.ndarray
    p_unlocked: np.ndarray
    # The fitted prior of each fraction (for projections).
    p_unlocked_prior: tuple[tuple[float, float], ...]


def _true_rates(
    table: _Table, evaluated: np.ndarray, without_answer: np.ndarray, thresholds: Thresholds, confidence: float
) -> _TrueRates:
    # Problems are the last axis of the bounds: fractions x problems.
    transposed = statuses(
        table.k[:, :1].T,
        table.n[:, :1].T,
        table.k.T,
        table.n.T,
        thresholds,
        STATUS_ERROR,
        baseline_anytime=table.adaptive[:, :1].T,
        anytime=table.adaptive.T,
    )
    with_baseline = table.has & table.has[:, :1]
    low, high = true_rate_bounds(transposed, with_baseline.T, confidence)
    free_low, free_high = true_rate_bounds(transposed, (with_baseline & _answer_free(table)[:, None]).T, confidence)
    measured_low, measured_high = measured_unsolved_bounds(transposed, evaluated.T, confidence)
    p_unlocked = np.zeros(table.k.shape)
    priors = []
    for column in range(len(table.fractions)):
        rows = evaluated[:, column]
        prior = beta_prior(table.k[rows, column], table.n[rows, column])
        priors.append(prior)
        p_unlocked[:, column] = posterior_at_least(
            table.k[:, column], table.n[:, column], thresholds.unlock_min_potential, prior
        )

    def mean_over(mask: np.ndarray) -> np.ndarray:
        count = mask.sum(axis=0)
        total = np.where(mask, p_unlocked, 0.0).sum(axis=0)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    return _TrueRates(
        estimate=mean_over(evaluated),
        low=low,
        high=high,
        measured_low=measured_low,
        measured_high=measured_high,
        undecided=undecided(transposed, with_baseline.T).sum(axis=-1),
        free_estimate=mean_over(without_answer),
        free_low=free_low,
        free_high=free_high,
        p_unlocked=p_unlocked,
        p_unlocked_prior=tuple(priors),
    )


def _samples_to_decide(
    table: _Table, evaluated: np.ndarray, priors: Sequence[tuple[float, float]], thresholds: Thresholds
) -> dict[str, Any]:
    """At the last fraction: the n at which the projected share of measured-unsolved problems
    whose unlock status stays undecided is at most 10% (their posterior means taken as their
    true potentials), and the baseline n at which 0 correct makes a problem surely unsolved."""
    column = len(table.fractions) - 1
    rows = evaluated[:, column]
    if column == 0 or not rows.any():
        return {}
    n_now = int(np.median(table.n[rows, column]))
    means = posterior_mean(table.k[rows, column], table.n[rows, column], priors[column])
    status = statuses(
        0,
        1,
        table.k[rows, column],
        table.n[rows, column],
        thresholds,
        STATUS_ERROR,
        anytime=table.adaptive[rows, column],
    )
    return {
        "fraction": table.fractions[column],
        "n": n_now,
        "measured_unsolved": int(rows.sum()),
        "unlock_undecided": int((~status.reaches_in & ~status.reaches_out).sum()),
        "unlock_status_n": samples_to_decide(means, n_now, thresholds),
        "undecided_share_target": 0.1,
        "baseline_n": baseline_samples_to_decide(thresholds),
    }


def _problem_rows(
    table: _Table,
    estimates: np.ndarray,
    unsolved: np.ndarray,
    unlocked: np.ndarray,
    p_reach: np.ndarray,
    thresholds: Thresholds,
    confidence: float,
    strong_correct: Mapping[str, bool],
    parameters: DynamicsParameters,
    with_dynamics: bool,
) -> tuple[ProblemAnalysis, ...]:
    low, high = row_potential_intervals(table.k, table.n, table.adaptive, confidence)
    rows = []
    for row, problem_id in enumerate(table.problem_ids):
        columns = np.flatnonzero(table.has[row])
        baseline = bool(unsolved[row]) if table.has[row, 0] else None
        points = tuple(
            ProblemPoint(
                fraction=table.fractions[column],
                n=int(table.n[row, column]),
                num_correct=int(table.k[row, column]),
                potential=float(estimates[row, column]),
                potential_low=float(low[row, column]),
                potential_high=float(high[row, column]),
                unlocked=bool(unlocked[row, column]),
                p_unlocked=float(p_reach[row, column]) if baseline else None,
                answer_in_prefix=None if table.answer[row, column] < 0 else bool(table.answer[row, column]),
                answer_stated_in_prefix=None if table.stated[row, column] < 0 else bool(table.stated[row, column]),
            )
            for column in columns
        )
        answer_at = answer_fraction([p.fraction for p in points], [p.answer_stated_in_prefix for p in points])
        label = (
            classify_points(
                [
                    CurvePoint(p.fraction, p.num_correct, p.n, bool(table.adaptive[row, column]))
                    for p, column in zip(points, columns, strict=True)
                ],
                answer_at,
                parameters,
            )
            if with_dynamics and points
            else MONOTONIC
        )
        rows.append(
            ProblemAnalysis(
                problem_id=problem_id,
                baseline_unsolved=baseline,
                first_unlock_fraction=next(
                    (p.fraction for p in points if p.fraction > 0.0 and thresholds.reaches_unlock(p.num_correct / p.n)),
                    None,
                ),
                answer_fraction=answer_at,
                dynamics=label,
                strong_correct=strong_correct.get(problem_id),
                points=points,
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class UnlockStatuses:
    """Per (problem, fraction): ``evaluated`` (baseline-unsolved with a result there) and
    ``unlocked``, for comparisons that pair problems across analyses."""

    problem_ids: tuple[str, ...]
    fractions: tuple[float, ...]
    evaluated: np.ndarray
    unlocked: np.ndarray


def unlock_statuses(
    results: Sequence[FractionResult],
    *,
    thresholds: Thresholds,
    fractions: Sequence[float] | None = None,
    excluded_problems: Mapping[str, str] | None = None,
) -> UnlockStatuses:
    """The unlock rule of ``analyze`` per (problem, fraction), with the same inputs."""
    thresholds.check()
    excluded = dict(excluded_problems or {})
    table = _table([result for result in results if result.problem_id not in excluded], fractions)
    potentials = np.where(table.has, table.k / table.n, 0.0)
    unsolved = table.has[:, 0] & thresholds.unsolved_at_baseline(potentials[:, 0])
    evaluated = unsolved[:, None] & table.has
    return UnlockStatuses(
        problem_ids=tuple(table.problem_ids),
        fractions=table.fractions,
        evaluated=evaluated,
        unlocked=evaluated & thresholds.reaches_unlock(potentials),
    )


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
    "UnlockStatuses",
    "analyze",
    "unlock_statuses",
]
