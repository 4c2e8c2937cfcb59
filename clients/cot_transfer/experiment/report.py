"""Report of one run folder: ``report.md``, ``summary.json``, ``results.csv`` and PNG plots.

The folder holds what the runner writes:

* ``run.json``: fractions, samples per prefix, thresholds, grader, models, settings hash;
* ``results.jsonl``: one row per (problem, fraction) with ``n`` and ``num_correct``; rows
  with ``"role": "strong"`` are the strong model's self-potential, the rest the weak model's;
* ``strong.jsonl`` (optional): per problem the strong model's CoT, answer and correctness.

A run may still be in progress or may have crashed, so the reader is forgiving where that
is what happened: a last line cut off mid-write is ignored, a (role, problem, fraction)
written twice (a resumed run redoing work) keeps its last row, and rows from other
settings (``settings_hash`` differs from ``run.json``'s) are left out. Those lines are
counted in ``summary.json`` under ``ignored``. A malformed line anywhere else is an error.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cot_transfer.domain.dynamics import (
    DEFAULT_DYNAMICS_PARAMETERS,
    DynamicsParameters,
    TraceDynamics,
    answer_fraction_from_cot,
    classify_curve,
    count_labels,
)
from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.statistics import (
    DEFAULT_BOOTSTRAP_RESAMPLES,
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_CONFIDENCE,
    Interval,
    TransferStatistics,
    compute_transfer_statistics,
    wilson_interval,
)
from cot_transfer.domain.transfer import FractionOutcome, Thresholds
from cot_transfer.domain.truncation import with_baseline

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
STRONG_FILE = "strong.jsonl"

WEAK_ROLE = "weak"
STRONG_ROLE = "strong"

# Fractions are compared as keys; 0.30000000000000004 from arithmetic and 0.3 from JSON are one.
_FRACTION_DECIMALS = 9
_HEATMAP_LABELLED_ROWS = 60
_PLOT_DPI = 120
_ANSWER_FRACTION_SOURCE = "from the character position of the first final-answer statement in the strong CoT, else 1.0"


class ReportError(ValueError):
    """A run folder is missing a file or holds a malformed line."""


@dataclass(frozen=True)
class ResultRow:
    problem_id: str
    role: str
    fraction: float
    n: int
    num_correct: int
    prefix_num_tokens: int | None
    cot_num_tokens: int | None

    @property
    def potential(self) -> float:
        return self.num_correct / self.n

    def outcome(self) -> FractionOutcome:
        return FractionOutcome(self.problem_id, self.fraction, self.n, self.num_correct)


@dataclass(frozen=True)
class StrongRecord:
    problem_id: str
    cot: str
    answer: str | None
    correct: bool | None
    cot_num_tokens: int | None


@dataclass(frozen=True)
class IgnoredLines:
    truncated: int = 0
    other_settings: int = 0
    superseded: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "truncated_last_lines": self.truncated,
            "rows_from_other_settings": self.other_settings,
            "superseded_rows": self.superseded,
        }


@dataclass(frozen=True)
class RunResults:
    run_dir: Path
    settings: dict[str, Any]
    fractions: tuple[float, ...]
    n_samples: int | None
    thresholds: Thresholds
    weak_rows: tuple[ResultRow, ...]
    strong_rows: tuple[ResultRow, ...]
    strong_records: dict[str, StrongRecord] = field(hash=False)
    ignored: IgnoredLines


@dataclass(frozen=True)
class ReportFiles:
    report_md: Path
    summary_json: Path
    results_csv: Path
    unlock_rate_png: Path
    potential_png: Path
    heatmap_png: Path

    def all(self) -> tuple[Path, ...]:
        return (
            self.report_md,
            self.summary_json,
            self.results_csv,
            self.unlock_rate_png,
            self.potential_png,
            self.heatmap_png,
        )


def _fraction_key(value: float) -> float:
    return round(float(value), _FRACTION_DECIMALS)


# --------------------------------------------------------------------------- reading


def _read_jsonl(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """(line number, object) per line, and 1 when the last line was cut off mid-write, else 0."""
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    records: list[tuple[int, dict[str, Any]]] = []
    for position, (number, line) in enumerate(numbered):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            if position == len(numbered) - 1:
                return records, 1
            raise ReportError(f"{path}:{number}: bad JSON: {error.msg} at column {error.colno}") from error
        if not isinstance(value, dict):
            raise ReportError(f"{path}:{number}: a line must hold a JSON object, got {type(value).__name__}")
        records.append((number, value))
    return records, 0


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_row(path: Path, number: int, raw: Mapping[str, Any]) -> ResultRow:
    def fail(message: str) -> ReportError:
        return ReportError(f"{path}:{number}: {message}")

    problem_id = raw.get("problem_id")
    if not isinstance(problem_id, str | int) or isinstance(problem_id, bool):
        raise fail('"problem_id" must be a string')
    fraction = raw.get("fraction")
    if not isinstance(fraction, int | float) or isinstance(fraction, bool) or not 0.0 <= fraction <= 1.0:
        raise fail(f'"fraction" must be a number in [0, 1], got {fraction!r}')
    n = _optional_int(raw.get("n"))
    num_correct = _optional_int(raw.get("num_correct"))
    if n is None or n < 1:
        raise fail(f'"n" must be a positive integer, got {raw.get("n")!r}')
    if num_correct is None or not 0 <= num_correct <= n:
        raise fail(f'"num_correct" must be an integer in [0, n], got {raw.get("num_correct")!r}')
    role = raw.get("role") or WEAK_ROLE
    if role not in (WEAK_ROLE, STRONG_ROLE):
        raise fail(f'"role" must be "{WEAK_ROLE}" or "{STRONG_ROLE}", got {role!r}')
    return ResultRow(
        problem_id=str(problem_id),
        role=role,
        fraction=_fraction_key(fraction),
        n=n,
        num_correct=num_correct,
        prefix_num_tokens=_optional_int(raw.get("prefix_num_tokens")),
        cot_num_tokens=_optional_int(raw.get("cot_num_tokens")),
    )


def _read_settings(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise ReportError(f"{path}: missing; is {run_dir} a run folder?")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: bad JSON: {error.msg} at line {error.lineno}") from error
    if not isinstance(settings, dict):
        raise ReportError(f"{path}: must hold a JSON object")
    fractions = settings.get("fractions", [])
    if not isinstance(fractions, list) or not all(
        isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0 for value in fractions
    ):
        raise ReportError(f'{path}: "fractions" must be a list of numbers in [0, 1]')
    return settings


def _read_thresholds(path: Path, settings: Mapping[str, Any]) -> Thresholds:
    raw = settings.get("thresholds") or {}
    try:
        return Thresholds(
            baseline_max_potential=float(raw.get("baseline_max_potential", Thresholds.baseline_max_potential)),
            unlock_min_potential=float(raw.get("unlock_min_potential", Thresholds.unlock_min_potential)),
        ).check()
    except (TypeError, ValueError, AttributeError, InvalidArgumentError) as error:
        raise ReportError(f'{path}: bad "thresholds": {error}') from error


def _read_strong_records(run_dir: Path, run_hash: str | None) -> tuple[dict[str, StrongRecord], int]:
    path = run_dir / STRONG_FILE
    if not path.is_file():
        return {}, 0
    lines, truncated = _read_jsonl(path)
    records: dict[str, StrongRecord] = {}
    for number, raw in lines:
        if run_hash and raw.get("settings_hash") and raw.get("settings_hash") != run_hash:
            continue
        problem_id = raw.get("problem_id")
        if not isinstance(problem_id, str | int) or isinstance(problem_id, bool):
            raise ReportError(f'{path}:{number}: "problem_id" must be a string')
        cot = raw.get("cot")
        answer = raw.get("answer")
        correct = raw.get("correct")
        records[str(problem_id)] = StrongRecord(
            problem_id=str(problem_id),
            cot=cot if isinstance(cot, str) else "",
            answer=None if answer is None else str(answer),
            correct=correct if isinstance(correct, bool) else None,
            cot_num_tokens=_optional_int(raw.get("cot_num_tokens")),
        )
    return records, truncated


def load_run(run_dir: str | Path) -> RunResults:
    """The results of a run folder (see the module docstring for what is tolerated)."""
    folder = Path(run_dir)
    settings = _read_settings(folder)
    thresholds = _read_thresholds(folder / RUN_FILE, settings)
    results_path = folder / RESULTS_FILE
    lines, truncated = _read_jsonl(results_path) if results_path.is_file() else ([], 0)
    run_hash = settings.get("settings_hash")
    rows: dict[tuple[str, str, float], ResultRow] = {}
    other_settings = 0
    superseded = 0
    for number, raw in lines:
        row_hash = raw.get("settings_hash")
        if run_hash and row_hash and row_hash != run_hash:
            other_settings += 1
            continue
        row = _parse_row(results_path, number, raw)
        key = (row.role, row.problem_id, row.fraction)
        if key in rows:
            superseded += 1
        rows[key] = row
    strong_records, strong_truncated = _read_strong_records(folder, run_hash)

    n_samples = _optional_int(settings.get("n_samples"))
    fraction_set = {_fraction_key(value) for value in settings.get("fractions", [])}
    fraction_set.update(row.fraction for row in rows.values())
    ordered = sorted(rows.values(), key=lambda row: (row.problem_id, row.fraction))
    return RunResults(
        run_dir=folder,
        settings=settings,
        fractions=with_baseline(sorted(fraction_set)),
        n_samples=n_samples,
        thresholds=thresholds,
        weak_rows=tuple(row for row in ordered if row.role == WEAK_ROLE),
        strong_rows=tuple(row for row in ordered if row.role == STRONG_ROLE),
        strong_records=strong_records,
        ignored=IgnoredLines(
            truncated=truncated + strong_truncated, other_settings=other_settings, superseded=superseded
        ),
    )


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class ProblemView:
    """One problem's weak-model curve and what the report derives from it."""

    problem_id: str
    curve: dict[float, float]
    baseline_unsolved: bool
    first_unlock_fraction: float | None
    answer_fraction: float | None
    dynamics: TraceDynamics


