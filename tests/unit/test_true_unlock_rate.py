"""The true unlock rate's intervals against known truth (``cot_transfer.domain.true_rate``).

The grid: six adversarial populations (potentials just under tau, just over tau, exactly at
tau, a U-shaped noisy baseline with and without transfer, bimodal transfer) x tau0 in {0, 0.1}
x (problems, n) from 12 problems at n = 8 to 200 at n = 128, 300 experiments each. Every
setting must cover the true rate R (truly unsolved -> truly reaching tau) and the rate R_m of
the measured-unsolved problems at least 93% of the time. ``pytest -s`` prints the table
(``python -m tests.simulation true-rate`` prints the full 108-setting one).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from cot_transfer.cli.main import main
from cot_transfer.domain.analysis import analyze
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.domain.true_rate import (
    baseline_error_for,
    baseline_samples_to_decide,
    measured_unsolved_bounds,
    samples_to_decide,
    statuses,
    true_rate_bounds,
)
from cot_transfer.experiment.markdown import report_markdown
from cot_transfer.experiment.report import build_summary, load_run
from tests.simulation import true_rate_coverage, true_rate_populations, write_simulated_run

SIZES = ((12, 8), (12, 128), (50, 32), (200, 8), (200, 128))
EXPERIMENTS = 300
MIN_COVERAGE = 0.93


def test_true_rate_intervals_cover_the_truth_in_every_setting() -> None:
    rng = np.random.default_rng(22)
    failures = []
    print("\npopulation | tau0 | problems | n | R | coverage | mean width | R_m | coverage | mean width | measured CP")
    for tau0 in (0.0, 0.1):
        thresholds = Thresholds(baseline_max_potential=tau0, unlock_min_potential=0.5)
        for name, population in true_rate_populations(tau0).items():
            for problems, n in SIZES:
                result = true_rate_coverage(rng, population, problems, n, thresholds, EXPERIMENTS)
                print(
                    f"{name} | {tau0:g} | {problems} | {n} | {result.truth.rate:.3f} | {result.coverage:.3f}"
                    f" | {result.mean_width:.3f} | {result.truth.measured_unsolved_rate:.3f}"
                    f" | {result.measured_coverage:.3f} | {result.measured_mean_width:.3f}"
                    f" | {result.plug_in_coverage:.3f}"
                )
                if result.coverage < MIN_COVERAGE or not result.measured_coverage >= MIN_COVERAGE:
                    failures.append((name, tau0, problems, n, result.coverage, result.measured_coverage))
    assert not failures, failures


def test_the_bounds_narrow_where_the_data_decide() -> None:
    """tau0 = 0.1, n = 128: 0 of 128 is surely below 0.1, and potentials 0.9 and 0.02 are surely
    on their sides; 200 problems leave only the sampling of problems (truth 0.4)."""
    rng = np.random.default_rng(5)
    thresholds = Thresholds(0.1, 0.5)
    size = (200, 200)
    unsolved = rng.random(size) < 0.5
    p0 = np.where(unsolved, 0.0, 0.6)
    q = np.where(rng.random(size) < 0.4, 0.9, 0.02)
    baseline_k, k = rng.binomial(128, p0), rng.binomial(128, q)
    status = statuses(baseline_k, 128, k, 128, thresholds)
    low, high = true_rate_bounds(status, np.ones(size, dtype=bool))
    assert ((low <= 0.4) & (high >= 0.4)).mean() >= MIN_COVERAGE
    assert float((high - low).mean()) < 0.35


def test_tau0_zero_cannot_identify_the_unsolved_set() -> None:
    """A true baseline of 0.001 looks like 0 at any affordable n: no problem is surely unsolved,
    so the bounds are [0, 1] however the rows look; the measured-unsolved rate stays informative."""
    thresholds = Thresholds(0.0, 0.5)
    baseline_k = np.zeros(100, dtype=int)
    k = np.r_[np.full(50, 16), np.zeros(50, dtype=int)]
    status = statuses(baseline_k, 16, k, 16, thresholds)
    assert not status.unsolved_in.any()
    low, high = true_rate_bounds(status, np.ones(100, dtype=bool))
    assert (float(low), float(high)) == (0.0, 1.0)
    m_low, m_high = measured_unsolved_bounds(status, np.ones(100, dtype=bool))
    assert 0.3 < float(m_low) < 0.5 < float(m_high) < 0.7
    assert baseline_samples_to_decide(thresholds) is None
    # 0 of n is surely below 0.1 at a baseline error of at most 0.05 from n = 29 on (0.9^29 = 0.047).
    assert baseline_samples_to_decide(Thresholds(0.1, 0.5)) == 29
    assert baseline_error_for(Thresholds(0.1, 0.5), 32) == pytest.approx(0.9**32)
    assert baseline_error_for(Thresholds(0.1, 0.5), 8) == baseline_error_for(thresholds, 32) == 0.005
    assert statuses(0, 32, 0, 32, Thresholds(0.1, 0.5)).unsolved_in
    assert not statuses(0, 28, 0, 28, Thresholds(0.1, 0.5)).unsolved_in


def test_samples_to_decide_grows_near_tau() -> None:
    thresholds = Thresholds(0.0, 0.5)
    assert samples_to_decide([0.95, 0.02], 8, thresholds) == 16
    assert samples_to_decide([0.6, 0.4], 8, thresholds) == 512
    assert samples_to_decide([0.5], 8, thresholds) is None


def test_analysis_fields_match_the_domain_functions() -> None:
    rows = [FractionResult("a", 0.0, 0, 10, 16, 0), FractionResult("a", 1.0, 10, 10, 16, 16)]
    rows += [FractionResult("b", 0.0, 0, 10, 16, 0), FractionResult("b", 1.0, 10, 10, 16, 7)]
    final = analyze(rows, thresholds=Thresholds(0.0, 0.5)).per_fraction[-1]
    assert final.true_unlock_rate_interval is not None
    assert (final.true_unlock_rate_interval.low, final.true_unlock_rate_interval.high) == (0.0, 1.0)
    assert final.true_unlock_undecided == 2
    assert final.true_unlock_rate is not None and 0.4 < final.true_unlock_rate < 0.8


def test_report_leads_with_the_true_rate_on_a_simulated_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through ``cot-transfer report``: tau0 = 0.1 and n = 128 identify the rate; the truth is
    0.4 P(Beta(20, 4) >= 0.5) + 0.6 P(Beta(1, 20) >= 0.5) = 0.400 of the truly unsolved."""
    rng = np.random.default_rng(9)
    problems = 150
    unsolved = rng.random(problems) < 0.6
    baseline = np.where(unsolved, rng.uniform(0.0, 0.02, problems), rng.uniform(0.4, 1.0, problems))
    helped = rng.random(problems) < 0.4
    at_fraction = np.where(helped, rng.beta(20, 4, problems), rng.beta(1, 20, problems))
    truth = 0.4 * stats.beta.sf(0.5, 20, 4) + 0.6 * stats.beta.sf(0.5, 1, 20)
    folder = write_simulated_run(tmp_path / "run", rng, baseline, at_fraction, 128, Thresholds(0.1, 0.5))
    assert main(["report", str(folder)]) == 0
    assert "unlock rate" in capsys.readouterr().out
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    final = summary["per_fraction"][-1]
    interval = final["true_unlock_rate_interval"]
    assert interval["low"] <= truth <= interval["high"]
    assert interval["high"] - interval["low"] < 0.45
    assert summary["true_unlock_rate_interval"][-1] == [interval["low"], interval["high"]]
    report = (folder / "report.md").read_text(encoding="utf-8")
    headline = report.split("## Headline", 1)[1]
    assert headline.index("true unlock rate") < headline.index("measured at n = 128")
    assert "samples" in headline


