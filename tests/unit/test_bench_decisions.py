"""The decisions comparison (offline script against the served adaptive run) and ``bench --full``."""

import argparse

import pytest

from benchmarks.adaptive import decision_agreement
from benchmarks.bench import DECISIONS_N_MAX, arguments, expand_phases
from benchmarks.decisions import compare_decisions
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.transfer import Thresholds

FRACTIONS = (0.0, 0.5, 1.0)


def rows(counts: dict[str, tuple[int, ...]], n: int) -> list[FractionResult]:
    return [
        FractionResult(pid, fraction, 0, 0, n, count)
        for pid, row in counts.items()
        for fraction, count in zip(FRACTIONS, row, strict=True)
    ]


# Offline brute force at n = 128: "hard" unsolved at baseline and unlocked from 0.5 on, "easy"
# solved at baseline (no row of it unlocks).
OFFLINE = rows({"hard": (0, 70, 128), "easy": (100, 60, 128)}, 128)


def test_the_same_decisions_from_fewer_samples_agree_everywhere() -> None:
    served = rows({"hard": (0, 6, 8), "easy": (8, 8, 8)}, 8)
    assert decision_agreement(OFFLINE, served, Thresholds()) == (6, 6)
    comparison = compare_decisions(served, 10.0, OFFLINE, 45.0, 20.0, 1000, 128, 0, Thresholds())
    assert comparison.decisions_agreement_vs_offline == 1.0
    assert comparison.decisions_speedup_vs_offline == pytest.approx(4.5)
    assert comparison.served_adaptive_samples == 48 and comparison.offline_samples == 6 * 128
    assert comparison.keys() == {"decisions_speedup_vs_offline": 4.5, "decisions_agreement_vs_offline": 1.0}


def test_a_flipped_baseline_flips_every_row_of_its_problem() -> None:
    # One correct baseline sample makes "hard" solved at baseline: its three decisions change.
    served = rows({"hard": (1, 6, 8), "easy": (8, 8, 8)}, 8)
    assert decision_agreement(OFFLINE, served, Thresholds()) == (3, 6)
    # A row below tau alone changes only its own decision.
    served = rows({"hard": (0, 2, 8), "easy": (8, 8, 8)}, 8)
    comparison = compare_decisions(served, 10.0, OFFLINE, 5.0, 20.0, 1000, 128, 0, Thresholds())
    assert (comparison.rows_agreeing, comparison.rows) == (5, 6)
    assert comparison.decisions_speedup_vs_offline == pytest.approx(0.5)


def test_only_rows_both_runs_decided_count() -> None:
    # A problem the served run lacks (no CoT) and one without a baseline row are not compared.
    served = [*rows({"hard": (0, 6, 8)}, 8), FractionResult("orphan", 0.5, 0, 0, 8, 8)]
    assert decision_agreement(OFFLINE, served, Thresholds()) == (3, 3)


def parse(*argv: str) -> argparse.Namespace:
    return expand_phases(arguments().parse_args(argv))


def test_full_turns_every_phase_on_at_the_papers_n_max() -> None:
    args = parse("--full")
    assert (args.offline_compare, args.two_replicas, args.decisions) == (True, True, True)
    assert args.n_max == DECISIONS_N_MAX == 128
    assert parse("--full", "--n-max", "64").n_max == 64


def test_decisions_alone_brings_the_adaptive_phase_it_compares_with() -> None:
    args = parse("--decisions")
    assert args.n_max == 128 and not args.two_replicas and not args.offline_compare
    assert parse().n_max == 0


def test_full_refuses_a_skipped_phase() -> None:
    with pytest.raises(SystemExit, match="--skip-naive"):
        parse("--full", "--skip-naive")