def problem_views(run: RunResults, parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS) -> list[ProblemView]:
    """Per problem: curve, baseline status, first unlocking fraction and trace-dynamics label."""
    curves: dict[str, dict[float, float]] = {}
    for row in run.weak_rows:
        curves.setdefault(row.problem_id, {})[row.fraction] = row.potential
    views = []
    for problem_id, curve in sorted(curves.items()):
        baseline = curve.get(0.0)
        unsolved = baseline is not None and baseline <= run.thresholds.baseline_max_potential
        first_unlock = next(
            (
                fraction
                for fraction, value in sorted(curve.items())
                if fraction > 0.0 and value >= run.thresholds.unlock_min_potential
            ),
            None,
        )
        strong = run.strong_records.get(problem_id)
        answer_fraction = answer_fraction_from_cot(strong.cot, run.fractions) if strong and strong.cot else 1.0
        views.append(
            ProblemView(
                problem_id=problem_id,
                curve=curve,
                baseline_unsolved=unsolved,
                first_unlock_fraction=first_unlock,
                answer_fraction=answer_fraction,
                dynamics=classify_curve(curve, answer_fraction, parameters),
            )
        )
    return views


def _interval_pair(interval: Interval | None) -> list[float] | None:
    return [interval.low, interval.high] if interval is not None else None


