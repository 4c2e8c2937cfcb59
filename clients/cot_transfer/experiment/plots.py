"""The report's figures: unlock rate (with and without the answer in the prefix), mean potential,
and the per-problem potential heatmap, drawn from ``summary.json``'s content.

Each figure has a one-line title; what a reader needs to read it (thresholds, interval method,
counts) is its caption, which ``report.md`` prints under it. Each ``*_figure`` function returns
the figure, the rows of the values it plots (written as ``<figure>_data.csv``) and the caption;
``save_figure`` writes PNG, SVG and PDF.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cot_transfer.domain.analysis import ProblemAnalysis

_HEATMAP_LABELLED_ROWS = 60
_PLOT_DPI = 150
_FRACTION_AXIS_LABEL = "CoT prefix in the prompt (share of the strong CoT's tokens)"
# Every figure is written in these formats, next to each other (PNG for reading, vector for papers).
FIGURE_FORMATS = (".png", ".svg", ".pdf")
DATA_SUFFIX = "_data.csv"


@dataclass(frozen=True)
class FigureOutput:
    figure: Figure
    # The plotted values, one dict per point: the ``<figure>_data.csv`` rows.
    data: list[dict[str, Any]]
    caption: str


def with_gaps(series: Sequence[float | None]) -> list[float]:
    """None as NaN, which matplotlib leaves as a gap instead of drawing a false zero."""
    return [math.nan if value is None else value for value in series]


def interval_band(intervals: Sequence[Sequence[float] | None]) -> tuple[list[float], list[float]]:
    """Lower and upper edges of (low, high) intervals, a missing one as a gap."""
    lows = [math.nan if pair is None else pair[0] for pair in intervals]
    highs = [math.nan if pair is None else pair[1] for pair in intervals]
    return lows, highs


def save_figure(figure: Figure, path: Path) -> None:
    """One format, chosen by ``path``'s suffix (the report writes each of FIGURE_FORMATS)."""
    figure.savefig(path, dpi=_PLOT_DPI, format=path.suffix.lstrip(".") or "png")


def _pair(interval: Any) -> tuple[float, float] | None:
    """An interval as summary.json writes it, [low, high] or {low, high}; None when missing."""
    if isinstance(interval, Mapping) and interval.get("low") is not None and interval.get("high") is not None:
        return float(interval["low"]), float(interval["high"])
    if isinstance(interval, Sequence) and len(interval) == 2 and None not in interval:
        return float(interval[0]), float(interval[1])
    return None


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


def _legend_below(figure: Figure, handles: list[Any], labels: list[str]) -> None:
    """Below the plot, where it cannot hide a curve whatever its shape."""
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=1, fontsize=9, frameon=False)


@dataclass(frozen=True)
class _Curve:
    key: str
    label: str
    color: str
    # Line style and marker: the curves can coincide, so each differs in both, not only in colour.
    linestyle: str
    marker: str
    # The main curve: filled markers, a wide line and its interval as a band. The others: open
    # markers and their intervals as error bars, shifted by ``offset`` so that coinciding points
    # and bars stay apart.
    main: bool
    offset: float
    zorder: float


