"""Simulated transfer experiments with known truth, for the statistics tests and the README numbers.

Simulations, vectorised with numpy:

* ``draw_experiments``: many experiments of ``problems`` problems at ``n`` samples per prefix.
  Each problem is hard (weight 0.6; baseline potential ~ Beta(0.5, 8)) or easy (Beta(8, 1)); at
  the measured fraction a hard problem is helped with probability ``helped`` (potential ~
  Beta(8, 2)) or not (Beta(1, 12)), an easy one has Beta(8, 2). The truth is the estimand of the
  README's "Statistics": the unlock rate the experiment's own n measures, P(unlocked | unsolved),
  computed exactly with beta-binomial tails; and the population's mean potential.
* ``true_rate_populations`` / ``true_rate_coverage``: adversarial populations of true (baseline,
  fraction) potentials, and the coverage of the true-unlock-rate intervals
  (``cot_transfer.domain.true_rate``) against the truth computed from the population;
  ``write_simulated_run`` writes such a population as a results folder for ``cot-transfer report``.
* ``planted_curves``: potential curves over 11 fractions with a planted event (insight,
  tangent, lucky guess, late spike) or none, for the dynamics labels' precision and recall.

``python -m tests.simulation`` prints the coverage and width tables of the README, with the
bootstrap percentile interval that the analysis used before beside the Clopper-Pearson one;
``python -m tests.simulation true-rate`` the true unlock rate's coverage table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from cot_transfer.domain.dynamics import (
    DEFAULT_DYNAMICS_PARAMETERS,
    CurvePoint,
    DynamicsParameters,
    TraceDynamics,
    classify_points,
)
from cot_transfer.domain.statistics import mean_intervals, rate_intervals
from cot_transfer.domain.transfer import Thresholds

HARD_WEIGHT = 0.6
HARD_BASELINE = (0.5, 8.0)
EASY_BASELINE = (8.0, 1.0)
HELPED = (8.0, 2.0)
NOT_HELPED = (1.0, 12.0)
# The share of hard problems a prefix helps: unlock rates near 0, in the middle and near 1.
RATE_LEVELS = {"near 0": 0.01, "middle": 0.5, "near 1": 0.99}
FRACTIONS = tuple(index / 10 for index in range(11))
DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Experiments:
    """``experiments`` x ``problems`` arrays of one setting, and the truth."""

    n: int
    unsolved: np.ndarray
    unlocked: np.ndarray
    any_correct: np.ndarray
    potential: np.ndarray
    true_unlock_rate: float
    true_any_correct_rate: float
    true_mean_potential: float


def _baseline_unsolved_probability(n: int, shape: tuple[float, float], thresholds: Thresholds) -> float:
    return float(stats.betabinom.cdf(math.floor(thresholds.baseline_max_potential * n + 1e-9), n, *shape))


def _reach_probability(n: int, shape: tuple[float, float], at_least: int) -> float:
    return float(stats.betabinom.sf(at_least - 1, n, *shape))


def draw_experiments(
    rng: np.random.Generator,
    experiments: int,
    problems: int,
    n: int,
    helped: float,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Experiments:
    size = (experiments, problems)
    hard = rng.random(size) < HARD_WEIGHT
    baseline = np.where(hard, rng.beta(*HARD_BASELINE, size), rng.beta(*EASY_BASELINE, size))
    is_helped = rng.random(size) < helped
    at_fraction = np.where(hard & ~is_helped, rng.beta(*NOT_HELPED, size), rng.beta(*HELPED, size))
    baseline_k = rng.binomial(n, baseline)
    k = rng.binomial(n, at_fraction)
    unsolved = thresholds.unsolved_at_baseline(baseline_k / n)
    unlocked = unsolved & thresholds.reaches_unlock(k / n)

    need = math.ceil(thresholds.unlock_min_potential * n - 1e-9)
    hard_unsolved = HARD_WEIGHT * _baseline_unsolved_probability(n, HARD_BASELINE, thresholds)
    easy_unsolved = (1 - HARD_WEIGHT) * _baseline_unsolved_probability(n, EASY_BASELINE, thresholds)

    def given_unsolved(probability: Callable[[tuple[float, float]], float]) -> float:
        """P(event at the fraction | unsolved at baseline): baseline and fraction are independent
        given the problem's kind, so it mixes the kinds by their unsolved mass."""
        hard_value = helped * probability(HELPED) + (1 - helped) * probability(NOT_HELPED)
        return (hard_unsolved * hard_value + easy_unsolved * probability(HELPED)) / (hard_unsolved + easy_unsolved)

    def mean(shape: tuple[float, float]) -> float:
        return shape[0] / (shape[0] + shape[1])

    true_mean = HARD_WEIGHT * (helped * mean(HELPED) + (1 - helped) * mean(NOT_HELPED)) + (1 - HARD_WEIGHT) * mean(
        HELPED
    )
    return Experiments(
        n=n,
        unsolved=unsolved,
        unlocked=unlocked,
        any_correct=unsolved & (k > 0),
        potential=k / n,
        true_unlock_rate=given_unsolved(lambda shape: _reach_probability(n, shape, need)),
        true_any_correct_rate=given_unsolved(lambda shape: 1 - float(stats.betabinom.pmf(0, n, *shape))),
        true_mean_potential=true_mean,
    )


