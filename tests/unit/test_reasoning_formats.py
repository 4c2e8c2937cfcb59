"""Reasoning formats: prompts place a received prefix inside the receiver's reasoning block, and
outputs split into reasoning and final answer, for every preset (tiny tokenizers built here)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from cot_transfer.cli.render import render_prompt
from cot_transfer.domain.requests import CompletionRequest, Prefix, PrefixRequest, StrongAnswer
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.serving.common.serving_config import CustomReasoningFormat
from cot_transfer.serving.replicas.reasoning_formats import ReasoningCodec, resolve_format
from cot_transfer.serving.replicas.receiver_server import ReceiverServer
from cot_transfer.serving.replicas.strong_server import StrongModelServer
from tests.reasoning_models import TEMPLATES, TextEngine, load_tokenizer, save_model_folder

PRESETS = ("plain", "qwen3", "deepseek_r1", "gpt_oss")
PROBLEM = "What is 3×4?"
PREFIX = "First 3×4 → 12"
# The strong model's output in each format: reasoning, then the final answer.
OUTPUTS = {
    "plain": "First 3×4 → 12, so \\boxed{12}<|im_end|>",
    "qwen3": "<think>\nFirst 3×4 → 12, so 12.</think>\n\nThe answer is \\boxed{12}.<|im_end|>",
    "deepseek_r1": "First 3×4 → 12, so 12.</think>\n\nThe answer is \\boxed{12}.<|im_end|>",
    "gpt_oss": "<|channel|>analysis<|message|>First 3×4 → 12, so 12.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>The answer is \\boxed{12}.<|return|>",
}
REASONING = {preset: "First 3×4 → 12, so 12." for preset in PRESETS} | {"plain": "First 3×4 → 12, so \\boxed{12}"}
# What the receiver's prompt ends in: its reasoning block opened, then the prefix.
OPENED = {
    "plain": "<|im_start|>assistant\n" + PREFIX,
    "qwen3": "<|im_start|>assistant\n<think>\n" + PREFIX,
    "deepseek_r1": "<|im_start|>assistant\n<think>\n" + PREFIX,
    "gpt_oss": "<|start|>assistant<|channel|>analysis<|message|>" + PREFIX,
}
SAMPLING = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=200, seed=None)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("models")
    return {preset: save_model_folder(base / preset, preset) for preset in PRESETS}


def _config(tmp_path: Path, folder: Path, preset: str) -> Path:
    engine = {"model": str(folder), "max_model_len": 512}
    data = {
        "strong": {"engine": engine, "reasoning_format": preset},
        "weak": {"engine": engine, "reasoning_format": preset},
    }
    path = tmp_path / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("preset", PRESETS)
def test_render_places_the_prefix_inside_the_receivers_reasoning_block(
    preset: str, folders: dict[str, Path], tmp_path: Path
) -> None:
    rendered = render_prompt(_config(tmp_path, folders[preset], preset), "weak", PROBLEM, PREFIX)
    assert rendered.text.endswith(OPENED[preset])
    assert rendered.reasoning_format == preset
    # The block is opened once and left open: the prefix is the receiver's own reasoning.
    assert rendered.text.count("<think>") == (1 if preset in ("qwen3", "deepseek_r1") else 0)
    assert "</think>" not in rendered.text
    tokenizer = load_tokenizer(folders[preset])
    head = rendered.text[: -len(PREFIX)]
    assert rendered.num_tokens == len(tokenizer.encode(head)) + len(tokenizer.encode(PREFIX))


@pytest.mark.parametrize("preset", PRESETS)
def test_render_of_the_strong_prompt_is_the_models_own_template(
    preset: str, folders: dict[str, Path], tmp_path: Path
) -> None:
    rendered = render_prompt(_config(tmp_path, folders[preset], preset), "strong", PROBLEM, None)
    assert rendered.text == load_tokenizer(folders[preset]).render_problem(PROBLEM)
    assert PROBLEM in rendered.text


def test_qwen3_switches_the_templates_thinking_on(folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders["qwen3"])
    # Off, the template closes an empty block: a prefix placed after it would not be reasoning.
    assert "</think>" in tokenizer.render_problem(PROBLEM, {"enable_thinking": False})
    assert "</think>" not in resolve_format("qwen3").prompt_text(tokenizer, PROBLEM, PREFIX)


@pytest.mark.parametrize("preset", PRESETS)
def test_the_strong_output_splits_into_reasoning_and_answer(preset: str, folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders[preset])
    codec = ReasoningCodec(resolve_format(preset), tokenizer)
    split = codec.split(tokenizer.encode(OUTPUTS[preset]))
    assert tokenizer.decode(split.reasoning_ids) == REASONING[preset]
    assert split.closed
    if preset == "plain":
        assert split.final_ids == ()
    else:
        assert tokenizer.decode(split.final_ids).strip() == "The answer is \\boxed{12}."


@pytest.mark.parametrize("preset", ("qwen3", "deepseek_r1", "gpt_oss"))
def test_a_reasoning_block_left_open_is_not_closed(preset: str, folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders[preset])
    ids = tokenizer.encode(OUTPUTS[preset])
    cut = ids[: len(ids) // 3]
    split = ReasoningCodec(resolve_format(preset), tokenizer).split(cut)
    assert not split.closed
    assert split.final_ids == ()


@pytest.mark.parametrize("preset", PRESETS)
def test_the_strong_server_cuts_only_the_reasoning(preset: str, folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders[preset])
    server = StrongModelServer(TextEngine(tokenizer, OUTPUTS[preset]), reasoning_format=resolve_format(preset))

    async def collect() -> list[object]:
        request = PrefixRequest(PROBLEM, (0.5, 1.0), SAMPLING, "exact")
        return [event async for event in server.stream_prefixes(request)]

    events = asyncio.run(collect())
    answer = events[-1]
    assert isinstance(answer, StrongAnswer)
    assert answer.cot == REASONING[preset]
    assert answer.cot_num_tokens == len(tokenizer.encode(REASONING[preset]))
    assert answer.answer == "12"
    assert not answer.reasoning_truncated
    assert answer.final_text == ("" if preset == "plain" else "The answer is \\boxed{12}.")
    prefixes = [event for event in events if isinstance(event, Prefix)]
    assert prefixes[-1].text == REASONING[preset]
    assert tokenizer.decode(prefixes[0].token_ids) == prefixes[0].text


@pytest.mark.parametrize("preset", ("qwen3", "deepseek_r1", "gpt_oss"))
def test_a_cot_out_of_budget_inside_its_reasoning_is_flagged(preset: str, folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders[preset])
    server = StrongModelServer(TextEngine(tokenizer, OUTPUTS[preset]), reasoning_format=resolve_format(preset))
    budget = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=6, seed=None)

    async def last() -> object:
        events = [event async for event in server.stream_prefixes(PrefixRequest(PROBLEM, (1.0,), budget, "exact"))]
        return events[-1]

    answer = asyncio.run(last())
    assert isinstance(answer, StrongAnswer)
    assert answer.reasoning_truncated
    assert answer.finish_reason == "length"
    assert answer.answer is None


def _weak_request(prefix: str, prefix_token_ids: tuple[int, ...] = ()) -> CompletionRequest:
    return CompletionRequest(PROBLEM, prefix, 2, SAMPLING, "12", "exact", prefix_token_ids=prefix_token_ids)


@pytest.mark.parametrize("preset", ("qwen3", "deepseek_r1"))
def test_the_weak_model_is_graded_on_its_own_final_answer(preset: str, folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders[preset])
    # The prefix states the answer; the receiver closes its reasoning and answers wrongly.
    engine = TextEngine(tokenizer, " so 13.</think>\n\n\\boxed{13}<|im_end|>")
    server = ReceiverServer(engine, reasoning_format=resolve_format(preset))
    result = asyncio.run(server.complete(_weak_request("3×4 → \\boxed{12}")))
    assert result.num_correct == 0
    engine.output = " so 12.</think>\n\n\\boxed{12}<|im_end|>"
    assert asyncio.run(server.complete(_weak_request("3×4 →"))).num_correct == 2


def test_the_weak_prompt_places_the_prefix_in_the_harmony_analysis_channel(folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders["gpt_oss"])
    engine = TextEngine(tokenizer, " 12.<|end|><|start|>assistant<|channel|>final<|message|>\\boxed{12}<|return|>")
    server = ReceiverServer(engine, reasoning_format=resolve_format("gpt_oss"))
    result = asyncio.run(server.complete(_weak_request(PREFIX)))
    assert result.num_correct == 2
    prompt = tokenizer.decode(engine.requests[0].prompt_token_ids)
    assert prompt.endswith(PREFIX)
    expected = tokenizer.encode(resolve_format("gpt_oss").prompt_head(tokenizer, PROBLEM, with_reasoning=True))
    assert list(engine.requests[0].prompt_token_ids[: len(expected)]) == expected


def test_shared_tokenizer_token_ids_pass_through_as_they_are(folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders["qwen3"])
    engine = TextEngine(tokenizer, "</think>\\boxed{12}<|im_end|>")
    server = ReceiverServer(engine, reasoning_format=resolve_format("qwen3"))
    # A tokenisation of the prefix other than the one encode() gives: byte by byte, as a
    # strong model may have sampled it.
    byte_ids = tuple(token for char in PREFIX for token in tokenizer.encode(char))
    assert list(byte_ids) != tokenizer.encode(PREFIX)
    asyncio.run(server.complete(_weak_request(PREFIX, byte_ids)))
    assert tuple(engine.requests[-1].prompt_token_ids[-len(byte_ids) :]) == byte_ids
    # Ids that mean other text in this tokenizer are ignored: the prefix is tokenised instead.
    asyncio.run(server.complete(_weak_request(PREFIX, (5, 6, 7))))
    own = tokenizer.encode(PREFIX)
    assert list(engine.requests[-1].prompt_token_ids[-len(own) :]) == own


def test_the_budget_counts_the_prefix_tokens_once(folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders["qwen3"])
    engine = TextEngine(tokenizer, "</think>\\boxed{12}<|im_end|>")
    asyncio.run(ReceiverServer(engine, reasoning_format=resolve_format("qwen3")).complete(_weak_request(PREFIX)))
    assert engine.requests[0].sampling.max_tokens == SAMPLING.max_tokens - len(tokenizer.encode(PREFIX))


def test_a_custom_format_places_and_splits_with_its_template(folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders["plain"])
    custom = resolve_format(
        CustomReasoningFormat(
            template="{prompt}<think>\n{reasoning}", reasoning_start="<think>", reasoning_end="</think>"
        )
    )
    assert custom.name == "custom"
    assert custom.prompt_text(tokenizer, PROBLEM, PREFIX).endswith("assistant\n<think>\n" + PREFIX)
    assert custom.prompt_text(tokenizer, PROBLEM, None).endswith("assistant\n<think>\n")
    split = ReasoningCodec(custom, tokenizer).split(tokenizer.encode("a 3×4</think>\\boxed{12}"))
    assert tokenizer.decode(split.reasoning_ids) == "a 3×4"
    assert tokenizer.decode(split.final_ids) == "\\boxed{12}"


@pytest.mark.parametrize("template", ["{prompt}", "{reasoning}", "{reasoning}{prompt}", "{prompt}{prompt}{reasoning}"])
def test_a_custom_template_must_place_prompt_then_reasoning_once(template: str) -> None:
    with pytest.raises(ValidationError):
        CustomReasoningFormat(template=template, reasoning_end="</think>")


def test_every_preset_is_a_valid_config_value(folders: dict[str, Path], tmp_path: Path) -> None:
    from cot_transfer.serving.common.serving_config import ServingConfig

    for preset in PRESETS:
        assert ServingConfig.from_yaml(_config(tmp_path, folders[preset], preset)).weak.reasoning_format == preset
    assert set(TEMPLATES) == set(PRESETS)
    with pytest.raises(ValueError, match="unknown reasoning format"):
        resolve_format("harmony")


class _ThreadRecordingTokenizer:
    """One token per character; remembers the thread each encode ran on."""

    def __init__(self) -> None:
        self.encode_threads: list[int] = []

    def encode(self, text: str) -> list[int]:
        self.encode_threads.append(threading.get_ident())
        return [ord(char) for char in text]

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(token) for token in token_ids)

    def render_problem(self, problem: str, template_kwargs: dict[str, Any] | None = None) -> str:
        return f"Q: {problem}\nA: "

    def is_special(self, token_id: int) -> bool:
        return False


def test_a_large_prompt_is_tokenised_off_the_event_loop() -> None:
    tokenizer = _ThreadRecordingTokenizer()
    codec = ReasoningCodec(resolve_format("plain"), tokenizer)

    async def build(problem: str) -> int:
        await codec.receiver_prompt_ids(problem, "x")
        return threading.get_ident()

    loop_thread = asyncio.run(build("1+2"))
    assert set(tokenizer.encode_threads) == {loop_thread}
    tokenizer.encode_threads.clear()
    loop_thread = asyncio.run(build("1+2" * 100_000))
    assert loop_thread not in tokenizer.encode_threads


def test_a_budget_ending_inside_a_character_leaves_the_cot_at_the_last_whole_one(folders: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(folders["plain"])
    ids = tokenizer.encode("ab 😀")
    # Cut inside the 4-byte emoji: its first tokens alone decode to U+FFFD.
    inside = next(count for count in range(len(ids)) if tokenizer.decode(ids[:count]).endswith("\ufffd"))
    server = StrongModelServer(TextEngine(tokenizer, "ab 😀"))
    budget = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=inside, seed=None)

    async def collect() -> list[object]:
        return [event async for event in server.stream_prefixes(PrefixRequest(PROBLEM, (1.0,), budget, "exact"))]

    events = asyncio.run(collect())
    answer = events[-1]
    assert isinstance(answer, StrongAnswer)
    assert answer.cot == "ab "
    assert answer.cot_num_tokens == len(tokenizer.encode("ab "))
    assert [event.text for event in events if isinstance(event, Prefix)] == ["ab "]


def test_the_render_command_prints_the_shipped_weak_prompt_and_its_token_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cot_transfer.cli.main import main
    from cot_transfer.serving.common.serving_config import ServingConfig

    config_path = Path(__file__).resolve().parents[2] / "configs" / "local-cpu.yaml"
    opening = resolve_format(ServingConfig.from_yaml(config_path).weak.reasoning_format).opening
    assert main(["render", "--config", str(config_path), "--model", "weak", "--problem", "P1", "--prefix", "X7"]) == 0
    text, _, count_line = capsys.readouterr().out.rstrip("\n").rpartition("\n")
    # The prefix stands inside the testbed weak model's reasoning block (right after its opening).
    assert text.endswith(opening + "X7")
    assert "P1" in text
    expected = render_prompt(config_path, "weak", "P1", "X7").num_tokens
    assert count_line.startswith(f"--- {expected} tokens (weak model")