def unlock_rate_figure(summary: Mapping[str, Any]) -> FigureOutput:
    figure = Figure(figsize=(8, 5.8), layout="constrained")
    axes = _fraction_axes(figure, "share of baseline-unsolved problems", y_as_percent=True)
    fractions = list(summary["fractions"])
    level = round(100 * float(summary["confidence"]))
    thresholds = summary["thresholds"]
    tau, tau0 = thresholds["unlock_min_potential"], thresholds["baseline_max_potential"]
    per_fraction = summary.get("per_fraction") or []
    true_intervals = [_pair(stats.get("true_unlock_rate_interval")) for stats in per_fraction]
    has_true = len(true_intervals) == len(fractions) and any(pair is not None for pair in true_intervals)
    curves = (
        _Curve(
            "any_correct_rate",
            f"any correct (≥ 1 of {summary.get('n_samples') or 'n'} samples)",
            "tab:orange",
            ":",
            "s",
            False,
            -0.009,
            2,
        ),
        _Curve("unlock_rate", f"unlock rate (potential ≥ τ = {tau:g})", "tab:blue", "-", "o", True, 0.0, 3),
        # Drawn last, dashed with open markers: where it equals the unlock rate both stay visible.
        _Curve(
            "unlock_rate_without_answer",
            "unlock rate, answer not in the prefix",
            "tab:purple",
            "--",
            "D",
            False,
            0.009,
            4,
        ),
    )
    handles: list[Any] = []
    labels: list[str] = []
    data: list[dict[str, Any]] = [{"fraction": fraction} for fraction in fractions]
    if summary["baseline_unsolved"]:
        if has_true:
            lows, highs = interval_band(true_intervals)
            band = axes.fill_between(fractions, lows, highs, color="tab:cyan", alpha=0.10, linewidth=0, zorder=0)
            (edge,) = axes.plot(fractions, lows, "-.", color="tab:cyan", linewidth=1.2, zorder=1)
            axes.plot(fractions, highs, "-.", color="tab:cyan", linewidth=1.2, zorder=1)
            handles.append((band, edge))
            labels.append(f"{level}% interval of the true unlock rate (n = ∞ samples per prefix)")
            for row, pair in zip(data, true_intervals, strict=True):
                row["true_unlock_rate_low"], row["true_unlock_rate_high"] = pair if pair else (None, None)
        for curve in curves:
            values = summary.get(curve.key) or []
            if not values or all(value is None for value in values):
                continue
            lows, highs = interval_band([_pair(pair) for pair in summary[f"{curve.key}_interval"]])
            ys = with_gaps(values)
            style: dict[str, Any] = {
                "linestyle": curve.linestyle,
                "marker": curve.marker,
                "color": curve.color,
                "zorder": curve.zorder,
            }
            if curve.main:
                band = axes.fill_between(fractions, lows, highs, color=curve.color, alpha=0.2, linewidth=0, zorder=1)
                (line,) = axes.plot(fractions, ys, linewidth=2.6, markersize=7, **style)
                # The legend entry shows the line over its own band: the swatch is the curve's.
                handles.append((band, line))
                labels.append(f"{curve.label} ± {level}% CI")
            else:
                xs = [fraction + curve.offset for fraction in fractions]
                # NaN (a missing value or bound) stays NaN: no bar is drawn there.
                below = [y - low for y, low in zip(ys, lows, strict=True)]
                above = [high - y for y, high in zip(ys, highs, strict=True)]
                bars = axes.errorbar(
                    xs,
                    ys,
                    yerr=[below, above],
                    capsize=2.5,
                    elinewidth=1.0,
                    linewidth=1.6,
                    markersize=6,
                    markerfacecolor="white",
                    **style,
                )
                handles.append(bars)
                labels.append(f"{curve.label} ± {level}% CI")
            for row, value, low, high in zip(data, values, lows, highs, strict=True):
                row[curve.key] = value
                row[f"{curve.key}_low"] = None if math.isnan(low) else low
                row[f"{curve.key}_high"] = None if math.isnan(high) else high
    else:
        _no_data(
            axes,
            "no results yet"
            if not summary["n_problems"]
            else "no problem is unsolved at 0%: the unlock rate is undefined",
        )
    axes.set_title("Unlock rate by CoT prefix length", fontsize=11)
    _legend_below(figure, handles, labels)
    caption = (
        f"Share of the {summary['baseline_unsolved']} of {summary['n_problems']} problems the weak model does not"
        f" solve alone (potential at 0% ≤ τ0 = {tau0:g}) whose potential reaches τ = {tau:g} at each prefix length."
        f" Band and error bars: {level}% Clopper-Pearson intervals over problems, in each curve's colour (error bars"
        " shifted sideways so that equal values stay apart). Answer not in the prefix: the same rate over the"
        " prefixes that do not already state the reference answer; where it equals the unlock rate its dashed line"
        " lies on the solid one."
        + (
            f" Dash-dotted cyan: the {level}% interval of the true unlock rate, the rate n = ∞ samples per prefix"
            " would measure."
            if has_true
            else ""
        )
    )
    return FigureOutput(figure, data, caption)


