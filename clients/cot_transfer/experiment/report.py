"""Report of one run folder: ``report.md``, ``summary.json``, ``results.csv``, the figures (PNG,
SVG and PDF, each with its ``_data.csv``), ``results.parquet`` and the viewer ``view.html``.

Reading the folder is ``results_folder``, the numbers are ``cot_transfer.domain.analysis``
(through ``summary``), the text is ``markdown`` and ``answers_report``, the figures are ``plots``
and the page is ``view``; this module writes them, each file atomically.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cot_transfer.domain.dynamics import DEFAULT_DYNAMICS_PARAMETERS, DynamicsParameters
from cot_transfer.domain.statistics import DEFAULT_CONFIDENCE
from cot_transfer.experiment.answers_report import report_extras_markdown, sampling_settings_rows
from cot_transfer.experiment.groups import csv_with_metadata, plot_file_name, run_groups, write_group_plots
from cot_transfer.experiment.load import results_frame, strong_records, write_results_parquet
from cot_transfer.experiment.markdown import format_unlock_table, report_markdown
from cot_transfer.experiment.plots import (
    DATA_SUFFIX,
    FIGURE_FORMATS,
    FigureOutput,
    heatmap_figure,
    potential_figure,
    save_figure,
    unlock_rate_figure,
)
from cot_transfer.experiment.receivers_report import plot_receivers
from cot_transfer.experiment.results_folder import ReportError, RunResults, load_run
from cot_transfer.experiment.search_report import (
    SEARCH_KEY,
    SEARCHED_CAPTION,
    is_search_run,
    search_markdown,
    search_results,
    search_settings,
    searched_line,
)
from cot_transfer.experiment.summary import CSV_COLUMNS, analyze_run, build_summary, csv_rows, summary_dict
from cot_transfer.experiment.view import write_view

__all__ = [
    "ReportError",
    "ReportFiles",
    "RunResults",
    "build_summary",
    "format_unlock_table",
    "load_run",
    "write_report",
]


# Written for a run of several receivers or modes: their potential side by side.
RECEIVERS_PNG = "receivers.png"


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


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = CSV_COLUMNS) -> None:
    def write(target: Path) -> None:
        with target.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    _write_atomically(path, write)


def _write_figure_formats(path: Path, write: Callable[[Path], None]) -> None:
    """PNG, SVG and PDF of one figure: ``write`` saves in the format its target's suffix names."""
    for suffix in FIGURE_FORMATS:
        _write_atomically(path.with_suffix(suffix), write)


def _write_figure(path: Path, output: FigureOutput) -> None:
    """The figure in every format and its plotted values as ``<figure>_data.csv``."""
    _write_figure_formats(path, lambda target: save_figure(output.figure, target))
    columns = list(dict.fromkeys(key for row in output.data for key in row))
    _write_csv(path.with_name(path.stem + DATA_SUFFIX), output.data, columns)


def _per_fraction_rows(per_fraction: Sequence[Mapping[str, Any]], **keys: Any) -> list[dict[str, Any]]:
    """A summary block's per-fraction numbers as flat rows: each interval as ``<name>_low``/``_high``."""
    rows = []
    for stats in per_fraction:
        row = dict(keys)
        for name, value in stats.items():
            if isinstance(value, Mapping) and {"low", "high"} <= set(value):
                row[f"{name.removesuffix('_interval')}_low"] = value["low"]
                row[f"{name.removesuffix('_interval')}_high"] = value["high"]
            elif value is None or isinstance(value, int | float | str):
                row[name] = value
        rows.append(row)
    return rows


def _write_data(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    _write_csv(path.with_name(path.stem + DATA_SUFFIX), rows, list(dict.fromkeys(key for row in rows for key in row)))


def write_report(
    run_dir: str | Path,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    dynamics_parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS,
    group_by: Sequence[str] = (),
) -> ReportFiles:
    """Reads the run folder and writes the report files into it; returns their paths.
    ``group_by``: the metadata fields to break results down by (``groups.group_fields_of_run``)."""
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
    analysis = analyze_run(run, confidence=confidence, dynamics_parameters=dynamics_parameters)
    summary = summary_dict(run, analysis)
    summary["groups"] = run_groups(run, confidence=analysis.confidence, group_by=group_by)
    strong = strong_records(folder, run.settings)
    results = results_frame(folder, run.settings, strong)
    searched = is_search_run(run.settings)
    if searched:
        summary[SEARCH_KEY] = search_results(results, strong, run.thresholds, search_settings(run.settings))
    _write_text(files.summary_json, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    _write_csv(files.results_csv, *csv_with_metadata(folder, csv_rows(run, analysis), CSV_COLUMNS))
    for path in write_group_plots(folder, summary["groups"], analysis.confidence, _write_figure_formats):
        field = next(name for name in summary["groups"] if plot_file_name(name) == path.name)
        _write_data(
            path,
            [
                row
                for group in summary["groups"][field]["values"]
                for row in _per_fraction_rows(group["per_fraction"], **{field: group["value"]})
            ],
        )
    figures = {
        "unlock_rate": (files.unlock_rate_png, unlock_rate_figure(summary)),
        "potential": (files.potential_png, potential_figure(summary)),
        "heatmap": (
            files.heatmap_png,
            heatmap_figure(analysis.problems, run.fractions, run.thresholds.unlock_min_potential),
        ),
    }
    names = {"results_csv": files.results_csv.name, "summary_json": files.summary_json.name}
    for kind, (path, output) in figures.items():
        _write_figure(path, output)
        names[kind] = path.name
        names[f"{kind}_caption"] = output.caption
    if searched:
        names["potential_caption"] += SEARCHED_CAPTION
    if len([mode for modes in summary["receivers"].values() for mode in modes]) > 1:
        _write_figure_formats(folder / RECEIVERS_PNG, lambda target: plot_receivers(summary, target))
        _write_data(
            folder / RECEIVERS_PNG,
            [
                row
                for name, modes in summary["receivers"].items()
                for mode, block in modes.items()
                for row in _per_fraction_rows(block["per_fraction"], receiver=name, mode=mode)
            ],
        )
        names["receivers"] = RECEIVERS_PNG
    settings_rows = sampling_settings_rows(run.settings)
    search_lines: list[str] = []
    if searched:
        settings_rows.append(["cut points", f"{searched_line(summary[SEARCH_KEY])}; rows only at the probed cuts"])
        search_lines = search_markdown(summary[SEARCH_KEY])
    _write_text(
        files.report_md,
        report_markdown(summary, names, settings_rows=settings_rows)
        + report_extras_markdown(summary, results)
        + "\n".join(search_lines),
    )
    write_results_parquet(folder)
    write_view(folder)
    return files
