"""``view.html``: one self-contained page to read a run's traces (no CDN, no network).

The page embeds its data as JSON and draws its own SVG (and a canvas heatmap) with the script in
``view.js``. Run level: the unlock curve per receiver with its bands, the mean potential, the
potential heatmap, the groups and the settings. A problem list, sortable and filterable. One
problem: its CoT with every cut marked, steps shaded by importance, the dynamics label at its
step, answer-in-prefix marks, the potential curve per receiver with intervals, and at each cut the
receivers' answer distributions and kept completions.

To stay quick at 500 problems x 11 fractions, the index (one small record per problem) is parsed
at load and each problem's details (CoT, answers, completions) sit in their own JSON block, parsed
only when the problem is opened.
"""

from __future__ import annotations

import functools
import http.server
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cot_transfer.domain.statistics import DEFAULT_CONFIDENCE, potential_intervals
from cot_transfer.experiment.answers_report import primary_of, sampling_settings_rows
from cot_transfer.experiment.datasets import load_run_problems
from cot_transfer.experiment.load import SUMMARY_FILE, results_frame, strong_records
from cot_transfer.experiment.results_folder import RUN_FILE

VIEW_FILE = "view.html"
_PLACEHOLDER = re.compile(r"/\*STYLE\*/|/\*SCRIPT\*/|/\*INDEX\*/|<!--DETAILS-->")
_ASSETS = Path(__file__).with_name("view_assets")
# Completion text shown in the page per completion; the results files keep the whole text.
MAX_COMPLETION_CHARS = 4000


class ViewError(ValueError):
    """The folder cannot be shown: it is not a results folder."""


def _utf16_length(text: str) -> int:
    """The length JavaScript sees (UTF-16 code units), so cut offsets land on the same character."""
    return len(text.encode("utf-16-le")) // 2


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else round(number, 4)


def _pair(interval: Any) -> list[float | None] | None:
    if isinstance(interval, Mapping):
        return [_number(interval.get("low")), _number(interval.get("high"))]
    if isinstance(interval, Sequence) and len(interval) == 2:
        return [_number(interval[0]), _number(interval[1])]
    return None


