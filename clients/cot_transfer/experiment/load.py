"""A results folder as pandas DataFrames, and its rows as ``results.parquet``.

``load(DIR)`` returns three tables:

- ``results``: one row per (problem, fraction, receiver, mode) of ``results.jsonl``, with the
  answer counts (a list of ``{"answer", "count"}``), the majority answer and its share of the
  samples (``agreement``), the strong model's answer, whether the two agree, the kept
  completions, and the step importance of the step that ends at the row's cut (resampling
  importance with its interval, answer shift: ``cot_transfer.domain.step_importance``);
- ``strong_cots``: one row per problem of ``strong.jsonl`` (its CoT, answer, correctness, whether it
  was imported);
- ``summary``: one row per (receiver, mode, fraction) of ``summary.json``'s per-fraction tables
  (``measures`` says self-potential or transfer).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cot_transfer.domain.analysis import fraction_key
from cot_transfer.domain.kept_answers import majority
from cot_transfer.domain.step_importance import CutCounts, curve_steps, step_importances_of
from cot_transfer.experiment.results_folder import RESULTS_FILE, RUN_FILE, STRONG_FILE, ReportError, load_run

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_FILE = "summary.json"
PARQUET_FILE = "results.parquet"

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
    judged = _judged_leak_flags(folder)
    named = bool(run.get("receivers"))
    rows = []
    for record in _records(folder / RESULTS_FILE, run):
        key = (record["problem_id"], (record.get("receiver") or "") if named else "", record.get("mode", "free"))
        lenient, strict = judged.get((*key, fraction_key(record["fraction"])), _stored_leak_flags(record))
        counts = [(str(answer), int(count)) for answer, count in record.get("answer_counts", ())]
        top = majority(counts)
        strong_answer = strong.get(record["problem_id"], {}).get("answer")
        rows.append(
            {
                "problem_id": record["problem_id"],
                # "" is the weak model: a run that named no receivers.
                "receiver": record.get("receiver") or weak_model,
                "mode": record.get("mode", "free"),
                "fraction": float(record["fraction"]),
                "prefix_num_tokens": int(record["prefix_num_tokens"]),
                "cot_num_tokens": int(record["cot_num_tokens"]),
                "num_steps": int(record.get("num_steps", 0)),
                "n": int(record["n"]),
                "num_correct": int(record["num_correct"]),
                "potential": _potential(record),
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
    return pd.DataFrame(_with_step_importance(rows), columns=list(RESULT_COLUMNS))


def _judged_leak_flags(folder: Path) -> dict[tuple[str, str, str, float], tuple[bool | None, bool | None]]:
    """The weak rows' leak flags as the report reads them: an old folder's judged again from its
    prefix texts (``results_folder``), so the tables and summary.json agree."""
    try:
        run = load_run(folder)
    except (ReportError, OSError):
        return {}
    return {
        (row.problem_id, row.receiver, row.mode, row.fraction): (row.answer_in_prefix, row.answer_stated_in_prefix)
        for rows in run.receiver_rows.values()
        for row in rows
    }


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
        {"receiver": receiver, "mode": mode, "measures": measures, **stats}
        for receiver, mode, measures, block in blocks
        for stats in block.get("per_fraction", ())
    ]
    return pd.DataFrame(rows)
