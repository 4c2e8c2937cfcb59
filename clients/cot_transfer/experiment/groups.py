"""Breakdowns of a run by a dataset field (MATH's ``level`` and ``subject``, or any field named).

A headline unlock rate mixes easy and hard problems; per group it reads very differently. Each
group's statistics come from ``analyze`` run on that group's results alone, so a group's numbers
mean exactly what the run's numbers mean. For ``summary.json`` (under ``groups``), per field:

* ``values``: per group value, in natural order (``2`` before ``10``): ``n_problems``,
  ``baseline_unsolved``, ``few_unsolved`` (fewer than ``MIN_UNSOLVED_PER_GROUP``: flagged in the
  report) and ``per_fraction`` (``FractionSummary.to_dict()`` per fraction: unlock rate, true
  unlock rate and mean potential with their intervals, and their counts);
* ``problems_without_value``: problems whose metadata lacks the field (in no group).

The report draws one small-multiples plot per field (unlock rate and mean potential with their
intervals, one panel per group) and a Markdown table of groups against fractions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from matplotlib.figure import Figure

from cot_transfer.domain.analysis import analyze
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.statistics import DEFAULT_CONFIDENCE
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.experiment.datasets import DEFAULT_GROUP_FIELDS, load_run_problems
from cot_transfer.experiment.plots import interval_band, with_gaps
from cot_transfer.experiment.results_folder import RunResults
from cot_transfer.experiment.selection import group_value

_V = TypeVar("_V")

# A group with fewer baseline-unsolved problems is flagged: one problem moves its unlock rate by
# more than 10 points, and 0 of 2 still allows [0%, 84%].
MIN_UNSOLVED_PER_GROUP = 10
_FEW_MARK = "†"
# More panels than this make unreadable plots; the table and summary.json still have every group.
MAX_PLOTTED_GROUPS = 24
_PANEL_COLUMNS = 4
_PLOT_DPI = 120
# Metadata values longer than this (solutions, statements) are no columns of results.csv.
_MAX_COLUMN_TEXT = 120


def natural_key(text: str) -> tuple[tuple[int, float, str], ...]:
    """Orders "Level 2" before "Level 10" and 2 before 10."""
    parts = re.split(r"(-?\d+(?:\.\d+)?)", text)
    return tuple((0, float(part), "") if index % 2 else (1, 0.0, part) for index, part in enumerate(parts) if part)


def split_by_group(
    results: Sequence[FractionResult], metadata: Mapping[str, Mapping[str, Any]], field: str
) -> tuple[dict[str, list[FractionResult]], int]:
    """The results of each value of ``field``, in natural order, and how many problems lack it."""
    groups: dict[str, list[FractionResult]] = {}
    without: set[str] = set()
    for result in results:
        value = group_value(metadata.get(result.problem_id, {}).get(field))
        if value is None:
            without.add(result.problem_id)
            continue
        groups.setdefault(value, []).append(result)
    return {value: groups[value] for value in sorted(groups, key=natural_key)}, len(without)


def build_groups(
    results: Sequence[FractionResult],
    metadata: Mapping[str, Mapping[str, Any]],
    fields: Sequence[str],
    *,
    thresholds: Thresholds,
    fractions: Sequence[float] | None = None,
    strong_correct: Mapping[str, bool] | None = None,
    excluded_problems: Mapping[str, str] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """``summary.json``'s ``groups``: per field, per value, ``analyze`` of that value's results
    (``excluded_problems``: problem id -> reason, as ``analyze`` takes them)."""
    breakdowns: dict[str, Any] = {}
    for field in fields:
        groups, without = split_by_group(results, metadata, field)
        values = []
        for value, group in groups.items():
            ids = {result.problem_id for result in group}
            analysis = analyze(
                group,
                thresholds=thresholds,
                fractions=fractions,
                strong_correct=None if strong_correct is None else _restricted(strong_correct, ids),
                excluded_problems=None if excluded_problems is None else _restricted(excluded_problems, ids),
                confidence=confidence,
                with_dynamics=False,
                # Per-fraction statistics only: the per-problem rows and the band are the run's.
                with_problems=False,
            )
            values.append(
                {
                    "value": value,
                    "n_problems": analysis.n_problems,
                    "baseline_unsolved": analysis.baseline_unsolved,
                    "few_unsolved": analysis.baseline_unsolved < MIN_UNSOLVED_PER_GROUP,
                    "excluded": dict(analysis.excluded),
                    "per_fraction": [summary.to_dict() for summary in analysis.per_fraction],
                }
            )
        breakdowns[field] = {"values": values, "problems_without_value": without}
    return breakdowns


def _restricted(values: Mapping[str, _V], ids: Collection[str]) -> dict[str, _V]:
    return {key: value for key, value in values.items() if key in ids}


def group_fields_of_run(
    problem_metadata: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any], group_by: Sequence[str] = ()
) -> tuple[str, ...]:
    """The fields to break a run down by: ``group_by``, else those the run was started with
    (``run.json``'s ``dataset.group_by``), else those of ``DEFAULT_GROUP_FIELDS`` some problem has."""
    if group_by:
        return tuple(group_by)
    dataset = settings.get("dataset") or {}
    named = dataset.get("group_by") if isinstance(dataset, Mapping) else None
    if named:
        return tuple(str(field) for field in named)
    return tuple(
        field for field in DEFAULT_GROUP_FIELDS if any(field in values for values in problem_metadata.values())
    )


def run_metadata(run_dir: Path) -> dict[str, Mapping[str, Any]]:
    """Each problem's metadata from the results folder's ``problems.jsonl`` (empty without one)."""
    problems = load_run_problems(run_dir) or []
    return {problem.id: problem.metadata for problem in problems}


def run_groups(
    run: RunResults, *, confidence: float = DEFAULT_CONFIDENCE, group_by: Sequence[str] = ()
) -> dict[str, Any]:
    """``summary.json``'s ``groups`` of a results folder: its weak-model rows broken down by the
    fields ``group_fields_of_run`` picks (empty when there are none)."""
    metadata = run_metadata(run.run_dir)
    return build_groups(
        run.weak_rows,
        metadata,
        group_fields_of_run(metadata, run.settings, group_by),
        thresholds=run.thresholds,
        fractions=run.fractions,
        strong_correct=run.strong_correct(),
        excluded_problems=run.excluded,
        confidence=confidence,
    )


# --------------------------------------------------------------------------- results.csv


def metadata_columns(metadata: Mapping[str, Mapping[str, Any]], taken: Collection[str]) -> dict[str, str]:
    """Column name per metadata field for results.csv: the fields with short scalar values (level,
    subject, year, ...), named as in the dataset, or ``metadata_<field>`` where that name is taken."""
    fields: dict[str, bool] = {}
    for values in metadata.values():
        for field, value in values.items():
            short = value is None or (
                isinstance(value, str | int | float | bool) and len(str(value)) <= _MAX_COLUMN_TEXT
            )
            fields[field] = fields.get(field, True) and short
    return {field: (f"metadata_{field}" if field in taken else field) for field, short in fields.items() if short}


def csv_with_metadata(
    run_dir: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """results.csv's rows and columns with the problems' metadata columns added."""
    metadata = run_metadata(run_dir)
    added = metadata_columns(metadata, taken=columns)
    return with_metadata(rows, metadata, added), [*columns, *added.values()]


def with_metadata(
    rows: Sequence[Mapping[str, Any]], metadata: Mapping[str, Mapping[str, Any]], columns: Mapping[str, str]
) -> list[dict[str, Any]]:
    """``rows`` (with a ``problem_id``) with their problem's metadata columns added."""
    extended = []
    for row in rows:
        values = metadata.get(str(row["problem_id"]), {})
        extended.append(
            {**row, **{column: "" if values.get(field) is None else values[field] for field, column in columns.items()}}
        )
    return extended


# --------------------------------------------------------------------------- report


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _with_interval(value: float | None, interval: Mapping[str, float] | None, as_percent: bool) -> str:
    show: Callable[[float | None], str] = _percent if as_percent else (lambda x: "n/a" if x is None else f"{x:.3f}")
    if value is None:
        return "n/a"
    if interval is None:
        return show(value)
    return f"{show(value)} [{show(interval['low'])}, {show(interval['high'])}]"


def plot_file_name(field: str) -> str:
    return "groups_" + (re.sub(r"[^A-Za-z0-9_-]+", "-", field).strip("-") or "field") + ".png"


def groups_markdown(groups: Mapping[str, Any], confidence: float) -> list[str]:
    """Report sections: per field, unlock rate and mean potential of each group at each fraction."""
    level = round(100 * confidence)
    lines: list[str] = []
    for field, breakdown in groups.items():
        values = breakdown["values"]
        lines += ["", f"## By {field}", ""]
        if not values:
            lines.append(f"No problem has a value for `{field}`.")
            continue
        fractions = [stats["fraction"] for stats in values[0]["per_fraction"]]
        header = [field, "problems", "unsolved at 0%", *(_percent(fraction) for fraction in fractions)]
        alignment = [":---", "---:", "---:", *("---:" for _ in fractions)]
        for title, key, interval_key, as_percent in (
            (
                f"True unlock rate of each group's measured-unsolved problems: estimate [{level}% bounds]",
                "true_unlock_rate",
                "true_unlock_rate_measured_unsolved_interval",
                True,
            ),
            (
                f"Unlock rate [{level}% CI] of each group's baseline-unsolved problems (what this run's n measures)",
                "unlock_rate",
                "unlock_rate_interval",
                True,
            ),
            (f"Mean potential [{level}% CI]", "mean_potential", "mean_potential_interval", False),
        ):
            lines += [f"{title}:", "", "| " + " | ".join(header) + " |", "|" + "|".join(alignment) + "|"]
            for group in values:
                by_fraction = {stats["fraction"]: stats for stats in group["per_fraction"]}
                cells = [
                    _with_interval(by_fraction[fraction].get(key), by_fraction[fraction].get(interval_key), as_percent)
                    if fraction in by_fraction
                    else "n/a"
                    for fraction in fractions
                ]
                few = group["baseline_unsolved"] < MIN_UNSOLVED_PER_GROUP
                name = f"{group['value']} {_FEW_MARK}" if few else str(group["value"])
                lines.append(
                    "| " + " | ".join([name, str(group["n_problems"]), str(group["baseline_unsolved"]), *cells]) + " |"
                )
            lines.append("")
        few_groups = [group for group in values if group["baseline_unsolved"] < MIN_UNSOLVED_PER_GROUP]
        if few_groups:
            lines += [
                f"{_FEW_MARK} Fewer than {MIN_UNSOLVED_PER_GROUP} baseline-unsolved problems ({len(few_groups)} of"
                f" {len(values)} groups): one problem moves the group's unlock rate by more than 10 points and its"
                " interval is wide; read these rates as counts.",
                "",
            ]
        if breakdown["problems_without_value"]:
            lines.append(f"Problems without a `{field}` (in no group): {breakdown['problems_without_value']}.")
        shown = len(values) if len(values) <= MAX_PLOTTED_GROUPS else MAX_PLOTTED_GROUPS
        note = "" if shown == len(values) else f" (the first {shown} of {len(values)} groups)"
        lines += [f"![Unlock rate and potential by {field}{note}]({plot_file_name(field)})"]
    return lines


# Each panel's curves: (per_fraction key, name, line label, line style, colour, band opacity).
_GROUP_CURVES = (
    ("unlock_rate", "unlock rate", "unlock rate of the baseline-unsolved problems", "o-", "tab:blue", 0.2),
    ("mean_potential", "mean potential", "mean potential of all problems", "s--", "tab:green", 0.15),
)


def _band(intervals: Sequence[Mapping[str, float] | None]) -> tuple[list[float], list[float]]:
    """summary.json's {low, high} intervals as plot edges."""
    return interval_band([None if pair is None else (pair["low"], pair["high"]) for pair in intervals])


def plot_groups(field: str, breakdown: Mapping[str, Any], confidence: float, path: Path) -> None:
    """One panel per group value: unlock rate and mean potential by fraction, with intervals."""
    values = list(breakdown["values"])[:MAX_PLOTTED_GROUPS]
    columns = max(1, min(_PANEL_COLUMNS, len(values)))
    rows = max(1, math.ceil(len(values) / columns))
    figure = Figure(figsize=(max(6.0, 3.2 * columns + 0.6), 2.7 * rows + 1.6), layout="constrained")
    axes_grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    level = round(100 * confidence)
    for index, axes in enumerate(axes_grid.flat):
        if index >= len(values):
            axes.set_visible(False)
            continue
        group = values[index]
        stats = group["per_fraction"]
        fractions = [entry["fraction"] for entry in stats]
        first = index == 0
        for key, name, line_label, style, color, band_alpha in _GROUP_CURVES:
            axes.fill_between(
                fractions,
                *_band([entry.get(f"{key}_interval") for entry in stats]),
                color=color,
                alpha=band_alpha,
                linewidth=0,
                label=f"{name}, {level}% interval" if first else None,
            )
            axes.plot(
                fractions,
                with_gaps([entry.get(key) for entry in stats]),
                style,
                color=color,
                ms=3,
                label=line_label if first else None,
            )
        axes.set_title(
            f"{field} = {group['value']}\n{group['n_problems']} problems, {group['baseline_unsolved']} unsolved at 0%",
            fontsize=9,
        )
        axes.set_xlim(-0.02, 1.02)
        axes.set_ylim(-0.02, 1.02)
        axes.grid(alpha=0.3)
        axes.tick_params(labelsize=8)
        if index + columns >= len(values):
            axes.xaxis.set_tick_params(labelbottom=True)
            axes.set_xlabel("CoT prefix (share of the strong CoT)", fontsize=8)
    if values:
        figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    else:
        axes_grid.flat[0].text(0.5, 0.5, f"no problem has a {field}", ha="center", va="center", color="grey")
    shown = "" if len(values) == len(breakdown["values"]) else f" (the first {len(values)} groups)"
    figure.suptitle(f"Unlock rate and mean potential by {field}{shown}", fontsize=11)
    figure.savefig(path, dpi=_PLOT_DPI)


def write_group_plots(
    run_dir: Path, groups: Mapping[str, Any], confidence: float, write: Callable[[Path, Callable[[Path], None]], None]
) -> list[Path]:
    """``groups_<field>.png`` per field, each through ``write(path, draw)`` (the report's atomic
    writer); returns their paths."""
    paths = []
    for field, breakdown in groups.items():
        path = run_dir / plot_file_name(field)

        def draw(target: Path, field: str = field, breakdown: Mapping[str, Any] = breakdown) -> None:
            plot_groups(field, breakdown, confidence, target)

        write(path, draw)
        paths.append(path)
    return paths
