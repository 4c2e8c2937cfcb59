"""The adaptive-against-brute-force comparison of the benchmarks, on rows made up here."""

import random

from benchmarks.adaptive import compare, operating_tables, replay_adaptive, simulated_comparison
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.sequential import DECIDED, MIXTURE_CS, N_MAX, SamplingPlan, StoppingRule
from cot_transfer.domain.sequential_estimates import row_potential
from cot_transfer.domain.transfer import Thresholds

FRACTIONS = (0.0, 0.5, 1.0)
PLAN_LOOKS = SamplingPlan(128).schedule()


def brute_rows() -> list[FractionResult]:
    # "hard": unsolved at baseline, a coin flip at 0.5, solved with the whole CoT; "easy": solved at 0.
    counts = {"hard": (0, 64, 128), "easy": (100, 60, 128)}
    return [
        FractionResult(pid, fraction, 0, 0, 128, count)
        for pid, row in counts.items()
        for fraction, count in zip(FRACTIONS, row, strict=True)
    ]


def test_brute_force_against_itself_agrees_everywhere_at_full_cost() -> None:
    rows = brute_rows()
    comparison = compare(rows, rows, 128, Thresholds(), "self")
    assert comparison.adaptive_sample_ratio == 1.0
    assert comparison.adaptive_decision_agreement == 1.0
    assert comparison.adaptive_unlock_rates_within_brute_force_ci


def test_the_replay_stops_rows_on_their_own_samples_and_keeps_every_decision() -> None:
    rows = brute_rows()
    adaptive = replay_adaptive(rows, SamplingPlan(128), Thresholds(), seed=1)
    by_key = {(row.problem_id, row.fraction): row for row in adaptive}
    assert by_key[("hard", 0.0)].n == 128 and by_key[("hard", 0.0)].stop_reason == N_MAX
    assert by_key[("hard", 1.0)].n == 8 and by_key[("hard", 1.0)].stop_reason == DECIDED
    # A problem solved at baseline stops its other rows once the baseline round shows it.
    assert all(by_key[("easy", f)].n <= 16 for f in FRACTIONS)
    comparison = compare(rows, adaptive, 128, Thresholds(), "replay")
    assert comparison.adaptive_decision_agreement == 1.0
    assert comparison.adaptive_sample_ratio < 0.5
    # Replayed rows carry what served rows carry: rounds and the Rao-Blackwell potential.
    rule = StoppingRule(SamplingPlan(128), Thresholds())
    for row in adaptive:
        assert row.rounds == PLAN_LOOKS.index(row.n) + 1
        assert row.potential == row_potential(rule, row.fraction == 0.0, row.num_correct, row.n)


def test_the_replay_runs_the_plans_rule() -> None:
    rows = brute_rows()
    mixture = replay_adaptive(rows, SamplingPlan(128, rule=MIXTURE_CS), Thresholds(), seed=1)
    default = replay_adaptive(rows, SamplingPlan(128), Thresholds(), seed=1)
    assert sum(row.n for row in default) <= sum(row.n for row in mixture)
    assert compare(rows, mixture, 128, Thresholds(), "replay", MIXTURE_CS).rule == MIXTURE_CS


def test_the_operating_tables_show_both_rules_at_every_p() -> None:
    text = operating_tables(128)
    assert "| 0.3 | 80.4 | 60.8 | 0.755 |" in text  # expected samples, mixture against Bonferroni
    assert "0.0211 below, 0.0211 above" in text  # at p = tau the decided rows split evenly


def test_the_simulation_reports_the_noise_floor_beside_the_keys() -> None:
    comparison = simulated_comparison(8, FRACTIONS, 128, (0.3, 0.3), repeats=2, seed=random.Random(3).randrange(99))
    assert comparison.rows == 2 * 8 * len(FRACTIONS)
    assert 0.0 < comparison.adaptive_sample_ratio < 1.0
    assert comparison.same_samples_agreement is not None and comparison.same_samples_agreement >= 0.95
    assert comparison.brute_force_repeat_agreement is not None
    assert comparison.within_ci_share is not None
