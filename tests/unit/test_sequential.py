"""The stopping rules of adaptive sampling: their decision error rate by simulation, and their saving."""

import numpy as np
import pytest

from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.sampling_plan import sampling_plan_from_dict
from cot_transfer.domain.sequential import (
    BONFERRONI_CP,
    DECIDED,
    DEFAULT_RULE,
    MIXTURE_CS,
    N_MAX,
    RULES,
    WIDTH,
    SamplingPlan,
    StoppingRule,
    confidence_sequence,
    excludes,
    expected_samples,
)
from cot_transfer.domain.statistics import potential_intervals
from cot_transfer.domain.transfer import Thresholds

PLAN = SamplingPlan(n_max=128)
RULE = StoppingRule(PLAN, Thresholds())
ROWS = 20_000


def draw_counts(p: np.ndarray, schedule: tuple[int, ...], seed: int) -> np.ndarray:
    """Cumulative successes at each checkpoint: one Bernoulli stream per row, shape (rows, rounds)."""
    rng = np.random.default_rng(seed)
    sizes = np.diff((0, *schedule))
    return np.cumsum(rng.binomial(sizes[None, :], p[:, None]), axis=1)


def own_decisions(rule: StoppingRule, p: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each simulated row's own-part call where it stopped early (0 if never) and its samples."""
    schedule = rule.plan.schedule()
    counts = draw_counts(np.full(ROWS, p), schedule, seed)
    totals = np.broadcast_to(np.asarray(schedule), counts.shape)
    sides = rule.own_part(counts, totals)
    settled = sides != 0
    first = np.where(settled.any(axis=1), settled.argmax(axis=1), len(schedule) - 1)
    call = sides[np.arange(ROWS), first]
    return call, np.asarray(schedule)[first]


def upper_tolerance(rate: float) -> float:
    """rate plus 3 binomial standard errors of ROWS simulated rows."""
    return rate + 3 * np.sqrt(rate * (1 - rate) / ROWS)


@pytest.mark.parametrize("rule_name", RULES)
@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.45, 0.5, 0.55, 0.7, 0.95, 1.0])
def test_decision_error_rate_holds_the_stated_rate_near_and_far_from_tau(p: float, rule_name: str) -> None:
    rule = StoppingRule(SamplingPlan(128, rule=rule_name), Thresholds())
    call, _ = own_decisions(rule, p, seed=int(p * 1000))
    truth = 1 if p >= rule.thresholds.unlock_min_potential else -1
    wrong = np.mean(call == -truth)
    assert wrong <= upper_tolerance(PLAN.error_rate)


def test_repeated_fixed_n_intervals_do_not_hold_the_rate_that_is_why_a_confidence_sequence() -> None:
    # Checking a 95% Wilson interval after every round at p = tau: the first exclusion of tau
    # is wrong, and five looks make it wrong far more often than 5%.
    schedule = PLAN.schedule()
    counts = draw_counts(np.full(ROWS, 0.5), schedule, seed=7)
    totals = np.broadcast_to(np.asarray(schedule), counts.shape)
    _, high = potential_intervals(counts.ravel(), totals.ravel(), 0.95)
    below = (high.reshape(counts.shape) < 0.5).any(axis=1)
    naive_wrong = np.mean(below)
    sequential_wrong = np.mean(own_decisions(RULE, 0.5, seed=7)[0] == -1)
    assert naive_wrong > PLAN.error_rate > sequential_wrong


