"""Results folders as pandas DataFrames, and a folder's rows as ``results.parquet``.

``load(DIR)`` returns three tables of one run:

- ``results``: one row per (problem, fraction, receiver, mode) of ``results.jsonl``, with the
  row's potential and its interval (``potential_low`` / ``potential_high``: Wilson, or the
  confidence sequence for an adaptive row), the analysis of the row (``unlocked``,
  ``p_unlocked``) and of its problem for that receiver (``baseline_unsolved``,
  ``first_unlock_fraction``, the ``dynamics`` label, ``excluded``: why it is left out of the
  statistics), the adaptive ``rounds`` and ``stop_reason``, the leak flags, the answer counts (a
  list of ``{"answer", "count"}``), the majority answer and its share of the samples
  (``agreement``), the strong model's answer, whether the two agree, the kept completions, the
  step importance of the step that ends at the row's cut (resampling importance with its
  interval, answer shift: ``cot_transfer.domain.step_importance``), and the problem's metadata
  fields with short values (level, subject, ...; named as in ``results.csv``);
- ``strong_cots``: one row per problem of ``strong.jsonl`` (its CoT, answer, correctness, whether it
  was imported);
- ``summary``: one row per (receiver, mode, fraction) of ``summary.json``'s per-fraction tables
  (``measures`` says self-potential or transfer), each interval as ``<name>_low`` / ``<name>_high``.

``load_runs([DIR, ...])`` puts several runs side by side in the same three tables plus ``runs``
(one row per run: models, n, fractions, format, settings hash, provenance where run.json has it),
each row keyed by its ``run`` (the folder's name, or a label given).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cot_transfer.domain.analysis import fraction_key
from cot_transfer.domain.kept_answers import majority
from cot_transfer.domain.step_importance import CutCounts, curve_steps, step_importances_of
from cot_transfer.experiment.results_folder import (
    RESULTS_FILE,
    RUN_FILE,
    STRONG_FILE,
    STRONG_ROLE,
    ReportError,
    load_run,
)

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_FILE = "summary.json"
PARQUET_FILE = "results.parquet"

# The columns the analysis of a receiver's rows gives (``cot_transfer.domain.analysis``).
_ANALYSIS_COLUMNS = (
    "potential_low",
    "potential_high",
    "unlocked",
    "p_unlocked",
    "baseline_unsolved",
    "first_unlock_fraction",
    "dynamics",
    "excluded",
)
RESULT_COLUMNS = (
    "problem_id",
    "receiver",
    "mode",
    "fraction",
    "prefix_num_tokens",
    "cot_num_tokens",
    "num_steps",
    "n",
    "num_correct",
    "potential",
    *_ANALYSIS_COLUMNS,
    "rounds",
    "stop_reason",
    "answer_in_prefix",
    "answer_stated_in_prefix",
    "answer_counts",
    "majority_answer",
    "agreement",
    "strong_answer",
    "majority_is_strong_answer",
    "completions",
    # The step that ends at this row's cut (from the problem's previous cut for this receiver and
    # mode): ``cot_transfer.domain.step_importance``; empty at the first cut.
    "step_from_fraction",
    "step_importance",
    "step_importance_low",
    "step_importance_high",
    "answer_shift",
)
STRONG_COLUMNS = (
    "problem_id",
    "answer",
    "correct",
    "cot_num_tokens",
    "num_prefixes",
    "finish_reason",
    "reasoning_truncated",
    "imported",
    "cot",
    "final_text",
)


@dataclass(frozen=True)
class RunTables:
    results: pd.DataFrame
    strong_cots: pd.DataFrame
    summary: pd.DataFrame


def load(run_dir: str | Path) -> RunTables:
    """The results folder ``run_dir`` as DataFrames (see the module's docstring)."""
    import pandas as pd  # here, not at import: the package is imported by every command

    folder = Path(run_dir)
    if not (folder / RUN_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a results folder: it has no {RUN_FILE}")
    run = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    strong = strong_records(folder, run)
    return RunTables(
        results=results_frame(folder, run, strong),
        strong_cots=pd.DataFrame([_strong_row(record) for record in strong.values()], columns=list(STRONG_COLUMNS)),
        summary=summary_frame(folder, run),
    )


def write_results_parquet(run_dir: str | Path) -> Path:
    """Writes the folder's ``results`` table to ``results.parquet`` (replacing it) and returns its path."""
    folder = Path(run_dir)
    run = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    frame = results_frame(folder, run, strong_records(folder, run))
    target = folder / PARQUET_FILE
    temporary = target.with_name(f".{target.name}.tmp")
    frame.to_parquet(temporary, engine="pyarrow", index=False)
    temporary.replace(target)
    return target


def _records(path: Path, run: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The complete JSON lines of ``path`` written for this run (by its settings hash)."""
    if not path.is_file():
        return
    wanted = run.get("settings_hash")
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: the runner rewrites it on resume
            if wanted is None or record.get("settings_hash") == wanted:
                yield record


def strong_records(folder: Path, run: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {record["problem_id"]: record for record in _records(folder / STRONG_FILE, run)}


def _strong_row(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "problem_id": record["problem_id"],
        "answer": record.get("answer"),
        "correct": bool(record.get("correct")),
        "cot_num_tokens": int(record.get("cot_num_tokens", 0)),
        "num_prefixes": len(record.get("prefixes", ())),
        "finish_reason": record.get("finish_reason", ""),
        "reasoning_truncated": bool(record.get("reasoning_truncated", False)),
        "imported": bool(record.get("imported", False)),
        "cot": record.get("cot", ""),
        "final_text": record.get("final_text", ""),
    }


def _potential(record: Mapping[str, Any]) -> float | None:
    """FractionResult.potential: an adaptive row's Rao-Blackwell estimate, else num_correct / n."""
    if record.get("rao_blackwell_potential") is not None:
        return float(record["rao_blackwell_potential"])
    return int(record["num_correct"]) / int(record["n"]) if record["n"] else None


def results_frame(folder: Path, run: Mapping[str, Any], strong: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    weak_model = str(run.get("weak_model") or "weak")
    judged = _row_analysis(folder)
    named = bool(run.get("receivers"))
    rows = []
    for record in _records(folder / RESULTS_FILE, run):
        # A folder from before receivers marks the strong model's self-potential rows with a role.
        strong_row = record.get("role") == STRONG_ROLE
        key = (record["problem_id"], (record.get("receiver") or "") if named else "", record.get("mode", "free"))
        analysed = judged.get((*key, fraction_key(record["fraction"]))) if not strong_row else None
        lenient, strict = _stored_leak_flags(record) if analysed is None else analysed["leak_flags"]
        counts = [(str(answer), int(count)) for answer, count in record.get("answer_counts", ())]
        top = majority(counts)
        strong_answer = strong.get(record["problem_id"], {}).get("answer")
        rows.append(
            {
                **dict.fromkeys(_ANALYSIS_COLUMNS),
                **({} if analysed is None else analysed["columns"]),
                "problem_id": record["problem_id"],
                # "" is the weak model: a run that named no receivers.
                "receiver": record.get("receiver") or (str(run.get("strong_model")) if strong_row else weak_model),
                "mode": record.get("mode", "free"),
                "fraction": float(record["fraction"]),
                "prefix_num_tokens": int(record["prefix_num_tokens"]),
                "cot_num_tokens": int(record["cot_num_tokens"]),
                "num_steps": int(record.get("num_steps", 0)),
                "n": int(record["n"]),
                "num_correct": int(record["num_correct"]),
                "potential": _potential(record),
                "rounds": int(record.get("rounds") or 0),
                "stop_reason": str(record.get("stop_reason") or ""),
                "answer_in_prefix": lenient,
                "answer_stated_in_prefix": strict,
                "answer_counts": [{"answer": answer, "count": count} for answer, count in counts],
                "majority_answer": None if top is None else top.answer,
                "agreement": None if top is None else top.agreement,
                "strong_answer": strong_answer,
                "majority_is_strong_answer": None
                if top is None or strong_answer is None
                else top.answer == strong_answer,
                "completions": [dict(completion) for completion in record.get("completions", ())],
            }
        )
    frame = pd.DataFrame(_with_step_importance(rows), columns=list(RESULT_COLUMNS))
    _with_intervals_where_missing(frame, run)
    return _with_metadata(frame, folder)


def _row_analysis(folder: Path) -> dict[tuple[str, str, str, float], dict[str, Any]]:
    """Per row of each receiver: its leak flags as the report reads them (an old folder's judged
    again from its prefix texts, so the tables and summary.json agree) and the analysis columns,
    from the same ``analyze`` the report runs, once per (receiver, mode)."""
    try:
        run = load_run(folder)
    except (ReportError, OSError):
        return {}
    analysed: dict[tuple[str, str, str, float], dict[str, Any]] = {}
    for (receiver, mode), rows in run.receiver_rows.items():
        analysis = run.analyze(rows)
        problems = {problem.problem_id: problem for problem in analysis.problems}
        for row in rows:
            problem = problems.get(row.problem_id)
            point = None if problem is None else next((p for p in problem.points if p.fraction == row.fraction), None)
            columns: dict[str, Any] = {"excluded": run.excluded.get(row.problem_id) or None}
            if problem is not None and point is not None:
                columns.update(
                    potential_low=point.potential_low,
                    potential_high=point.potential_high,
                    unlocked=point.unlocked,
                    p_unlocked=point.p_unlocked,
                    baseline_unsolved=problem.baseline_unsolved,
                    first_unlock_fraction=problem.first_unlock_fraction,
                    dynamics=problem.dynamics.label.value,
                )
            analysed[(row.problem_id, receiver, mode, row.fraction)] = {
                "leak_flags": (row.answer_in_prefix, row.answer_stated_in_prefix),
                "columns": columns,
            }
    return analysed


def _with_intervals_where_missing(frame: pd.DataFrame, run: Mapping[str, Any]) -> None:
    """Rows the analysis leaves out (excluded problems, an old folder's self-potential rows) still
    get their own potential interval."""
    from cot_transfer.domain.sequential_estimates import row_potential_intervals
    from cot_transfer.domain.statistics import DEFAULT_CONFIDENCE

    missing = frame["potential_low"].isna() & (frame["n"] > 0)
    if not missing.any():
        return
    part = frame.loc[missing]
    low, high = row_potential_intervals(
        part["num_correct"].to_numpy(), part["n"].to_numpy(), (part["rounds"] > 0).to_numpy(), DEFAULT_CONFIDENCE
    )
    frame.loc[missing, "potential_low"] = low
    frame.loc[missing, "potential_high"] = high


def _with_metadata(frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """The problems' metadata fields with short values as columns, named as in results.csv."""
    from cot_transfer.experiment.groups import metadata_columns, run_metadata

    metadata = run_metadata(folder)
    for field, column in metadata_columns(metadata, taken=set(frame.columns)).items():
        values = [metadata.get(problem_id, {}).get(field) for problem_id in frame["problem_id"]]
        kinds = {type(value) for value in values if value is not None}
        # One type per parquet column: a field that mixes 5 and "5" (CSV cells) is text.
        frame[column] = values if len(kinds) <= 1 else [None if value is None else str(value) for value in values]
    return frame


def _stored_leak_flags(record: Mapping[str, Any]) -> tuple[bool | None, bool | None]:
    """The flags as written; a row from before the strict flag only knows a True (see results_folder)."""
    lenient = record.get("answer_in_prefix")
    if "answer_stated_in_prefix" in record:
        return lenient, record.get("answer_stated_in_prefix")
    return (True, True) if lenient is True else (None, None)


def _with_step_importance(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with the importance of the step that ends at its cut, per problem, receiver and mode."""
    curves: dict[tuple[str, str, str], dict[float, dict[str, Any]]] = {}
    for row in rows:
        row.update(dict.fromkeys(RESULT_COLUMNS[RESULT_COLUMNS.index("step_from_fraction") :]))
        curves.setdefault((row["problem_id"], row["receiver"], row["mode"]), {})[row["fraction"]] = row
    pairs = []
    for by_fraction in curves.values():
        cuts = [
            CutCounts(
                fraction=row["fraction"],
                n=row["n"],
                num_correct=row["num_correct"],
                num_steps=row["num_steps"],
                answer_counts=tuple((item["answer"], item["count"]) for item in row["answer_counts"]),
            )
            for row in by_fraction.values()
        ]
        pairs += [(by_fraction, before, after) for before, after in curve_steps(cuts)]
    steps = step_importances_of([(0, before, after) for _, before, after in pairs])
    for (by_fraction, _, _), step in zip(pairs, steps, strict=True):
        by_fraction[step.to_fraction].update(
            step_from_fraction=step.from_fraction,
            step_importance=step.importance,
            step_importance_low=step.importance_low,
            step_importance_high=step.importance_high,
            answer_shift=step.answer_shift,
        )
    return rows


def summary_frame(folder: Path, run: Mapping[str, Any]) -> pd.DataFrame:
    import pandas as pd

    path = folder / SUMMARY_FILE
    if not path.is_file():
        return pd.DataFrame(columns=["receiver", "mode", "measures", "fraction"])
    summary = json.loads(path.read_text(encoding="utf-8"))
    blocks: list[tuple[str, str, str, Mapping[str, Any]]] = []
    for receiver, modes in (summary.get("receivers") or {}).items():
        for mode, block in modes.items():
            blocks.append((receiver, mode, str(block.get("measures", "")), block))
    if not blocks:  # a folder from before receivers: the weak model, free
        blocks.append((str(run.get("weak_model") or "weak"), "free", "transfer", summary))
    rows = [
        {"receiver": receiver, "mode": mode, "measures": measures, **_flat(stats)}
        for receiver, mode, measures, block in blocks
        for stats in block.get("per_fraction", ())
    ]
    return pd.DataFrame(rows)


def _flat(stats: Mapping[str, Any]) -> dict[str, Any]:
    """``stats`` with each interval (``{"low", "high"}`` or ``[low, high]``) as two columns,
    ``<name>_low`` and ``<name>_high`` (``mean_potential_interval`` -> ``mean_potential_low``)."""
    flat: dict[str, Any] = {}
    for key, value in stats.items():
        name = key.removesuffix("_interval")
        if isinstance(value, Mapping) and set(value) == {"low", "high"}:
            flat.update({f"{name}_low": value["low"], f"{name}_high": value["high"]})
        elif key.endswith("_interval") and (value is None or isinstance(value, list | tuple)):
            low, high = value if value is not None else (None, None)
            flat.update({f"{name}_low": low, f"{name}_high": high})
        else:
            flat[key] = value
    return flat


# ---------------------------------------------------------------------------- several runs

# run.json's keys that describe a run, as the ``runs`` table's columns (lists as text).
_RUN_KEYS = (
    "strong_model",
    "weak_model",
    "receivers",
    "modes",
    "n_samples",
    "fractions",
    "grader",
    "cut",
    "step_boundary",
    "settings_hash",
    "problems_path",
)
# provenance's keys that a comparison needs (the full record stays in run.json).
_PROVENANCE_KEYS = ("started_at", "ended_at", "wall_time_s", "generated_tokens_complete")


@dataclass(frozen=True)
class RunsTables:
    """Several runs side by side: every table has a ``run`` column (see ``load_runs``)."""

    results: pd.DataFrame
    problems: pd.DataFrame
    runs: pd.DataFrame
    summary: pd.DataFrame


def load_runs(run_dirs: Sequence[str | Path] | Mapping[str, str | Path]) -> RunsTables:
    """Several results folders as one table per level, each row keyed by its ``run``:

    - ``results``: the (run, problem, fraction, receiver, mode) rows of ``load(DIR).results``;
    - ``problems``: one row per (run, problem): the strong model's CoT (answer, correctness,
      length, imported) and the problem's metadata fields;
    - ``runs``: one row per run from its ``run.json``: models, receivers, modes, ``n_samples``,
      fractions, grader, cut, adaptive plan, dataset format and selection, thresholds, settings
      hash and, where recorded, provenance (times, wall time, tool version and commit, samples
      drawn and tokens generated per model);
    - ``summary``: the per-fraction summaries.

    ``run_dirs`` is a list of folders (each run named by its folder's name, made unique) or a
    mapping of label to folder.
    """
    import pandas as pd

    labelled = dict(run_dirs) if isinstance(run_dirs, Mapping) else _labels([Path(d) for d in run_dirs])
    if not labelled:
        raise ValueError("load_runs: give at least one results folder")
    results, problems, runs, summaries = [], [], [], []
    for label, run_dir in labelled.items():
        folder = Path(run_dir)
        tables = load(folder)
        run = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        results.append(tables.results.assign(run=label))
        problem_rows = _with_metadata(tables.strong_cots.drop(columns=["cot", "final_text"]), folder)
        problems.append(problem_rows.assign(run=label))
        summaries.append(tables.summary.assign(run=label))
        runs.append({"run": label, "path": str(folder), **_run_row(run)})

    def stacked(frames: list[pd.DataFrame]) -> pd.DataFrame:
        frames = [frame for frame in frames if not frame.empty] or frames[:1]
        frame = pd.concat(frames, ignore_index=True)
        return frame[["run", *[column for column in frame.columns if column != "run"]]]

    return RunsTables(
        results=stacked(results), problems=stacked(problems), runs=pd.DataFrame(runs), summary=stacked(summaries)
    )


def _labels(folders: Sequence[Path]) -> dict[str, Path]:
    labels: dict[str, Path] = {}
    for folder in folders:
        label, number = folder.name or str(folder), 2
        while label in labels:
            label, number = f"{folder.name}-{number}", number + 1
        labels[label] = folder
    return labels


def _run_row(run: Mapping[str, Any]) -> dict[str, Any]:
    def text(value: Any) -> Any:
        return ",".join(map(str, value)) if isinstance(value, list | tuple) else value

    row: dict[str, Any] = {key: text(run.get(key)) for key in _RUN_KEYS}
    plan = run.get("sampling_plan") or {}
    row.update(
        adaptive=bool(plan),
        stopping_rule=plan.get("rule"),
        tau0=(run.get("thresholds") or {}).get("baseline_max_potential"),
        tau=(run.get("thresholds") or {}).get("unlock_min_potential"),
        temperature=(run.get("weak_sampling") or {}).get("temperature"),
        n_problems=len(run.get("problem_ids") or ()),
    )
    dataset = run.get("dataset") or {}
    selection = dataset.get("selection") or {}
    row.update(
        format=dataset.get("format"),
        group_by=text(dataset.get("group_by")),
        sample=selection.get("sample"),
        sample_seed=selection.get("seed") if selection.get("sample") is not None else None,
        ids=len(selection.get("ids") or ()) or None,
    )
    provenance = run.get("provenance") or {}
    row.update({key: provenance.get(key) for key in _PROVENANCE_KEYS})
    tool = provenance.get("tool") or {}
    row.update(tool_version=tool.get("version"), git_commit=tool.get("git_commit"))
    for kind in ("samples_drawn", "generated_tokens"):
        for model, count in (provenance.get(kind) or {}).items():
            row[f"{kind}:{model}"] = count
    return row
