"""Text renderings of a ``summary.json`` dict: the terminal unlock table and ``report.md``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cot_transfer.domain.dynamics import TraceDynamics
from cot_transfer.domain.statistics import DEFAULT_CONFIDENCE
from cot_transfer.experiment.groups import groups_markdown
from cot_transfer.experiment.markdown_tables import bounds, markdown_table
from cot_transfer.experiment.markdown_tables import percent as _percent
from cot_transfer.experiment.markdown_tables import rate_with_interval as _rate_with_interval
from cot_transfer.experiment.receivers_report import receivers_markdown
from cot_transfer.experiment.sampling_summary import sampling_line
from cot_transfer.experiment.true_rate_report import headline_rates

__all__ = ["format_unlock_table", "markdown_table", "report_markdown"]


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


DYNAMICS_MEANING = {
    TraceDynamics.MONOTONIC: "no step shown to exceed delta (gradual, smaller, or within the noise)",
    TraceDynamics.INSIGHT: "the true potential rises by more than delta between two consecutive fractions",
    TraceDynamics.TANGENT: "the true potential falls by more than delta between two consecutive fractions",
    TraceDynamics.LATE_SPIKE: "every point below the late fraction shown <= near zero, then a rise of more than delta "
    "into a later point before the answer shows",
    TraceDynamics.LUCKY_GUESS: "every point before the answer shown <= near zero, then a rise of more than delta "
    "where the prefix states the reference answer",
}


def _answer_cell(stats: Mapping[str, Any]) -> str:
    """The lenient leak count, with the strict one in brackets where it differs."""
    lenient, strict = stats.get("answer_in_prefix"), stats.get("answer_stated_in_prefix")
    if lenient is None:
        return "unknown"
    stated = "" if strict is None or strict == lenient else f" ({strict} stated)"
    return f"{lenient}/{stats['n_problems']}{stated}"


def _caption(files: Mapping[str, str], kind: str) -> list[str]:
    caption = files.get(f"{kind}_caption")
    return ["", f"*{caption}*"] if caption else []


def report_markdown(
    summary: Mapping[str, Any], files: Mapping[str, str], settings_rows: Sequence[Sequence[str]] = ()
) -> str:
    """``report.md``; ``files`` names the plots and data files by kind (``unlock_rate``,
    ``potential``, ``heatmap``, ``results_csv``, ``summary_json``) and a figure's caption as
    ``<kind>_caption``; ``settings_rows`` are more (setting, value) rows of the settings table."""
    run = summary["run"]
    thresholds = summary["thresholds"]
    level = round(100 * float(summary["confidence"]))
    lines = ["# CoT transfer report", ""]
    lines += markdown_table(
        ["setting", "value"],
        [
            ["strong model", str(run.get("strong_model") or "n/a")],
            ["weak model", str(run.get("weak_model") or "n/a")],
            ["grader", str(run.get("grader") or "n/a")],
            ["samples per prefix", str(summary.get("n_samples") or "n/a")],
            *([["samples drawn", line]] if (line := sampling_line(summary)) is not None else []),
            ["unsolved at baseline (tau0)", f"potential at fraction 0 <= {thresholds['baseline_max_potential']}"],
            ["unlocked (tau)", f"potential >= {thresholds['unlock_min_potential']}"],
            *[list(row) for row in settings_rows],
            ["settings hash", f"`{run.get('settings_hash') or 'n/a'}`"],
        ],
        text_columns=2,
    )
    lines += [
        "",
        "## Headline",
        "",
        f"- problems: {summary['n_problems']}; unsolved by the weak model alone: {summary['baseline_unsolved']}",
        f"- left out: {summary.get('truncated_cots', 0)} strong CoTs cut off inside their reasoning, "
        f"{summary.get('problem_errors', 0)} problems that could not be run",
        f"- strong model solve rate: {_percent(summary.get('strong_solve_rate'))}",
    ]
    lines += headline_rates(summary)
    header, rows = _unlock_table_rows(summary)
    rows = [
        [
            _percent(stats["fraction"]),
            bounds(stats.get("true_unlock_rate_interval")),
            bounds(stats.get("true_unlock_rate_measured_unsolved_interval")),
            *row[1:],
            bounds(stats.get("unlock_rate_band")),
            _answer_cell(stats),
            _rate_with_interval(
                stats.get("unlock_rate_without_answer"), stats.get("unlock_rate_without_answer_interval")
            ),
            _rate_with_interval(stats.get("any_correct_rate"), stats.get("any_correct_rate_interval")),
        ]
        for row, stats in zip(rows, summary["per_fraction"], strict=True)
    ]
    lines += ["", "## Unlock rate by fraction", ""]
    lines += markdown_table(
        [
            header[0],
            "true unlock rate",
            "true, of the measured-unsolved",
            *header[1:],
            "unlock rate band (all fractions)",
            "answer in prefix",
            f"unlock rate without answer [{level}% CI]",
            f"any correct [{level}% CI]",
        ],
        rows,
    )
    lines += [
        "",
        f"*True unlock rate*: {level}% bounds of the share of truly unsolved problems whose true potential reaches"
        " tau; *of the measured-unsolved*: the same share among the problems counted unsolved at baseline (see"
        f" the headline). *Unlock rate*: what this run's n measures, with {level}% Clopper-Pearson intervals over"
        " problems; its *band* holds at every fraction at once (max-statistic bootstrap over problems). See the"
        " README's Statistics section. *Answer in prefix*: results whose prefix may give the reference answer"
        " away (the lenient leak flag: it stands there as a number or maths span, or the cut is inside or right"
        " after an answer statement), *stated* those that state it as an answer (strict); *without answer*: the"
        " unlock rate over the baseline-unsolved problems whose CoT gives no answer away before the last fraction"
        " (one set at every fraction). *Any correct*: share of"
        " baseline-unsolved problems with at least one correct sample.",
        "",
        f"![Unlock rate]({files['unlock_rate']})",
        *_caption(files, "unlock_rate"),
        "",
        "## Potential",
        "",
        f"![Mean potential]({files['potential']})",
        *_caption(files, "potential"),
        "",
        f"![Potential per problem]({files['heatmap']})",
        *_caption(files, "heatmap"),
        "",
        "## Trace dynamics",
        "",
    ]
    dynamics = summary["dynamics"]
    parameters = dynamics["parameters"]
    lines += markdown_table(
        ["label", "meaning", "all problems", "baseline-unsolved"],
        [
            [
                f"`{label.value}`",
                DYNAMICS_MEANING[label],
                str(dynamics["counts"][label.value]),
                str(dynamics["counts_baseline_unsolved"][label.value]),
            ]
            for label in TraceDynamics
        ],
        text_columns=2,
    )
    lines += [
        "",
        f"A step is labelled only when an exact test shows its true size above delta = {parameters['delta']} "
        f"(the null: a step of at most delta), Holm-adjusted over the steps of a curve at a false-positive rate of "
        f"{parameters['false_positive_rate']}: a curve with no true step of delta or more (ramps, plateaus, steps "
        f"just under delta) gets a label at most that often. Near zero = the potential's upper confidence bound is "
        f"<= {parameters['near_zero']} (it takes 29 samples at 0 correct); late fraction = "
        f"{parameters['late_fraction']}. Adaptive rows use tests that hold under their stopping. Labels are tried "
        "in the order "
        "lucky guess, late spike, tangent, insight; the first that holds wins. The answer fraction is the first "
        "prefix that states the reference answer. Per problem: `summary.json` `problems` (step, fraction, confidence).",
    ]
    if "receivers" in files:
        lines += receivers_markdown(summary, files["receivers"])
    lines += groups_markdown(summary.get("groups") or {}, float(summary["confidence"]))
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
    lines += ["", f"Per-row data: `{files['results_csv']}`; all numbers: `{files['summary_json']}`.", ""]
    return "\n".join(lines)