def _receiver_blocks(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per (receiver, mode) its per-fraction rates with intervals; primary first."""
    blocks = []
    receivers = summary.get("receivers") or {}
    for name, modes in receivers.items():
        for mode, block in modes.items():
            blocks.append((str(name), str(mode), block))
    if not blocks:
        blocks.append((str((summary.get("run") or {}).get("weak_model") or "weak"), "free", summary))
    blocks.sort(key=lambda item: not item[2].get("primary", False))
    out: list[dict[str, Any]] = []
    for name, mode, block in blocks:
        per_fraction = block.get("per_fraction") or []
        series: dict[str, Any] = {"fractions": [_number(stats["fraction"]) for stats in per_fraction]}
        for key in ("unlock_rate", "unlock_rate_without_answer", "any_correct_rate", "mean_potential"):
            series[key] = [_number(stats.get(key)) for stats in per_fraction]
            series[f"{key}_interval"] = [_pair(stats.get(f"{key}_interval")) for stats in per_fraction]
        series["true_unlock_rate_interval"] = [_pair(stats.get("true_unlock_rate_interval")) for stats in per_fraction]
        out.append(
            {
                "name": name,
                "mode": mode,
                "measures": block.get("measures", "transfer"),
                "primary": bool(block.get("primary", len(out) == 0)),
                "baseline_unsolved": block.get("baseline_unsolved"),
                "n_problems": block.get("n_problems"),
                "series": series,
            }
        )
    return out


def _groups(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    groups = []
    for field, breakdown in (summary.get("groups") or {}).items():
        values = []
        for entry in breakdown.get("values") or []:
            per_fraction = entry.get("per_fraction") or []
            values.append(
                {
                    "value": str(entry.get("value")),
                    "n_problems": entry.get("n_problems"),
                    "baseline_unsolved": entry.get("baseline_unsolved"),
                    "fractions": [_number(stats.get("fraction")) for stats in per_fraction],
                    "unlock_rate": [_number(stats.get("unlock_rate")) for stats in per_fraction],
                    "mean_potential": [_number(stats.get("mean_potential")) for stats in per_fraction],
                }
            )
        groups.append({"field": str(field), "values": values})
    return groups


def _cut_offsets(cot: str, prefixes: Sequence[Mapping[str, Any]]) -> dict[float, tuple[int, bool]]:
    """Fraction -> (UTF-16 offset of the cut in the CoT, whether it is exact)."""
    offsets: dict[float, tuple[int, bool]] = {0.0: (0, True)}
    total = _utf16_length(cot)
    for prefix in prefixes:
        fraction = round(float(prefix.get("fraction", 0.0)), 6)
        text = prefix.get("text")
        if isinstance(text, str) and cot.startswith(text):
            offsets[fraction] = (_utf16_length(text), True)
        else:
            offsets[fraction] = (round(fraction * total), False)
    return offsets


def _first_unlock(points: Sequence[tuple[float, float]], tau0: float, tau: float) -> float | None:
    """The first fraction whose potential reaches tau, of a problem unsolved at 0 (else None)."""
    baseline = [potential for fraction, potential in points if fraction == 0.0]
    if not baseline or baseline[0] > tau0:
        return None
    reached = [fraction for fraction, potential in points if fraction > 0.0 and potential >= tau]
    return min(reached) if reached else None


def _completion(completion: Mapping[str, Any]) -> list[Any]:
    text = str(completion.get("text") or "")
    cut = len(text) > MAX_COMPLETION_CHARS
    return [
        text[:MAX_COMPLETION_CHARS] + ("…" if cut else ""),
        completion.get("extracted_answer"),
        bool(completion.get("correct")),
        completion.get("num_tokens"),
        completion.get("finish_reason") or "",
    ]


def view_data(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The page's index (run level and one small record per problem) and each problem's details,
    in the index's order."""
    import pandas as pd  # here, not at import: the CLI imports this module for every command

    folder = Path(run_dir)
    if not (folder / RUN_FILE).is_file():
        raise ViewError(f"{folder} is not a results folder: it has no {RUN_FILE}")
    run = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    summary_path = folder / SUMMARY_FILE
    if not summary_path.is_file():
        raise ViewError(f"{folder} has no {SUMMARY_FILE}: run `cot-transfer report {folder}` first")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    strong = strong_records(folder, run)
    results = results_frame(folder, run, strong)
    problems = {problem.id: problem for problem in load_run_problems(folder) or []}
    thresholds = summary.get("thresholds") or {}
    tau = float(thresholds.get("unlock_min_potential", 0.5))
    tau0 = float(thresholds.get("baseline_max_potential", 0.0))
    confidence = float(summary.get("confidence", DEFAULT_CONFIDENCE))

    receivers = _receiver_blocks(summary)
    weak_model = str(run.get("weak_model") or "weak")
    keys = [(block["name"], block["mode"]) for block in receivers]
    primary = primary_of(summary) or (keys[0] if keys else (weak_model, "free"))
    known = set(keys)
    for key in results[["receiver", "mode"]].drop_duplicates().itertuples(index=False):
        if (str(key[0]), str(key[1])) not in known:
            keys.append((str(key[0]), str(key[1])))
            known.add(keys[-1])
    key_index = {key: index for index, key in enumerate(keys)}
    if not results.empty:
        low, high = potential_intervals(results.num_correct.to_numpy(), results.n.to_numpy(), confidence)
        results = results.assign(low=low, high=high)

    group_fields = [group["field"] for group in _groups(summary)]
    summary_problems = {str(problem["problem_id"]): problem for problem in summary.get("problems") or []}
    ids = list(dict.fromkeys([*run.get("problem_ids", []), *strong, *results.problem_id.astype(str)]))
    by_problem = dict(tuple(results.groupby("problem_id", sort=False))) if not results.empty else {}

    index: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    for problem_id in ids:
        record = strong.get(problem_id, {})
        cot = str(record.get("cot") or "")
        prefixes = record.get("prefixes") or []
        offsets = _cut_offsets(cot, prefixes)
        rows = by_problem.get(problem_id, pd.DataFrame(columns=results.columns))
        fractions = sorted({*offsets, *(round(float(value), 6) for value in rows.fraction)})
        cut_of = {fraction: position for position, fraction in enumerate(fractions)}
        aip_of = {round(float(p.get("fraction", 0.0)), 6): p.get("answer_in_prefix") for p in prefixes}
        steps_of = {round(float(p.get("fraction", 0.0)), 6): p.get("num_steps") for p in prefixes}
        tokens_of = {round(float(p.get("fraction", 0.0)), 6): p.get("num_tokens") for p in prefixes}
        per_receiver: list[dict[str, Any] | None] = [None] * len(keys)
        first_unlock: list[float | None] = [None] * len(keys)
        start: list[float | None] = [None] * len(keys)
        end: list[float | None] = [None] * len(keys)
        jump: list[float | None] = [None] * len(keys)
        heat: list[float | None] = []
        for (receiver, mode), curve in rows.groupby(["receiver", "mode"], sort=False):
            position = key_index[(str(receiver), str(mode))]
            curve = curve.sort_values("fraction")
            points: list[Any] = [None] * len(fractions)
            answers: list[Any] = [None] * len(fractions)
            steps = []
            for row in curve.itertuples():
                cut = cut_of[round(float(row.fraction), 6)]
                if row.answer_in_prefix is not None and aip_of.get(round(float(row.fraction), 6)) is None:
                    aip_of[round(float(row.fraction), 6)] = bool(row.answer_in_prefix)
                points[cut] = [row.n, row.num_correct, _number(row.potential), _number(row.low), _number(row.high)]
                answers[cut] = {
                    "a": [[item["answer"], item["count"]] for item in row.answer_counts],
                    "c": [_completion(completion) for completion in row.completions],
                }
                if row.step_from_fraction is not None and not pd.isna(row.step_from_fraction):
                    steps.append(
                        [
                            cut_of[round(float(row.step_from_fraction), 6)],
                            cut,
                            _number(row.step_importance),
                            _number(row.step_importance_low),
                            _number(row.step_importance_high),
                            _number(row.answer_shift),
                        ]
                    )
            per_receiver[position] = {"pts": points, "rows": answers, "steps": steps}
            curve_points = [
                (round(float(f), 6), float(p)) for f, p in zip(curve.fraction, curve.potential, strict=True)
            ]
            first_unlock[position] = _first_unlock(curve_points, tau0, tau)
            start[position] = _number(curve_points[0][1]) if curve_points and curve_points[0][0] == 0.0 else None
            end[position] = _number(curve_points[-1][1]) if curve_points else None
            jumps = [abs(step[2]) for step in steps if step[2] is not None]
            jump[position] = _number(max(jumps)) if jumps else None
            if (str(receiver), str(mode)) == primary:
                heat = [_number(p) for _, p in curve_points]
        listed = summary_problems.get(problem_id, {})
        dynamics = listed.get("dynamics") or {}
        label = dynamics.get("label")
        label_step = None
        if label and label != "monotonic" and dynamics.get("fraction") is not None:
            to = round(float(dynamics["fraction"]), 6)
            start_fraction = dynamics.get("from_fraction")
            label_step = [
                cut_of.get(round(float(start_fraction), 6)) if start_fraction is not None else None,
                cut_of.get(to),
                _number(dynamics.get("confidence")),
            ]
        if primary in key_index and listed.get("baseline_unsolved") is not None:
            # The analysis's own call for the primary receiver (it also leaves out excluded problems).
            unlocked_at = listed.get("first_unlock_fraction") if listed["baseline_unsolved"] else None
            first_unlock[key_index[primary]] = _number(unlocked_at)
        metadata = problems[problem_id].metadata if problem_id in problems else {}
        aip_cuts = [cut_of[f] for f, stated in aip_of.items() if stated and f in cut_of]
        index.append(
            {
                "id": problem_id,
                "g": {field: str(metadata[field]) for field in group_fields if field in metadata},
                "label": label,
                "sc": record.get("correct"),
                "unsolved": listed.get("baseline_unsolved"),
                "fu": first_unlock,
                "p0": start,
                "p1": end,
                "jump": jump,
                "heat": heat,
                "aip": min((fractions[cut] for cut in aip_cuts), default=None),
            }
        )
        details.append(
            {
                "problem": problems[problem_id].problem if problem_id in problems else "",
                "reference": problems[problem_id].answer if problem_id in problems else None,
                "strong_answer": record.get("answer"),
                "final_text": record.get("final_text") or "",
                "cot": cot,
                "cot_tokens": record.get("cot_num_tokens"),
                "truncated": bool(record.get("reasoning_truncated")),
                "cuts": [
                    [
                        fraction,
                        offsets.get(fraction, (round(fraction * _utf16_length(cot)), False))[0],
                        offsets.get(fraction, (0, False))[1],
                        steps_of.get(fraction),
                        tokens_of.get(fraction),
                        aip_of.get(fraction),
                    ]
                    for fraction in fractions
                ],
                "label": [label, *label_step] if label_step else None,
                "receivers": per_receiver,
            }
        )
    run_level = {
        "title": folder.resolve().name,
        "strong_model": run.get("strong_model"),
        "weak_model": weak_model,
        "grader": run.get("grader"),
        "n_samples": summary.get("n_samples"),
        "n_problems": summary.get("n_problems"),
        "baseline_unsolved": summary.get("baseline_unsolved"),
        "tau": tau,
        "tau0": tau0,
        "confidence": confidence,
        "cut": run.get("cut") or "token",
        "receivers": [
            {**block, "key": key_index[(block["name"], block["mode"])]}
            for block in receivers
            if (block["name"], block["mode"]) in key_index
        ],
        "keys": [{"name": name, "mode": mode} for name, mode in keys],
        "primary": key_index.get(primary, 0),
        "groups": _groups(summary),
        "settings": [
            ["strong model", str(run.get("strong_model"))],
            ["weak model", weak_model],
            ["grader", str(run.get("grader"))],
            ["samples per prefix (n)", str(summary.get("n_samples"))],
            ["unsolved at baseline", f"potential at 0 ≤ τ0 = {tau0:g}"],
            ["unlocked", f"potential ≥ τ = {tau:g}"],
            ["intervals", f"{round(100 * confidence)}%"],
            *sampling_settings_rows(run),
            ["settings hash", str(run.get("settings_hash"))],
        ],
        "problems": index,
    }
    return run_level, details


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no "</script>", "<!--" or line separators can end it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_view(run_level: Mapping[str, Any], details: Sequence[Mapping[str, Any]]) -> str:
    template = (_ASSETS / "view.html").read_text(encoding="utf-8")
    parts = {
        "/*STYLE*/": (_ASSETS / "view.css").read_text(encoding="utf-8"),
        "/*SCRIPT*/": (_ASSETS / "view.js").read_text(encoding="utf-8"),
        "/*INDEX*/": _script_json(run_level),
        "<!--DETAILS-->": "\n".join(
            f'<script type="application/json" id="problem-{position}">{_script_json(detail)}</script>'
            for position, detail in enumerate(details)
        ),
    }
    # One pass over the template: text put in is never searched again, whatever a CoT holds.
    return _PLACEHOLDER.sub(lambda match: parts[match.group(0)], template)


def write_view(run_dir: str | Path) -> Path:
    """Writes ``view.html`` into the results folder (replacing it atomically) and returns its path."""
    folder = Path(run_dir)
    run_level, details = view_data(folder)
    target = folder / VIEW_FILE
    temporary = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    try:
        temporary.write_text(render_view(run_level, details), encoding="utf-8")
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def serve_view(run_dir: str | Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """An HTTP server on loopback serving the results folder (``view.html`` and the figures);
    the caller runs ``serve_forever``. Port 0 picks a free one."""
    handler = functools.partial(_QuietHandler, directory=str(Path(run_dir).resolve()))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet: the command prints the address itself
        pass
