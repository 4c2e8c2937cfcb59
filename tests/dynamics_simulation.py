"""Simulated potential curves with known truth for the trace-dynamics labels, vectorised with numpy.

Two families over the 11 fractions 0, 0.1, ..., 1 (the answer stated at 1.0):

* ``NO_JUMP``: curves with no step of delta (0.3) or more between consecutive fractions, the
  boundary included (single, triple and alternating steps of exactly 0.3). Any label but
  ``monotonic`` on them is a false label.
* ``JUMPS``: one step of delta + 0.4 = 0.7 at fraction 0.5 from several levels. It is detected
  when the curve is labelled ``insight`` at 0.5.

Rows are either fixed-n or adaptive: drawn in the rounds of ``SamplingPlan`` and stopped by the
service's own ``StoppingRule`` (so their n differs along a curve and k/n is biased by stopping).

``python -m tests.dynamics_simulation`` prints the README's false-label and power tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from cot_transfer.domain.dynamics import LABEL_CODES, CurveLabels, TraceDynamics, classify_curves
from cot_transfer.domain.sampling_plan import SamplingPlan
from cot_transfer.domain.sequential import StoppingRule
from cot_transfer.domain.transfer import Thresholds

FRACTIONS = tuple(round(index / 10, 1) for index in range(11))
ANSWER_INDEX = len(FRACTIONS) - 1
JUMP_AT = 5  # the step from 0.4 to 0.5
_GRID = np.array(FRACTIONS)
DEFAULT_THRESHOLDS = Thresholds()


def _steps(start: float, *changes: tuple[float, float]) -> np.ndarray:
    """A curve that starts at ``start`` and changes by ``size`` from each ``fraction`` on."""
    curve = np.full(len(FRACTIONS), start)
    for at, size in changes:
        curve[at - 1e-9 <= _GRID] += size
    return curve


NO_JUMP: Mapping[str, np.ndarray] = {
    "flat 0.02": _steps(0.02),
    "flat 0.5": _steps(0.5),
    "flat 0.98": _steps(0.98),
    "linear ramp 0.1 -> 0.9": np.linspace(0.1, 0.9, len(FRACTIONS)),
    "linear ramp 0.9 -> 0.1": np.linspace(0.9, 0.1, len(FRACTIONS)),
    "two steps of 0.25, apart": _steps(0.2, (0.3, 0.25), (0.7, 0.25)),
    "two steps of 0.25, adjacent": _steps(0.2, (0.4, 0.25), (0.5, 0.25)),
    "half-step 0.15, plateaus": _steps(0.4, (0.5, 0.15)),
    "step of exactly 0.3": _steps(0.35, (0.5, 0.3)),
    "drop of exactly 0.3": _steps(0.65, (0.5, -0.3)),
    "three steps of exactly 0.3": _steps(0.05, (0.2, 0.3), (0.5, 0.3), (0.8, 0.3)),
    "alternating 0.35 / 0.65": np.where(np.arange(len(FRACTIONS)) % 2 == 0, 0.35, 0.65),
}

JUMPS: Mapping[str, np.ndarray] = {
    f"{low:g} -> {low + 0.7:g}": _steps(low, (FRACTIONS[JUMP_AT], 0.7)) for low in (0.0, 0.1, 0.15, 0.3)
}

# The lucky-guess check: a pre-answer potential of 0.25 everywhere, then the answer (1.0).
PRE_ANSWER_025 = np.where(_GRID < 1.0 - 1e-9, 0.25, 1.0)


def fixed_rows(rng: np.random.Generator, curve: np.ndarray, reps: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``reps`` measured curves with n samples at every fraction: (k, n) arrays."""
    k = rng.binomial(n, np.broadcast_to(curve, (reps, len(curve))))
    return k, np.full(k.shape, n)