def build_summary(
    run: RunResults,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    bootstrap_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    dynamics_parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS,
) -> dict[str, Any]:
    """The content of ``summary.json``: JSON-ready, undefined values as None (null)."""
    return _summarize(
        run,
        problem_views(run, dynamics_parameters),
        confidence=confidence,
        bootstrap_resamples=bootstrap_resamples,
        seed=seed,
        dynamics_parameters=dynamics_parameters,
    )


def _summarize(
    run: RunResults,
    views: Sequence[ProblemView],
    *,
    confidence: float,
    bootstrap_resamples: int,
    seed: int,
    dynamics_parameters: DynamicsParameters,
) -> dict[str, Any]:
    weak = compute_transfer_statistics(
        [row.outcome() for row in run.weak_rows],
        run.thresholds,
        run.fractions,
        confidence=confidence,
        bootstrap_resamples=bootstrap_resamples,
        seed=seed,
    )
    strong: TransferStatistics | None = None
    if run.strong_rows:
        strong = compute_transfer_statistics(
            [row.outcome() for row in run.strong_rows],
            run.thresholds,
            sorted({row.fraction for row in run.strong_rows}),
            confidence=confidence,
            bootstrap_resamples=bootstrap_resamples,
            seed=seed,
        )
    graded = [record.correct for record in run.strong_records.values() if record.correct is not None]
    per_fraction = weak.per_fraction
    return {
        "fractions": list(weak.fractions),
        "n_samples": run.n_samples,
        "n_problems": weak.n_problems,
        "baseline_unsolved": weak.baseline_unsolved,
        "problems_without_baseline": weak.problems_without_baseline,
        "unlocked": [stats.unlocked for stats in per_fraction],
        "unlock_rate": [stats.unlock_rate for stats in per_fraction],
        "unlock_rate_interval": [_interval_pair(stats.unlock_rate_interval) for stats in per_fraction],
        "any_correct_rate": [stats.any_correct_rate for stats in per_fraction],
        "any_correct_rate_interval": [_interval_pair(stats.any_correct_rate_interval) for stats in per_fraction],
        "weak_potential_mean": [stats.mean_potential for stats in per_fraction],
        "weak_potential_interval": [_interval_pair(stats.mean_potential_interval) for stats in per_fraction],
        "strong_potential": (
            None
            if strong is None
            else {
                "fractions": list(strong.fractions),
                "mean": [stats.mean_potential for stats in strong.per_fraction],
                "interval": [_interval_pair(stats.mean_potential_interval) for stats in strong.per_fraction],
                "n_problems": strong.n_problems,
            }
        ),
        "strong_solve_rate": sum(graded) / len(graded) if graded else None,
        "per_fraction": [stats.to_dict() for stats in per_fraction],
        "thresholds": {
            "baseline_max_potential": run.thresholds.baseline_max_potential,
            "unlock_min_potential": run.thresholds.unlock_min_potential,
        },
        "confidence": confidence,
        "bootstrap": {"resamples": bootstrap_resamples, "seed": seed, "unit": "problem"},
        "dynamics": {
            "parameters": {
                "delta": dynamics_parameters.delta,
                "near_zero": dynamics_parameters.near_zero,
                "late_fraction": dynamics_parameters.late_fraction,
            },
            "answer_fraction": _ANSWER_FRACTION_SOURCE,
            "counts": count_labels(view.dynamics for view in views),
            "counts_baseline_unsolved": count_labels(view.dynamics for view in views if view.baseline_unsolved),
        },
        "run": {key: run.settings.get(key) for key in ("grader", "strong_model", "weak_model", "settings_hash")},
        "ignored": run.ignored.to_dict(),
    }


