from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cot_transfer.experiment.report import (
    ReportError,
    build_summary,
    format_unlock_table,
    load_run,
    write_report,
)

FRACTIONS = [round(index / 10, 1) for index in range(11)]
N_SAMPLES = 8
SETTINGS_HASH = "f00dfeed"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def weak_counts(*counts: int) -> list[tuple[float, int]]:
    return list(zip(FRACTIONS, counts, strict=True))


# Ten problems, n = 8, tau = 0.5 (4 of 8). Unsolved at baseline: u1..u6; solved: s1..s4.
WEAK = {
    "u1": weak_counts(0, 1, 2, 4, 5, 5, 6, 6, 7, 8, 8),  # unlocks at 0.3, gradual
    "u2": weak_counts(0, 0, 0, 0, 6, 6, 6, 7, 7, 8, 8),  # insight at 0.4
    "u3": weak_counts(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8),  # lucky guess
    "u4": weak_counts(0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 8),  # late spike
    "u5": weak_counts(0, 0, 6, 6, 1, 1, 1, 1, 1, 1, 1),  # tangent, never unlocked at the end
    "u6": weak_counts(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),  # flat
    "s1": weak_counts(8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8),
    "s2": weak_counts(4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7),
    "s3": weak_counts(2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5),
    "s4": weak_counts(1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4),
}


def result_row(problem_id: str, fraction: float, num_correct: int, **extra: Any) -> dict[str, Any]:
    return {
        "problem_id": problem_id,
        "fraction": fraction,
        "n": N_SAMPLES,
        "num_correct": num_correct,
        "potential": num_correct / N_SAMPLES,
        "prefix_num_tokens": int(fraction * 40),
        "cot_num_tokens": 40,
        "settings_hash": SETTINGS_HASH,
        **extra,
    }


