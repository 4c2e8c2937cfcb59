"""Reasoning formats: where a model reasons, how its output splits, where a received prefix goes.

A format is chosen per model in the serving config (``reasoning_format``). Prompts are built
from the model's own chat template; outputs are split on the reasoning markers that vLLM's
reasoning parser for the format names (the ``vllm serve --reasoning-parser`` names), found
as token ids in the model's own tokenizer. Building prompts needs only the tokenizer, so
``cot-transfer render`` can show them without an engine.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from cot_transfer.domain.reasoning import (
    HarmonyMarkers,
    ReasoningSplit,
    split_harmony,
    split_think_block,
)
from cot_transfer.engine.base import PromptTokenizer
from cot_transfer.serving.common.serving_config import CustomReasoningFormat, ReasoningPreset

_T = TypeVar("_T")

# Texts longer than this are tokenised on a worker thread: a multi-megabyte problem must not
# hold the replica's event loop (and every other request on it) for seconds.
_OFF_LOOP_CHARS = 4096
# The receiver-head cache: at most this many problems of at most this many characters (a few MB).
_HEAD_CACHE_ENTRIES = 256
_HEAD_CACHE_MAX_CHARS = 16384

# The harmony format's structural tokens (GPT-OSS); each is one special token in its vocabulary.
HARMONY_ANALYSIS_OPENING = "<|channel|>analysis<|message|>"
_HARMONY_TOKENS = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>")


@dataclass(frozen=True)
class ReasoningFormat:
    """One model's reasoning format, resolved from the config."""

    name: str
    # vLLM's reasoning parser for this format (None: plain, or custom markers).
    parser: str | None = None
    # Written after the generation prompt to open the reasoning block, unless the template did.
    opening: str = ""
    # Passed to the chat template (Qwen3's thinking switch).
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # A custom format's placement template ({prompt}, {reasoning}) and markers.
    template: str | None = None
    custom_start: str = ""
    custom_end: str = ""

    @property
    def has_reasoning_block(self) -> bool:
        return self.name != "plain"

    def render(self, tokenizer: PromptTokenizer, problem: str) -> str:
        """The problem through the model's chat template, generation prompt included."""
        if self.template_kwargs:
            return tokenizer.render_problem(problem, dict(self.template_kwargs))
        return tokenizer.render_problem(problem)

    def prompt_head(self, tokenizer: PromptTokenizer, problem: str, *, with_reasoning: bool) -> str:
        """The prompt text up to where the reasoning goes.

        The strong model gets its template as is (it opens its reasoning block itself); a
        receiver of a prefix gets its reasoning block opened, so the prefix is its own reasoning.
        """
        rendered = self.render(tokenizer, problem)
        if self.template is not None:
            return self.template.split("{reasoning}")[0].replace("{prompt}", rendered)
        if with_reasoning and self.opening and not rendered.endswith(self.opening):
            return rendered + self.opening
        return rendered

    def prompt_text(self, tokenizer: PromptTokenizer, problem: str, prefix: str | None) -> str:
        """The exact prompt text: the strong model's when ``prefix`` is None."""
        head = self.prompt_head(tokenizer, problem, with_reasoning=prefix is not None)
        if prefix is None and self.template is not None:
            return head + self.template.split("{reasoning}")[1]
        return head + (prefix or "")


_PRESETS: dict[str, ReasoningFormat] = {
    "plain": ReasoningFormat("plain"),
    # Qwen3 writes <think> itself after the generation prompt; enable_thinking=False would make
    # the template write an empty, closed block instead, so thinking is always switched on.
    "qwen3": ReasoningFormat("qwen3", parser="qwen3", opening="<think>\n", template_kwargs={"enable_thinking": True}),
    # DeepSeek-R1's template ends its generation prompt in <think>\n: the block is already open.
    "deepseek_r1": ReasoningFormat("deepseek_r1", parser="deepseek_r1", opening="<think>\n"),
    "gpt_oss": ReasoningFormat("gpt_oss", parser="openai_gptoss", opening=HARMONY_ANALYSIS_OPENING),
}


PLAIN = _PRESETS["plain"]


def resolve_format(value: ReasoningPreset | CustomReasoningFormat | str) -> ReasoningFormat:
    if isinstance(value, CustomReasoningFormat):
        return ReasoningFormat(
            "custom", template=value.template, custom_start=value.reasoning_start, custom_end=value.reasoning_end
        )
    try:
        return _PRESETS[value]
    except KeyError:
        raise ValueError(f"unknown reasoning format {value!r}; presets: {', '.join(_PRESETS)}") from None


def _marker_ids(tokenizer: PromptTokenizer, marker: str) -> tuple[int, ...]:
    return tuple(tokenizer.encode(marker)) if marker else ()


def _vllm_markers(parser_name: str, tokenizer: PromptTokenizer) -> tuple[str, str]:
    """The start and end markers of vLLM's reasoning parser ``parser_name`` for this tokenizer."""
    from vllm.reasoning import ReasoningParserManager

    backend = getattr(tokenizer, "backend", None)
    if backend is None:
        raise ValueError(f"the {parser_name} reasoning parser needs a Hugging Face tokenizer")
    parser = ReasoningParserManager.get_reasoning_parser(parser_name)(backend)
    start, end = parser.reasoning_start_str, parser.reasoning_end_str
    if not start or not end:
        raise ValueError(f"vLLM's {parser_name} reasoning parser names no reasoning markers")
    return str(start), str(end)