def adaptive_rows(
    rng: np.random.Generator, curve: np.ndarray, reps: int, n_max: int, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> tuple[np.ndarray, np.ndarray]:
    """``reps`` measured curves whose rows draw the rounds of the default plan up to ``n_max``
    and stop when the service's rule settles their unlock decision (the baseline row by the same
    rule, as a row of a baseline-unsolved problem)."""
    rule = StoppingRule(SamplingPlan(n_max=n_max), thresholds)
    shape = (reps, len(curve))
    k = np.zeros(shape, dtype=int)
    n = np.zeros(shape, dtype=int)
    drawing = np.ones(shape, dtype=bool)
    for total in rule.plan.schedule():
        size = total - n
        k += np.where(drawing, rng.binomial(np.maximum(size, 0), np.broadcast_to(curve, shape)), 0)
        n = np.where(drawing, total, n)
        drawing &= (rule.own_part(k, n) == 0) & (n < n_max)
    return k, n


def _labels(k: np.ndarray, n: np.ndarray, adaptive: bool) -> CurveLabels:
    return classify_curves(FRACTIONS, k, n, np.full(len(k), ANSWER_INDEX), adaptive=np.full(k.shape, adaptive))


def label_rates(k: np.ndarray, n: np.ndarray, adaptive: bool = False) -> dict[TraceDynamics, float]:
    result = _labels(k, n, adaptive)
    counts = np.bincount(result.label, minlength=len(LABEL_CODES)) / len(k)
    return {label: float(counts[code]) for code, label in enumerate(LABEL_CODES)}


def false_label_rate(k: np.ndarray, n: np.ndarray, adaptive: bool = False) -> float:
    """Share of curves given any label but monotonic."""
    return 1.0 - label_rates(k, n, adaptive)[TraceDynamics.MONOTONIC]


def detection_rate(k: np.ndarray, n: np.ndarray, adaptive: bool = False, at: int = JUMP_AT) -> float:
    """Share of curves labelled insight at the jump's fraction."""
    result = _labels(k, n, adaptive)
    hits = (result.label == LABEL_CODES.index(TraceDynamics.INSIGHT)) & (result.step == at - 1)
    return float(hits.mean())


def write_curves_folder(
    folder: Path, problem_ids: Sequence[str], k: np.ndarray, n: np.ndarray, adaptive: np.ndarray | None = None
) -> Path:
    """A results folder (run.json, results.jsonl, strong.jsonl) with one problem per measured
    curve (rows of ``k`` and ``n`` over ``FRACTIONS``), the answer stated from 1.0 on: what
    ``cot-transfer report`` reads. Rows of the curves marked ``adaptive`` carry a stop reason and
    their rounds, as the runner writes adaptive rows."""
    folder.mkdir(parents=True, exist_ok=True)
    stopped = np.zeros(len(k), dtype=bool) if adaptive is None else adaptive
    settings_hash = "d1a6d1a6"
    run = {
        "fractions": list(FRACTIONS),
        "n_samples": int(n.max()),
        "thresholds": DEFAULT_THRESHOLDS.to_dict(),
        "grader": "exact",
        "strong_model": "strong-model",
        "weak_model": "weak-model",
        "settings_hash": settings_hash,
    }
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    prefixes = [{"fraction": f, "text": "", "num_tokens": round(f * 40), "cot_num_tokens": 40} for f in FRACTIONS]
    results, strong = [], []
    for index, problem_id in enumerate(problem_ids):
        for column, fraction in enumerate(FRACTIONS):
            stated = column >= ANSWER_INDEX
            row: dict[str, object] = {
                "problem_id": problem_id,
                "fraction": fraction,
                "n": int(n[index, column]),
                "num_correct": int(k[index, column]),
                "prefix_num_tokens": round(fraction * 40),
                "cot_num_tokens": 40,
                "answer_in_prefix": stated,
                "answer_stated_in_prefix": stated,
                "settings_hash": settings_hash,
            }
            if stopped[index]:
                row["stop_reason"] = "decided"
                row["rounds"] = 1
            results.append(json.dumps(row))
        record = {
            "problem_id": problem_id,
            "cot": "",
            "answer": "7",
            "correct": True,
            "cot_num_tokens": 40,
            "prefixes": prefixes,
            "settings_hash": settings_hash,
        }
        strong.append(json.dumps(record))
    (folder / "results.jsonl").write_text("".join(f"{line}\n" for line in results), encoding="utf-8")
    (folder / "strong.jsonl").write_text("".join(f"{line}\n" for line in strong), encoding="utf-8")
    return folder


def _print_rate_rows(
    rng: np.random.Generator,
    curves: Mapping[str, np.ndarray],
    rate: Callable[..., float],
    digits: int,
    reps: int,
    sizes: tuple[int, ...],
) -> None:
    """One table row per true curve: ``rate`` at each fixed n, then under the adaptive plan to n_max = 128."""
    for name, curve in curves.items():
        cells = [f"{rate(*fixed_rows(rng, curve, reps, n)):.{digits}f}" for n in sizes]
        cells.append(f"{rate(*adaptive_rows(rng, curve, reps, 128), adaptive=True):.{digits}f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    rng = np.random.default_rng(2026)
    reps = 10_000
    sizes = (8, 16, 32, 48, 64, 128)
    header = " | ".join(f"n = {n}" for n in sizes)
    print(f"false-label rate (any label), {reps} curves each; adaptive: the default plan to n_max\n")
    print(f"| true curve | {header} | adaptive, n_max = 128 |")
    print("|---" * (len(sizes) + 2) + "|")
    _print_rate_rows(rng, NO_JUMP, false_label_rate, 4, reps, sizes)
    lucky = LABEL_CODES.index(TraceDynamics.LUCKY_GUESS)
    cells = []
    for n in sizes:
        k, n_ = fixed_rows(rng, PRE_ANSWER_025, reps, n)
        cells.append(f"{np.mean(classify_curves(FRACTIONS, k, n_, np.full(reps, ANSWER_INDEX)).label == lucky):.4f}")
    print("| lucky_guess on 0.25 before the answer | " + " | ".join(cells) + " | |")
    print(f"\ndetection of a jump of 0.7 at 0.5 (insight at 0.5), {reps} curves each\n")
    print(f"| jump | {header} | adaptive, n_max = 128 |")
    print("|---" * (len(sizes) + 2) + "|")
    _print_rate_rows(rng, JUMPS, detection_rate, 3, reps, sizes)


if __name__ == "__main__":
    main()
