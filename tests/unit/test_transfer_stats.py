import pytest

from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.transfer import FractionOutcome, Thresholds, potential, summarize


def outcomes(table: dict[str, dict[float, int]], n: int = 4) -> list[FractionOutcome]:
    return [
        FractionOutcome(problem_id, fraction, n, correct)
        for problem_id, row in table.items()
        for fraction, correct in row.items()
    ]


def test_potential_is_share_correct() -> None:
    assert potential(3, 4) == 0.75
    assert potential(0, 1) == 0.0
    with pytest.raises(ValueError):
        potential(5, 4)
    with pytest.raises(ValueError):
        potential(0, 0)


def test_unlock_counts_only_problems_unsolved_at_baseline() -> None:
    table = {
        "solved-alone": {0.0: 4, 0.5: 4, 1.0: 4},
        "unlocked-at-half": {0.0: 0, 0.5: 2, 1.0: 4},
        "unlocked-at-end": {0.0: 0, 0.5: 1, 1.0: 3},
        "never": {0.0: 0, 0.5: 0, 1.0: 1},
    }
    summary = summarize(
        outcomes(table),
        fractions=(0.0, 0.5, 1.0),
        n_samples=4,
        thresholds=Thresholds(),
        strong_correct={"solved-alone": True, "unlocked-at-half": True, "unlocked-at-end": True},
    )
    assert summary.n_problems == 4
    assert summary.baseline_unsolved == 3
    assert [stats.unlocked for stats in summary.per_fraction] == [0, 1, 2]
    assert [stats.unlock_rate for stats in summary.per_fraction] == [0.0, 1 / 3, 2 / 3]
    assert [stats.weak_potential_mean for stats in summary.per_fraction] == [0.25, 7 / 16, 12 / 16]
    assert summary.strong_solve_rate == 0.75


def test_thresholds_are_respected() -> None:
    table = {"a": {0.0: 1, 1.0: 3}, "b": {0.0: 0, 1.0: 2}}
    lenient = summarize(outcomes(table), (0.0, 1.0), 4, Thresholds(0.25, 0.75), {})
    assert lenient.baseline_unsolved == 2
    assert lenient.per_fraction[1].unlocked == 1
    strict = summarize(outcomes(table), (0.0, 1.0), 4, Thresholds(0.0, 0.5), {})
    assert strict.baseline_unsolved == 1
    assert strict.per_fraction[1].unlocked == 1


def test_no_unsolved_problem_gives_zero_rate_not_division_error() -> None:
    summary = summarize(outcomes({"a": {0.0: 4, 1.0: 4}}), (0.0, 1.0), 4, Thresholds(), {})
    assert summary.baseline_unsolved == 0
    assert all(stats.unlock_rate == 0.0 for stats in summary.per_fraction)


def test_missing_and_duplicate_results_are_errors() -> None:
    with pytest.raises(ValueError, match="missing"):
        summarize(outcomes({"a": {0.0: 1}}), (0.0, 0.5), 4, Thresholds(), {})
    duplicated = outcomes({"a": {0.0: 1}}) * 2
    with pytest.raises(ValueError, match="duplicate"):
        summarize(duplicated, (0.0,), 4, Thresholds(), {})


@pytest.mark.parametrize(
    ("tau0", "tau", "field"),
    [
        (-0.1, 0.5, "thresholds.baseline_max_potential"),
        (0.0, 1.5, "thresholds.unlock_min_potential"),
        (0.5, 0.5, "thresholds.unlock_min_potential"),
        (float("nan"), 0.5, "thresholds.baseline_max_potential"),
    ],
)
def test_bad_thresholds_name_the_field(tau0: float, tau: float, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        Thresholds(tau0, tau).check()
    assert caught.value.field == field
