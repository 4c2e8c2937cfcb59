"""A killed adaptive run resumes adaptive, through the service's one fan-out: the real client and
runner against the service's own RPC bodies in process, with a per-request cap below n_max."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cot_transfer.client import CotTransferClient
from cot_transfer.domain.requests import Problem
from cot_transfer.domain.sampling_plan import SamplingPlan
from cot_transfer.engine.base import GenerationOutput, GenerationRequest
from cot_transfer.experiment.run_folder import RunFolderError
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from cot_transfer.serving.edge import decode
from tests.conftest import LOCAL_CONFIG, InProcessService, killed_after_rows
from tests.fakes import CharTokenizer, ScriptedEngine

CAP = 32  # limits.max_samples_per_request of this service
N_MAX = 128
PLAN = SamplingPlan(n_max=N_MAX, rounds=(8, 16, 32))
SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=N_MAX, sampling_plan=PLAN)
PROBLEMS = [Problem(f"p{index}", f"{index}+2", "3") for index in range(6)]
ROWS = len(PROBLEMS) * 3  # fractions 0, 0.5 and 1


class HalfRightOnPrefixes(ScriptedEngine):
    """A receiver that never answers from the problem alone and answers right half the time with
    a prefix of the strong CoT: every baseline is unsolved and every other row sits on the unlock
    threshold (0.5), so it cannot stop before n_max."""

    def __init__(self) -> None:
        super().__init__(["Answer: 3", "Answer: 4"], max_model_len=512)
        self._without_prefix = ScriptedEngine(["Answer: 4"], max_model_len=512)

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        with_prefix = "1+2 makes" in CharTokenizer().decode(request.prompt_token_ids)
        source = super().generate if with_prefix else self._without_prefix.generate
        async for output in source(request, request_id):
            yield output


@pytest.fixture
async def service() -> AsyncIterator[InProcessService]:
    config = LOCAL_CONFIG.model_copy(
        update={"limits": LOCAL_CONFIG.limits.model_copy(update={"max_samples_per_request": CAP})}
    )
    strong = ScriptedEngine(["1+2 makes 3. Answer: 3"], max_model_len=512)
    async with InProcessService(strong, {config.weak.engine.name: HalfRightOnPrefixes()}, config=config) as running:
        yield running


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


async def test_a_killed_adaptive_run_resumes_adaptive_past_the_per_request_cap(
    service: InProcessService, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    async with CotTransferClient(service.address) as client:
        # The client dies mid-run, after a few rows are on disk.
        await killed_after_rows(5, lambda on_row: run_experiment(client, PROBLEMS, SETTINGS, out, on_row=on_row))
        before = rows(out)
        assert 5 <= len(before) < ROWS

        summary = await run_experiment(client, PROBLEMS, SETTINGS, out, resume=True)

    after = rows(out)
    assert after[: len(before)] == before
    keys = [(row["problem_id"], row["fraction"]) for row in after]
    assert len(keys) == len(set(keys)) == ROWS
    # Every row, before the kill and after it, drawn by the plan: in rounds, with a stop reason.
    for row in after:
        assert isinstance(row["rounds"], int) and row["rounds"] >= 1, row
        assert row["stop_reason"], row
    # n_max above the per-request cap: the rows on the threshold drew all 128, 32 at most per call.
    on_threshold = [row for row in after if row["fraction"] > 0]
    assert all(row["n"] == N_MAX for row in on_threshold)
    assert all(request.n <= CAP for request in service.completions)
    # The resume was one Run with the run's own plan, completing only what was missing.
    resume = service.runs[-1]
    assert resume.sampling_plan is not None and resume.sampling_plan.n_max == N_MAX
    assert sum(len(problem.rows) or 3 for problem in resume.resumed.values()) <= ROWS - len(before)
    assert summary["n_problems"] == len(PROBLEMS)


async def test_a_resume_against_a_service_that_ignores_stored_prefixes_stops_before_mixing_cots(
    in_process_service: InProcessService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    settings = ExperimentSettings(fractions=(0.5, 1.0), n=2)
    async with CotTransferClient(in_process_service.address) as client:
        await run_experiment(client, PROBLEMS[:2], settings, out)
        kept = rows(out)[:-1]  # one row lost: its problem is resumed on its stored prefixes
        (out / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in kept))
        # A service from before Problem.prefixes / rows: it reads neither and writes a new CoT.
        monkeypatch.setattr(decode, "_resumed", lambda *_: {})
        with pytest.raises(RunFolderError, match="older than this client"):
            await run_experiment(client, PROBLEMS[:2], settings, out, resume=True)
    assert rows(out) == kept