# --------------------------------------------------------------------------- formatting


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _rate_with_interval(rate: float | None, interval: Mapping[str, float] | None) -> str:
    if rate is None:
        return "n/a"
    if interval is None:
        return _percent(rate)
    return f"{_percent(rate)} [{_percent(interval['low'])}, {_percent(interval['high'])}]"


def _unlock_table_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    level = round(100 * float(summary.get("confidence", DEFAULT_CONFIDENCE)))
    header = ["fraction", "mean potential", "unlocked", f"unlock rate [{level}% CI]"]
    rows = []
    for stats in summary.get("per_fraction", []):
        mean = stats.get("mean_potential")
        rows.append(
            [
                _percent(stats["fraction"]),
                "n/a" if mean is None else f"{mean:.3f}",
                f"{stats['unlocked']}/{stats['unsolved_evaluated']}",
                _rate_with_interval(stats.get("unlock_rate"), stats.get("unlock_rate_interval")),
            ]
        )
    return header, rows


def format_unlock_table(summary: Mapping[str, Any]) -> str:
    """Plain-text table of a ``summary.json`` dict for terminals: fraction, mean potential,
    unlocked / baseline-unsolved, unlock rate with its interval."""
    header, rows = _unlock_table_rows(summary)
    widths = [max(len(cells[column]) for cells in [header, *rows]) for column in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True)) for cells in [header]]
    lines.append("  ".join("-" * width for width in widths))
    lines.extend("  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True)) for cells in rows)
    return "\n".join(lines)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 1) -> list[str]:
    """The first ``text_columns`` columns left-aligned, the rest (numbers) right-aligned."""
    alignment = [":---" if column < text_columns else "---:" for column in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(alignment) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


_DYNAMICS_MEANING = {
    TraceDynamics.MONOTONIC: "no step of at least delta between consecutive fractions",
    TraceDynamics.INSIGHT: "a rise of at least delta between consecutive fractions, no such drop",
    TraceDynamics.TANGENT: "a drop of at least delta between consecutive fractions",
    TraceDynamics.LATE_SPIKE: "near zero below the late fraction, then a rise before the answer shows",
    TraceDynamics.LUCKY_GUESS: "near zero until the prefix shows the strong model's answer",
}


def _report_markdown(summary: Mapping[str, Any], files: ReportFiles) -> str:
    run = summary["run"]
    thresholds = summary["thresholds"]
    level = round(100 * float(summary["confidence"]))
    lines = ["# CoT transfer report", ""]
    lines += _markdown_table(
        ["setting", "value"],
        [
            ["strong model", str(run.get("strong_model") or "n/a")],
            ["weak model", str(run.get("weak_model") or "n/a")],
            ["grader", str(run.get("grader") or "n/a")],
            ["samples per prefix", str(summary.get("n_samples") or "n/a")],
            ["unsolved at baseline (tau0)", f"potential at fraction 0 <= {thresholds['baseline_max_potential']}"],
            ["unlocked (tau)", f"potential >= {thresholds['unlock_min_potential']}"],
            ["settings hash", f"`{run.get('settings_hash') or 'n/a'}`"],
        ],
        text_columns=2,
    )
    final = summary["per_fraction"][-1] if summary["per_fraction"] else None
    lines += [
        "",
        "## Headline",
        "",
        f"- problems: {summary['n_problems']}; unsolved by the weak model alone: {summary['baseline_unsolved']}",
        f"- strong model solve rate: {_percent(summary.get('strong_solve_rate'))}",
    ]
    if final is not None:
        lines.append(
            f"- unlock rate with the full CoT ({_percent(final['fraction'])} of the CoT): "
            f"{_rate_with_interval(final.get('unlock_rate'), final.get('unlock_rate_interval'))}"
            f" ({final['unlocked']} of {final['unsolved_evaluated']})"
        )
    header, rows = _unlock_table_rows(summary)
    any_header = f"any correct [{level}% CI]"
    rows = [
        [*row, _rate_with_interval(stats.get("any_correct_rate"), stats.get("any_correct_rate_interval"))]
        for row, stats in zip(rows, summary["per_fraction"], strict=True)
    ]
    lines += ["", "## Unlock rate by fraction", ""]
    lines += _markdown_table([*header, any_header], rows)
    lines += [
        "",
        f"Intervals: {level}% bootstrap percentile intervals over problems "
        f"({summary['bootstrap']['resamples']} resamples, seed {summary['bootstrap']['seed']}). "
        "*Any correct*: share of baseline-unsolved problems with at least one correct sample at that fraction.",
        "",
        f"![Unlock rate]({files.unlock_rate_png.name})",
        "",
        "## Potential",
        "",
        f"![Mean potential]({files.potential_png.name})",
        "",
        f"![Potential per problem]({files.heatmap_png.name})",
        "",
        "## Trace dynamics",
        "",
    ]
    dynamics = summary["dynamics"]
    parameters = dynamics["parameters"]
    lines += _markdown_table(
        ["label", "meaning", "all problems", "baseline-unsolved"],
        [
            [
                f"`{label.value}`",
                _DYNAMICS_MEANING[label],
                str(dynamics["counts"][label.value]),
                str(dynamics["counts_baseline_unsolved"][label.value]),
            ]
            for label in TraceDynamics
        ],
        text_columns=2,
    )
    lines += [
        "",
        f"delta = {parameters['delta']}, near zero = potential <= {parameters['near_zero']}, "
        f"late fraction = {parameters['late_fraction']}. Labels are tried in the order lucky guess, late spike, "
        "tangent, insight, monotonic; the first that fits wins. The fraction at which the answer shows is "
        "estimated from the character position of the strong model's first final-answer statement, else 1.0.",
    ]
    ignored = summary["ignored"]
    if any(ignored.values()):
        lines += [
            "",
            "## Data notes",
            "",
            f"- last lines cut off mid-write, ignored: {ignored['truncated_last_lines']}",
            f"- rows from other settings, ignored: {ignored['rows_from_other_settings']}",
            f"- rows written again later (the later one is used): {ignored['superseded_rows']}",
        ]
    lines += ["", f"Per-row data: `{files.results_csv.name}`; all numbers: `{files.summary_json.name}`.", ""]
    return "\n".join(lines)


_CSV_COLUMNS = (
    "problem_id",
    "role",
    "fraction",
    "n",
    "num_correct",
    "potential",
    "potential_low",
    "potential_high",
    "prefix_num_tokens",
    "cot_num_tokens",
    "baseline_unsolved",
    "unlocked",
    "dynamics",
)


def _csv_rows(run: RunResults, views: Sequence[ProblemView], confidence: float) -> list[dict[str, Any]]:
    by_problem = {view.problem_id: view for view in views}
    rows = []
    for row in (*run.weak_rows, *run.strong_rows):
        low, high = wilson_interval(row.num_correct, row.n, confidence)
        view = by_problem.get(row.problem_id) if row.role == WEAK_ROLE else None
        rows.append(
            {
                "problem_id": row.problem_id,
                "role": row.role,
                "fraction": row.fraction,
                "n": row.n,
                "num_correct": row.num_correct,
                "potential": round(row.potential, 6),
                "potential_low": round(low, 6),
                "potential_high": round(high, 6),
                "prefix_num_tokens": "" if row.prefix_num_tokens is None else row.prefix_num_tokens,
                "cot_num_tokens": "" if row.cot_num_tokens is None else row.cot_num_tokens,
                "baseline_unsolved": "" if view is None else view.baseline_unsolved,
                "unlocked": (
                    ""
                    if view is None
                    else view.baseline_unsolved and row.potential >= run.thresholds.unlock_min_potential
                ),
                "dynamics": "" if view is None else view.dynamics.value,
            }
        )
    return rows


# --------------------------------------------------------------------------- plots

_FRACTION_AXIS_LABEL = "CoT prefix in the prompt (share of the strong CoT's tokens)"


def _values(series: Sequence[float | None]) -> list[float]:
    """None as NaN, which matplotlib leaves as a gap instead of drawing a false zero."""
    return [math.nan if value is None else value for value in series]


def _band(intervals: Sequence[Sequence[float] | None]) -> tuple[list[float], list[float]]:
    lows = [math.nan if pair is None else pair[0] for pair in intervals]
    highs = [math.nan if pair is None else pair[1] for pair in intervals]
    return lows, highs


def _fraction_axes(figure: Figure, y_label: str, *, y_as_percent: bool) -> Axes:
    axes = figure.add_subplot()
    ticks = [index / 10 for index in range(11)]
    axes.set_xticks(ticks, [f"{round(100 * tick)}%" for tick in ticks])
    axes.set_xlim(-0.02, 1.02)
    axes.set_xlabel(_FRACTION_AXIS_LABEL)
    if y_as_percent:
        axes.set_yticks(ticks, [f"{round(100 * tick)}%" for tick in ticks])
    axes.set_ylim(-0.02, 1.02)
    axes.set_ylabel(y_label)
    axes.grid(alpha=0.3)
    return axes


def _no_data(axes: Axes, message: str = "no results yet") -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color="grey")


