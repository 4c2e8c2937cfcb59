"""Imported CoTs, step cuts and kept answers end to end (client, runner, edge, TransferRunner and
model servers in process, no Ray), and the results folder as DataFrames and results.parquet."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import cot_transfer.experiment
from cot_transfer.cli.main import build_parser
from cot_transfer.cli.run import UsageError, inputs_from_args
from cot_transfer.client import CotTransferClient
from cot_transfer.domain.errors import InvalidArgumentError, NotFoundError
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.cut_settings import ALL_COMPLETIONS
from cot_transfer.experiment.imported_cots import load_cots
from cot_transfer.experiment.load import PARQUET_FILE
from cot_transfer.experiment.runner import ExperimentSettings, resume_inputs, run_experiment
from cot_transfer.experiment.view import view_data
from cot_transfer.serving.edge import decode
from cot_transfer.v1 import cot_transfer_pb2 as pb
from tests.conftest import LOCAL_CONFIG as CONFIG
from tests.conftest import InProcessService

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "self_potential_vs_transfer.py"
COT = "Add one and two.\nThat makes three.\nAnswer: 3\n"


def write_cots(path: Path) -> Path:
    records = [
        {"id": "a", "problem": "1+2", "answer": "3", "cot": COT, "level": 1},
        {"id": "b", "problem": "2+2", "answer": "4", "cot": "Two and two.\nFour.\nAnswer: 4", "format": "plain"},
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


async def test_imported_cots_cut_at_every_step_load_as_dataframes(
    in_process_service: InProcessService, tmp_path: Path
) -> None:
    servicer, address = in_process_service, in_process_service.address
    problems = load_cots(write_cots(tmp_path / "cots.jsonl"))
    assert [problem.metadata for problem in problems] == [{"level": 1}, {}]
    settings = ExperimentSettings(fractions=(0.5,), n=3, cut="every_step", keep_completions=True)
    out = tmp_path / "run"
    async with CotTransferClient(address) as client:
        await run_experiment(client, problems, settings, out)
    assert servicer.strong._engine.requests == []  # type: ignore[attr-defined]  # nothing generated

    tables = cot_transfer.experiment.load(out)
    results = tables.results.sort_values(["problem_id", "prefix_num_tokens"])
    # One row per step boundary (three lines), plus the baseline.
    assert results.groupby("problem_id").size().to_dict() == {"a": 4, "b": 4}
    assert results[results.problem_id == "a"].num_steps.tolist() == [0, 1, 2, 3]
    assert results.fraction.max() == 1.0
    assert set(results.receiver) == {CONFIG.weak.engine.name}
    # The weak engine answers "Answer: 3" to everything.
    assert all(counts == [{"answer": "3", "count": 3}] for counts in results.answer_counts)
    assert results.majority_answer.eq("3").all() and results.agreement.eq(1.0).all()
    first = results[results.problem_id == "a"].iloc[0]
    assert first.strong_answer == "3" and first.majority_is_strong_answer
    assert all(len(completions) == 3 for completions in results.completions)

    strong = tables.strong_cots.set_index("problem_id")
    assert strong.loc["a", "imported"] and strong.loc["a", "cot"] == COT
    assert strong.loc["a", "finish_reason"] == "imported"
    assert strong.loc["b", "answer"] == "4" and strong.loc["b", "correct"]
    assert {"receiver", "mode", "fraction", "unlock_rate"} <= set(tables.summary.columns)
    assert {0.0, 1.0} <= set(tables.summary.fraction)

    parquet = pq.read_table(out / PARQUET_FILE).to_pandas()
    assert len(parquet) == len(tables.results)
    assert sorted(parquet.num_steps) == sorted(tables.results.num_steps)
    assert [list(map(dict, counts)) for counts in parquet.answer_counts] == list(tables.results.answer_counts)

    # The folder keeps the CoTs: a resume sends them again.
    resumed, resumed_settings, _ = resume_inputs(out)
    assert [problem.cot for problem in resumed] == [problem.cot for problem in problems]
    assert resumed_settings.cut == "every_step" and resumed_settings.keep_completions


async def test_step_cut_rows_snap_to_line_ends(in_process_service: InProcessService, tmp_path: Path) -> None:
    address = in_process_service.address
    problems = [Problem("a", "1+2", "3", cot=COT)]
    out = tmp_path / "run"
    async with CotTransferClient(address) as client:
        await run_experiment(client, problems, ExperimentSettings(fractions=(0.5, 0.9), n=2, cut="step"), out)
    results = cot_transfer.experiment.load(out).results.sort_values("fraction")
    assert results.fraction.tolist() == [0.0, 0.5, 0.9]
    assert results.num_steps.tolist() == [0, 1, 2]
    # Kept by default; the two samples' identical texts once.
    assert results.completions.map(len).eq(1).all()


def run_request(**fields: object) -> pb.RunRequest:
    problem = pb.Problem(id="a", problem="1+2", answer="3", cot=COT)
    return pb.RunRequest(problems=[problem], fractions=[0.5], n=2, **fields)  # type: ignore[arg-type]


def test_the_edge_names_a_bad_cut_boundary_format_or_tokenizer() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"cut": 9}, "cut"),
        ({"step_boundary": 7}, "step_boundary"),
        ({"cot_tokenizer": CONFIG.weak.engine.name}, "cot_tokenizer"),
    ]
    for fields, name in cases:
        with pytest.raises(InvalidArgumentError) as caught:
            decode.transfer_request_from_proto(run_request(**fields), CONFIG)
        assert caught.value.field == name
    bad_format = pb.RunRequest(
        problems=[pb.Problem(id="a", problem="1+2", answer="3", cot=COT, cot_format="rst")], fractions=[0.5], n=2
    )
    with pytest.raises(InvalidArgumentError) as caught:
        decode.transfer_request_from_proto(bad_format, CONFIG)
    assert caught.value.field == "problems[0].cot_format"
    with pytest.raises(NotFoundError):
        decode.transfer_request_from_proto(run_request(cot_tokenizer="no-such-model"), CONFIG)


def test_every_step_needs_no_fractions_and_summarises_baseline_and_whole_cot() -> None:
    request = decode.transfer_request_from_proto(
        pb.RunRequest(problems=[pb.Problem(id="a", problem="q", answer="3", cot=COT)], n=2, cut=pb.CUT_MODE_EVERY_STEP),
        CONFIG,
    )
    assert request.fractions == (0.0, 1.0) and request.problems[0].cot == COT
    assert request.max_steps == CONFIG.limits.max_fractions and request.max_cot_chars == CONFIG.limits.max_text_chars


async def test_the_report_lists_majority_answers_and_flags_the_strong_answer(
    in_process_service: InProcessService, tmp_path: Path
) -> None:
    address = in_process_service.address
    problems = [Problem("a", "1+2", "3", cot=COT), Problem("b", "2+2", "4", cot="Four.\nAnswer: 4")]
    out = tmp_path / "run"
    async with CotTransferClient(address) as client:
        await run_experiment(client, problems, ExperimentSettings(fractions=(1.0,), n=2), out)
    report = (out / "report.md").read_text()
    # The weak engine always answers 3: it agrees with the strong answer of "a" only.
    assert "Kept answers: in 2 of 4 rows the receiver's majority answer is the strong model's own" in report
    # The rows themselves are in the viewer: every cut's answer distribution.
    _, details = view_data(out)
    rows = [row for detail in details for row in detail["receivers"][0]["rows"] if row is not None]
    assert len(rows) == 4 and all(row["a"] == [["3", 2]] for row in rows)


async def test_the_example_plots_self_potential_against_transfer(
    in_process_service: InProcessService, tmp_path: Path
) -> None:
    address = in_process_service.address
    receivers = (CONFIG.strong.engine.name, CONFIG.weak.engine.name)
    out = tmp_path / "run"
    settings = ExperimentSettings(fractions=(0.5, 1.0), n=2, receivers=receivers, cut="step")
    async with CotTransferClient(address) as client:
        await run_experiment(client, [Problem("a", "1+2", "3", cot=COT)], settings, out)
    assert set(cot_transfer.experiment.load(out).results.receiver) == set(receivers)
    figure = tmp_path / "figure.png"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(EXAMPLE), str(out), "--out", str(figure)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert figure.stat().st_size > 1000 and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_resumed_every_step_run_completes_the_missing_step_rows(
    in_process_service: InProcessService, tmp_path: Path
) -> None:
    servicer, address = in_process_service, in_process_service.address
    settings = ExperimentSettings(fractions=(0.5,), n=2, cut="every_step")
    problems = [Problem("a", "1+2", "3", cot=COT)]
    out = tmp_path / "run"
    async with CotTransferClient(address) as client:
        await run_experiment(client, problems, settings, out)
        results = out / "results.jsonl"
        rows = results.read_text().splitlines(keepends=True)
        kept = [row for row in rows if json.loads(row)["num_steps"] not in (1, 2)]
        results.write_text("".join(kept))
        drawn = len(servicer.completions)
        await run_experiment(client, problems, settings, out, resume=True)
    # The two missing rows, through the one fan-out on their stored prefixes: no new CoT is cut.
    assert len(servicer.completions) - drawn == 2
    assert {row[0] for row in servicer.runs[-1].resumed["a"].rows} == {
        prefix.fraction for prefix in servicer.runs[-1].resumed["a"].prefixes
    }
    resumed = cot_transfer.experiment.load(out).results.sort_values("num_steps")
    assert resumed.num_steps.tolist() == [0, 1, 2, 3]
    assert all(counts == [{"answer": "3", "count": 2}] for counts in resumed.answer_counts)


def test_the_command_line_reads_cots_and_cut_options(tmp_path: Path) -> None:
    cots = write_cots(tmp_path / "cots.jsonl")
    common = ["run", "--address", "localhost:1", "--out", str(tmp_path / "out")]
    args = build_parser().parse_args(
        [*common, "--cots", str(cots), "--cut", "every_step", "--step-boundary", "sentence", "--keep-completions"]
    )
    problems, settings, source = inputs_from_args(args, None)
    assert [problem.cot for problem in problems] == [COT, "Two and two.\nFour.\nAnswer: 4"]
    assert (settings.cut, settings.step_boundary) == ("every_step", "sentence")
    assert settings.keep_completions == ALL_COMPLETIONS
    assert source == cots.resolve()
    both = build_parser().parse_args([*common, "--cots", str(cots), "--problems", str(cots)])
    with pytest.raises(UsageError, match="--cots"):
        inputs_from_args(both, None)
    resume = build_parser().parse_args(["run", "--address", "localhost:1", "--resume", str(tmp_path), "--cut", "step"])
    with pytest.raises(UsageError, match="--cut"):
        inputs_from_args(resume, None)
