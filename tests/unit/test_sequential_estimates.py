"""What adaptive rows estimate: the Rao-Blackwell potential's bias, the row interval's coverage at
the stopping time, and the two rules' samples and wrong decisions, exactly over the path tree and
by simulation from known potentials."""

import itertools

import numpy as np
import pytest

from cot_transfer.domain.sequential import BONFERRONI_CP, MIXTURE_CS, RULES, SamplingPlan, StoppingRule
from cot_transfer.domain.sequential_estimates import (
    first_round_shares,
    operating_characteristics,
    rao_blackwell_potential,
    row_potential,
    row_potential_intervals,
)
from cot_transfer.domain.statistics import potential_intervals
from cot_transfer.domain.transfer import Thresholds

PLAN = SamplingPlan(n_max=128)  # the default plan: looks after 8, 16, 32, 64, 128 samples
ALPHA = PLAN.error_rate
BIAS_PS = (0.1, 0.3, 0.5, 0.7, 0.9)
SAMPLE_PS = (0.1, 0.3, 0.45, 0.5, 0.55, 0.7, 0.9)
ROWS = 40_000


def rule_named(name: str, thresholds: Thresholds | None = None) -> StoppingRule:
    return StoppingRule(SamplingPlan(128, rule=name), thresholds or Thresholds())


def share_table(rule: StoppingRule, baseline: bool) -> np.ndarray:
    """The Rao-Blackwell potential by (look, successes), NaN where no path reaches."""
    looks = rule.plan.schedule()
    table = np.full((len(looks), looks[-1] + 1), np.nan)
    for index, shares in enumerate(first_round_shares(rule.own_stop(baseline), looks)):
        table[index, : shares.size] = shares
    return table


def simulate(rule: StoppingRule, p: float, seed: int, baseline_p: float | None = None) -> dict[str, np.ndarray]:
    """ROWS rows above fraction 0 drawn as ``serving/adaptive.py`` draws them: each stops at the
    first look where its own samples settle it or, with ``baseline_p``, where its problem's
    baseline row (independent samples, tau0 = 0) has shown a correct sample."""
    rng = np.random.default_rng(seed)
    looks = np.asarray(rule.plan.schedule())
    sizes = np.diff(np.concatenate(([0], looks)))
    counts = np.cumsum(rng.binomial(sizes[None, :], p, size=(ROWS, sizes.size)), axis=1)
    stop_own = rule.own_stop(baseline=False)
    stopped = np.stack([stop_own(int(total))[counts[:, j]] for j, total in enumerate(looks)], axis=1)
    if baseline_p is not None:
        baseline_counts = np.cumsum(rng.binomial(sizes[None, :], baseline_p, size=counts.shape), axis=1)
        stopped |= baseline_counts > 0
    stopped[:, -1] = True
    look = stopped.argmax(axis=1)
    successes = counts[np.arange(ROWS), look]
    trials = looks[look]
    # The rule's interval at each look, by successes, read off at each row's stop.
    bounds = np.full((2, looks.size, looks[-1] + 1), np.nan)
    for j, total in enumerate(looks):
        bounds[:, j, : total + 1] = rule.interval(np.arange(total + 1), total)
    low, high = bounds[0, look, successes], bounds[1, look, successes]
    return {
        "rao_blackwell": share_table(rule, baseline=False)[look, successes],
        "share": successes / trials,
        "trials": trials,
        "covered": (low <= p) & (p <= high),
    }


@pytest.mark.parametrize("rule_name", RULES)
@pytest.mark.parametrize("baseline", [False, True])
def test_the_rao_blackwell_potential_is_exactly_unbiased(rule_name: str, baseline: bool) -> None:
    rule = rule_named(rule_name)
    for p in (*BIAS_PS, 0.01, 0.45, 0.55):
        characteristics = operating_characteristics(rule, baseline, p)
        assert abs(characteristics.bias_rao_blackwell) < 1e-9
        # It uses every sample: no worse than k / t at the stop by more than a first round's noise.
        assert characteristics.rmse_rao_blackwell <= np.sqrt(p * (1 - p) / PLAN.schedule()[0]) + 1e-12


