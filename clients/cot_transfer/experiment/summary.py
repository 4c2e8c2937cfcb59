"""``summary.json`` and ``results.csv`` of a results folder: the one analysis, made JSON-ready."""

from __future__ import annotations

from typing import Any

from cot_transfer.domain.analysis import Analysis, analyze
from cot_transfer.domain.dynamics import DEFAULT_DYNAMICS_PARAMETERS, DynamicsParameters
from cot_transfer.domain.statistics import DEFAULT_CONFIDENCE, potential_intervals
from cot_transfer.experiment.receivers_report import receiver_blocks, receiver_comparisons
from cot_transfer.experiment.results_folder import STRONG_ROLE, WEAK_ROLE, RunResults
from cot_transfer.experiment.sampling_summary import sampling_summary

ANSWER_IN_PREFIX_SOURCE = (
    "each results.jsonl row's answer_in_prefix (lenient: the reference stands anywhere in the prefix as a"
    " number or maths span, or the cut sits inside an answer statement or after its marker) and"
    " answer_stated_in_prefix (strict: stated as an answer), by cot_transfer.domain.leaks over the exact"
    " prefix text; for rows written without both, judged when reading from the prefix texts in strong.jsonl"
)


def analyze_run(
    run: RunResults,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    dynamics_parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS,
) -> Analysis:
    """The weak model's analysis of a run folder."""
    return run.analyze(run.weak_rows, confidence=confidence, dynamics_parameters=dynamics_parameters)


def summary_dict(run: RunResults, analysis: Analysis) -> dict[str, Any]:
    """The content of ``summary.json``: JSON-ready, undefined values as None (null)."""
    summary = analysis.to_dict()
    strong: Analysis | None = None
    if run.strong_rows:
        strong = analyze(
            run.strong_rows,
            thresholds=run.thresholds,
            excluded_problems=run.excluded,
            confidence=analysis.confidence,
            with_dynamics=False,
        )
    summary["n_samples"] = run.n_samples if run.n_samples is not None else analysis.n_samples
    summary["strong_potential"] = (
        None
        if strong is None
        else {
            "fractions": list(strong.fractions),
            "mean": [stats.mean_potential for stats in strong.per_fraction],
            "interval": [
                None
                if stats.mean_potential_interval is None
                else list(stats.mean_potential_interval.to_dict().values())
                for stats in strong.per_fraction
            ],
            "n_problems": strong.n_problems,
        }
    )
    summary["answer_in_prefix_source"] = ANSWER_IN_PREFIX_SOURCE
    summary["answer_in_prefix_judged_rows"] = run.answer_in_prefix_judged
    summary["run"] = {key: run.settings.get(key) for key in ("grader", "strong_model", "weak_model", "settings_hash")}
    summary["ignored"] = run.ignored.to_dict()
    summary["receivers"] = receiver_blocks(run, analysis.confidence)
    summary["receiver_comparisons"] = receiver_comparisons(run, analysis.confidence)
    summary["sampling"] = sampling_summary(run.settings, run.weak_rows)
    return summary


def build_summary(
    run: RunResults,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    dynamics_parameters: DynamicsParameters = DEFAULT_DYNAMICS_PARAMETERS,
) -> dict[str, Any]:
    return summary_dict(run, analyze_run(run, confidence=confidence, dynamics_parameters=dynamics_parameters))


# "receiver" names the model that answered, as results.parquet and the DataFrames do.
CSV_COLUMNS = (
    "problem_id",
    "receiver",
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
    "p_unlocked",
    "answer_in_prefix",
    "answer_stated_in_prefix",
    "excluded",
    "dynamics",
    "dynamics_fraction",
    "dynamics_confidence",
)


def _cell(value: Any) -> Any:
    return "" if value is None else value


def csv_rows(run: RunResults, analysis: Analysis) -> list[dict[str, Any]]:
    """One row per results.jsonl row; the analysis' columns are empty for the strong model's
    rows and for problems left out of the statistics (``excluded`` says why)."""
    problems = {problem.problem_id: problem for problem in analysis.problems}
    strong_name = str(run.settings.get("strong_model") or STRONG_ROLE)
    # The primary receiver; "" is the weak model of a run that named no receivers.
    weak_name = run.primary[0] or str(run.settings.get("weak_model") or WEAK_ROLE)
    rows = []
    strong_low, strong_high = potential_intervals(
        [row.num_correct for row in run.strong_rows] or [0], [row.n for row in run.strong_rows] or [1]
    )
    for index, row in enumerate(run.strong_rows):
        rows.append(_base_row(row, strong_name, float(strong_low[index]), float(strong_high[index])))
    weak = []
    for row in run.weak_rows:
        problem = problems.get(row.problem_id)
        point = None if problem is None else next((p for p in problem.points if p.fraction == row.fraction), None)
        if point is None:
            low, high = potential_intervals([row.num_correct], [row.n], analysis.confidence)
            base = _base_row(row, weak_name, float(low[0]), float(high[0]))
            base["excluded"] = run.excluded.get(row.problem_id, "")
            weak.append(base)
            continue
        assert problem is not None
        base = _base_row(row, weak_name, point.potential_low, point.potential_high)
        base.update(
            baseline_unsolved=_cell(problem.baseline_unsolved),
            unlocked=point.unlocked,
            p_unlocked=_cell(None if point.p_unlocked is None else round(point.p_unlocked, 6)),
            dynamics=problem.dynamics.label.value,
            dynamics_fraction=_cell(problem.dynamics.fraction),
            dynamics_confidence=_cell(
                None if problem.dynamics.confidence is None else round(problem.dynamics.confidence, 6)
            ),
        )
        weak.append(base)
    return weak + rows


def _base_row(row: Any, receiver: str, low: float, high: float) -> dict[str, Any]:
    return {
        **dict.fromkeys(CSV_COLUMNS, ""),
        "problem_id": row.problem_id,
        "receiver": receiver,
        "fraction": row.fraction,
        "n": row.n,
        "num_correct": row.num_correct,
        "potential": round(row.potential, 6),
        "potential_low": round(low, 6),
        "potential_high": round(high, 6),
        "prefix_num_tokens": row.prefix_num_tokens,
        "cot_num_tokens": row.cot_num_tokens,
        "answer_in_prefix": _cell(row.answer_in_prefix),
        "answer_stated_in_prefix": _cell(row.answer_stated_in_prefix),
    }
