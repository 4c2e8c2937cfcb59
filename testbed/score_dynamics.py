"""Scores the report's trace-dynamics labels against the testbed's ground truth.

    python -m testbed.score_dynamics runs/demo --data datasets/testbed-demo.jsonl
    python -m testbed.score_dynamics evaluation.json --data datasets/testbed-hard.jsonl

The first argument is a results folder (its ``summary.json``) or the ``--output`` file of
``testbed.evaluate`` (its ``summary``: the same analysis).

Each testbed problem records where its events sit in the strong model's reasoning
(``metadata.positions``, as token fractions). The truth of a label, per problem:

* ``insight``: a problem with an insight step (not a lucky guess) whose insight ends before the
  report's ``late_fraction`` (a later one is a late spike);
* ``late_spike``: the insight ends at or after ``late_fraction``;
* ``tangent``: the strong model wrote a wrong step and corrected it;
* ``lucky_guess``: the strong model jumped to the answer without the work.

A predicted ``insight`` or ``late_spike`` counts as located when its fraction is the first
measured fraction at or after the insight's end (the first prefix that holds the insight).
Only problems the strong model solved are scored: their CoT is the one the truth describes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABELS = ("insight", "late_spike", "tangent", "lucky_guess")


@dataclass(frozen=True)
class LabelScore:
    label: str
    predicted: int
    true: int
    hits: int
    located: int

    @property
    def precision(self) -> float | None:
        return self.hits / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.hits / self.true if self.true else None


def true_labels(metadata: Mapping[str, Any], late_fraction: float) -> set[str]:
    labels: set[str] = set()
    if metadata.get("lucky_guess"):
        labels.add("lucky_guess")
    if metadata.get("tangent"):
        labels.add("tangent")
    insight = (metadata.get("positions") or {}).get("insight")
    if insight is not None and not metadata.get("lucky_guess"):
        labels.add("late_spike" if insight["fraction"] >= late_fraction else "insight")
    return labels


def _first_fraction_at_or_after(fractions: Sequence[float], position: float) -> float | None:
    return next((fraction for fraction in sorted(fractions) if fraction >= position - 1e-9), None)


def score(summary: Mapping[str, Any], truth: Mapping[str, Mapping[str, Any]]) -> list[LabelScore]:
    late_fraction = float(summary["dynamics"]["parameters"]["late_fraction"])
    counts = {label: [0, 0, 0, 0] for label in LABELS}  # predicted, true, hits, located
    for problem in summary["problems"]:
        metadata = truth.get(problem["problem_id"])
        if metadata is None or not problem.get("strong_correct"):
            continue
        predicted = problem["dynamics"]["label"]
        expected = true_labels(metadata, late_fraction)
        fractions = [point["fraction"] for point in problem["points"]]
        insight = (metadata.get("positions") or {}).get("insight")
        for label in LABELS:
            counts[label][0] += predicted == label
            counts[label][1] += label in expected
            if predicted == label and label in expected:
                counts[label][2] += 1
                if label in ("insight", "late_spike") and insight is not None:
                    where = _first_fraction_at_or_after(fractions, insight["fraction"])
                    counts[label][3] += problem["dynamics"]["fraction"] == where
    return [LabelScore(label, *counts[label]) for label in LABELS]


def read_summary(path: Path) -> dict[str, Any]:
    """The analysis of a results folder (summary.json) or of testbed.evaluate's output file."""
    if path.is_dir():
        return dict(json.loads((path / "summary.json").read_text(encoding="utf-8")))
    return dict(json.loads(path.read_text(encoding="utf-8"))["summary"])


def _read_truth(path: Path) -> dict[str, dict[str, Any]]:
    with path.open(encoding="utf-8") as file:
        records = [json.loads(line) for line in file if line.strip()]
    return {str(record["id"]): record.get("metadata") or {} for record in records}


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_scores(scores: Sequence[LabelScore]) -> str:
    lines = [
        "| label | predicted | true | hits | precision | recall | located |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in scores:
        located = f"{item.located}/{item.hits}" if item.label in ("insight", "late_spike") else "-"
        lines.append(
            f"| {item.label} | {item.predicted} | {item.true} | {item.hits} | {_ratio(item.precision)}"
            f" | {_ratio(item.recall)} | {located} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="results folder (its summary.json) or testbed.evaluate's --output file")
    parser.add_argument("--data", type=Path, required=True, help="the testbed dataset the run used")
    args = parser.parse_args(argv)
    summary = read_summary(args.run)
    print(format_scores(score(summary, _read_truth(args.data))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
