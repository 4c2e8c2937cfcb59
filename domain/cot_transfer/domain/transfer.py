"""Potential and unlock statistics of a transfer experiment."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cot_transfer.domain.errors import InvalidArgumentError

DEFAULT_BASELINE_MAX_POTENTIAL = 0.0
DEFAULT_UNLOCK_MIN_POTENTIAL = 0.5


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


@dataclass(frozen=True)
class FractionOutcome:
    """The weak model's result on one problem's prefix at one fraction."""

    problem_id: str
    fraction: float
    n: int
    num_correct: int

    @property
    def potential(self) -> float:
        return potential(self.num_correct, self.n)


@dataclass(frozen=True)
class FractionStats:
    fraction: float
    weak_potential_mean: float
    unlocked: int
    unlock_rate: float


@dataclass(frozen=True)
class TransferSummary:
    fractions: tuple[float, ...]
    n_samples: int
    n_problems: int
    baseline_unsolved: int
    per_fraction: tuple[FractionStats, ...]
    strong_solve_rate: float
    thresholds: Thresholds


class RunningUnlockRates:
    """Unlock rates of a run still in progress, updated in O(fractions) per result.

    A result counts once its problem's baseline (fraction 0) is known; the denominator at a
    fraction is the baseline-unsolved problems with a result there so far.
    """

    def __init__(self, thresholds: Thresholds) -> None:
        self._thresholds = thresholds
        self._potentials: dict[str, dict[float, float]] = {}
        self._unsolved_seen: dict[float, int] = {}
        self._unlocked: dict[float, int] = {}

    def add(self, outcome: FractionOutcome) -> None:
        row = self._potentials.setdefault(outcome.problem_id, {})
        row[outcome.fraction] = outcome.potential
        baseline = row.get(0.0)
        if baseline is None or baseline > self._thresholds.baseline_max_potential:
            return
        newly_known = row if outcome.fraction == 0.0 else {outcome.fraction: outcome.potential}
        for fraction, value in newly_known.items():
            self._unsolved_seen[fraction] = self._unsolved_seen.get(fraction, 0) + 1
            if value >= self._thresholds.unlock_min_potential:
                self._unlocked[fraction] = self._unlocked.get(fraction, 0) + 1

    def rates(self) -> dict[float, float]:
        return {
            fraction: self._unlocked.get(fraction, 0) / seen for fraction, seen in sorted(self._unsolved_seen.items())
        }


def potential_table(outcomes: Iterable[FractionOutcome]) -> dict[str, dict[float, float]]:
    """problem id -> fraction -> potential; a repeated (problem, fraction) is an error."""
    table: dict[str, dict[float, float]] = {}
    for outcome in outcomes:
        row = table.setdefault(outcome.problem_id, {})
        if outcome.fraction in row:
            raise ValueError(f"duplicate result for problem {outcome.problem_id!r} at fraction {outcome.fraction}")
        row[outcome.fraction] = outcome.potential
    return table


def baseline_unsolved(table: Mapping[str, Mapping[float, float]], thresholds: Thresholds) -> list[str]:
    return [pid for pid, row in table.items() if row[0.0] <= thresholds.baseline_max_potential]


def summarize(
    outcomes: Sequence[FractionOutcome],
    fractions: Sequence[float],
    n_samples: int,
    thresholds: Thresholds,
    strong_correct: Mapping[str, bool],
) -> TransferSummary:
    """Per fraction: mean weak potential, and how many baseline-unsolved problems are unlocked.

    Every problem must have a result at fraction 0 and at each fraction in ``fractions``.
    """
    table = potential_table(outcomes)
    missing = [(pid, fraction) for pid, row in table.items() for fraction in (0.0, *fractions) if fraction not in row]
    if missing:
        raise ValueError(f"results missing for (problem, fraction): {missing[:5]}")
    unsolved = baseline_unsolved(table, thresholds)
    per_fraction = []
    for fraction in fractions:
        potentials = [row[fraction] for row in table.values()]
        unlocked = sum(1 for pid in unsolved if table[pid][fraction] >= thresholds.unlock_min_potential)
        per_fraction.append(
            FractionStats(
                fraction=fraction,
                weak_potential_mean=sum(potentials) / len(potentials) if potentials else 0.0,
                unlocked=unlocked,
                unlock_rate=unlocked / len(unsolved) if unsolved else 0.0,
            )
        )
    solved_by_strong = sum(1 for pid in table if strong_correct.get(pid, False))
    return TransferSummary(
        fractions=tuple(fractions),
        n_samples=n_samples,
        n_problems=len(table),
        baseline_unsolved=len(unsolved),
        per_fraction=tuple(per_fraction),
        strong_solve_rate=solved_by_strong / len(table) if table else 0.0,
        thresholds=thresholds,
    )