@dataclass(frozen=True)
class Coverage:
    coverage: float
    mean_width: float
    # Share of experiments with no baseline-unsolved problem (no rate to cover).
    undefined: float


def rate_coverage(count: np.ndarray, total: np.ndarray, truth: float, confidence: float = 0.95) -> Coverage:
    defined = total > 0
    low, high = rate_intervals(count[defined], total[defined], confidence)
    covered = (low <= truth) & (truth <= high)
    return Coverage(float(covered.mean()), float((high - low).mean()), float(1 - defined.mean()))


def clopper_pearson_coverage(experiments: Experiments, confidence: float = 0.95) -> dict[str, Coverage]:
    total = experiments.unsolved.sum(axis=1)
    return {
        "unlock_rate": rate_coverage(experiments.unlocked.sum(axis=1), total, experiments.true_unlock_rate, confidence),
        "any_correct_rate": rate_coverage(
            experiments.any_correct.sum(axis=1), total, experiments.true_any_correct_rate, confidence
        ),
        "mean_potential": mean_coverage(experiments.potential, experiments.true_mean_potential, confidence),
    }


def mean_coverage(potentials: np.ndarray, truth: float, confidence: float = 0.95) -> Coverage:
    """The mean potential's interval (``mean_intervals``: t over problems), one experiment per row."""
    low, high = mean_intervals(potentials.T, np.ones(potentials.T.shape, dtype=bool), confidence)
    covered = (low <= truth) & (truth <= high)
    return Coverage(float(covered.mean()), float((high - low).mean()), 0.0)


def bootstrap_coverage(
    rng: np.random.Generator, experiments: Experiments, resamples: int = 1000, confidence: float = 0.95
) -> Coverage:
    """The previous method: percentile bootstrap over problems, baseline status resampled too."""
    covered, widths, defined = [], [], 0
    tail = (1 - confidence) / 2
    problems = experiments.unsolved.shape[1]
    for unsolved, unlocked in zip(experiments.unsolved, experiments.unlocked, strict=True):
        if not unsolved.any():
            continue
        defined += 1
        drawn = rng.integers(0, problems, size=(resamples, problems))
        denominator = unsolved[drawn].sum(axis=1)
        rates = unlocked[drawn].sum(axis=1)[denominator > 0] / denominator[denominator > 0]
        low, high = np.quantile(rates, [tail, 1 - tail])
        covered.append(low <= experiments.true_unlock_rate <= high)
        widths.append(high - low)
    count = len(experiments.unsolved)
    return Coverage(float(np.mean(covered)), float(np.mean(widths)), 1 - defined / count)


# --------------------------------------------------------------------------- the true unlock rate

Population = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _unsolved_baseline(rng: np.random.Generator, size: int, tau0: float) -> np.ndarray:
    """True baselines of truly unsolved problems: 0, or spread over [0, tau0]."""
    return np.zeros(size) if tau0 <= 0 else rng.uniform(0.0, tau0, size)


