"""The testbed's task generator: determinism, correct CoTs, ground truth, JSONL records, held-out split."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import tasks, tokenizer
from testbed.tasks import ChainProblem, Rule, Split

STEP = r"(\d)([-+×△])(\d)=(\d)"
STEP_LINE = re.compile(rf"^(?:{STEP}, no: )?{STEP}(?:→(\d(?:[-+×△]\d)*))?$")


def reference_value(text: str, rule: Rule = Rule.INSIGHT) -> int:
    """An independent evaluator of a chain, left to right, mod 10."""
    value = int(text[0])
    for operator, char in zip(text[1::2], text[2::2], strict=True):
        digit = int(char)
        if operator == "△":
            value = value * digit + value + digit if rule is Rule.INSIGHT else value + digit
        else:
            value = {"+": value + digit, "-": value - digit, "×": value * digit}[operator]
        value %= 10
    return value


def test_same_seed_gives_same_problems_and_other_seed_differs() -> None:
    first = tasks.generate_problems(50, 6, seed=3)
    again = tasks.generate_problems(50, 6, seed=3)
    other = tasks.generate_problems(50, 6, seed=4)
    assert [problem.text for problem in first] == [problem.text for problem in again]
    assert [problem.text for problem in first] != [problem.text for problem in other]
    assert len({problem.text for problem in first}) == 50


@pytest.mark.parametrize("rule", list(Rule))
@pytest.mark.parametrize("steps", [2, 5, 8, 10])
def test_every_cot_step_is_right_and_the_answer_matches(steps: int, rule: Rule) -> None:
    for problem in tasks.generate_problems(40, steps, seed=steps, lucky_every=0):
        assert problem.num_steps == steps
        assert problem.text.count("△") == 1
        completion = problem.completion(rule)
        assert completion.startswith("<think>\n")
        reasoning, final = completion.removeprefix("<think>").split("</think>")
        assert final == f"\n\n\\boxed{{{problem.answer_for(rule)}}}"
        lines = reasoning.strip("\n").split("\n")
        if rule is Rule.INSIGHT and problem.is_lucky_guess:
            assert lines == [tasks.LUCKY_LINE]
            assert problem.answer == "0"
            continue
        assert len(lines) == steps
        remaining = problem.text
        for line in lines:
            match = STEP_LINE.match(line)
            assert match, line
            wrong, (left, operator, right, result, rest) = match.groups()[:4], match.groups()[4:]
            # Each line does the first operation of what is left and restates the rest.
            assert remaining.startswith(f"{left}{operator}{right}")
            assert int(result) == reference_value(f"{left}{operator}{right}", rule)
            if wrong[0] is not None:
                # A tangent: the naive result first, then the right one, on the same operands.
                assert rule is Rule.INSIGHT and operator == "△" and wrong[:3] == (left, operator, right)
                assert int(wrong[3]) == reference_value(f"{left}{operator}{right}", Rule.NAIVE) != int(result)
            expected_rest = result + remaining[3:]
            assert (rest or result) == expected_rest
            remaining = expected_rest
        assert remaining == problem.answer_for(rule) == str(reference_value(problem.text, rule))


def test_the_insight_always_changes_the_answer_unless_a_lucky_guess() -> None:
    for problem in tasks.generate_problems(300, [6, 7, 8, 9, 10], seed=1):
        if problem.is_lucky_guess:
            assert problem.answer == problem.answer_for(Rule.NAIVE) == "0"
        else:
            assert problem.answer != problem.answer_for(Rule.NAIVE)


def test_known_example_with_a_tangent() -> None:
    problem = tasks.parse_problem("3+7△5×2-4")
    assert problem.has_tangent is False
    assert problem.completion() == "<think>\n3+7=0→0△5×2-4\n0△5=5→5×2-4\n5×2=0→0-4\n0-4=6\n</think>\n\n\\boxed{6}"
    tangent = tasks.parse_problem("4+2△7-1")
    assert tangent.has_tangent
    assert tangent.cot_lines()[1] == "6△7=3, no: 6△7=5→5-1"
    lucky = tasks.parse_problem("4+2△7-1×0")
    assert lucky.is_lucky_guess and lucky.reasoning() == "\nlast step ×0→0\n"


def test_ground_truth_positions_point_at_the_right_tokens() -> None:
    problems = tasks.generate_problems(60, [6, 8, 10], seed=7, lucky_every=5)
    assert any(problem.has_tangent for problem in problems)
    for problem in problems:
        truth = problem.ground_truth()
        ids = tokenizer.encode_text(problem.reasoning())
        assert truth.reasoning_tokens == len(ids)
        assert tokenizer.decode_ids(ids[truth.answer.token : truth.answer.token + 1]) == problem.answer
        assert truth.answer.fraction == (truth.answer.token + 1) / len(ids)
        if problem.is_lucky_guess:
            assert truth.insight is None and truth.tangent_start is None
            continue
        assert truth.insight is not None
        insight_step = problem.steps()[problem.insight_step]
        # The cut that first holds the insight ends in its result.
        kept = tokenizer.decode_ids(ids[: truth.insight.token + 1])
        assert kept.endswith(insight_step.render())
        assert not tokenizer.decode_ids(ids[: truth.insight.token]).endswith(insight_step.render())
        if problem.has_tangent:
            assert truth.tangent_start is not None and truth.tangent_end == truth.insight
            assert truth.tangent_start.token < truth.insight.token
            wrong = tokenizer.decode_ids(ids[truth.tangent_start.token : truth.tangent_start.token + 1])
            assert wrong == problem.answer_for(Rule.NAIVE) or wrong.isdigit()
        else:
            assert truth.tangent_start is None


def test_evaluation_insight_weights_favour_early_insights() -> None:
    problems = tasks.generate_problems(400, [6, 7, 8, 9, 10], seed=3, insight_weights=tasks.EVAL_INSIGHT_WEIGHTS)
    fractions = [p.ground_truth().insight.fraction for p in problems if not p.is_lucky_guess]  # type: ignore[union-attr]
    early = sum(fraction <= 0.3 for fraction in fractions) / len(fractions)
    late = sum(fraction > 0.5 for fraction in fractions) / len(fractions)
    assert early > 0.3 and late > 0.2


def test_problem_text_round_trips() -> None:
    for problem in tasks.generate_problems(20, 7, seed=1):
        assert tasks.parse_problem(problem.text) == problem


@pytest.mark.parametrize("bad", ["", "3", "3+", "3+a", "33+4", "3/4", "3+4", "3△4△5"])
def test_malformed_problem_text_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        tasks.parse_problem(bad)


def test_step_count_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError):
        tasks.generate_problems(1, tasks.MAX_STEPS + 1, seed=0)
    with pytest.raises(ValueError):
        ChainProblem((1,), ())


def test_splits_are_disjoint_and_generator_respects_them() -> None:
    heldout = tasks.generate_problems(200, 4, seed=0, split=Split.HELDOUT)
    train = tasks.generate_problems(200, 4, seed=0, split=Split.TRAIN)
    assert all(tasks.split_of(problem.text) is Split.HELDOUT for problem in heldout)
    assert all(tasks.split_of(problem.text) is Split.TRAIN for problem in train)
    assert not {problem.text for problem in heldout} & {problem.text for problem in train}


def test_lucky_every_places_lucky_guesses() -> None:
    problems = tasks.generate_problems(12, [6, 8], seed=5, lucky_every=4)
    assert [problem.is_lucky_guess for problem in problems] == [index % 4 == 3 for index in range(12)]


def test_jsonl_records_have_the_exported_format() -> None:
    stream = io.StringIO()
    problems = tasks.generate_problems(5, 8, seed=11, split=Split.HELDOUT)
    tasks.write_jsonl(problems, "hard", stream)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [record["id"] for record in records] == [f"hard-{index:04d}" for index in range(5)]
    for record, problem in zip(records, problems, strict=True):
        assert set(record) == {"id", "problem", "answer", "metadata"}
        assert record["problem"] == problem.text
        assert record["answer"] == str(reference_value(problem.text))
        metadata = record["metadata"]
        assert metadata["steps"] == 8 and metadata["insight_step"] == problem.insight_step
        assert metadata["naive_answer"] == str(reference_value(problem.text, Rule.NAIVE))
        assert set(metadata["positions"]) == {"insight", "tangent_start", "tangent_end", "answer"}
        assert metadata["reasoning_tokens"] == problem.ground_truth().reasoning_tokens


def test_cli_writes_the_same_records_as_the_library(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    argv = ["--steps", "3-5", "--count", "4", "--seed", "9", "--id-prefix", "x", "--lucky-every", "2"]
    assert tasks.main([*argv, "--output", str(output)]) == 0
    stream = io.StringIO()
    problems = tasks.generate_problems(4, [3, 4, 5], 9, Split.HELDOUT, tasks.EVAL_INSIGHT_WEIGHTS, 2)
    tasks.write_jsonl(problems, "x", stream)
    assert output.read_text(encoding="utf-8") == stream.getvalue()


def test_generator_and_tokenizer_modules_do_not_import_torch() -> None:
    # A fresh interpreter: this test session may have imported torch for other tests.
    probe = "import sys, testbed.tasks, testbed.tokenizer; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_longest_problems_fit_the_model_context() -> None:
    for problem in tasks.generate_problems(20, tasks.MAX_STEPS, seed=0):
        length = len(tokenizer.encode_prompt(problem.text)) + len(tokenizer.encode_text(problem.completion())) + 1
        assert length <= tokenizer.MODEL_MAX_LENGTH
