"""The receivers of a run side by side: self-potential beside transfer, in each answer mode.

``summary.json`` keeps its top-level fields for the run's first weak receiver in free mode;
``receivers`` holds one analysis per receiver and mode beside them,
``receivers[name][mode]`` (the one analysis, ``cot_transfer.domain.analysis``, without the
per-problem rows, which are the top-level ``problems`` for the primary receiver). A receiver
that is the strong model measures its *self-potential*; any other receiver, *transfer*.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cot_transfer.domain.analysis import unlock_statuses
from cot_transfer.domain.comparison import compare_unlocks
from cot_transfer.domain.receivers import ANSWER_MODES, FORCE_ANSWER
from cot_transfer.experiment.markdown_tables import bounds, markdown_table
from cot_transfer.experiment.plots import with_gaps
from cot_transfer.experiment.results_folder import RunResults

SELF_POTENTIAL = "self-potential"
TRANSFER = "transfer"
_PLOT_DPI = 120


def receiver_name(run: RunResults, receiver: str) -> str:
    """The served name of a row's receiver ("" is the weak model of a run that named none)."""
    return receiver or str(run.settings.get("weak_model") or "weak")


def receiver_blocks(run: RunResults, confidence: float) -> dict[str, dict[str, dict[str, Any]]]:
    """``summary.json``'s ``receivers``: name -> mode -> that receiver's analysis."""
    strong_model = run.settings.get("strong_model")
    blocks: dict[str, dict[str, dict[str, Any]]] = {}
    for (receiver, mode), rows in _ordered(run):
        analysis = run.analyze(rows, confidence=confidence, with_problems=False)
        block = {key: value for key, value in analysis.to_dict().items() if key not in ("problems", "intervals")}
        name = receiver_name(run, receiver)
        block["measures"] = SELF_POTENTIAL if name == strong_model else TRANSFER
        block["primary"] = (receiver, mode) == run.primary
        blocks.setdefault(name, {})[mode] = block
    return blocks


def _ordered(run: RunResults) -> list[tuple[tuple[str, str], Any]]:
    return sorted(run.receiver_rows.items(), key=lambda item: (item[0] != run.primary, ANSWER_MODES.index(item[0][1])))


def receiver_comparisons(run: RunResults, confidence: float) -> list[dict[str, Any]]:
    """``summary.json``'s ``receiver_comparisons``: each pair of (receiver, mode) blocks compared
    on the problems both leave unsolved at baseline (``cot_transfer.domain.comparison``)."""
    blocks = [
        (
            receiver_name(run, receiver),
            mode,
            unlock_statuses(rows, thresholds=run.thresholds, fractions=run.fractions, excluded_problems=run.excluded),
        )
        for (receiver, mode), rows in _ordered(run)
    ]
    comparisons = []
    for index, (first_name, first_mode, first) in enumerate(blocks):
        for second_name, second_mode, second in blocks[index + 1 :]:
            comparisons.append(
                {
                    "first": {"receiver": first_name, "mode": first_mode},
                    "second": {"receiver": second_name, "mode": second_mode},
                    "per_fraction": [entry.to_dict() for entry in compare_unlocks(first, second, confidence)],
                }
            )
    return comparisons


def comparisons_markdown(summary: Mapping[str, Any]) -> list[str]:
    """The paired comparisons' table: difference [interval], Holm-adjusted p, per fraction."""
    comparisons = summary.get("receiver_comparisons") or []
    if not comparisons:
        return []
    level = round(100 * float(summary["confidence"]))
    rows = []
    for comparison in comparisons:
        first, second = comparison["first"], comparison["second"]
        label = f"{first['receiver']} ({first['mode']}) - {second['receiver']} ({second['mode']})"
        for entry in comparison["per_fraction"]:
            interval = entry["difference_interval"]
            rows.append(
                [
                    label,
                    f"{100 * entry['fraction']:.0f}%",
                    str(entry["problems"]),
                    f"{entry['unlocked_by_first_only']} / {entry['unlocked_by_second_only']}",
                    f"{100 * entry['difference']:+.1f} [{100 * interval['low']:+.1f}, {100 * interval['high']:+.1f}]",
                    f"{entry['p_value_holm']:.3g}",
                ]
            )
    lines = ["", "### Receivers compared on the same problems", ""]
    lines += markdown_table(
        [
            "first - second",
            "fraction",
            "paired problems",
            "unlocked by one only (first / second)",
            f"difference, points [{level}% CI]",
            "p (McNemar exact, Holm over fractions)",
        ],
        rows,
    )
    lines += [
        "",
        "Paired problems: unsolved at baseline for both and with a result for both at that fraction. The difference"
        " is the first's unlock rate minus the second's on those problems (Newcombe's paired interval); the test"
        " counts the problems only one of them unlocks.",
    ]
    return lines


