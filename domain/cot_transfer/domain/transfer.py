"""The unlock rule, defined once, and the summary types of a transfer experiment.

* potential of a (problem, fraction) result: ``num_correct / n``;
* *unsolved at baseline*: the potential at fraction 0 is <= tau0 (``baseline_max_potential``);
* *unlocked* at fraction f: unsolved at baseline and the potential at f is >= tau
  (``unlock_min_potential``).

The predicates take plain numbers or numpy arrays (elementwise), so the analysis of a whole
experiment and a single row use the same code. Everything else (rates, intervals, dynamics)
is computed by ``cot_transfer.domain.analysis``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.json_fields import json_fields

DEFAULT_BASELINE_MAX_POTENTIAL = 0.0
DEFAULT_UNLOCK_MIN_POTENTIAL = 0.5

# Potentials are num_correct / n; 4 / 8 must meet tau = 0.5 whatever the rounding.
_POTENTIAL_SLACK = 1e-9


def potential(num_correct: int, n: int) -> float:
    """Share of the ``n`` sampled completions that are correct."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= num_correct <= n:
        raise ValueError(f"num_correct must be in [0, {n}], got {num_correct}")
    return num_correct / n


@dataclass(frozen=True)
class Thresholds:
    """``baseline_max_potential`` (tau0): unsolved at fraction 0 when potential <= tau0.
    ``unlock_min_potential`` (tau): unlocked at a fraction when potential >= tau."""

    baseline_max_potential: float = DEFAULT_BASELINE_MAX_POTENTIAL
    unlock_min_potential: float = DEFAULT_UNLOCK_MIN_POTENTIAL

    def check(self, field: str = "thresholds") -> Thresholds:
        for name in ("baseline_max_potential", "unlock_min_potential"):
            value = getattr(self, name)
            if math.isnan(value) or not 0.0 <= value <= 1.0:
                raise InvalidArgumentError(f"{field}.{name}", f"must be in [0, 1], got {value}")
        if self.unlock_min_potential <= self.baseline_max_potential:
            raise InvalidArgumentError(
                f"{field}.unlock_min_potential",
                "must be above baseline_max_potential, or a problem could be unsolved and unlocked at once",
            )
        return self

    def unsolved_at_baseline(self, baseline_potential: Any) -> Any:
        """The baseline predicate (elementwise on arrays)."""
        return baseline_potential <= self.baseline_max_potential + _POTENTIAL_SLACK

    def reaches_unlock(self, fraction_potential: Any) -> Any:
        """Potential at a fraction reaches tau (elementwise on arrays); *unlocked* is this and
        ``unsolved_at_baseline`` of the same problem."""
        return fraction_potential >= self.unlock_min_potential - _POTENTIAL_SLACK

    def to_dict(self) -> dict[str, float]:
        return json_fields(self)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return json_fields(self)


@dataclass(frozen=True)
class FractionSummary:
    """Statistics at one truncation fraction (the wire's FractionSummary; see README "Statistics").

    ``unsolved_evaluated`` (baseline-unsolved problems with a result here) is the unlock
    rate's denominator; rates and their intervals are None when their denominator is 0.
    ``answer_in_prefix`` counts the results here whose prefix may give the reference answer
    away (the lenient leak flag, ``cot_transfer.domain.leaks``; None when that is unknown for
    every result), ``answer_stated_in_prefix`` those whose prefix states it as an answer (the
    strict flag); ``unlock_rate_without_answer`` is the unlock
    rate over one fixed set of baseline-unsolved problems: those whose CoT is known to state no
    answer before the last fraction (``*_prefix_without_answer``: the per-fraction variant, over
    the problems whose prefix at this fraction does not state it). ``true_*``: the true unlock
    rate (``cot_transfer.domain.true_rate``); ``unlock_rate_band``: the unlock rate's band that
    holds at every fraction at once.
    """

    fraction: float
    n_problems: int
    mean_potential: float | None
    mean_potential_interval: Interval | None
    unsolved_evaluated: int
    unlocked: int
    unlock_rate: float | None
    unlock_rate_interval: Interval | None
    any_correct: int = 0
    any_correct_rate: float | None = None
    any_correct_rate_interval: Interval | None = None
    answer_in_prefix: int | None = None
    answer_in_prefix_unknown: int = 0
    answer_stated_in_prefix: int | None = None
    unsolved_without_answer: int = 0
    unlocked_without_answer: int = 0
    unlock_rate_without_answer: float | None = None
    unlock_rate_without_answer_interval: Interval | None = None
    # Not on the wire (summary.json only): cot_transfer.domain.true_rate and the README's "Statistics".
    true_unlock_rate: float | None = None
    true_unlock_rate_interval: Interval | None = None
    true_unlock_rate_measured_unsolved_interval: Interval | None = None
    true_unlock_undecided: int = 0
    true_unlock_rate_without_answer: float | None = None
    true_unlock_rate_without_answer_interval: Interval | None = None
    unlock_rate_band: Interval | None = None
    unsolved_prefix_without_answer: int = 0
    unlocked_prefix_without_answer: int = 0
    unlock_rate_prefix_without_answer: float | None = None
    unlock_rate_prefix_without_answer_interval: Interval | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_fields(self)


@dataclass(frozen=True)
class RunSummary:
    """The summary of a run (the wire's RunSummary): what ``Transfer.Run`` streams last.

    ``n_problems`` counts the analysed problems; those left out (a strong CoT cut off inside
    its reasoning, a per-problem error) are counted in ``truncated_cots`` and
    ``problem_errors``. ``strong_solve_rate`` is over the analysed problems whose strong
    correctness is known, None when none is.
    """

    fractions: tuple[float, ...]
    n_samples: int
    n_problems: int
    baseline_unsolved: int
    per_fraction: tuple[FractionSummary, ...]
    strong_solve_rate: float | None
    thresholds: Thresholds
    truncated_cots: int = 0
    problem_errors: int = 0
    # One block per (receiver, mode) of the run; the fields above repeat the primary one.
    receivers: tuple[ReceiverSummary, ...] = ()
    # Weak samples drawn over every row, and what drawing n (n_max under adaptive sampling)
    # for every row would have drawn.
    samples_drawn: int = 0
    samples_brute_force: int = 0


@dataclass(frozen=True)
class ReceiverSummary:
    """The per-fraction statistics of one receiver in one answer mode (the wire's ReceiverSummary)."""

    receiver: str
    mode: str
    baseline_unsolved: int
    per_fraction: tuple[FractionSummary, ...]
