"""tools/real_demo.py's runs, as the CLI reads them (no stack: the served runs are in
tests/integration/test_real_checkpoint.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cot_transfer.cli.main import build_parser
from cot_transfer.cli.run import inputs_from_args
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.runner import ExperimentSettings
from tools.real_demo import DEFAULT_PROBLEMS, experiments

REPO = Path(__file__).resolve().parents[2]


def _args(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "problems": REPO / DEFAULT_PROBLEMS,
        "n": 4,
        "fractions": "0,0.25,0.5,0.75,1",
        "seed": 0,
        "self_limit": 20,
        "transfer_limit": 47,
        "grader": "exact",
    }
    return argparse.Namespace(**(values | overrides))


def _inputs(run_args: list[str]) -> tuple[list[Problem], ExperimentSettings]:
    parsed = build_parser().parse_args(["run", "--address", "127.0.0.1:1", "--out", "unused", *run_args])
    problems, settings, _ = inputs_from_args(parsed, None)
    return list(problems), settings


def test_the_self_run_generates_cots_that_the_strong_model_receives() -> None:
    runs = {run.name: run for run in experiments(_args(), "smollm2", "smollm2-receiver", pair=False)}
    assert set(runs) == {"self", "transfer"}
    problems, settings = _inputs(runs["self"].run_args)
    assert len(problems) == 20 and all(problem.cot is None for problem in problems)
    assert settings.receivers == ("smollm2",) and settings.n == 4
    assert settings.measured_fractions() == (0.0, 0.25, 0.5, 0.75, 1.0)


def test_the_transfer_imports_every_written_solution_for_the_weak_model() -> None:
    runs = {run.name: run for run in experiments(_args(), "smollm2", "smollm2-receiver", pair=False)}
    problems, settings = _inputs(runs["transfer"].run_args)
    assert len(problems) == 47
    assert all(problem.cot and problem.cot_format == "plain" for problem in problems)
    assert settings.receivers == () and settings.grader == "exact"


def test_two_different_models_add_the_strong_to_weak_run() -> None:
    runs = {run.name: run for run in experiments(_args(grader="math"), "qwen3-32b", "qwen3-0.6b", pair=True)}
    assert set(runs) == {"self", "transfer", "pair"}
    problems, settings = _inputs(runs["pair"].run_args)
    assert all(problem.cot is None for problem in problems)
    assert settings.receivers == () and settings.grader == "math"
