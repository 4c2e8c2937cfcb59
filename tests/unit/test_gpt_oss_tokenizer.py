"""The gpt_oss format on GPT-OSS's real vocabulary (o200k_harmony: o200k_base's 199,998 ranks as
`quicktok-v1` ships them, and harmony's 1,091 special tokens), with `openai-harmony` itself, which
vLLM's gpt_oss support uses, as the reference: its encoder, its prompt renderer and its parser of
completions. The chat template is harmony's turn format for a user message with no system message
(what openai-harmony renders for it), not GPT-OSS's full template with its system preamble."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cot_transfer.cli.render import render_prompt
from cot_transfer.domain.reasoning import REPLACEMENT_CHARACTER
from cot_transfer.domain.requests import Prefix, PrefixRequest, StrongAnswer
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer
from cot_transfer.serving.replicas.cuts import cut_prefixes
from cot_transfer.serving.replicas.reasoning_formats import ReasoningCodec, resolve_format
from cot_transfer.serving.replicas.strong_server import StrongModelServer
from tests.real_tokenizers import (
    COTS,
    NUM_O200K_RANKS,
    O200K_BASE_SHA256,
    save_o200k_harmony_tokenizer,
    write_o200k_base,
)
from tests.reasoning_models import TextEngine

PROBLEM = "A café sells 3 croissants at €2.50 each. What is the total, in euros?"
HARMONY_TEMPLATE = (
    "{% for m in messages %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}"
)
FINAL = "The total is \\boxed{7.5} euros."
SAMPLING = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=512, seed=None)


@pytest.fixture(scope="module")
def harmony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """openai-harmony's GPT-OSS encoding, loaded from the ranks written here (it checks their hash)."""
    import openai_harmony

    folder = tmp_path_factory.mktemp("tiktoken")
    write_o200k_base(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_ENCODINGS_BASE", str(folder))
        yield openai_harmony.load_harmony_encoding(openai_harmony.HarmonyEncodingName.HARMONY_GPT_OSS)


@pytest.fixture(scope="module")
def folder(harmony: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ranks = write_o200k_base(tmp_path_factory.mktemp("ranks"))
    specials = [(harmony.encode(text, allowed_special="all")[0], text) for text in harmony.special_tokens_set]
    model = tmp_path_factory.mktemp("gpt-oss")
    save_o200k_harmony_tokenizer(model, ranks, specials, HARMONY_TEMPLATE)
    return model


@pytest.fixture(scope="module")
def tokenizer(folder: Path) -> HuggingFaceTokenizer:
    from transformers import AutoTokenizer

    return HuggingFaceTokenizer(AutoTokenizer.from_pretrained(str(folder)))


def _completion(cot: str) -> str:
    """GPT-OSS's output after ``<|start|>assistant``: the analysis message, then the final one."""
    return f"<|channel|>analysis<|message|>{cot}<|end|><|start|>assistant<|channel|>final<|message|>{FINAL}<|return|>"


def test_the_ranks_are_o200k_base(tmp_path: Path) -> None:
    import hashlib

    text = write_o200k_base(tmp_path).read_bytes()
    assert hashlib.sha256(text).hexdigest() == O200K_BASE_SHA256
    assert len(text.splitlines()) == NUM_O200K_RANKS


def test_the_vocabulary_encodes_as_openai_harmony_does(tokenizer: HuggingFaceTokenizer, harmony: Any) -> None:
    assert len(tokenizer.backend) == NUM_O200K_RANKS + len(harmony.special_tokens_set)
    for text in [PROBLEM, *COTS.values(), _completion(COTS["emoji"])]:
        assert tokenizer.encode(text) == list(harmony.encode(text, allowed_special="all")), text
    for text in COTS.values():
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_the_receiver_prompt_is_harmonys_with_the_prefix_in_the_analysis_channel(
    folder: Path, tokenizer: HuggingFaceTokenizer, harmony: Any, tmp_path: Path
) -> None:
    import openai_harmony

    conversation = openai_harmony.Conversation.from_messages(
        [openai_harmony.Message.from_role_and_content(openai_harmony.Role.USER, PROBLEM)]
    )
    expected_head = harmony.render_conversation_for_completion(conversation, openai_harmony.Role.ASSISTANT)
    codec = ReasoningCodec(resolve_format("gpt_oss"), tokenizer)
    assert codec.strong_prompt_tokens(PROBLEM) == list(expected_head)
    prefix = COTS["rare"][:30]
    ids, prefix_length = codec.receiver_prompt_tokens(PROBLEM, prefix)
    opening = harmony.encode("<|channel|>analysis<|message|>", allowed_special="all")
    assert ids == [*expected_head, *opening, *harmony.encode(prefix)] and prefix_length == len(harmony.encode(prefix))
    config = tmp_path / "gpt_oss.yaml"
    engine = {"model": str(folder), "max_model_len": 4096}
    config.write_text(
        yaml.safe_dump({r: {"engine": engine, "reasoning_format": "gpt_oss"} for r in ("strong", "weak")})
    )
    rendered = render_prompt(config, "weak", PROBLEM, prefix)
    assert rendered.text == harmony.decode_utf8(ids) and rendered.num_tokens == len(ids)


@pytest.mark.parametrize("name", COTS)
def test_the_split_matches_openai_harmonys_parser_and_cuts_land_clean(
    name: str, tokenizer: HuggingFaceTokenizer, harmony: Any
) -> None:
    import openai_harmony

    cot = COTS[name]
    ids = tokenizer.encode(_completion(cot))
    messages = harmony.parse_messages_from_completion_tokens(ids, openai_harmony.Role.ASSISTANT)
    assert [(message.channel, message.content[0].text) for message in messages] == [("analysis", cot), ("final", FINAL)]
    split = ReasoningCodec(resolve_format("gpt_oss"), tokenizer).split(ids)
    assert split.closed
    assert tokenizer.decode(split.reasoning_ids) == cot and tokenizer.decode(split.final_ids) == FINAL
    every = [position / len(split.reasoning_ids) for position in range(len(split.reasoning_ids) + 1)]
    for prefix in cut_prefixes(tokenizer, split.reasoning_ids, every):
        assert REPLACEMENT_CHARACTER not in prefix.text
        assert tokenizer.decode(prefix.token_ids) == prefix.text and cot.startswith(prefix.text)


def test_the_strong_server_cuts_gpt_oss_analysis_on_real_ids(tokenizer: HuggingFaceTokenizer) -> None:
    cot = COTS["emoji"]
    server = StrongModelServer(TextEngine(tokenizer, _completion(cot)), reasoning_format=resolve_format("gpt_oss"))

    async def collect() -> list[object]:
        request = PrefixRequest(PROBLEM, tuple(step / 20 for step in range(21)), SAMPLING, "exact")
        return [event async for event in server.stream_prefixes(request)]

    events = asyncio.run(collect())
    answer = events[-1]
    assert isinstance(answer, StrongAnswer)
    assert answer.cot == cot and answer.final_text == FINAL and answer.answer == "7.5"
    prefixes = [event for event in events if isinstance(event, Prefix)]
    assert prefixes[-1].text == cot
    assert all(REPLACEMENT_CHARACTER not in prefix.text and cot.startswith(prefix.text) for prefix in prefixes)