@pytest.mark.parametrize("rule_name", RULES)
def test_the_two_parts_share_the_error_rate_when_tau0_is_above_zero(rule_name: str) -> None:
    plan = SamplingPlan(128, rule=rule_name)
    rule = StoppingRule(plan, Thresholds(baseline_max_potential=0.1, unlock_min_potential=0.5))
    assert rule.part_error_rate == PLAN.error_rate / 2
    rng_p0 = np.full(ROWS, 0.1)  # on tau0: the baseline truth is "unsolved" (p0 <= tau0)
    counts = draw_counts(rng_p0, PLAN.schedule(), seed=11)
    totals = np.broadcast_to(np.asarray(PLAN.schedule()), counts.shape)
    sides = rule.baseline_side(counts, totals)
    settled = sides != 0
    first_call = sides[np.arange(ROWS), np.where(settled.any(axis=1), settled.argmax(axis=1), 0)]
    baseline_wrong = np.mean(settled.any(axis=1) & (first_call == 1))
    own_wrong = np.mean(own_decisions(rule, 0.5, seed=12)[0] == -1)
    assert baseline_wrong + own_wrong <= upper_tolerance(PLAN.error_rate)


def test_with_tau0_zero_the_baseline_call_is_brute_forces_on_the_same_samples() -> None:
    p0 = np.repeat([0.0, 0.002, 0.01, 0.05, 0.3], ROWS // 5)
    counts = draw_counts(p0, PLAN.schedule(), seed=3)
    totals = np.broadcast_to(np.asarray(PLAN.schedule()), counts.shape)
    sides = RULE.baseline_side(counts, totals)
    # Settled "solved" at the first round with a correct sample; never "unsolved" before n_max.
    assert not (sides == -1).any()
    adaptive_solved = (sides == 1).any(axis=1)
    brute_force_solved = ~RULE.thresholds.unsolved_at_baseline(counts[:, -1] / PLAN.n_max)
    assert np.array_equal(adaptive_solved, brute_force_solved)
    assert np.array_equal(RULE.baseline_solved(counts[:, -1], PLAN.n_max) == 1, brute_force_solved)


@pytest.mark.parametrize("rule_name", RULES)
def test_expected_samples_match_the_simulation(rule_name: str) -> None:
    rule = StoppingRule(SamplingPlan(128, rule=rule_name), Thresholds())
    for p in (0.05, 0.3, 0.5, 0.9):
        _, drawn = own_decisions(rule, p, seed=int(p * 100) + 1)
        # p0 = 0: the baseline never settles "solved", so the row only stops on its own part.
        expected = expected_samples(rule, 0.0, [p])[1]
        assert drawn.mean() == pytest.approx(expected, rel=0.03)


def test_expected_saving_under_a_u_shaped_prior_of_potentials() -> None:
    # Transfer curves sit mostly near 0 and 1: potentials drawn from Beta(0.3, 0.3), one
    # baseline and ten fractions per problem; brute force draws 128 per row.
    rng = np.random.default_rng(5)
    problems = 200
    baselines = rng.beta(0.3, 0.3, problems)
    fractions = rng.beta(0.3, 0.3, (problems, 10))
    drawn = sum(sum(expected_samples(RULE, b, list(row))) for b, row in zip(baselines, fractions, strict=True))
    ratio = drawn / (problems * 11 * PLAN.n_max)
    assert ratio < 0.25


def test_a_problem_solved_at_baseline_settles_its_other_rows() -> None:
    assert RULE.stop_reason(baseline=False, successes=4, trials=8, baseline_state=1) == DECIDED
    assert RULE.stop_reason(baseline=False, successes=4, trials=8, baseline_state=0) is None
    assert RULE.stop_reason(baseline=True, successes=1, trials=8, baseline_state=0) == DECIDED
    assert RULE.stop_reason(baseline=True, successes=0, trials=64, baseline_state=0) is None
    assert RULE.stop_reason(baseline=True, successes=0, trials=128, baseline_state=0) == N_MAX
    assert RULE.stop_reason(baseline=False, successes=0, trials=8, baseline_state=0) == DECIDED


def test_target_width_stops_an_undecided_row() -> None:
    rule = StoppingRule(SamplingPlan(128, target_width=0.55), Thresholds())
    assert rule.stop_reason(baseline=False, successes=16, trials=32, baseline_state=0) == WIDTH
    assert RULE.stop_reason(baseline=False, successes=16, trials=32, baseline_state=0) is None


def test_confidence_sequence_edges_are_where_the_martingale_crosses() -> None:
    low, high = confidence_sequence([0, 4, 8, 64], [8, 8, 8, 128], 0.05)
    assert low[0] == 0.0 and high[3] < 1.0 and high[2] == 1.0
    assert not excludes([4], [8], [0.5], 0.05)[0]
    for s, t, lo, hi in zip([0, 4, 8, 64], [8, 8, 8, 128], low, high, strict=True):
        if lo > 0:
            assert excludes(s, t, lo * 0.99, 0.05) and not excludes(s, t, lo * 1.01, 0.05)
        if hi < 1:
            assert excludes(s, t, min(1.0, hi * 1.01), 0.05) and not excludes(s, t, hi * 0.99, 0.05)


def test_the_rule_is_named_in_the_plan_and_its_settings() -> None:
    assert PLAN.rule == DEFAULT_RULE == BONFERRONI_CP
    assert sampling_plan_from_dict(PLAN.to_dict()) == PLAN
    old = SamplingPlan(128, rule=MIXTURE_CS)
    assert sampling_plan_from_dict(old.to_dict()) == old
    # Folders written before rules had names hold no rule: they ran the mixture rule, and their
    # settings (and so their hash) are unchanged; a plan under another rule hashes differently.
    assert "rule" not in old.to_dict()
    legacy = sampling_plan_from_dict({"n_max": 128, "rounds": [8], "error_rate": 0.05})
    assert legacy is not None and legacy.rule == MIXTURE_CS
    assert PLAN.to_dict() != old.to_dict()
    with pytest.raises(InvalidArgumentError, match=r"sampling_plan\.rule"):
        SamplingPlan(64, rule="sprt").check(max_n=256, max_rounds=16)


def test_clopper_pearson_split_over_the_looks_decides_where_one_look_would_not() -> None:
    rule = StoppingRule(PLAN, Thresholds())
    assert rule.looks == 5
    # 20 of 64: the one-sided 99% upper bound is below 0.5 (decided); the 99.5% one is not
    # needed by the decision, only by the row's two-sided interval at alpha / (2K) a side.
    assert rule.own_part(20, 64) == -1
    low, high = rule.interval(20, 64)
    assert 0.17 < low < 20 / 64 < high < 0.5
    # The mixture sequence holds 20 of 64 open: that is the samples the new rule saves.
    assert StoppingRule(SamplingPlan(128, rule=MIXTURE_CS), Thresholds()).own_part(20, 64) == 0


def test_schedule_and_validation() -> None:
    assert PLAN.schedule() == (8, 16, 32, 64, 128)
    assert SamplingPlan(100, (8, 8, 16)).schedule() == (8, 16, 32, 48, 64, 80, 96, 100)
    assert SamplingPlan(100, (8, 8, 16)).round_sizes()[-1] == 4
    with pytest.raises(InvalidArgumentError, match=r"sampling_plan\.n_max"):
        SamplingPlan(0).check(max_n=256, max_rounds=16)
    with pytest.raises(InvalidArgumentError, match=r"sampling_plan.rounds\[1\]"):
        SamplingPlan(64, (8, 0)).check(max_n=256, max_rounds=16)
    with pytest.raises(InvalidArgumentError, match=r"sampling_plan\.rounds"):
        SamplingPlan(256, (1,)).check(max_n=256, max_rounds=16)
    with pytest.raises(InvalidArgumentError, match=r"sampling_plan\.error_rate"):
        SamplingPlan(64, error_rate=0.0).check(max_n=256, max_rounds=16)
    with pytest.raises(InvalidArgumentError, match=r"sampling_plan\.target_width"):
        SamplingPlan(64, target_width=1.5).check(max_n=256, max_rounds=16)