def write_run_folder(
    folder: Path,
    weak: Mapping[str, Sequence[tuple[float, int]]] = WEAK,
    *,
    strong_self: Mapping[str, Sequence[tuple[float, int]]] | None = None,
    strong_cots: Mapping[str, str] | None = None,
    extra_result_lines: Sequence[str] = (),
    trailing_text: str = "",
    grader: str = "exact",
    strong_extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """A results folder in the format of the landed runner (run.json, results.jsonl without
    answer_in_prefix, strong.jsonl with the prefixes)."""
    folder.mkdir(parents=True, exist_ok=True)
    run = {
        "fractions": FRACTIONS,
        "n_samples": N_SAMPLES,
        "thresholds": {"baseline_max_potential": 0.0, "unlock_min_potential": 0.5},
        "grader": grader,
        "strong_model": "strong-model",
        "weak_model": "weak-model",
        "settings_hash": SETTINGS_HASH,
    }
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    lines = [json.dumps(result_row(pid, fraction, count)) for pid, points in weak.items() for fraction, count in points]
    for pid, points in (strong_self or {}).items():
        lines += [json.dumps(result_row(pid, fraction, count, role="strong")) for fraction, count in points]
    lines += extra_result_lines
    (folder / "results.jsonl").write_text("".join(f"{line}\n" for line in lines) + trailing_text, encoding="utf-8")
    cots = strong_cots or {}
    strong_lines = []
    for pid in weak:
        # The answer statement fills the last 10% of the text: no earlier prefix is cut inside it.
        cot = cots.get(pid, "Some reasoning. " * 15 + "The answer is \\boxed{7}.")
        # The landed runner's strong.jsonl: asdict(StrongCot) with every prefix, no reasoning fields.
        prefixes = [
            {"fraction": f, "text": cot[: int(f * len(cot))], "num_tokens": int(f * 40), "cot_num_tokens": 40}
            for f in FRACTIONS
        ]
        record = {
            "problem_id": pid,
            "cot": cot,
            "answer": "7",
            "correct": pid != "u6",
            "cot_num_tokens": 40,
            "prefixes": prefixes,
            "settings_hash": SETTINGS_HASH,
        }
        strong_lines.append(json.dumps({**record, **(strong_extra or {}).get(pid, {})}))
    (folder / "strong.jsonl").write_text("".join(f"{line}\n" for line in strong_lines), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    strong_self = {pid: weak_counts(4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 8) for pid in WEAK}
    folder = write_run_folder(
        tmp_path_factory.mktemp("run"), strong_self=strong_self, trailing_text='{"problem_id": "u1", "fract'
    )
    files = write_report(folder)
    return folder, json.loads(files.summary_json.read_text(encoding="utf-8"))


def test_every_file_is_written(full_report: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = full_report
    for name in ("report.md", "summary.json", "results.csv", "unlock_rate.png", "potential.png", "heatmap.png"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob(".*tmp*")), "temporary files left behind"


def test_plots_are_non_trivial_png_files(full_report: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = full_report
    for name in ("unlock_rate.png", "potential.png", "heatmap.png"):
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 20_000, name


def test_summary_has_the_runner_keys_and_the_counts(full_report: tuple[Path, dict[str, Any]]) -> None:
    _, summary = full_report
    assert summary["fractions"] == FRACTIONS
    assert (summary["n_samples"], summary["n_problems"], summary["baseline_unsolved"]) == (N_SAMPLES, 10, 6)
    for key in ("unlocked", "unlock_rate", "weak_potential_mean", "unlock_rate_interval", "any_correct_rate"):
        assert len(summary[key]) == len(FRACTIONS), key
    assert summary["unlocked"] == [0, 0, 1, 2, 2, 2, 2, 2, 2, 3, 4]
    assert summary["unlock_rate"][-1] == pytest.approx(4 / 6)
    assert summary["any_correct_rate"][1] == pytest.approx(1 / 6)
    assert summary["weak_potential_mean"][0] == pytest.approx((8 + 4 + 2 + 1) / 80)
    assert summary["strong_solve_rate"] == pytest.approx(0.9)
    assert summary["thresholds"] == {"baseline_max_potential": 0.0, "unlock_min_potential": 0.5}
    assert summary["run"]["settings_hash"] == SETTINGS_HASH
    assert summary["ignored"]["truncated_last_lines"] == 1


def test_summary_intervals_are_sane(full_report: tuple[Path, dict[str, Any]]) -> None:
    _, summary = full_report
    for stats in summary["per_fraction"]:
        for rate_key, interval_key in (
            ("unlock_rate", "unlock_rate_interval"),
            ("any_correct_rate", "any_correct_rate_interval"),
            ("mean_potential", "mean_potential_interval"),
        ):
            interval = stats[interval_key]
            assert 0.0 <= interval["low"] <= stats[rate_key] <= interval["high"] <= 1.0
    # 0 of 6 is not a point: Clopper-Pearson's upper bound is 1 - 0.025^(1/6).
    assert summary["unlock_rate_interval"][0] == [0.0, pytest.approx(1 - 0.025 ** (1 / 6))]
    final_low, final_high = summary["unlock_rate_interval"][-1]
    assert final_high - final_low > 0.1


def test_summary_has_dynamics_and_strong_self_potential(full_report: tuple[Path, dict[str, Any]]) -> None:
    _, summary = full_report
    # Every default CoT states its answer only at its end; the old rows have no answer_in_prefix,
    # so it is judged from the stored prefixes: the answer shows at fraction 1.0. At n = 8 only a
    # full jump (0 of 8 to 8 of 8) shows a true step above delta, and no point shows near zero
    # (0 of 8 bounds it at 0.31): u3's jump at the answer is an insight, the rest monotonic.
    assert summary["dynamics"]["counts_baseline_unsolved"] == {
        "monotonic": 5,
        "insight": 1,
        "tangent": 0,
        "late_spike": 0,
        "lucky_guess": 0,
    }
    assert sum(summary["dynamics"]["counts"].values()) == 10
    strong = summary["strong_potential"]
    assert strong["mean"][0] == pytest.approx(0.5)
    assert strong["mean"][-1] == pytest.approx(1.0)


def test_results_csv_has_a_row_per_problem_and_fraction(full_report: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = full_report
    with (folder / "results.csv").open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    # One name per concept: the receiver, as in results.parquet.
    assert {row["receiver"] for row in rows} == {"weak-model", "strong-model"}
    weak_rows = [row for row in rows if row["receiver"] == "weak-model"]
    assert len(weak_rows) == 10 * len(FRACTIONS)
    assert len(rows) == 2 * 10 * len(FRACTIONS)
    u2_at_04 = next(row for row in weak_rows if row["problem_id"] == "u2" and float(row["fraction"]) == 0.4)
    assert (u2_at_04["num_correct"], u2_at_04["unlocked"], u2_at_04["dynamics"]) == ("6", "True", "monotonic")
    assert 0.5 < float(u2_at_04["p_unlocked"]) < 1.0 and u2_at_04["answer_in_prefix"] == "False"
    s1_at_04 = next(row for row in weak_rows if row["problem_id"] == "s1" and float(row["fraction"]) == 0.4)
    assert (s1_at_04["p_unlocked"], s1_at_04["unlocked"]) == ("", "False")
    assert float(u2_at_04["potential_low"]) < 0.75 < float(u2_at_04["potential_high"])


def test_report_markdown_links_the_plots(full_report: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = full_report
    text = (folder / "report.md").read_text(encoding="utf-8")
    for name in ("unlock_rate.png", "potential.png", "heatmap.png", "results.csv"):
        assert name in text
    assert "| `lucky_guess` |" in text
    assert "66.7%" in text


def test_format_unlock_table(full_report: tuple[Path, dict[str, Any]]) -> None:
    _, summary = full_report
    table = format_unlock_table(summary)
    lines = table.splitlines()
    assert lines[0].split() == ["fraction", "mean", "potential", "unlocked", "unlock", "rate", "[95%", "CI]"]
    assert len(lines) == 2 + len(FRACTIONS)
    assert lines[-1].split()[:4] == ["100.0%", "0.713", "4/6", "66.7%"]
    assert len({len(line) for line in lines}) == 1


def test_format_unlock_table_marks_undefined_rates() -> None:
    summary = {
        "confidence": 0.9,
        "per_fraction": [
            {
                "fraction": 0.5,
                "mean_potential": None,
                "unlocked": 0,
                "unsolved_evaluated": 0,
                "unlock_rate": None,
                "unlock_rate_interval": None,
            }
        ],
    }
    assert format_unlock_table(summary).splitlines()[-1].split() == ["50.0%", "n/a", "0/0", "n/a"]
    assert "[90% CI]" in format_unlock_table(summary)


def test_the_prefix_that_states_the_answer_moves_lucky_guess_earlier(tmp_path: Path) -> None:
    weak = {"p": weak_counts(0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8)}
    cot = "x" * 51 + "\\boxed{7}" + "y" * 40  # the box is whole from 60% of the text on
    run = load_run(write_run_folder(tmp_path, weak, strong_cots={"p": cot}))
    assert [row.answer_in_prefix for row in run.weak_rows] == [False] * 6 + [True] * 5
    summary = build_summary(run)
    # The jump sits at the answer fraction; near zero cannot be shown with 8 samples, so it is
    # an insight there rather than a lucky guess.
    (problem,) = summary["problems"]
    assert problem["answer_fraction"] == pytest.approx(0.6)
    assert (problem["dynamics"]["label"], problem["dynamics"]["fraction"]) == ("insight", pytest.approx(0.6))
    assert summary["answer_in_prefix"] == [0] * 6 + [1] * 5
    assert summary["per_fraction"][6]["unlock_rate_prefix_without_answer"] is None
    assert summary["per_fraction"][5]["unlock_rate_prefix_without_answer"] == 0.0
    # The CoT states its answer before the last fraction: the fixed set without it is empty.
    assert {stats["unlock_rate_without_answer"] for stats in summary["per_fraction"]} == {None}


def test_old_folder_answers_the_summary_fields(full_report: tuple[Path, dict[str, Any]]) -> None:
    _, summary = full_report
    final = summary["per_fraction"][-1]
    # Every correct default CoT ends with its answer; u6's strong answer is wrong, so its flag is unknown.
    assert (final["answer_in_prefix"], final["answer_in_prefix_unknown"]) == (9, 1)
    assert final["unsolved_prefix_without_answer"] == 0 and final["unlock_rate_prefix_without_answer"] is None
    # The fixed set: u1..u5 state no answer before the last fraction (u6's flags are unknown).
    assert final["unsolved_without_answer"] == 5 and final["unlock_rate_without_answer"] == pytest.approx(4 / 5)
    middle = summary["per_fraction"][5]
    assert middle["answer_in_prefix"] == 0
    assert middle["unlock_rate_without_answer"] == pytest.approx(2 / 5)
    assert middle["unlock_rate_prefix_without_answer"] == pytest.approx(2 / 5)
    assert set(middle["unlock_rate_without_answer_interval"]) == {"low", "high"}
    assert summary["answer_in_prefix_judged_rows"] == 10 * len(FRACTIONS) - len(FRACTIONS)
    assert (summary["truncated_cots"], summary["problem_errors"]) == (0, 0)
    u2 = next(problem for problem in summary["problems"] if problem["problem_id"] == "u2")
    u3 = next(problem for problem in summary["problems"] if problem["problem_id"] == "u3")
    assert u3["dynamics"]["label"] == "insight" and u3["dynamics"]["fraction"] == 1.0
    assert 0.0 <= u2["points"][4]["p_unlocked"] <= 1.0


def test_math_grader_leaves_old_answer_flags_unknown(tmp_path: Path) -> None:
    # Without math-verify, \sqrt{8} against 2\sqrt{2} cannot be decided on a client.
    cot = "Some reasoning. " * 15 + "The answer is \\boxed{\\sqrt{8}}."
    run = load_run(
        write_run_folder(
            tmp_path,
            {"p": weak_counts(*[0] * 11)},
            grader="math",
            strong_cots={"p": cot},
            strong_extra={"p": {"answer": "2\\sqrt{2}"}},
        )
    )
    # Prefixes that state no answer do not state it; those with an answer statement need math-verify.
    texts = run.strong_records["p"].prefixes
    expected = [None if "answer is" in texts[row.fraction] else False for row in run.weak_rows]
    assert [row.answer_in_prefix for row in run.weak_rows] == expected
    assert expected[0] is False and expected[-1] is None
    assert build_summary(run)["answer_in_prefix"] == [None if flag is None else 0 for flag in expected]


def test_new_rows_keep_their_answer_flag_and_excluded_problems_are_counted(tmp_path: Path) -> None:
    weak = {"u1": WEAK["u1"], "u2": WEAK["u2"], "u3": WEAK["u3"]}
    lines = [
        json.dumps(result_row("n1", fraction, 0, answer_in_prefix=fraction >= 0.5, answer_stated_in_prefix=False))
        for fraction in FRACTIONS
    ]
    folder = write_run_folder(
        tmp_path, weak, extra_result_lines=lines, strong_extra={"u3": {"reasoning_truncated": True}}
    )
    error = {"problem_id": "u2", "code": "OUT_OF_RANGE", "message": "too long", "permanent": True}
    (folder / "errors.jsonl").write_text(json.dumps({**error, "settings_hash": SETTINGS_HASH}) + "\n", encoding="utf-8")
    run = load_run(folder)
    assert [row.answer_in_prefix for row in run.weak_rows if row.problem_id == "n1"][4:6] == [False, True]
    summary = build_summary(run)
    assert (summary["truncated_cots"], summary["problem_errors"], summary["n_problems"]) == (1, 1, 2)
    files = write_report(folder)
    with files.results_csv.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {row["excluded"] for row in rows if row["problem_id"] == "u3"} == {"reasoning_truncated"}
    assert {row["excluded"] for row in rows if row["problem_id"] == "u2"} == {"error"}


def test_superseded_and_foreign_rows(tmp_path: Path) -> None:
    redo = json.dumps(result_row("u6", 1.0, 8))
    foreign = json.dumps({**result_row("u6", 0.5, 8), "settings_hash": "other"})
    folder = write_run_folder(tmp_path, extra_result_lines=[redo, foreign])
    run = load_run(folder)
    assert run.ignored.superseded == 1
    assert run.ignored.other_settings == 1
    summary = build_summary(run)
    assert summary["unlocked"][-1] == 5
    assert summary["ignored"] == {"truncated_last_lines": 0, "rows_from_other_settings": 1, "superseded_rows": 1}


def test_malformed_line_before_the_end_is_an_error(tmp_path: Path) -> None:
    folder = write_run_folder(tmp_path, extra_result_lines=["{not json", json.dumps(result_row("u1", 0.0, 0))])
    with pytest.raises(ReportError, match=r"results\.jsonl:111: bad JSON"):
        load_run(folder)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"problem_id": "x", "fraction": 0.5, "n": 0, "num_correct": 0}, '"n" must be a positive integer'),
        ({"problem_id": "x", "fraction": 0.5, "n": 4, "num_correct": 5}, '"num_correct" must be an integer'),
        ({"problem_id": "x", "fraction": 1.5, "n": 4, "num_correct": 1}, '"fraction" must be a number'),
        ({"fraction": 0.5, "n": 4, "num_correct": 1}, '"problem_id" must be a string'),
        ({"problem_id": "x", "fraction": 0.5, "n": 4, "num_correct": 1, "role": "judge"}, '"role" must be'),
    ],
)
def test_invalid_rows_are_errors(tmp_path: Path, row: dict[str, Any], message: str) -> None:
    folder = write_run_folder(tmp_path, extra_result_lines=[json.dumps(row)])
    with pytest.raises(ReportError, match=message):
        load_run(folder)


def test_missing_run_json_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"run\.json: missing"):
        load_run(tmp_path)


def test_run_just_started_still_reports(tmp_path: Path) -> None:
    folder = write_run_folder(tmp_path, {})
    (folder / "results.jsonl").unlink()
    (folder / "strong.jsonl").unlink()
    files = write_report(folder)
    summary = json.loads(files.summary_json.read_text(encoding="utf-8"))
    assert (summary["n_problems"], summary["baseline_unsolved"]) == (0, 0)
    assert summary["unlock_rate"] == [None] * len(FRACTIONS)
    assert summary["strong_potential"] is None and summary["strong_solve_rate"] is None
    for path in files.all():
        assert path.stat().st_size > 0
    assert "n/a" in format_unlock_table(summary)


def test_bad_thresholds_in_run_json_are_an_error(tmp_path: Path) -> None:
    folder = write_run_folder(tmp_path)
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    run["thresholds"] = {"baseline_max_potential": 0.6, "unlock_min_potential": 0.5}
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    with pytest.raises(ReportError, match=r"run\.json: bad \"thresholds\""):
        load_run(folder)


def test_baseline_fraction_is_added_and_strong_cots_from_other_settings_are_ignored(tmp_path: Path) -> None:
    folder = write_run_folder(tmp_path, {"p": weak_counts(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8)})
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    run["fractions"] = FRACTIONS[1:]
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    stale = {"problem_id": "p", "cot": "\\boxed{7} at once", "answer": "7", "correct": True, "settings_hash": "old"}
    with (folder / "strong.jsonl").open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(stale) + "\n")
    loaded = load_run(folder)
    assert loaded.fractions == tuple(FRACTIONS)
    assert loaded.strong_records["p"].cot.startswith("Some reasoning")
