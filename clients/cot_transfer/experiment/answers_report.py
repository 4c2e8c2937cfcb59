"""The report's kept-answers section: each row's majority answer and its share of the samples
(agreement), with the rows whose majority answer is the strong model's own answer flagged."""

from __future__ import annotations

import json
from pathlib import Path

from cot_transfer.experiment.load import results_frame, strong_records
from cot_transfer.experiment.markdown import markdown_table
from cot_transfer.experiment.results_folder import RUN_FILE

# report.md lists at most this many rows; results.parquet and load() hold all of them.
MAX_LISTED_ROWS = 200
STRONG_FLAG = "yes"


def kept_answers_markdown(run_dir: Path) -> str:
    """The section's markdown; empty for a folder whose rows kept no answers (an older run)."""
    run = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    frame = results_frame(run_dir, run, strong_records(run_dir, run))
    frame = frame[frame.answer_counts.map(len) > 0]
    if frame.empty:
        return ""
    frame = frame.sort_values(["receiver", "mode", "problem_id", "fraction"])
    flagged = int(frame.majority_is_strong_answer.eq(True).sum())
    lines = [
        "",
        "## Kept answers",
        "",
        "Each row's majority answer among its samples' extracted answers, and its share of all samples"
        " (agreement; samples stating no answer count in the share but never win). Rows marked"
        f" **{STRONG_FLAG}** agree on the strong model's own answer: {flagged} of {len(frame)} rows.",
        "",
    ]
    rows = [
        [
            str(row.receiver),
            str(row.mode),
            str(row.problem_id),
            f"{row.fraction:.3f}",
            "—" if row.majority_answer is None else f"`{row.majority_answer}`",
            "—" if row.agreement is None else f"{row.agreement:.0%}",
            STRONG_FLAG if row.majority_is_strong_answer is True else "",
        ]
        for row in frame.head(MAX_LISTED_ROWS).itertuples()
    ]
    lines += markdown_table(
        ["receiver", "mode", "problem", "fraction", "majority answer", "agreement", "strong's answer"],
        rows,
        text_columns=3,
    )
    if len(frame) > MAX_LISTED_ROWS:
        lines += ["", f"The first {MAX_LISTED_ROWS} of {len(frame)} rows; all are in results.parquet."]
    return "\n".join(lines) + "\n"