def _legend_below(figure: Figure, axes: Axes) -> None:
    """Below the plot, where it cannot hide a curve whatever its shape."""
    if axes.get_legend_handles_labels()[0]:
        figure.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)


def _plot_unlock_rate(summary: Mapping[str, Any], path: Path) -> None:
    figure = Figure(figsize=(8, 5.6), layout="constrained")
    axes = _fraction_axes(figure, "share of baseline-unsolved problems", y_as_percent=True)
    fractions = summary["fractions"]
    level = round(100 * float(summary["confidence"]))
    thresholds = summary["thresholds"]
    if summary["baseline_unsolved"]:
        axes.fill_between(
            fractions,
            *_band(summary["unlock_rate_interval"]),
            color="tab:blue",
            alpha=0.2,
            linewidth=0,
            label=f"unlock rate, {level}% bootstrap CI",
        )
        axes.plot(
            fractions,
            _values(summary["unlock_rate"]),
            "o-",
            color="tab:blue",
            label=f"unlock rate (potential ≥ τ = {thresholds['unlock_min_potential']:g})",
        )
        axes.fill_between(
            fractions,
            *_band(summary["any_correct_rate_interval"]),
            color="tab:orange",
            alpha=0.15,
            linewidth=0,
            label=f"any correct, {level}% bootstrap CI",
        )
        axes.plot(
            fractions,
            _values(summary["any_correct_rate"]),
            "s--",
            color="tab:orange",
            label=f"any correct (≥ 1 of {summary.get('n_samples') or 'n'} samples correct)",
        )
    else:
        _no_data(
            axes,
            "no results yet"
            if not summary["n_problems"]
            else "no problem is unsolved at 0%: the unlock rate is undefined",
        )
    axes.set_title(
        f"Unlock rate of the {summary['baseline_unsolved']} of {summary['n_problems']} problems "
        f"the weak model does not solve alone\n(unsolved alone: potential at 0% ≤ τ0 = "
        f"{thresholds['baseline_max_potential']:g})",
        fontsize=11,
    )
    _legend_below(figure, axes)
    figure.savefig(path, dpi=_PLOT_DPI)


