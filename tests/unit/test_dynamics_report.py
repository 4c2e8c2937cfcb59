"""The dynamics labels through ``cot-transfer report``: simulated results folders from known
curves (``tests/dynamics_simulation.py``), the real CLI, the labels read back from summary.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cot_transfer.cli.main import main
from tests.dynamics_simulation import FRACTIONS, JUMP_AT, JUMPS, NO_JUMP, adaptive_rows, fixed_rows, write_curves_folder

NO_JUMP_REPS = 8  # per curve shape and n: 96 curves per n
JUMP_REPS = 15  # per jump level and n: 60 curves per n
FALSE_LABEL_N = (8, 16, 64)
DETECTION_N = (48, 64)


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    """Every simulated problem's dynamics, by problem id ("<group>-<n>-<shape>-<rep>")."""
    rng = np.random.default_rng(2022)
    ids: list[str] = []
    ks, ns, adaptive = [], [], []

    def add(group: str, n_name: str, shape: int, rows: tuple[np.ndarray, np.ndarray], stopped: bool) -> None:
        k, n = rows
        ids.extend(f"{group}-{n_name}-{shape}-{rep}" for rep in range(len(k)))
        ks.append(k)
        ns.append(n)
        adaptive.append(np.full(len(k), stopped))

    for n in FALSE_LABEL_N:
        for shape, curve in enumerate(NO_JUMP.values()):
            add("none", str(n), shape, fixed_rows(rng, curve, NO_JUMP_REPS, n), False)
    for shape, curve in enumerate(NO_JUMP.values()):
        add("none", "adaptive", shape, adaptive_rows(rng, curve, NO_JUMP_REPS, 64), True)
    for n in DETECTION_N:
        for shape, curve in enumerate(JUMPS.values()):
            add("jump", str(n), shape, fixed_rows(rng, curve, JUMP_REPS, n), False)
    folder = write_curves_folder(
        tmp_path_factory.mktemp("dynamics") / "run",
        ids,
        np.concatenate(ks),
        np.concatenate(ns),
        np.concatenate(adaptive),
    )
    assert main(["report", str(folder)]) == 0
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return {problem["problem_id"]: problem["dynamics"] for problem in summary["problems"]}


def _group(labels: dict[str, dict[str, object]], prefix: str) -> list[dict[str, object]]:
    chosen = [label for problem_id, label in labels.items() if problem_id.startswith(prefix)]
    assert chosen, prefix
    return chosen


@pytest.mark.parametrize("n", [*map(str, FALSE_LABEL_N), "adaptive"])
def test_no_jump_curves_are_rarely_labelled(labels: dict[str, dict[str, object]], n: str) -> None:
    group = _group(labels, f"none-{n}-")
    labelled = [label for label in group if label["label"] != "monotonic"]
    assert len(labelled) / len(group) <= 0.05, labelled


@pytest.mark.parametrize("n", DETECTION_N)
def test_a_jump_of_07_is_labelled_insight_at_its_fraction(labels: dict[str, dict[str, object]], n: int) -> None:
    group = _group(labels, f"jump-{n}-")
    found = [label for label in group if label["label"] == "insight" and label["fraction"] == FRACTIONS[JUMP_AT]]
    assert len(found) / len(group) >= 0.9


def test_summary_json_carries_the_label_step_and_confidence(labels: dict[str, dict[str, object]]) -> None:
    label = next(label for label in _group(labels, "jump-64-") if label["label"] == "insight")
    assert (label["from_fraction"], label["fraction"]) == (FRACTIONS[JUMP_AT - 1], FRACTIONS[JUMP_AT])
    assert isinstance(label["step"], float) and label["step"] > 0.3
    assert isinstance(label["confidence"], float) and 0.95 <= label["confidence"] <= 1.0
