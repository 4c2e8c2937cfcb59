"""A search run through the real client, runner and the service's RPC bodies in process: rows only
where the search probes, the unlock point found, and a killed search resumed wave by wave from
the rows on disk, every row once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cot_transfer.client import CotTransferClient
from cot_transfer.domain.cut_search import Probe, replay
from cot_transfer.domain.requests import Problem
from cot_transfer.domain.sampling_plan import SamplingPlan
from cot_transfer.engine.base import GenerationOutput, GenerationRequest
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from tests.conftest import LOCAL_CONFIG, InProcessService, killed_after_rows
from tests.fakes import CharTokenizer, ScriptedEngine

LINES = 30
KEY_LINE = 17  # the insight: a prefix holding it (cut KEY_LINE + 1 on) unlocks the problem
COT = "".join("key\n" if index == KEY_LINE else f"s{index}\n" for index in range(LINES)) + "Answer: 3"
SETTINGS = ExperimentSettings(
    fractions=(0.5,), n=32, cut="search", sampling_plan=SamplingPlan(n_max=32, rounds=(8, 8, 16))
)
PROBLEMS = [Problem(f"p{index}", f"{index}+2", "3") for index in range(4)]


class SolvesWithTheKey(ScriptedEngine):
    """Answers right exactly when the prompt holds the key line."""

    def __init__(self) -> None:
        super().__init__(["Answer: 3"], max_model_len=1024)
        self._without = ScriptedEngine(["Answer: 4"], max_model_len=1024)

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        source = (
            super().generate if "key" in CharTokenizer().decode(request.prompt_token_ids) else self._without.generate
        )
        async for output in source(request, request_id):
            yield output


@pytest.fixture
async def service() -> AsyncIterator[InProcessService]:
    strong = ScriptedEngine([COT], max_model_len=1024)
    async with InProcessService(strong, {LOCAL_CONFIG.weak.engine.name: SolvesWithTheKey()}) as running:
        yield running


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def searches(out: Path) -> dict[str, Any]:
    cuts = {
        record["problem_id"]: len(record["prefixes"])
        for record in map(json.loads, (out / "strong.jsonl").read_text().splitlines())
    }
    probes: dict[str, dict[int, Probe]] = {problem_id: {} for problem_id in cuts}
    for row in rows(out):
        probes[row["problem_id"]][row["num_steps"]] = Probe(row["num_correct"], row["n"], row["potential"])
    return {
        problem_id: replay(cuts[problem_id], SETTINGS.thresholds, probes[problem_id]).result() for problem_id in cuts
    }


async def test_a_search_run_probes_a_fraction_of_the_cuts_and_finds_the_key_line(
    service: InProcessService, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    async with CotTransferClient(service.address) as client:
        summary = await run_experiment(client, PROBLEMS, SETTINGS, out)
    assert summary["unfinished_problems"] == []
    for result in searches(out).values():
        assert result.finished
        assert result.cuts == LINES + 2  # the empty prefix, each line, the answer line
        assert (result.unlock_cut, result.jump_cut) == (KEY_LINE + 1, KEY_LINE + 1)
        assert len(result.probed) <= LINES // 2
    assert len(service.runs) == 1  # one Transfer.Run: the service ran every wave


async def test_a_killed_search_resumes_from_its_rows_every_row_once(service: InProcessService, tmp_path: Path) -> None:
    out = tmp_path / "run"
    async with CotTransferClient(service.address) as client:
        # The client dies between waves of some problems.
        await killed_after_rows(9, lambda on_row: run_experiment(client, PROBLEMS, SETTINGS, out, on_row=on_row))
        before = rows(out)
        assert any(not result.finished for result in searches(out).values())
        summary = await run_experiment(client, PROBLEMS, SETTINGS, out, resume=True)

    after = rows(out)
    assert after[: len(before)] == before
    keys = [(row["problem_id"], row["fraction"]) for row in after]
    assert len(keys) == len(set(keys))
    assert summary["unfinished_problems"] == []
    for result in searches(out).values():
        assert result.finished
        assert result.unlock_cut == KEY_LINE + 1