def _plot_potential(summary: Mapping[str, Any], path: Path) -> None:
    figure = Figure(figsize=(8, 5.6), layout="constrained")
    axes = _fraction_axes(figure, "mean potential (share of correct samples)", y_as_percent=False)
    level = round(100 * float(summary["confidence"]))
    thresholds = summary["thresholds"]
    fractions = summary["fractions"]
    if summary["n_problems"]:
        axes.fill_between(
            fractions,
            *_band(summary["weak_potential_interval"]),
            color="tab:blue",
            alpha=0.2,
            linewidth=0,
            label=f"weak model, {level}% bootstrap CI",
        )
        axes.plot(
            fractions,
            _values(summary["weak_potential_mean"]),
            "o-",
            color="tab:blue",
            label=f"weak model ({summary['n_problems']} problems)",
        )
    else:
        _no_data(axes)
    strong = summary.get("strong_potential")
    if strong:
        axes.fill_between(
            strong["fractions"],
            *_band(strong["interval"]),
            color="tab:green",
            alpha=0.15,
            linewidth=0,
            label=f"strong model, {level}% bootstrap CI",
        )
        axes.plot(
            strong["fractions"],
            _values(strong["mean"]),
            "^-",
            color="tab:green",
            label=f"strong model continuing its own CoT ({strong['n_problems']} problems)",
        )
    axes.axhline(
        thresholds["unlock_min_potential"],
        color="tab:red",
        linestyle=":",
        linewidth=1.2,
        label=f"unlock threshold τ = {thresholds['unlock_min_potential']:g}",
    )
    if thresholds["baseline_max_potential"] > 0:
        axes.axhline(
            thresholds["baseline_max_potential"],
            color="grey",
            linestyle=":",
            linewidth=1.2,
            label=f"baseline threshold τ0 = {thresholds['baseline_max_potential']:g}",
        )
    axes.set_title("Mean potential over problems by CoT prefix length", fontsize=11)
    _legend_below(figure, axes)
    figure.savefig(path, dpi=_PLOT_DPI)


