"""Step boundaries (line, sentence), snapping fractions to them, and one prefix per step."""

from collections.abc import Sequence

import pytest

from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.requests import Prefix, PrefixRequest, StrongAnswer
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.steps import (
    CutMode,
    StepBoundary,
    StepCut,
    parse_cut_mode,
    parse_step_boundary,
    snap_down,
    step_cuts,
    step_ends,
)
from cot_transfer.serving.replicas.cuts import cut_prefixes
from cot_transfer.serving.replicas.strong_server import StrongModelServer
from tests.fakes import ScriptedEngine

TOKENIZER = ScriptedEngine([]).tokenizer
LINES = "First line.\nSecond line.\n\nThird."


def test_line_steps_end_after_each_run_of_line_breaks_and_at_the_end() -> None:
    assert step_ends(LINES, StepBoundary.LINE) == [12, 26, len(LINES)]
    assert LINES[:12] == "First line.\n" and LINES[12:26] == "Second line.\n\n"


def test_blank_lines_and_trailing_whitespace_add_no_step() -> None:
    assert step_ends("\n\nabc\ndef\n\n", StepBoundary.LINE) == [6, 11]
    assert step_ends("   ", StepBoundary.LINE) == []
    assert step_ends("", StepBoundary.SENTENCE) == []


def test_sentence_steps_end_after_punctuation_before_the_space() -> None:
    text = 'It is 3.5 units. Is it? Yes! He said "stop." Then e.g. this'
    ends = step_ends(text, StepBoundary.SENTENCE)
    pieces = [text[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]
    # "3.5" has no whitespace after its dot; "e.g. " does: the rule is textual.
    assert pieces == ["It is 3.5 units.", " Is it?", " Yes!", ' He said "stop."', " Then e.g.", " this"]


def test_sentence_steps_include_line_breaks() -> None:
    text = "no stop here\nA sentence. Another\n"
    ends = step_ends(text, StepBoundary.SENTENCE)
    assert [text[:end] for end in ends] == ["no stop here\n", "no stop here\nA sentence.", text]


def test_step_cuts_with_one_character_per_token() -> None:
    cuts = step_cuts(step_ends(LINES, StepBoundary.LINE), len(LINES), lambda count: count)
    assert cuts == [StepCut(0, 0), StepCut(12, 1), StepCut(26, 2), StepCut(len(LINES), 3)]


def test_a_step_end_inside_a_token_snaps_down_to_the_token_before() -> None:
    tokens = ["ab", "c\nd", "e"]  # the line break sits inside the second token
    lengths = [sum(len(token) for token in tokens[:count]) for count in range(len(tokens) + 1)]
    cuts = step_cuts(step_ends("".join(tokens), StepBoundary.LINE), len(tokens), lengths.__getitem__)
    assert cuts == [StepCut(0, 0), StepCut(1, 1), StepCut(3, 2)]


def test_two_step_ends_in_one_token_give_one_cut() -> None:
    tokens = ["a\nb\n", "c"]
    lengths = [0, 4, 5]
    cuts = step_cuts(step_ends("".join(tokens), StepBoundary.LINE), len(tokens), lengths.__getitem__)
    assert cuts == [StepCut(0, 0), StepCut(1, 2), StepCut(2, 3)]


def test_snap_down_takes_the_last_cut_at_or_before_the_target() -> None:
    cuts = [StepCut(0, 0), StepCut(12, 1), StepCut(27, 2), StepCut(34, 3)]
    assert snap_down(11, cuts) == StepCut(0, 0)
    assert snap_down(12, cuts) == StepCut(12, 1)
    assert snap_down(33, cuts) == StepCut(27, 2)
    assert snap_down(34, cuts) == StepCut(34, 3)


def test_names_parse_or_name_the_field() -> None:
    assert parse_cut_mode("every_step") is CutMode.EVERY_STEP
    assert parse_step_boundary("sentence") is StepBoundary.SENTENCE
    with pytest.raises(InvalidArgumentError) as caught:
        parse_cut_mode("paragraph")
    assert caught.value.field == "cut"
    with pytest.raises(InvalidArgumentError) as caught:
        parse_step_boundary("word", field="--step-boundary")
    assert caught.value.field == "--step-boundary"


def ids(text: str) -> list[int]:
    return TOKENIZER.encode(text)


def texts(prefixes: Sequence[Prefix]) -> list[str]:
    return [prefix.text for prefix in prefixes]


def test_step_cut_snaps_each_fraction_down_to_a_line_end() -> None:
    prefixes = cut_prefixes(TOKENIZER, ids(LINES), (0.0, 0.3, 0.5, 0.9, 1.0), CutMode.STEP)
    assert texts(prefixes) == ["", "", "First line.\n", "First line.\nSecond line.\n\n", LINES]
    assert [prefix.num_steps for prefix in prefixes] == [0, 0, 1, 2, 3]
    assert [prefix.fraction for prefix in prefixes] == [0.0, 0.3, 0.5, 0.9, 1.0]


def test_token_cut_is_unchanged() -> None:
    prefixes = cut_prefixes(TOKENIZER, ids(LINES), (0.5,), CutMode.TOKEN)
    assert texts(prefixes) == [LINES[: len(LINES) // 2]] and prefixes[0].num_steps == 0


def test_every_step_gives_one_prefix_per_step_boundary_and_the_baseline() -> None:
    text = "One. Two.\nThree? Four"
    prefixes = cut_prefixes(TOKENIZER, ids(text), (0.5,), CutMode.EVERY_STEP, StepBoundary.SENTENCE)
    assert texts(prefixes) == ["", "One.", "One. Two.", "One. Two.\nThree?", text]
    assert [prefix.num_steps for prefix in prefixes] == [0, 1, 2, 3, 4]
    assert [prefix.fraction for prefix in prefixes] == [0.0, 4 / 21, 9 / 21, 16 / 21, 1.0]
    assert all(prefix.cot_num_tokens == len(text) for prefix in prefixes)


async def test_the_strong_model_cuts_its_cot_at_every_step() -> None:
    request = PrefixRequest(
        "q", (0.5,), SamplingParams(0.6, 0.95, 100), "exact", cut=CutMode.EVERY_STEP, stream_deltas=False
    )
    events = [event async for event in StrongModelServer(ScriptedEngine([LINES])).stream_prefixes(request)]
    prefixes = [event for event in events if isinstance(event, Prefix)]
    assert [prefix.num_steps for prefix in prefixes] == [0, 1, 2, 3]
    assert isinstance(events[-1], StrongAnswer) and not events[-1].imported
