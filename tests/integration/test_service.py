"""Every RPC over gRPC, through Ray Serve's gRPC proxy, into vLLM engines on this machine's CPU."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import grpc
import pytest

from cot_transfer.client import RpcFailedError, Sampling
from cot_transfer.client.convert import transfer_event_from_proto
from cot_transfer.domain.analysis import analyze
from cot_transfer.domain.requests import CotDelta, FractionResult, Prefix, Problem, StrongAnswer, StrongCot
from cot_transfer.domain.transfer import RunSummary
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.serving.edge.encode import transfer_event_to_proto
from tests.conftest import REPO, RunningService

pytestmark = pytest.mark.integration

DEMO = REPO / "datasets" / "testbed-demo.jsonl"
PROBLEMS = load_problems(DEMO)[:3]


async def test_stream_prefixes_streams_the_cot_then_cuts_it_on_token_boundaries(service: RunningService) -> None:
    problem = PROBLEMS[0]
    async with service.client() as client:
        events = [event async for event in client.stream_prefixes(problem.problem, [1.0, 0.0, 0.5, 0.3])]
    deltas = [event for event in events if isinstance(event, CotDelta)]
    prefixes = [event for event in events if isinstance(event, Prefix)]
    answer = events[-1]
    assert isinstance(answer, StrongAnswer)
    assert deltas and events.index(deltas[-1]) < events.index(prefixes[0])
    # The deltas stream the whole output; the CoT is its reasoning (the think block's content).
    streamed = "".join(delta.text for delta in deltas)
    assert answer.cot.strip() and answer.cot.strip() in streamed
    assert answer.final_text.strip() and streamed.rstrip().endswith(answer.final_text.strip())
    assert [prefix.fraction for prefix in prefixes] == [1.0, 0.0, 0.5, 0.3]
    total = answer.cot_num_tokens
    assert total > 0
    assert [prefix.num_tokens for prefix in prefixes] == [total, 0, total // 2, (3 * total) // 10]
    assert prefixes[0].text == answer.cot
    assert prefixes[1].text == ""
    assert answer.cot.startswith(prefixes[2].text) and answer.cot.startswith(prefixes[3].text)
    assert answer.answer is not None and answer.finish_reason in {"stop", "length"}


async def test_complete_returns_n_graded_completions(service: RunningService) -> None:
    problem = PROBLEMS[0]
    async with service.client() as client:
        result = await client.complete(problem.problem, reference_answer=problem.answer, n=6)
    assert len(result.completions) == 6
    assert result.potential == result.num_correct / 6
    assert result.prompt_num_tokens > 0
    assert all(completion.num_tokens > 0 for completion in result.completions)
    assert all(
        completion.correct == (completion.extracted_answer == problem.answer) for completion in result.completions
    )


async def test_complete_with_the_whole_strong_reasoning_mostly_reaches_its_answer(service: RunningService) -> None:
    problem = PROBLEMS[1]
    async with service.client() as client:
        events = [event async for event in client.stream_prefixes(problem.problem, [1.0])]
        answer = events[-1]
        assert isinstance(answer, StrongAnswer)
        # The CoT is the strong model's reasoning only (its <think> block); its answer is in the
        # final text, which the weak model never sees.
        assert answer.answer and "\\boxed" in answer.final_text
        assert "</think>" not in answer.cot and "\\boxed" not in answer.cot
        result = await client.complete(problem.problem, prefix=answer.cot, reference_answer=answer.answer, n=4)
    # A completion is graded on the answer it states itself: the weak model must close the reasoning
    # block and write the boxed answer after it.
    assert result.potential >= 0.5
    assert all("</think>" in completion.text for completion in result.completions if completion.correct)


async def test_run_streams_each_problem_fraction_once_and_a_consistent_summary(service: RunningService) -> None:
    fractions = (0.0, 0.5, 1.0)
    async with service.client() as client:
        events = [
            event
            async for event in client.run_transfer(
                [Problem(problem.id, problem.problem, problem.answer) for problem in PROBLEMS],
                [1.0, 0.5],
                n=4,
                weak_sampling=Sampling(seed=1),
            )
        ]
    rows = [event for event in events if isinstance(event, FractionResult)]
    strong = [event for event in events if isinstance(event, StrongCot)]
    summary = events[-1]
    assert isinstance(summary, RunSummary)
    assert sorted((row.problem_id, row.fraction) for row in rows) == sorted(
        (problem.id, fraction) for problem in PROBLEMS for fraction in fractions
    )
    assert {record.problem_id for record in strong} == {problem.id for problem in PROBLEMS}
    for record in strong:
        first_row = min(events.index(row) for row in rows if row.problem_id == record.problem_id)
        assert events.index(record) < first_row
    assert all(row.n == 4 and 0 <= row.num_correct <= 4 for row in rows)
    expected = analyze(
        rows,
        fractions=fractions,
        thresholds=summary.thresholds,
        strong_correct={record.problem_id: record.correct for record in strong},
    ).run_summary(4)
    # Brute force (no sampling plan): every row drew its n samples, which the service counts.
    assert summary.samples_drawn == summary.samples_brute_force == sum(row.n for row in rows)
    # One receiver (the weak model) in free mode: its block repeats the top-level statistics.
    (block,) = summary.receivers
    assert (block.receiver, block.mode) == ("testbed-weak", "free")
    assert block.per_fraction == summary.per_fraction
    expected = dataclasses.replace(
        expected,
        samples_drawn=summary.samples_drawn,
        samples_brute_force=summary.samples_brute_force,
        receivers=summary.receivers,
    )
    # The service's summary is the client's own analysis of the rows, as the wire carries it.
    assert summary == transfer_event_from_proto(transfer_event_to_proto(expected))


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        ({"fractions": [1.5]}, grpc.StatusCode.INVALID_ARGUMENT, "fractions[0]"),
        ({"fractions": [float("nan")]}, grpc.StatusCode.INVALID_ARGUMENT, "fractions[0]"),
        ({"fractions": [-0.5]}, grpc.StatusCode.INVALID_ARGUMENT, "fractions[0]"),
        ({"problem": "   "}, grpc.StatusCode.INVALID_ARGUMENT, "problem"),
        ({"grader": "nope"}, grpc.StatusCode.NOT_FOUND, "grader"),
        ({"sampling": Sampling(max_tokens=100_000)}, grpc.StatusCode.OUT_OF_RANGE, "sampling.max_tokens"),
    ],
)
async def test_stream_prefixes_rejects_bad_input_with_a_named_field(
    service: RunningService, kwargs: dict[str, object], code: grpc.StatusCode, field: str
) -> None:
    arguments: dict[str, object] = {"problem": PROBLEMS[0].problem, "fractions": [0.5], **kwargs}
    async with service.client() as client:
        with pytest.raises(RpcFailedError) as caught:
            [event async for event in client.stream_prefixes(**arguments)]  # type: ignore[arg-type]
    assert caught.value.code == code
    assert field in caught.value.details
    assert "Traceback" not in caught.value.details


async def test_complete_and_run_reject_bad_input_and_the_service_still_answers(service: RunningService) -> None:
    problem = PROBLEMS[0]
    async with service.client() as client:
        with pytest.raises(RpcFailedError) as caught:
            await client.complete("", reference_answer=problem.answer)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details.startswith("problem:")
        with pytest.raises(RpcFailedError) as caught:
            await client.complete(problem.problem, reference_answer=problem.answer, n=2, sampling=Sampling(top_p=0.0))
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "sampling.top_p" in caught.value.details
        for bad in ([2.0], [0.5, -1.0]):
            with pytest.raises(RpcFailedError) as caught:
                [event async for event in client.run_transfer([Problem("a", problem.problem, "1")], bad, n=2)]
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "fractions[" in caught.value.details
        with pytest.raises(RpcFailedError) as caught:
            [event async for event in client.run_transfer([Problem("a", " ", "1")], [0.5], n=2)]
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "problems[0].problem" in caught.value.details
        result = await client.complete(problem.problem, reference_answer=problem.answer, n=2)
    assert len(result.completions) == 2


def test_cli_run_from_a_second_process_writes_the_results_folder(service: RunningService, tmp_path: Path) -> None:
    out = tmp_path / "run"
    completed = service.cli(
        "run", "--problems", str(DEMO), "--limit", "2", "--n", "2", "--fractions", "0.5,1", "--out", str(out)
    )
    assert completed.returncode == 0, completed.stderr
    assert "unlock rate" in completed.stdout
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "fractions",
        "n_samples",
        "n_problems",
        "baseline_unsolved",
        "unlocked",
        "unlock_rate",
        "weak_potential_mean",
    ):
        assert key in summary
    assert summary["fractions"] == [0.0, 0.5, 1.0]
    assert summary["n_problems"] == 2 and summary["n_samples"] == 2
    assert len(summary["unlock_rate"]) == len(summary["unlocked"]) == len(summary["weak_potential_mean"]) == 3
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3


def test_cli_plan_measures_throughput_against_the_service(service: RunningService) -> None:
    completed = service.cli("plan", "--problems", str(DEMO), "--n", "128", "--adaptive", "--measure-requests", "2")
    assert completed.returncode == 0, completed.stderr
    measured = re.search(r"measured against \S+: (\d+) weak tokens/s, (\d+) strong tokens/s", completed.stdout)
    assert measured is not None, completed.stdout
    assert int(measured[1]) > 0 and int(measured[2]) > 0
    # 16 problems x 11 fractions x 128 samples by brute force, and an adaptive row beside it.
    assert "| brute force (n = 128) | 22.53k |" in completed.stdout, completed.stdout
    assert re.search(r"\| adaptive \(n_max = 128\) \| [\d.]+k? \(\d+%\) \|", completed.stdout), completed.stdout