def _summary_and_report(folder: Path) -> tuple[dict[str, Any], str]:
    """The report's text without its plots (``write_report`` is checked once, above)."""
    run = load_run(folder)
    summary = build_summary(run)
    names = {kind: f"{kind}.png" for kind in ("unlock_rate", "potential", "heatmap")}
    return summary, report_markdown(summary, {**names, "results_csv": "results.csv", "summary_json": "summary.json"})


def test_report_says_when_the_true_rate_is_not_identified(tmp_path: Path) -> None:
    """tau0 = 0 and half the "unsolved" problems truly solved at 0.001: the bounds are [0, 1]
    and the report says why."""
    rng = np.random.default_rng(10)
    problems = 30
    baseline = np.where(rng.random(problems) < 0.5, 0.0, 0.001)
    at_fraction = rng.uniform(0.0, 1.0, problems)
    folder = write_simulated_run(tmp_path / "run", rng, baseline, at_fraction, 16, Thresholds(0.0, 0.5))
    summary, report = _summary_and_report(folder)
    assert summary["per_fraction"][-1]["true_unlock_rate_interval"] == {"low": 0.0, "high": 1.0}
    assert "not identified" in report
    assert not math.isnan(summary["per_fraction"][-1]["true_unlock_rate"])


def test_the_rate_without_the_answer_uses_the_answer_free_problems(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    problems = 40
    baseline = np.zeros(problems)
    at_fraction = np.where(np.arange(problems) < 20, 0.95, 0.0)
    # The first 20 (the ones that transfer) state the answer from 0.5 on; the rest only at 1.0.
    answer_from = np.where(np.arange(problems) < 20, 0.5, 1.0)
    folder = write_simulated_run(
        tmp_path / "run", rng, baseline, at_fraction, 32, Thresholds(0.0, 0.5), answer_from=answer_from
    )
    summary, _ = _summary_and_report(folder)
    middle, final = summary["per_fraction"][1], summary["per_fraction"][-1]
    assert middle["unsolved_without_answer"] == final["unsolved_without_answer"] == 20
    assert final["unlock_rate_without_answer"] == 0.0 and final["true_unlock_rate_without_answer"] < 0.1
    assert final["unsolved_prefix_without_answer"] == 0
