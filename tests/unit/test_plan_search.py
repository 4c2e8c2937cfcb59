"""`cot-transfer plan`'s cut points: every step by brute force and adaptive beside the cut-point
search, priced on simulated step curves."""

from __future__ import annotations

import numpy as np
import pytest

from cot_transfer.cli.main import main
from cot_transfer.cli.plan import DEFAULT_STEPS_PER_COT, SEARCH_CURVES, cut_point_costs, search_curves
from cot_transfer.domain.sequential import SamplingPlan, StoppingRule
from cot_transfer.domain.transfer import Thresholds

RULE = StoppingRule(SamplingPlan(n_max=128), Thresholds())
PLAN = ["plan", "--num-problems", "500", "--n", "128", "--adaptive", "--cot-tokens", "4000", "--tokens-per-s", "1e4"]


@pytest.mark.parametrize("steps", [1, 8, DEFAULT_STEPS_PER_COT, 200])
def test_the_search_costs_no_more_than_adaptive_every_step_nor_that_more_than_brute_force(steps: int) -> None:
    costs = cut_point_costs(RULE, 500, steps, 4000, 20)
    brute, adaptive = costs.every_step_brute, costs.every_step_adaptive
    assert brute.samples == 500 * (steps + 1) * 128
    assert costs.search_brute.samples == pytest.approx(500 * costs.mean_probes * 128)
    for cheaper, dearer in [
        (costs.search_adaptive, adaptive),
        (adaptive, brute),
        (costs.search_adaptive, costs.search_brute),
        (costs.search_brute, brute),
    ]:
        assert cheaper.samples <= dearer.samples
        assert cheaper.weak_tokens <= dearer.weak_tokens
        assert cheaper.wall_s(1e4, 1e4) <= dearer.wall_s(1e4, 1e4)
    # A search probes the two ends at least; every row is prefilled once, a search's only where it probes.
    assert 2 <= costs.mean_probes <= steps + 1
    assert costs.search_adaptive.prefill_tokens <= adaptive.prefill_tokens == brute.prefill_tokens
    assert costs.search_adaptive.strong_tokens == brute.strong_tokens == 500 * 4000


def test_on_long_cots_the_search_probes_a_small_share_of_the_cuts() -> None:
    costs = cut_point_costs(RULE, 500, DEFAULT_STEPS_PER_COT, 4000, 0)
    # The grid of 5, a bisection of a 15-cut bracket and its check: about 10 of 61.
    assert 6 <= costs.mean_probes <= 15
    assert costs.search_adaptive.samples <= 0.3 * costs.every_step_adaptive.samples


def test_the_simulated_curves_are_fixed_step_curves() -> None:
    curves = search_curves(61)
    assert len(curves) == SEARCH_CURVES
    assert all(np.array_equal(a, b) for a, b in zip(curves, search_curves(61), strict=True))
    for curve in curves:
        step = int(np.argmax(curve > 0))
        assert step >= 1 and not curve[:step].any() and np.all(curve[step:] == curve[-1])
        assert 0.6 <= curve[-1] <= 1.0
    assert cut_point_costs(RULE, 5, 30, 100, 0) == cut_point_costs(RULE, 5, 30, 100, 0)


def test_the_plan_prints_every_step_and_the_search_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*PLAN, "--steps-per-cot", "30"]) == 0
    out = capsys.readouterr().out
    # The fractions table stays as it was; the cut points follow in their own table.
    assert "| brute force (n = 128) | 704.00k |" in out
    cut_points = out.split("cut points:")[1]
    assert "every step of a 30-step CoT (31 cuts with the baseline; --steps-per-cot, an assumption" in cut_points
    rows = [line for line in cut_points.splitlines() if line.startswith("| ") and not line.startswith("| plan")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| every step, brute force (n = 128)",
        "| every step, adaptive (n_max = 128)",
        "| cut-point search, brute rows (n = 128)",
        "| cut-point search, adaptive (n_max = 128)",
    ]
    assert rows[0].startswith(f"| every step, brute force (n = 128) | {500 * 31 * 128 / 1e6:.2f}M |")


def test_a_cot_needs_a_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*PLAN, "--steps-per-cot", "0"]) == 2
    assert "--steps-per-cot" in capsys.readouterr().err
