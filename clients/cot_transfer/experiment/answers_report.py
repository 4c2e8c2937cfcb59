"""report.md's reading aids: the full sampling settings, the problems worth reading first (the
biggest jumps in potential and the dynamics labels, each linked into ``view.html``), and a line on
the kept answers, whose rows the viewer shows per cut."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cot_transfer.experiment.cut_settings import ALL_COMPLETIONS, kept_completions_from_json
from cot_transfer.experiment.markdown import markdown_table

if TYPE_CHECKING:
    import pandas as pd

# How many of the biggest jumps report.md lists; the viewer sorts them all.
MAX_LISTED_JUMPS = 10
VIEW_FILE = "view.html"
_SAMPLING_FIELDS = (("temperature", "temperature"), ("top_p", "top-p"), ("max_tokens", "max_tokens"), ("seed", "seed"))


def _sampling_value(asked: Mapping[str, Any], effective: Mapping[str, Any], field: str) -> str:
    """The value a request got: as asked, else the server's default (marked so)."""
    if asked.get(field) is not None:
        return f"{asked[field]:g}" if isinstance(asked[field], float) else str(asked[field])
    if effective.get(field) is not None:
        value = effective[field]
        return f"{value:g} (server default)" if isinstance(value, float) else f"{value} (server default)"
    return "unseeded" if field == "seed" else "n/a"


def sampling_settings_rows(run: Mapping[str, Any]) -> list[list[str]]:
    """(setting, value) rows for report.md's settings table, from ``run.json``."""
    service = run.get("service") or {}
    rows: list[list[str]] = []
    for model in ("strong", "weak"):
        asked = run.get(f"{model}_sampling") or {}
        effective = service.get(f"{model}_sampling") or {}
        values = ", ".join(f"{label} {_sampling_value(asked, effective, field)}" for field, label in _SAMPLING_FIELDS)
        rows.append([f"{model} sampling", values])
    rows.append(["fractions", ", ".join(f"{fraction:g}" for fraction in run.get("fractions") or [])])
    cut = str(run.get("cut") or "token")
    rows.append(["cut", cut if cut == "token" else f"{cut} (step boundary: {run.get('step_boundary') or 'line'})"])
    if run.get("receivers"):
        rows.append(["receivers", ", ".join(map(str, run["receivers"]))])
    if run.get("modes"):
        rows.append(["answer modes", ", ".join(map(str, run["modes"]))])
    kept = kept_completions_from_json(run.get("keep_completions"))
    rows.append(
        [
            "completion texts kept per row",
            "all" if kept == ALL_COMPLETIONS else "none" if kept == 0 else f"up to {kept} (distinct answers first)",
        ]
    )
    plan = run.get("sampling_plan")
    if plan:
        rows.append(["adaptive sampling", ", ".join(f"{key} {value}" for key, value in plan.items())])
    return rows


def _view_link(problem_id: str) -> str:
    # Encoded: dataset ids hold slashes, spaces and brackets (MATH's "test/precalculus/807.json").
    return f"[`{problem_id}`]({VIEW_FILE}#problem={quote(problem_id, safe='')})"


def reading_list_markdown(summary: Mapping[str, Any], results: pd.DataFrame) -> list[str]:
    """The problems worth reading first: the steps where the primary receiver's potential jumps
    most, and every problem with a dynamics label other than monotonic."""
    lines = ["", "## Problems worth reading first", ""]
    lines.append(
        f"Open `{VIEW_FILE}` (`cot-transfer view RUN_DIR --serve`) to read each CoT with its cut points, the potential"
        " per receiver and the receivers' answers and completions at each cut; the links below open a problem there."
    )
    primary = primary_of(summary)
    steps = results.dropna(subset=["step_importance"])
    if primary is not None and not steps.empty:
        steps = steps[(steps.receiver == primary[0]) & (steps["mode"] == primary[1])]
    elif not steps.empty:
        first = steps.iloc[0]
        steps = steps[(steps.receiver == first.receiver) & (steps["mode"] == first["mode"])]
    if not steps.empty:
        biggest = steps.loc[steps.step_importance.abs().sort_values(ascending=False, kind="stable").index]
        biggest = biggest.drop_duplicates("problem_id").head(MAX_LISTED_JUMPS)
        level = round(100 * float(summary.get("confidence", 0.95)))
        lines += [
            "",
            f"Biggest jumps (receiver `{biggest.iloc[0].receiver}`): the step between two adjacent cuts with the"
            f" largest change in potential, one per problem, with its {level}% Newcombe interval and the answer"
            " shift (total variation between the answer distributions before and after the step).",
            "",
        ]
        lines += markdown_table(
            ["problem", "step (prefix share)", "potential before → after", "change [CI]", "answer shift"],
            [
                [
                    _view_link(str(row.problem_id)),
                    f"{row.step_from_fraction:.0%} → {row.fraction:.0%}",
                    f"{row.potential - row.step_importance:.2f} → {row.potential:.2f}",
                    f"{row.step_importance:+.2f} [{row.step_importance_low:+.2f}, {row.step_importance_high:+.2f}]",
                    "n/a" if row.answer_shift is None or math.isnan(row.answer_shift) else f"{row.answer_shift:.2f}",
                ]
                for row in biggest.itertuples()
            ],
            text_columns=2,
        )
    labelled = [
        problem
        for problem in summary.get("problems") or []
        if (problem.get("dynamics") or {}).get("label") not in (None, "monotonic")
    ]
    if labelled:
        lines += ["", "Problems with a dynamics label (where the label's step lies):", ""]
        lines += markdown_table(
            ["problem", "label", "step", "confidence"],
            [
                [
                    _view_link(str(problem["problem_id"])),
                    f"`{problem['dynamics']['label']}`",
                    _label_step(problem["dynamics"]),
                    f"{problem['dynamics'].get('confidence', math.nan):.3f}",
                ]
                for problem in sorted(
                    labelled, key=lambda problem: (problem["dynamics"]["label"], problem["problem_id"])
                )
            ],
            text_columns=3,
        )
    return lines


def _label_step(dynamics: Mapping[str, Any]) -> str:
    to = dynamics.get("fraction")
    start = dynamics.get("from_fraction")
    if to is None:
        return "n/a"
    return f"{start:.0%} → {to:.0%}" if start is not None else f"at {to:.0%}"


def kept_answers_line(results: pd.DataFrame) -> list[str]:
    """One line on the kept answers; the rows themselves are in the viewer and results.parquet."""
    kept = results[results.answer_counts.map(len) > 0]
    if kept.empty:
        return []
    flagged = int(kept.majority_is_strong_answer.eq(True).sum())
    return [
        "",
        f"Kept answers: in {flagged} of {len(kept)} rows the receiver's majority answer is the strong model's own"
        f" answer. Each row's answer distribution and kept completions: `{VIEW_FILE}` (per cut) and `results.parquet`.",
    ]


def report_extras_markdown(summary: Mapping[str, Any], results: pd.DataFrame) -> str:
    lines: list[str] = [*reading_list_markdown(summary, results), *kept_answers_line(results)]
    return "\n".join(lines) + "\n"


def primary_of(summary: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (receiver, mode) marked primary in summary.json's ``receivers``: the top-level numbers' own."""
    for name, modes in (summary.get("receivers") or {}).items():
        for mode, block in modes.items():
            if block.get("primary"):
                return str(name), str(mode)
    return None