def _heatmap_order(views: Sequence[ProblemView]) -> list[ProblemView]:
    """Lowest potential at fraction 0 first, then earliest fraction that reaches tau."""
    return sorted(
        views,
        key=lambda view: (
            view.curve.get(0.0, math.inf),
            view.first_unlock_fraction if view.first_unlock_fraction is not None else math.inf,
            view.problem_id,
        ),
    )


def _heatmap_height(rows: int) -> float:
    """Inches: a readable label per row up to _HEATMAP_LABELLED_ROWS rows, then a thin band each."""
    if rows <= _HEATMAP_LABELLED_ROWS:
        return max(4.0, 2.0 + 0.17 * rows)
    return min(14.0, 2.0 + 0.17 * _HEATMAP_LABELLED_ROWS + 0.01 * (rows - _HEATMAP_LABELLED_ROWS))


def _plot_heatmap(run: RunResults, views: Sequence[ProblemView], path: Path) -> None:
    ordered = _heatmap_order(views)
    fractions = list(run.fractions)
    tau = run.thresholds.unlock_min_potential
    unsolved_count = sum(1 for view in ordered if view.baseline_unsolved)
    figure = Figure(figsize=(8, _heatmap_height(len(ordered))), layout="constrained")
    axes = figure.add_subplot()
    if not ordered:
        _no_data(axes)
    else:
        matrix = [[view.curve.get(fraction, math.nan) for fraction in fractions] for view in ordered]
        colormap = colormaps["viridis"].with_extremes(bad="lightgrey")
        image = axes.imshow(matrix, aspect="auto", interpolation="nearest", cmap=colormap, vmin=0.0, vmax=1.0)
        colorbar = figure.colorbar(image, ax=axes, fraction=0.05, pad=0.02)
        colorbar.set_label("weak-model potential (grey: no result yet)")
        colorbar.ax.axhline(tau, color="red", linewidth=2)
        ticks = sorted({0.0, 0.2, 0.4, 0.6, 0.8, 1.0, tau} - {t for t in (0.4, 0.6) if abs(t - tau) < 0.08})
        colorbar.set_ticks(ticks, labels=[f"τ = {t:g}" if t == tau else f"{t:g}" for t in ticks])
        if 0 < unsolved_count < len(ordered):
            axes.axhline(unsolved_count - 0.5, color="red", linewidth=1.5)
        axes.set_xticks(range(len(fractions)), [f"{round(100 * fraction)}%" for fraction in fractions])
        if len(ordered) <= _HEATMAP_LABELLED_ROWS:
            axes.set_yticks(range(len(ordered)), [view.problem_id for view in ordered], fontsize=7)
            axes.set_ylabel("problem")
        else:
            axes.set_ylabel(f"problem (row number, {len(ordered)} rows)")
    axes.set_xlabel(_FRACTION_AXIS_LABEL)
    split = (
        f"\nabove the red line: the {unsolved_count} problems unsolved at 0% (potential ≤ τ0)"
        if 0 < unsolved_count < len(ordered)
        else ""
    )
    axes.set_title(
        f"Potential per problem ({len(ordered)} problems), sorted by potential at 0%,\n"
        f"then by the first fraction with potential ≥ τ = {tau:g}{split}",
        fontsize=10,
    )
    figure.savefig(path, dpi=_PLOT_DPI)