def potential_figure(summary: Mapping[str, Any]) -> FigureOutput:
    figure = Figure(figsize=(8, 5.2), layout="constrained")
    axes = _fraction_axes(figure, "mean potential (share of correct samples)", y_as_percent=False)
    level = round(100 * float(summary["confidence"]))
    fractions = list(summary["fractions"])
    handles: list[Any] = []
    labels: list[str] = []
    data: list[dict[str, Any]] = []
    series = []
    if summary["n_problems"]:
        series.append(
            (
                "weak",
                fractions,
                summary["weak_potential_mean"],
                summary["weak_potential_interval"],
                "tab:blue",
                "o-",
                f"weak model ({summary['n_problems']} problems)",
            )
        )
    else:
        _no_data(axes)
    strong = summary.get("strong_potential")
    if strong:
        series.append(
            (
                "strong",
                strong["fractions"],
                strong["mean"],
                strong["interval"],
                "tab:green",
                "^--",
                f"strong model continuing its own CoT ({strong['n_problems']} problems)",
            )
        )
    for model, xs, means, intervals, color, style, label in series:
        lows, highs = interval_band([_pair(pair) for pair in intervals])
        band = axes.fill_between(xs, lows, highs, color=color, alpha=0.18, linewidth=0)
        (line,) = axes.plot(xs, with_gaps(means), style, color=color)
        handles.append((band, line))
        labels.append(f"{label}, with its {level}% CI")
        data += [
            {
                "model": model,
                "fraction": x,
                "mean_potential": mean,
                "low": None if math.isnan(low) else low,
                "high": None if math.isnan(high) else high,
            }
            for x, mean, low, high in zip(xs, means, lows, highs, strict=True)
        ]
    method = (summary.get("intervals") or {}).get("mean_potential") or "summary.json's mean_potential_interval"
    axes.set_title("Mean potential by CoT prefix length", fontsize=11)
    _legend_below(figure, handles, labels)
    caption = (
        "Mean over problems of the potential (the share of a prefix's n samples that are correct), per prefix"
        f" length; bands: {level}% intervals of the mean over problems, {method}."
        " The unlock threshold τ applies to each problem's potential, not to this mean, so it is not drawn."
    )
    return FigureOutput(figure, data, caption)


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


def heatmap_figure(problems: Sequence[ProblemAnalysis], fractions: Sequence[float], tau: float) -> FigureOutput:
    ordered = _heatmap_order(problems)
    unsolved_count = sum(1 for problem in ordered if problem.baseline_unsolved)
    figure = Figure(figsize=(8, _heatmap_height(len(ordered))), layout="constrained")
    axes = figure.add_subplot()
    data: list[dict[str, Any]] = []
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
        data = [
            {
                "row": row,
                "problem_id": problem.problem_id,
                "fraction": fraction,
                "potential": None if math.isnan(value) else value,
            }
            for row, (problem, values) in enumerate(zip(ordered, matrix, strict=True))
            for fraction, value in zip(fractions, values, strict=True)
        ]
    axes.set_xlabel(_FRACTION_AXIS_LABEL)
    axes.set_title(f"Potential per problem ({len(ordered)} problems)", fontsize=11)
    split = (
        f" Above the red line: the {unsolved_count} problems unsolved at 0% (potential ≤ τ0)."
        if 0 < unsolved_count < len(ordered)
        else ""
    )
    caption = (
        f"Weak-model potential of each problem (row) at each prefix length (column), sorted by the potential at 0%,"
        f" then by the first prefix length whose potential reaches τ = {tau:g} (red on the colour bar).{split}"
    )
    return FigureOutput(figure, data, caption)
