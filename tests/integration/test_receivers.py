"""Several receivers and both answer modes against the real stack: the strong model's
self-potential beside the weak model's transfer, on the same prefixes, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from cot_transfer.client import RpcFailedError
from cot_transfer.domain.requests import Problem
from tests.conftest import REPO, RunningService

pytestmark = pytest.mark.integration

STRONG, WEAK = "testbed-strong", "testbed-weak"


async def test_an_unknown_receiver_is_not_found_and_the_strong_model_answers_forced(service: RunningService) -> None:
    problem = Problem("a", "1+2", "3")
    async with service.client() as client:
        info = await client.get_info()
        assert {model.name for model in info.models} == {STRONG, WEAK}
        with pytest.raises(RpcFailedError) as unknown:
            [event async for event in client.run_transfer([problem], [0.5], n=1, receivers=["nope"])]
        assert unknown.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(RpcFailedError) as forced:
            await client.complete("1+2", reference_answer="3", receiver="nope")
        assert forced.value.code == grpc.StatusCode.NOT_FOUND
        result = await client.complete("1+2", reference_answer="3", n=2, receiver=STRONG, mode="force_answer")
    assert len(result.completions) == 2
    # The answer alone: the short force_answer budget, not the reasoning budget.
    assert all(completion.num_tokens <= 32 for completion in result.completions)


def test_cli_run_of_both_receivers_in_both_modes_reports_them_side_by_side(
    service: RunningService, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    completed = service.cli(
        "run",
        "--receivers",
        f"{STRONG},{WEAK}",
        "--modes",
        "free,force_answer",
        "--problems",
        str(REPO / "datasets" / "testbed-demo.jsonl"),
        "--limit",
        "1",
        "--n",
        "2",
        "--fractions",
        "1",
        "--out",
        str(out),
    )
    assert completed.returncode == 0, completed.stderr
    assert f"{STRONG} (self-potential, free)" in completed.stdout
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    keys = {(receiver, mode) for receiver in (STRONG, WEAK) for mode in ("free", "force_answer")}
    assert {(row["receiver"], row["mode"]) for row in rows} == keys
    assert len(rows) == 1 * 2 * len(keys)  # one problem at fractions 0 and 1
    summary = json.loads((out / "summary.json").read_text())
    for key in ("fractions", "unlock_rate", "weak_potential_mean", "per_fraction"):
        assert key in summary
    blocks = summary["receivers"]
    assert blocks[STRONG]["free"]["measures"] == "self-potential"
    assert blocks[WEAK]["force_answer"]["measures"] == "transfer"
    for modes in blocks.values():
        for block in modes.values():
            assert len(block["per_fraction"]) == 2 and len(block["unlock_rate"]) == 2
    assert summary["weak_potential_mean"] == blocks[WEAK]["free"]["weak_potential_mean"]
    report = (out / "report.md").read_text()
    assert "## Receivers side by side" in report
    assert f"{STRONG} (self-potential, force_answer)" in report and f"{WEAK} (transfer, free)" in report
