"""A run of several receivers and modes end to end without Ray: the real client, runner, results
folder and report against the service's own RPC bodies in process (``tests.conftest``), and the
resume of such a run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cot_transfer.client import CotTransferClient
from cot_transfer.domain.receivers import FORCE_ANSWER, FREE
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from tests.conftest import LOCAL_CONFIG as CONFIG
from tests.conftest import InProcessService
from tests.fakes import ScriptedEngine

STRONG, WEAK = CONFIG.strong.engine.name, CONFIG.weak.engine.name
KEYS = {(receiver, mode) for receiver in (STRONG, WEAK) for mode in (FREE, FORCE_ANSWER)}


@pytest.fixture
async def service() -> AsyncIterator[InProcessService]:
    """The strong engine writes CoTs and completes as a receiver (it always answers 3, freely or
    forced); the weak one answers 4 when forced."""
    strong_engine = ScriptedEngine([" so 3. Answer: 3"], max_model_len=512)
    weak_engine = ScriptedEngine([" 4\nAnswer: 3"], max_model_len=512)
    receivers = {STRONG: strong_engine, WEAK: weak_engine}
    async with InProcessService(strong_engine, receivers, force_answer_max_tokens={WEAK: 2}) as running:
        yield running


PROBLEMS = [Problem("p1", "1+2", "3"), Problem("p2", "2+1", "3")]
SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2, receivers=(STRONG, WEAK), modes=(FREE, FORCE_ANSWER))


def rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


async def test_a_run_keys_rows_by_receiver_and_mode_and_reports_them_side_by_side(
    service: InProcessService, tmp_path: Path
) -> None:
    address = service.address
    out = tmp_path / "run"
    async with CotTransferClient(address) as client:
        summary = await run_experiment(client, PROBLEMS, SETTINGS, out)
    written = rows(out)
    assert len(written) == len(PROBLEMS) * 3 * len(KEYS)
    assert {(row["receiver"], row["mode"]) for row in written} == KEYS

    blocks = summary["receivers"]
    assert set(blocks) == {STRONG, WEAK} and all(set(modes) == {FREE, FORCE_ANSWER} for modes in blocks.values())
    assert blocks[STRONG][FREE]["measures"] == "self-potential"
    assert blocks[WEAK][FREE]["measures"] == "transfer"
    # Forced to answer at once with 2 tokens, the weak model says 4: never right.
    assert blocks[WEAK][FORCE_ANSWER]["weak_potential_mean"] == [0.0, 0.0, 0.0]
    assert blocks[STRONG][FREE]["weak_potential_mean"] == [1.0, 1.0, 1.0]
    # Today's top-level keys stay, for the first weak receiver in free mode.
    assert blocks[WEAK][FREE]["primary"] is True
    assert summary["weak_potential_mean"] == blocks[WEAK][FREE]["weak_potential_mean"]
    assert summary["unlock_rate"] == blocks[WEAK][FREE]["unlock_rate"]
    # Every pair of the four (receiver, mode) blocks, compared on the problems both leave unsolved.
    pairs = {
        ((entry["first"]["receiver"], entry["first"]["mode"]), (entry["second"]["receiver"], entry["second"]["mode"]))
        for entry in summary["receiver_comparisons"]
    }
    assert len(pairs) == 6 and all(first != second for first, second in pairs)
    report = (out / "report.md").read_text()
    assert "## Receivers side by side" in report
    assert f"{STRONG} (self-potential, force_answer)" in report and f"{WEAK} (transfer, free)" in report
    assert (out / "receivers.png").stat().st_size > 0


async def test_a_resume_redoes_only_the_missing_receiver_rows_on_the_stored_prefixes(
    service: InProcessService, tmp_path: Path
) -> None:
    servicer, address = service, service.address
    out = tmp_path / "run"
    async with CotTransferClient(address) as client:
        await run_experiment(client, PROBLEMS, SETTINGS, out)
        complete = rows(out)
        lost = [
            row
            for row in complete
            if row["problem_id"] == "p1" and (row["receiver"], row["mode"]) in {(STRONG, FORCE_ANSWER), (WEAK, FREE)}
        ]
        lost = [row for row in lost if row["fraction"] != 0.0 or row["receiver"] == STRONG]
        kept = [row for row in complete if row not in lost]
        (out / "results.jsonl").write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in kept))
        drawn = len(servicer.completions)
        summary = await run_experiment(client, PROBLEMS, SETTINGS, out, resume=True)
    resumed = [(request.receiver, request.mode) for request in servicer.completions[drawn:]]
    assert sorted(resumed) == sorted((row["receiver"], row["mode"]) for row in lost)
    assert servicer.run_problems[-1] == ["p1"]  # one Run, of the problem with missing rows
    again = rows(out)
    assert len(again) == len(complete)
    redone = again[len(kept) :]
    assert {(row["problem_id"], row["fraction"], row["receiver"], row["mode"]) for row in redone} == {
        (row["problem_id"], row["fraction"], row["receiver"], row["mode"]) for row in lost
    }
    assert summary["receivers"][WEAK][FREE]["n_problems"] == len(PROBLEMS)
