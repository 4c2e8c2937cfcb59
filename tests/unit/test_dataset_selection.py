"""Choosing a run's problems: --ids, a seeded --sample (stratified by --group-by), --limit."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cot_transfer.cli.main import build_parser, main
from cot_transfer.cli.run import UsageError, inputs_from_args
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.selection import Selection, SelectionError, allocate, group_of, read_ids, select

LEVELS = {"1": 7, "2": 13, "3": 19, "4": 25, "5": 36}  # 100 problems, unequal strata as in MATH-500


def dataset() -> list[Problem]:
    subjects = ("Algebra", "Geometry", "Number Theory")
    problems = []
    for level, count in LEVELS.items():
        for index in range(count):
            metadata = {"level": int(level), "subject": subjects[index % len(subjects)]}
            problems.append(Problem(f"L{level}-{index}", f"problem {level}.{index}", str(index), metadata))
    return problems


def ids_of(problems: list[Problem]) -> list[str]:
    return [problem.id for problem in problems]


def test_a_sample_is_reproducible_and_keeps_the_dataset_order() -> None:
    problems = dataset()
    first = select(problems, Selection(sample=20, seed=7))
    assert ids_of(first) == ids_of(select(problems, Selection(sample=20, seed=7)))
    assert len(first) == 20 and len(set(ids_of(first))) == 20
    order = {problem.id: index for index, problem in enumerate(problems)}
    assert [order[problem_id] for problem_id in ids_of(first)] == sorted(order[p] for p in ids_of(first))


def test_different_seeds_draw_different_samples() -> None:
    problems = dataset()
    samples = {tuple(ids_of(select(problems, Selection(sample=20, seed=seed)))) for seed in range(10)}
    assert len(samples) == 10


@pytest.mark.parametrize("k", [1, 5, 17, 50, 99, 100])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_stratified_sample_is_within_one_of_each_groups_exact_share(k: int, seed: int) -> None:
    problems = dataset()
    chosen = select(problems, Selection(sample=k, seed=seed), group_by=("level",))
    counts = Counter(problem.metadata["level"] for problem in chosen)
    assert sum(counts.values()) == k
    for level, size in LEVELS.items():
        assert abs(counts[int(level)] - k * size / len(problems)) < 1


def test_stratifying_by_two_fields_uses_their_combinations() -> None:
    problems = dataset()
    chosen = select(problems, Selection(sample=30, seed=3), group_by=("level", "subject"))
    strata = Counter(group_of(problem, ("level", "subject")) for problem in problems)
    counts = Counter(group_of(problem, ("level", "subject")) for problem in chosen)
    for stratum, size in strata.items():
        assert abs(counts[stratum] - 30 * size / len(problems)) < 1


def test_largest_remainder_allocation() -> None:
    # Quotas 3.5, 1.05, 0.45 of 5: floors 3, 1, 0; the one left goes to the largest remainder (0.5).
    assert allocate({"a": 70, "b": 21, "c": 9}, 5) == {"a": 4, "b": 1, "c": 0}
    assert allocate({"a": 1, "b": 1, "c": 1}, 3) == {"a": 1, "b": 1, "c": 1}
    # Equal remainders: the larger group first.
    assert allocate({"small": 2, "big": 6}, 1) == {"small": 0, "big": 1}


def test_problems_without_the_group_field_form_a_group_of_their_own() -> None:
    problems = [Problem(str(index), "q", "1", {"level": 1} if index < 6 else {}) for index in range(10)]
    chosen = select(problems, Selection(sample=5, seed=0), group_by=("level",))
    assert Counter("level" in problem.metadata for problem in chosen) == {True: 3, False: 2}


def test_ids_choose_in_dataset_order_and_unknown_ids_are_named() -> None:
    problems = dataset()
    assert ids_of(select(problems, Selection(ids=("L3-2", "L1-0")))) == ["L1-0", "L3-2"]
    with pytest.raises(SelectionError, match=r"2 id\(s\) not in the dataset: 'nope', 'L9-9'"):
        select(problems, Selection(ids=("L1-0", "nope", "L9-9")))


def test_ids_then_sample_then_limit() -> None:
    problems = dataset()
    named = tuple(problem.id for problem in problems[:40])
    chosen = select(problems, Selection(ids=named, sample=10, seed=4, limit=3))
    assert len(chosen) == 3 and set(ids_of(chosen)) <= set(named)
    assert ids_of(chosen) == ids_of(select(problems, Selection(ids=named, sample=10, seed=4)))[:3]


def test_a_sample_larger_than_the_dataset_is_refused() -> None:
    with pytest.raises(SelectionError, match="--sample 101: the dataset has only 100 problems"):
        select(dataset(), Selection(sample=101))


def test_ids_from_a_file_or_a_list(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("# chosen by hand\nL1-0\n\n L2-3 \n", encoding="utf-8")
    assert read_ids(str(path)) == ("L1-0", "L2-3")
    assert read_ids("a, b,,c") == ("a", "b", "c")
    with pytest.raises(SelectionError, match="names no id"):
        read_ids(" , ")


def _math_file(tmp_path: Path) -> Path:
    path = tmp_path / "math.jsonl"
    lines = [
        {"unique_id": problem.id, "problem": problem.problem, "answer": problem.answer, **problem.metadata}
        for problem in dataset()
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_the_command_line_samples_with_seed_and_records_the_selection(tmp_path: Path) -> None:
    path = _math_file(tmp_path)
    argv = ["run", "--address", "127.0.0.1:1", "--out", "unused", "--problems", str(path)]
    sampled = [*argv, "--sample", "10", "--seed", "3", "--group-by", "level"]
    args = build_parser().parse_args(sampled)
    problems, _, _ = inputs_from_args(args, None)
    again, _, _ = inputs_from_args(build_parser().parse_args(sampled), None)
    assert ids_of(problems) == ids_of(again)
    assert Counter(problem.metadata["level"] for problem in problems) == {1: 1, 2: 1, 3: 2, 4: 2, 5: 4}
    from cot_transfer.experiment.datasets import dataset_options_from_args

    recorded = dataset_options_from_args(args).model_dump(mode="json")["selection"]
    assert recorded == {"ids": [], "sample": 10, "seed": 3, "limit": None}
    with pytest.raises(UsageError, match=r"not in the dataset: 'zz'$"):
        inputs_from_args(build_parser().parse_args([*argv, "--ids", "L1-0,zz"]), None)


def test_bad_sample_and_ids_flags_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for flags, message in ((["--sample", "0"], "at least 1"), (["--ids", ","], "names no id")):
        with pytest.raises(SystemExit):
            main(["run", "--address", "127.0.0.1:1", "--out", "unused", "--problems", "x.jsonl", *flags])
        assert message in capsys.readouterr().err