def _columns(summary: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    return [
        (name, mode, block) for name, modes in (summary.get("receivers") or {}).items() for mode, block in modes.items()
    ]


def _true_cells(block: Mapping[str, Any]) -> list[str]:
    """The true unlock rate's bounds at the block's last fraction (``cot_transfer.domain.true_rate``)."""
    final = block["per_fraction"][-1] if block["per_fraction"] else {}
    return [
        bounds(final.get("true_unlock_rate_interval")),
        bounds(final.get("true_unlock_rate_measured_unsolved_interval")),
    ]


def _cell(stats: Mapping[str, Any]) -> str:
    mean = stats.get("mean_potential")
    rate = stats.get("unlock_rate")
    potential = "n/a" if mean is None else f"{mean:.3f}"
    unlock = "n/a" if rate is None else f"{100 * rate:.0f}%"
    return f"{potential} / {unlock}"


def receivers_markdown(summary: Mapping[str, Any], plot_file: str) -> list[str]:
    """The report's side-by-side section; nothing for a run of one receiver in one mode."""
    columns = _columns(summary)
    if len(columns) < 2:
        return []
    header = ["fraction", *(f"{name} ({block['measures']}, {mode})" for name, mode, block in columns)]
    rows = []
    for index, fraction in enumerate(summary["fractions"]):
        cells = [f"{100 * fraction:.0f}%"]
        for _, _, block in columns:
            per_fraction = block["per_fraction"]
            cells.append(_cell(per_fraction[index]) if index < len(per_fraction) else "n/a")
        rows.append(cells)
    lines = ["", "## Receivers side by side", ""]
    lines += markdown_table(
        [
            "receiver",
            "measures",
            "mode",
            "problems",
            "unsolved at baseline",
            "true unlock rate, full CoT",
            "true, of its measured-unsolved",
        ],
        [
            [
                name,
                block["measures"],
                mode,
                str(block["n_problems"]),
                str(block["baseline_unsolved"]),
                *_true_cells(block),
            ]
            for name, mode, block in columns
        ],
        text_columns=3,
    )
    lines += ["", "Each cell: mean potential / unlock rate.", ""]
    lines += markdown_table(header, rows)
    lines += [
        "",
        "Every receiver completes the same prefixes of the same strong CoTs. *Self-potential*: the strong model"
        " completes its own CoT; *transfer*: another model completes it. *free*: the receiver continues the"
        " reasoning; *force_answer*: the prefix is closed and the receiver answers at once, with a short budget."
        " The sections above are the primary receiver's (marked `primary` in `summary.json` `receivers`).",
        "",
        f"![Potential by receiver]({plot_file})",
    ]
    return lines + comparisons_markdown(summary)


def plot_receivers(summary: Mapping[str, Any], path: Path) -> None:
    """Mean potential by fraction, one curve per receiver and mode (dashed: force_answer)."""
    figure = Figure(figsize=(8, 5.6), layout="constrained")
    axes = figure.add_subplot()
    ticks = [index / 10 for index in range(11)]
    axes.set_xticks(ticks, [f"{round(100 * tick)}%" for tick in ticks])
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("CoT prefix in the prompt (share of the strong CoT's tokens)")
    axes.set_ylabel("mean potential")
    axes.grid(alpha=0.3)
    fractions = summary["fractions"]
    for name, mode, block in _columns(summary):
        means = with_gaps([stats["mean_potential"] for stats in block["per_fraction"]])
        style = "o--" if mode == FORCE_ANSWER else "o-"
        axes.plot(fractions[: len(means)], means, style, label=f"{name} ({block['measures']}, {mode})")
    if axes.get_legend_handles_labels()[0]:
        figure.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    else:
        axes.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=axes.transAxes, color="grey")
    figure.savefig(path, dpi=_PLOT_DPI)  # the format by the suffix: the report writes PNG, SVG and PDF


def receivers_lines(summary: Mapping[str, Any]) -> list[str]:
    """One terminal line per receiver and mode, at the whole CoT; none for a single one."""
    columns = _columns(summary)
    if len(columns) < 2:
        return []
    lines = ["receivers at the full CoT (mean potential / unlock rate):"]
    for name, mode, block in columns:
        final = block["per_fraction"][-1] if block["per_fraction"] else {}
        lines.append(f"  {name} ({block['measures']}, {mode}): {_cell(final)}")
    return lines