# --------------------------------------------------------------------------- writing


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file, so a crash leaves the old file or the new one, never half."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    def write(target: Path) -> None:
        target.write_text(text, encoding="utf-8")

    _write_atomically(path, write)


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    def write(target: Path) -> None:
        with target.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=_CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    _write_atomically(path, write)


def write_report(
    run_dir: str | Path,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    bootstrap_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    dynamics_parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS,
) -> ReportFiles:
    """Reads the run folder and writes the report files into it; returns their paths."""
    folder = Path(run_dir)
    run = load_run(folder)
    files = ReportFiles(
        report_md=folder / "report.md",
        summary_json=folder / "summary.json",
        results_csv=folder / "results.csv",
        unlock_rate_png=folder / "unlock_rate.png",
        potential_png=folder / "potential.png",
        heatmap_png=folder / "heatmap.png",
    )
    views = problem_views(run, dynamics_parameters)
    summary = _summarize(
        run,
        views,
        confidence=confidence,
        bootstrap_resamples=bootstrap_resamples,
        seed=seed,
        dynamics_parameters=dynamics_parameters,
    )
    _write_text(files.summary_json, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    _write_csv(files.results_csv, _csv_rows(run, views, confidence))
    _write_atomically(files.unlock_rate_png, lambda target: _plot_unlock_rate(summary, target))
    _write_atomically(files.potential_png, lambda target: _plot_potential(summary, target))
    _write_atomically(files.heatmap_png, lambda target: _plot_heatmap(run, views, target))
    _write_text(files.report_md, _report_markdown(summary, files))
    return files
