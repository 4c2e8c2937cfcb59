"""The report's plots: unlock rate (with and without the answer in the prefix), mean potential,
and the per-problem potential heatmap, drawn from ``summary.json``'s content."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cot_transfer.domain.analysis import ProblemAnalysis

_HEATMAP_LABELLED_ROWS = 60
_PLOT_DPI = 120
_FRACTION_AXIS_LABEL = "CoT prefix in the prompt (share of the strong CoT's tokens)"


def with_gaps(series: Sequence[float | None]) -> list[float]:
    """None as NaN, which matplotlib leaves as a gap instead of drawing a false zero."""
    return [math.nan if value is None else value for value in series]


def interval_band(intervals: Sequence[Sequence[float] | None]) -> tuple[list[float], list[float]]:
    """Lower and upper edges of (low, high) intervals, a missing one as a gap."""
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


def plot_unlock_rate(summary: Mapping[str, Any], path: Path) -> None:
    figure = Figure(figsize=(8, 5.6), layout="constrained")
    axes = _fraction_axes(figure, "share of baseline-unsolved problems", y_as_percent=True)
    fractions = summary["fractions"]
    level = round(100 * float(summary["confidence"]))
    thresholds = summary["thresholds"]
    if summary["baseline_unsolved"]:
        curves = (
            ("unlock_rate", "o-", "tab:blue", f"unlock rate (potential ≥ τ = {thresholds['unlock_min_potential']:g})"),
            (
                "unlock_rate_without_answer",
                "D-",
                "tab:purple",
                "unlock rate, answer not in the prefix",
            ),
            (
                "any_correct_rate",
                "s--",
                "tab:orange",
                f"any correct (≥ 1 of {summary.get('n_samples') or 'n'} samples)",
            ),
        )
        banded = 0
        for key, style, color, label in curves:
            if all(value is None for value in summary[key]):
                continue
            banded += 1
            axes.fill_between(
                fractions,
                *interval_band(summary[f"{key}_interval"]),
                color=color,
                alpha=0.15,
                linewidth=0,
                # One legend entry stands for every band: they differ only in colour.
                label=f"shaded: {level}% Clopper-Pearson CI" if banded == 1 else "_nolegend_",
            )
            axes.plot(fractions, with_gaps(summary[key]), style, color=color, label=label)
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


def plot_potential(summary: Mapping[str, Any], path: Path) -> None:
    figure = Figure(figsize=(8, 5.6), layout="constrained")
    axes = _fraction_axes(figure, "mean potential (share of correct samples)", y_as_percent=False)
    level = round(100 * float(summary["confidence"]))
    thresholds = summary["thresholds"]
    fractions = summary["fractions"]
    if summary["n_problems"]:
        axes.fill_between(
            fractions,
            *interval_band(summary["weak_potential_interval"]),
            color="tab:blue",
            alpha=0.2,
            linewidth=0,
            label=f"weak model, {level}% CI",
        )
        axes.plot(
            fractions,
            with_gaps(summary["weak_potential_mean"]),
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
            *interval_band(strong["interval"]),
            color="tab:green",
            alpha=0.15,
            linewidth=0,
            label=f"strong model, {level}% CI",
        )
        axes.plot(
            strong["fractions"],
            with_gaps(strong["mean"]),
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


def _first_unlock(problem: ProblemAnalysis) -> float:
    return problem.first_unlock_fraction if problem.first_unlock_fraction is not None else math.inf


def _heatmap_order(problems: Sequence[ProblemAnalysis]) -> list[ProblemAnalysis]:
    """Lowest potential at fraction 0 first, then earliest fraction that reaches tau."""
    return sorted(
        problems, key=lambda problem: (problem.curve().get(0.0, math.inf), _first_unlock(problem), problem.problem_id)
    )


def _heatmap_height(rows: int) -> float:
    """Inches: a readable label per row up to _HEATMAP_LABELLED_ROWS rows, then a thin band each."""
    if rows <= _HEATMAP_LABELLED_ROWS:
        return max(4.0, 2.0 + 0.17 * rows)
    return min(14.0, 2.0 + 0.17 * _HEATMAP_LABELLED_ROWS + 0.01 * (rows - _HEATMAP_LABELLED_ROWS))


def plot_heatmap(problems: Sequence[ProblemAnalysis], fractions: Sequence[float], tau: float, path: Path) -> None:
    ordered = _heatmap_order(problems)
    unsolved_count = sum(1 for problem in ordered if problem.baseline_unsolved)
    figure = Figure(figsize=(8, _heatmap_height(len(ordered))), layout="constrained")
    axes = figure.add_subplot()
    if not ordered:
        _no_data(axes)
    else:
        matrix = [[problem.curve().get(fraction, math.nan) for fraction in fractions] for problem in ordered]
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
            axes.set_yticks(range(len(ordered)), [problem.problem_id for problem in ordered], fontsize=7)
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