@pytest.mark.parametrize("rule_name", RULES)
def test_k_over_t_at_the_stop_is_biased_which_is_why_the_row_reports_the_rao_blackwell_estimate(
    rule_name: str,
) -> None:
    rule = rule_named(rule_name)
    # Early stops keep a row's high (or low) start: about 0.04 away from p at 0.3 and 0.7.
    assert operating_characteristics(rule, False, 0.3).bias_share < -0.03
    assert operating_characteristics(rule, False, 0.7).bias_share > 0.03


@pytest.mark.parametrize("rule_name", RULES)
@pytest.mark.parametrize("p", BIAS_PS)
def test_simulated_rows_have_no_bias_even_when_a_solved_baseline_stops_them(rule_name: str, p: float) -> None:
    rule = rule_named(rule_name)
    alone = simulate(rule, p, seed=int(p * 100))
    assert abs(alone["rao_blackwell"].mean() - p) <= 0.01
    if p in (0.3, 0.7):  # where k / t at the stop is off by about 0.04
        assert abs(alone["share"].mean() - p) > 0.03
    # A baseline solved now and then (independent of the row's samples) stops rows at any look.
    beside = simulate(rule, p, seed=int(p * 100) + 1, baseline_p=0.02)
    assert abs(beside["rao_blackwell"].mean() - p) <= 0.01
    assert not np.isnan(alone["rao_blackwell"]).any() and not np.isnan(beside["rao_blackwell"]).any()


@pytest.mark.parametrize("rule_name", RULES)
def test_the_row_interval_covers_the_true_potential_at_the_stopping_time(rule_name: str) -> None:
    rule = rule_named(rule_name)
    for p in np.linspace(0.005, 0.995, 100):
        assert operating_characteristics(rule, False, float(p)).interval_coverage >= 1 - ALPHA
        assert operating_characteristics(rule, True, float(p)).interval_coverage >= 1 - ALPHA
    for p in BIAS_PS:
        covered = simulate(rule, p, seed=int(p * 1000), baseline_p=0.02)["covered"].mean()
        assert covered >= 1 - ALPHA - 3 * np.sqrt(ALPHA * (1 - ALPHA) / ROWS)


def test_bonferroni_clopper_pearson_draws_a_fifth_fewer_samples_at_p_03_with_the_same_guarantee() -> None:
    new, old = rule_named(BONFERRONI_CP), rule_named(MIXTURE_CS)
    for p in SAMPLE_PS:
        new_samples = operating_characteristics(new, False, p).expected_samples
        old_samples = operating_characteristics(old, False, p).expected_samples
        assert new_samples <= old_samples
        if p == 0.3:
            assert new_samples <= 0.8 * old_samples
    simulated_new = simulate(new, 0.3, seed=31)["trials"].mean()
    simulated_old = simulate(old, 0.3, seed=31)["trials"].mean()
    assert simulated_new <= 0.8 * simulated_old
    assert simulated_new == pytest.approx(operating_characteristics(new, False, 0.3).expected_samples, rel=0.02)


@pytest.mark.parametrize("rule_name", RULES)
@pytest.mark.parametrize("thresholds", [Thresholds(), Thresholds(0.1, 0.5), Thresholds(0.0, 0.3)])
def test_a_row_is_decided_on_the_wrong_side_with_probability_at_most_alpha_at_every_p(
    rule_name: str, thresholds: Thresholds
) -> None:
    rule = rule_named(rule_name, thresholds)
    tau = thresholds.unlock_min_potential
    for p in sorted({*np.linspace(0.0, 1.0, 41).tolist(), tau, *SAMPLE_PS}):
        assert operating_characteristics(rule, False, p).decided_wrong <= rule.part_error_rate + 1e-12
    if thresholds.baseline_max_potential > 0:
        tau0 = thresholds.baseline_max_potential
        for p in (0.0, 0.05, tau0, 0.15, 0.3):
            assert operating_characteristics(rule, True, p).decided_wrong <= rule.part_error_rate + 1e-12