def _mixed(
    rng: np.random.Generator,
    size: int,
    unsolved_share: float,
    unsolved: Callable[[int], tuple[np.ndarray, np.ndarray]],
    solved: Callable[[int], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    is_unsolved = rng.random(size) < unsolved_share
    p0_u, q_u = unsolved(size)
    p0_s, q_s = solved(size)
    return np.where(is_unsolved, p0_u, p0_s), np.where(is_unsolved, q_u, q_s)


def true_rate_populations(tau0: float) -> dict[str, Population]:
    """Adversarial populations of (true baseline p0, true potential q at f), tau = 0.5. The solved
    problems' baselines start a little above tau0 so that some of them look unsolved at small n."""

    def solved(rng: np.random.Generator) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
        return lambda size: (rng.uniform(tau0 + 0.1, 1.0, size), rng.uniform(0.2, 1.0, size))

    def just_under(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        return _mixed(
            rng, size, 0.6, lambda m: (_unsolved_baseline(rng, m, tau0), rng.uniform(0.40, 0.49, m)), solved(rng)
        )

    def just_over(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        return _mixed(
            rng, size, 0.6, lambda m: (_unsolved_baseline(rng, m, tau0), rng.uniform(0.50, 0.58, m)), solved(rng)
        )

    def at_tau(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Half of the unsolved exactly at tau (they count: q >= tau), half at 0.1."""
        return _mixed(
            rng,
            size,
            0.6,
            lambda m: (_unsolved_baseline(rng, m, tau0), np.where(rng.random(m) < 0.5, 0.5, 0.1)),
            solved(rng),
        )

    def noisy_no_transfer(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """U-shaped baseline: 40% truly unsolved, 30% solved at a low rate just above tau0,
        30% spread; no transfer (q = p0), so the truth is 0."""
        kind = rng.random(size)
        p0 = np.where(
            kind < 0.4,
            _unsolved_baseline(rng, size, tau0),
            np.where(kind < 0.7, tau0 + rng.uniform(0.001, 0.05, size), rng.beta(0.3, 0.3, size)),
        )
        p0 = np.clip(p0, 0.0, 1.0)
        return p0, p0.copy()

    def noisy_with_transfer(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """As ``noisy_no_transfer``, but the prefix helps: half the truly unsolved reach 0.8, every
        barely-solved problem does (they inflate what is measured)."""
        kind = rng.random(size)
        p0 = np.where(
            kind < 0.4,
            _unsolved_baseline(rng, size, tau0),
            np.where(kind < 0.7, tau0 + rng.uniform(0.001, 0.05, size), rng.beta(0.3, 0.3, size)),
        )
        helped = rng.random(size) < 0.5
        q = np.where(kind < 0.4, np.where(helped, rng.beta(8, 2, size), rng.beta(1, 12, size)), rng.beta(8, 2, size))
        return np.clip(p0, 0.0, 1.0), q

    def bimodal(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Transfer is all or nothing: 40% of the unsolved near 0.85, the rest near 0.05."""
        return _mixed(
            rng,
            size,
            0.5,
            lambda m: (
                _unsolved_baseline(rng, m, tau0),
                np.where(rng.random(m) < 0.4, rng.beta(20, 4, m), rng.beta(1, 20, m)),
            ),
            solved(rng),
        )

    return {
        "just under tau": just_under,
        "just over tau": just_over,
        "at tau": at_tau,
        "noisy, no transfer": noisy_no_transfer,
        "noisy, transfer": noisy_with_transfer,
        "bimodal": bimodal,
    }


@dataclass(frozen=True)
class TrueRateTruth:
    rate: float
    measured_unsolved_rate: float


def true_rate_truth(
    rng: np.random.Generator, population: Population, n: int, thresholds: Thresholds, draws: int = 400_000
) -> TrueRateTruth:
    """R = P(q >= tau | p0 <= tau0), and R_m = P(q >= tau | the baseline row of n measures <= tau0),
    from a large draw of the population (the measured selection weighted by its exact probability)."""
    p0, q = population(rng, draws)
    reaches = q >= thresholds.unlock_min_potential - 1e-12
    unsolved = p0 <= thresholds.baseline_max_potential + 1e-12
    measured = stats.binom.cdf(math.floor(thresholds.baseline_max_potential * n + 1e-9), n, p0)
    return TrueRateTruth(
        rate=float(reaches[unsolved].mean()),
        measured_unsolved_rate=float((measured * reaches).sum() / measured.sum()),
    )


@dataclass(frozen=True)
class TrueRateCoverage:
    truth: TrueRateTruth
    coverage: float
    mean_width: float
    measured_coverage: float
    measured_mean_width: float
    # Measured rate (as today) beside it: its mean and its interval's coverage of the true rate.
    measured_rate_mean: float
    plug_in_coverage: float


def true_rate_coverage(
    rng: np.random.Generator,
    population: Population,
    problems: int,
    n: int,
    thresholds: Thresholds,
    experiments: int = 300,
    confidence: float = 0.95,
) -> TrueRateCoverage:
    """``experiments`` experiments of ``problems`` problems at n samples per row, through the
    analysis' own functions (``true_rate.statuses`` and the bounds)."""
    from cot_transfer.domain.true_rate import measured_unsolved_bounds, statuses, true_rate_bounds

    truth = true_rate_truth(rng, population, n, thresholds)
    p0, q = population(rng, experiments * problems)
    p0, q = p0.reshape(experiments, problems), q.reshape(experiments, problems)
    baseline_k = rng.binomial(n, p0)
    k = rng.binomial(n, q)
    status = statuses(baseline_k, n, k, n, thresholds)
    everyone = np.ones_like(baseline_k, dtype=bool)
    low, high = true_rate_bounds(status, everyone, confidence)
    measured_unsolved = thresholds.unsolved_at_baseline(baseline_k / n)
    m_low, m_high = measured_unsolved_bounds(status, measured_unsolved, confidence)
    defined = measured_unsolved.any(axis=1)
    unlocked = measured_unsolved & thresholds.reaches_unlock(k / n)
    p_low, p_high = rate_intervals(unlocked.sum(axis=1)[defined], measured_unsolved.sum(axis=1)[defined], confidence)
    return TrueRateCoverage(
        truth=truth,
        coverage=float(((low <= truth.rate) & (truth.rate <= high)).mean()),
        mean_width=float((high - low).mean()),
        measured_coverage=float(
            (
                (m_low[defined] <= truth.measured_unsolved_rate) & (truth.measured_unsolved_rate <= m_high[defined])
            ).mean()
        )
        if defined.any()
        else math.nan,
        measured_mean_width=float((m_high - m_low)[defined].mean()) if defined.any() else math.nan,
        measured_rate_mean=float((unlocked.sum(axis=1)[defined] / measured_unsolved.sum(axis=1)[defined]).mean())
        if defined.any()
        else math.nan,
        plug_in_coverage=float(((p_low <= truth.rate) & (truth.rate <= p_high)).mean()) if defined.any() else math.nan,
    )


def write_simulated_run(
    folder: Path,
    rng: np.random.Generator,
    baseline: np.ndarray,
    at_fraction: np.ndarray,
    n: int,
    thresholds: Thresholds,
    answer_from: np.ndarray | None = None,
) -> Path:
    """A results folder (run.json, results.jsonl, strong.jsonl) of problems with true baseline
    potentials ``baseline`` and true potential ``at_fraction`` at every fraction > 0, n samples
    per row: what ``cot-transfer report`` reads. ``answer_from``: per problem, the first
    fraction whose prefix states the answer (rows carry answer_in_prefix), None: no flags."""
    folder.mkdir(parents=True, exist_ok=True)
    fractions = [0.0, 0.5, 1.0]
    settings_hash = "5eed5eed"
    run = {
        "fractions": fractions,
        "n_samples": n,
        "thresholds": thresholds.to_dict(),
        "grader": "exact",
        "strong_model": "strong-model",
        "weak_model": "weak-model",
        "settings_hash": settings_hash,
    }
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    lines, strong = [], []
    for index, (p0, q) in enumerate(zip(baseline, at_fraction, strict=True)):
        problem_id = f"p{index:04d}"
        for fraction in fractions:
            correct = int(rng.binomial(n, p0 if fraction == 0 else q))
            row: dict[str, object] = {
                "problem_id": problem_id,
                "fraction": fraction,
                "n": n,
                "num_correct": correct,
                "potential": correct / n,
                "prefix_num_tokens": int(fraction * 40),
                "cot_num_tokens": 40,
                "settings_hash": settings_hash,
            }
            if answer_from is not None:
                row["answer_in_prefix"] = bool(fraction >= answer_from[index])
            lines.append(json.dumps(row))
        strong.append(
            json.dumps(
                {
                    "problem_id": problem_id,
                    "cot": "reasoning",
                    "answer": "7",
                    "correct": True,
                    "cot_num_tokens": 40,
                    "prefixes": [
                        {"fraction": f, "text": "", "num_tokens": int(f * 40), "cot_num_tokens": 40} for f in fractions
                    ],
                    "settings_hash": settings_hash,
                }
            )
        )
    (folder / "results.jsonl").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    (folder / "strong.jsonl").write_text("".join(f"{line}\n" for line in strong), encoding="utf-8")
    return folder


TRUE_RATE_PROBLEMS = (12, 50, 200)
TRUE_RATE_N = (8, 32, 128)
TRUE_RATE_TAU0 = (0.0, 0.1)


def print_true_rate_table(
    experiments: int = 300, seed: int = 22
) -> list[tuple[str, float, int, int, TrueRateCoverage]]:
    rng = np.random.default_rng(seed)
    rows = []
    columns = (
        "population",
        "tau0",
        "problems",
        "n",
        "R",
        "cover",
        "width",
        "R_m",
        "cover_m",
        "width_m",
        "measured",
        "CP cover",
    )
    print(" | ".join(columns))
    for tau0 in TRUE_RATE_TAU0:
        thresholds = Thresholds(baseline_max_potential=tau0, unlock_min_potential=0.5)
        for name, population in true_rate_populations(tau0).items():
            for problems in TRUE_RATE_PROBLEMS:
                for n in TRUE_RATE_N:
                    result = true_rate_coverage(rng, population, problems, n, thresholds, experiments)
                    rows.append((name, tau0, problems, n, result))
                    print(
                        f"{name} | {tau0:g} | {problems} | {n} | {result.truth.rate:.3f} | {result.coverage:.3f}"
                        f" | {result.mean_width:.3f} | {result.truth.measured_unsolved_rate:.3f}"
                        f" | {result.measured_coverage:.3f} | {result.measured_mean_width:.3f}"
                        f" | {result.measured_rate_mean:.3f} | {result.plug_in_coverage:.3f}"
                    )
    return rows


PLANTED = (
    TraceDynamics.MONOTONIC,
    TraceDynamics.INSIGHT,
    TraceDynamics.TANGENT,
    TraceDynamics.LUCKY_GUESS,
    TraceDynamics.LATE_SPIKE,
)


@dataclass(frozen=True)
class PlantedCurve:
    truth: TraceDynamics
    potentials: np.ndarray
    answer_fraction: float | None


def planted_curve(rng: np.random.Generator, truth: TraceDynamics) -> PlantedCurve:
    """True potentials over ``FRACTIONS`` with one planted event (none for monotonic)."""
    fractions = np.array(FRACTIONS)
    if truth is TraceDynamics.MONOTONIC:
        start = rng.uniform(0.0, 1.0)
        end = float(np.clip(start + rng.uniform(-0.3, 0.3), 0.0, 1.0))
        return PlantedCurve(truth, start + (end - start) * fractions, 1.0)
    if truth is TraceDynamics.INSIGHT:
        low = rng.uniform(0.0, 0.3)
        high = rng.uniform(low + 0.5, 1.0)
        at = rng.integers(1, 9) / 10
        return PlantedCurve(truth, np.where(fractions >= at - 1e-9, high, low), 1.0)
    if truth is TraceDynamics.TANGENT:
        high = rng.uniform(0.5, 1.0)
        low = rng.uniform(0.0, high - 0.45)
        at = rng.integers(2, 10) / 10
        return PlantedCurve(truth, np.where(fractions >= at - 1e-9, low, high), 1.0)
    noise = rng.uniform(0.0, 0.03, len(fractions))
    high = rng.uniform(0.7, 1.0)
    if truth is TraceDynamics.LUCKY_GUESS:
        answer = rng.integers(5, 11) / 10
        return PlantedCurve(truth, np.where(fractions >= answer - 1e-9, high, noise), answer)
    return PlantedCurve(truth, np.where(fractions >= 0.9 - 1e-9, high, noise), 1.0)


def label_planted(
    rng: np.random.Generator, curves: int, n: int, parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS
) -> list[tuple[TraceDynamics, TraceDynamics]]:
    """(planted, labelled) for ``curves`` curves of each planted kind, measured with n samples."""
    pairs = []
    for truth in PLANTED:
        for _ in range(curves):
            curve = planted_curve(rng, truth)
            counts = rng.binomial(n, curve.potentials)
            points = [CurvePoint(f, int(k), n) for f, k in zip(FRACTIONS, counts, strict=True)]
            pairs.append((truth, classify_points(points, curve.answer_fraction, parameters).label))
    return pairs


def precision_recall(pairs: list[tuple[TraceDynamics, TraceDynamics]]) -> dict[str, tuple[float, float]]:
    scores = {}
    for label in PLANTED:
        labelled = [truth for truth, got in pairs if got is label]
        planted = [got for truth, got in pairs if truth is label]
        precision = sum(truth is label for truth in labelled) / len(labelled) if labelled else math.nan
        recall = sum(got is label for got in planted) / len(planted)
        scores[label.value] = (precision, recall)
    return scores


def flat_label_rate(rng: np.random.Generator, curves: int, n: int, level: float) -> float:
    """Share of flat curves (true potential ``level`` everywhere) that get any label."""
    labelled = 0
    for _ in range(curves):
        counts = rng.binomial(n, level, len(FRACTIONS))
        points = [CurvePoint(f, int(k), n) for f, k in zip(FRACTIONS, counts, strict=True)]
        labelled += classify_points(points, 1.0).label is not TraceDynamics.MONOTONIC
    return labelled / curves


def main() -> None:
    import sys

    if sys.argv[1:] == ["true-rate"]:
        print_true_rate_table()
        return
    rng = np.random.default_rng(2026)
    print("unlock-rate intervals, nominal 95%: coverage and mean width (Clopper-Pearson | old bootstrap)")
    columns = ("problems", "n", "rate", "truth", "CP cover", "CP width", "BS cover", "BS width")
    print(" ".join(f"{name:>8}" for name in columns))
    for problems in (8, 12, 48, 100, 500):
        for n in (4, 8, 16, 128):
            for name, helped in RATE_LEVELS.items():
                experiments = draw_experiments(rng, 400, problems, n, helped)
                exact = clopper_pearson_coverage(experiments)["unlock_rate"]
                boot = bootstrap_coverage(rng, experiments, resamples=500)
                print(
                    f"{problems:>8} {n:>8} {name:>8} {experiments.true_unlock_rate:>8.3f} {exact.coverage:>8.3f}"
                    f" {exact.mean_width:>8.3f} {boot.coverage:>8.3f} {boot.mean_width:>8.3f}"
                )
    print("\nflat curves labelled (any label), 2000 curves each")
    for n in (8, 16, 128):
        print(n, [round(flat_label_rate(rng, 2000, n, level), 4) for level in (0.02, 0.2, 0.5, 0.8, 0.98)])
    print("\nplanted events: precision, recall per label (400 curves per kind)")
    for n in (8, 16, 32, 128):
        scores = precision_recall(label_planted(rng, 400, n))
        print(n, {label: (round(p, 3), round(r, 3)) for label, (p, r) in scores.items()})


if __name__ == "__main__":
    main()
