"""The report of a cut-point search run: curves marked as searched, the per-problem search table
and summary.json's ``cut_search``, replayed from the rows."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cot_transfer.domain.cut_search import CutSearch
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.experiment.report import write_report
from cot_transfer.experiment.search_report import SEARCH_KEY

N = 16
SETTINGS_HASH = "5ea4c400"
TAU = Thresholds(0.0, 0.5)
# Problem -> its curve by cut and how many waves its search got to draw before the run stopped.
CURVES: dict[str, tuple[list[float], int | None]] = {
    "step": ([0.0] * 9 + [0.75] * 12, None),  # 21 cuts, unlocks and jumps at 9, finished
    "cut short": ([0.0] * 6 + [1.0] * 5, 1),  # 11 cuts, only the grid drawn: not finished
}


def probed_rows(curve: Sequence[float], waves: int | None) -> dict[int, int]:
    """Cut -> num_correct of the rows a search over ``curve`` draws in its first ``waves`` waves."""
    search = CutSearch(len(curve), TAU)
    drawn = 0
    while (wave := search.next_wave()) and (waves is None or drawn < waves):
        for cut in wave:
            search.observe(cut, round(curve[cut] * N), N)
        drawn += 1
    return {cut: probe.num_correct for cut, probe in search.probes.items()}


def write_search_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    run = {
        "fractions": [0.0, 1.0],
        "n_samples": N,
        "thresholds": {"baseline_max_potential": 0.0, "unlock_min_potential": 0.5},
        "grader": "exact",
        "strong_model": "strong-model",
        "weak_model": "weak-model",
        "cut": "search",
        "step_boundary": "line",
        "search": {"grid": 5, "jump_margin": 0.15, "min_jump": 0.2},
        "settings_hash": SETTINGS_HASH,
    }
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    results, strong = [], []
    for pid, (curve, waves) in CURVES.items():
        steps = len(curve) - 1
        cot = "".join(f"Step {index}.\n" for index in range(steps))
        ends = [0, *itertools.accumulate(len(line) for line in cot.splitlines(keepends=True))]
        prefixes = [
            {"fraction": round(end / len(cot), 6), "text": cot[:end], "num_tokens": end, "num_steps": cut}
            for cut, end in enumerate(ends)
        ]
        strong.append(
            {
                "problem_id": pid,
                "cot": cot,
                "answer": "7",
                "correct": True,
                "cot_num_tokens": len(cot),
                "prefixes": prefixes,
                "settings_hash": SETTINGS_HASH,
            }
        )
        for cut, correct in sorted(probed_rows(curve, waves).items()):
            results.append(
                {
                    "problem_id": pid,
                    "fraction": prefixes[cut]["fraction"],
                    "n": N,
                    "num_correct": correct,
                    "potential": correct / N,
                    "prefix_num_tokens": prefixes[cut]["num_tokens"],
                    "cot_num_tokens": len(cot),
                    "num_steps": cut,
                    "answer_in_prefix": False,
                    "answer_stated_in_prefix": False,
                    "settings_hash": SETTINGS_HASH,
                }
            )
    for name, records in (("results.jsonl", results), ("strong.jsonl", strong)):
        (folder / name).write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def search_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    files = write_report(write_search_folder(tmp_path_factory.mktemp("search")))
    return files.report_md.read_text(encoding="utf-8"), json.loads(files.summary_json.read_text(encoding="utf-8"))


def test_summary_holds_the_replayed_search_per_problem(search_report: tuple[str, dict[str, Any]]) -> None:
    _, summary = search_report
    found = {entry["problem_id"]: entry for entry in summary[SEARCH_KEY]}
    assert list(found) == list(CURVES)
    step = found["step"]
    assert (step["receiver"], step["mode"], step["cuts"]) == ("weak-model", "free", 21)
    assert (step["unlock_cut"], step["jump_cut"], step["finished"], step["non_monotone"]) == (9, 9, True, False)
    assert step["jump_rise"] == pytest.approx(0.75)
    assert step["probed"] == sorted(probed_rows(*CURVES["step"]))
    assert 0 < step["unlock_fraction"] < 1 and step["unlock_fraction"] == step["jump_fraction"]
    short = found["cut short"]
    assert short["probed"] == [0, 2, 5, 8, 10] and not short["finished"]
    # The grid alone leaves the crossing's bracket (5, 8) open: no unlock cut yet.
    assert short["unlock_cut"] is None and short["jump_cut"] is None


def test_the_report_marks_the_curves_as_searched_and_counts_the_probes(
    search_report: tuple[str, dict[str, Any]],
) -> None:
    report, summary = search_report
    probed = sum(len(entry["probed"]) for entry in summary[SEARCH_KEY])
    line = f"searched: {probed} of 32 cuts probed ({100 * probed / 32:.1f}%)"
    assert f"| cut points | {line}; rows only at the probed cuts |" in report
    assert (
        f"S{line[1:]} over 2 curves (problem, receiver, mode): this run's curves are **searched, not dense**" in report
    )
    assert "can miss a tangent that dips and recovers between two probes" in report
    assert "(1 not finished: resume the run)" in report
    assert "rows exist only at the probed cuts" in report.split("## Potential")[1].split("##")[0]


def test_the_search_table_has_a_row_per_problem(search_report: tuple[str, dict[str, Any]]) -> None:
    report, summary = search_report
    section = report.split("## Cut-point search")[1]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| problem | receiver | mode | cuts M | probed | unlock cut | largest jump cut |")
    step = next(entry for entry in summary[SEARCH_KEY] if entry["problem_id"] == "step")
    cut = f"9 ({100 * step['unlock_fraction']:.1f}%)"
    assert table[1] == f"| step | weak-model | free | 21 | {len(step['probed'])} | {cut} | {cut} | +0.750 | yes | no |"
    assert table[2] == "| cut short | weak-model | free | 11 | 5 | none | none | n/a | no | no |"


def test_a_run_that_is_not_searched_has_no_search_section(tmp_path: Path) -> None:
    folder = write_search_folder(tmp_path / "run")
    run = json.loads((folder / "run.json").read_text())
    for key in ("cut", "search"):
        del run[key]
    (folder / "run.json").write_text(json.dumps(run))
    files = write_report(folder)
    assert SEARCH_KEY not in json.loads(files.summary_json.read_text())
    report = files.report_md.read_text()
    assert "Cut-point search" not in report and "searched" not in report