@pytest.mark.parametrize("rule_name", RULES)
def test_at_tau_the_decided_rows_split_evenly_so_alpha_bounds_rows_not_decided_rows(rule_name: str) -> None:
    # P(decided below) <= alpha holds at p = tau, but few rows are decided there and those that are
    # split evenly: half of the *decided* rows are on the side Thresholds calls wrong.
    at_tau = operating_characteristics(rule_named(rule_name), False, 0.5)
    assert at_tau.decided_above == pytest.approx(at_tau.decided_below, abs=1e-12)
    assert at_tau.decided_wrong <= ALPHA
    assert at_tau.decided_wrong / (at_tau.decided_above + at_tau.decided_below) == pytest.approx(0.5)


def test_the_path_count_equals_the_conditional_mean_of_the_first_round_by_enumeration() -> None:
    # A small plan (looks after 2, 4, 6 samples) where every sample path can be listed.
    rule = StoppingRule(SamplingPlan(6, rounds=(2,), rule=MIXTURE_CS, target_width=0.9), Thresholds())
    looks = rule.plan.schedule()
    stop = rule.own_stop(baseline=False)
    found: dict[tuple[int, int], list[float]] = {}
    for path in itertools.product((0, 1), repeat=looks[-1]):
        for index, total in enumerate(looks):
            successes = sum(path[:total])
            if index == len(looks) - 1 or stop(total)[successes]:
                found.setdefault((index, successes), []).append(sum(path[: looks[0]]) / looks[0])
                break
    shares = first_round_shares(stop, looks)
    assert any(index < len(looks) - 1 for index, _ in found)  # the rule stops some paths early
    for (index, successes), firsts in found.items():
        assert shares[index][successes] == pytest.approx(np.mean(firsts))


def test_row_potential_follows_the_schedule_and_falls_back_off_it() -> None:
    rule = rule_named(BONFERRONI_CP)
    # Stopped after the first look: its only round's share.
    assert row_potential(rule, False, 0, 8) == 0.0
    # 20 of 64, stopped at the fourth look: pulled to the paths that were still open at 8 to 32.
    estimate = row_potential(rule, False, 20, 64)
    assert estimate == rao_blackwell_potential(rule, False, 20, (8, 16, 32, 64))
    assert 0.2 < estimate < 0.45 and estimate != 20 / 64
    # The baseline row (tau0 = 0) stops at its first correct sample: one found at the second look
    # means the first round had none, so its first-round share, and the estimate, is 0.
    assert row_potential(rule, True, 1, 16) == 0.0
    # A row whose samples were not drawn on the schedule (an engine that returned fewer).
    assert row_potential(rule, False, 5, 13) == 5 / 13
    with pytest.raises(ValueError, match="no potential"):
        rao_blackwell_potential(rule, False, 9, (8,))


def test_row_intervals_are_wilsons_for_fixed_rows_and_anytime_valid_for_adaptive_rows() -> None:
    successes, trials = np.array([3, 3, 20]), np.array([8, 8, 64])
    low, high = row_potential_intervals(successes, trials, [False, True, True], 0.95)
    wilson_low, wilson_high = potential_intervals(successes, trials, 0.95)
    assert (low[0], high[0]) == (wilson_low[0], wilson_high[0])
    assert low[1] < wilson_low[1] and high[1] > wilson_high[1]  # wider: it holds at any stop
    # Rows stopped by either rule (and by a solved baseline): covered at the stopping time.
    for name in RULES:
        for p in (0.1, 0.3, 0.5):
            rows = simulate(rule_named(name), p, seed=int(p * 77), baseline_p=0.02)
            successes = np.rint(rows["share"] * rows["trials"]).astype(int)
            low, high = row_potential_intervals(successes, rows["trials"], np.ones(ROWS, dtype=bool), 1 - ALPHA)
            assert np.mean((low <= p) & (p <= high)) >= 1 - ALPHA