class ReasoningCodec:
    """A format bound to one model's tokenizer: builds its prompts, splits its outputs."""

    def __init__(self, reasoning_format: ReasoningFormat, tokenizer: PromptTokenizer) -> None:
        self.format = reasoning_format
        self._tokenizer = tokenizer
        # Every prefix and round of a problem starts with the same rendered head: the chat
        # template and the tokenizer run once per problem, not once per call (bounded LRU).
        self._receiver_heads: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._receiver_heads_lock = threading.Lock()

    @cached_property
    def _think_markers(self) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
        """Start-marker id sequences (longest first) and the end marker's ids."""
        fmt = self.format
        if fmt.name == "custom":
            start, end = fmt.custom_start, fmt.custom_end
        else:
            assert fmt.parser is not None
            start, end = _vllm_markers(fmt.parser, self._tokenizer)
        # The opening with its newline first: the CoT then starts where a receiver's does.
        starts = {
            _marker_ids(self._tokenizer, text) for text in (fmt.opening, start) if text and text.startswith(start)
        }
        return tuple(sorted((ids for ids in starts if ids), key=len, reverse=True)), _marker_ids(self._tokenizer, end)

    @cached_property
    def _harmony_markers(self) -> HarmonyMarkers:
        ids = {}
        for text in _HARMONY_TOKENS:
            encoded = self._tokenizer.encode(text)
            if len(encoded) != 1:
                raise ValueError(f"gpt_oss: {text} is not one token in this model's tokenizer")
            ids[text] = encoded[0]
        return HarmonyMarkers(
            start=ids["<|start|>"],
            channel=ids["<|channel|>"],
            message=ids["<|message|>"],
            end=ids["<|end|>"],
            stops=frozenset({ids["<|return|>"], ids["<|call|>"]}),
        )

    @property
    def reasoning_end_ids(self) -> tuple[int, ...]:
        """The ids of the marker that closes a think block (``force_answer`` writes it)."""
        return self._think_markers[1]

    def split(self, token_ids: Sequence[int]) -> ReasoningSplit:
        """Splits generated ids into reasoning and final answer (plain: all of it is reasoning)."""
        fmt = self.format
        if not fmt.has_reasoning_block:
            return ReasoningSplit(tuple(token_ids), (), closed=True)
        if fmt.name == "gpt_oss":
            return split_harmony(token_ids, self._harmony_markers, self._tokenizer.decode)
        starts, end = self._think_markers
        for start in starts:
            if list(token_ids[: len(start)]) == list(start):
                return split_think_block(token_ids, start, end)
        return split_think_block(token_ids, (), end)

    async def strong_prompt_ids(self, problem: str) -> list[int]:
        return await _off_loop(len(problem), self.strong_prompt_tokens, problem)

    def strong_prompt_tokens(self, problem: str) -> list[int]:
        return self._tokenizer.encode(self.format.prompt_text(self._tokenizer, problem, None))

    async def receiver_prompt_ids(
        self, problem: str, prefix: str, strong_ids: Sequence[int] = ()
    ) -> tuple[list[int], int]:
        """The receiver's prompt (its reasoning block opened, then the prefix) and the prefix's length.

        ``strong_ids`` (the strong model's tokens of the prefix) go in as they are when they
        mean the prefix in this tokenizer; otherwise the prefix is tokenised here. Each part is
        tokenised once, off the event loop when it is large.
        """
        size = len(problem) + len(prefix) + len(strong_ids)
        return await _off_loop(size, self.receiver_prompt_tokens, problem, prefix, strong_ids)

    def receiver_prompt_tokens(
        self, problem: str, prefix: str, strong_ids: Sequence[int] = ()
    ) -> tuple[list[int], int]:
        head = self._receiver_head_ids(problem)
        prefix_ids = self.shared_prefix_ids(prefix, strong_ids)
        if prefix_ids is None:
            prefix_ids = self._tokenizer.encode(prefix) if prefix else []
        return [*head, *prefix_ids], len(prefix_ids)

    def _receiver_head_ids(self, problem: str) -> tuple[int, ...]:
        with self._receiver_heads_lock:
            cached = self._receiver_heads.get(problem)
            if cached is not None:
                self._receiver_heads.move_to_end(problem)
                return cached
        head = tuple(self._tokenizer.encode(self.format.prompt_head(self._tokenizer, problem, with_reasoning=True)))
        if len(problem) <= _HEAD_CACHE_MAX_CHARS:
            with self._receiver_heads_lock:
                self._receiver_heads[problem] = head
                if len(self._receiver_heads) > _HEAD_CACHE_ENTRIES:
                    self._receiver_heads.popitem(last=False)
        return head

    def shared_prefix_ids(self, prefix: str, strong_ids: Sequence[int]) -> list[int] | None:
        """The strong model's prefix tokens, when they mean the same text in this tokenizer.

        With a shared tokenizer they decode to the prefix exactly and go in as they are: no
        re-tokenisation seam. With another tokenizer they decode to something else (or not at
        all), and None says to tokenise the text instead. Ids holding a special token are never
        taken: decoding drops it, so the text would match while the prompt got an end-of-turn
        (Qwen3's <|im_end|>) or other control token inside the reasoning block.
        """
        if not strong_ids or any(self._tokenizer.is_special(token) for token in strong_ids):
            return None
        try:
            same = self._tokenizer.decode(strong_ids) == prefix
        except (ValueError, IndexError, OverflowError, TypeError):
            return None
        return list(strong_ids) if same else None


async def _off_loop(size: int, function: Callable[..., _T], *args: Any) -> _T:
    if size > _OFF_LOOP_CHARS:
        return await asyncio.to_thread(function, *args)
    return function(*args)
