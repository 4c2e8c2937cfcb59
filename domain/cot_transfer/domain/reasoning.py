"""Reasoning blocks in token ids: where a model's reasoning ends and how a prefix is cut cleanly.

Pure logic over token ids and strings. The serving layer finds the marker token ids (with
vLLM's reasoning parsers and the model's own tokenizer) and hands them in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

REPLACEMENT_CHARACTER = "\ufffd"
# A UTF-8 character is at most 4 bytes, so a byte-level tokenizer spreads one over at most 4
# tokens: backing off 3 tokens always reaches a complete character.
_MAX_BACKOFF_TOKENS = 3


@dataclass(frozen=True)
class ReasoningSplit:
    """A model's output cut into its reasoning block and the final answer after it."""

    reasoning_ids: tuple[int, ...]
    final_ids: tuple[int, ...]
    # Whether the output closed its reasoning block (wrote the end marker).
    closed: bool


def find_subsequence(token_ids: Sequence[int], marker: Sequence[int], start: int = 0) -> int:
    """Index of the first occurrence of ``marker`` in ``token_ids`` at or after ``start``; -1 if none."""
    width = len(marker)
    if width == 0:
        return -1
    first = marker[0]
    for index in range(start, len(token_ids) - width + 1):
        if token_ids[index] == first and list(token_ids[index : index + width]) == list(marker):
            return index
    return -1


def split_think_block(token_ids: Sequence[int], start_ids: Sequence[int], end_ids: Sequence[int]) -> ReasoningSplit:
    """Splits ``<think>reasoning</think>final`` style output.

    The start marker is optional: with a template that opens the block itself (DeepSeek-R1,
    or a received prefix) the model's output begins inside it.
    """
    begin = len(start_ids) if start_ids and list(token_ids[: len(start_ids)]) == list(start_ids) else 0
    end = find_subsequence(token_ids, end_ids, begin)
    if end < 0:
        return ReasoningSplit(tuple(token_ids[begin:]), (), closed=False)
    return ReasoningSplit(tuple(token_ids[begin:end]), tuple(token_ids[end + len(end_ids) :]), closed=True)


@dataclass(frozen=True)
class HarmonyMarkers:
    """Token ids of the harmony format's structural tokens in one model's vocabulary."""

    start: int  # <|start|>
    channel: int  # <|channel|>
    message: int  # <|message|>
    end: int  # <|end|>
    stops: frozenset[int]  # <|return|>, <|call|>: the end of the assistant's turn


def split_harmony(
    token_ids: Sequence[int], markers: HarmonyMarkers, channel_of: Callable[[Sequence[int]], str]
) -> ReasoningSplit:
    """Splits harmony output (``<|channel|>analysis<|message|>...<|end|><|start|>assistant
    <|channel|>final<|message|>...<|return|>``) into the analysis and the final channel.

    The output may begin inside the analysis message: a received prefix opens it in the prompt.
    ``channel_of`` decodes a header's tokens to its channel name.
    """
    reasoning: list[int] = []
    final: list[int] = []
    closed = False
    target: list[int] | None = reasoning
    header: list[int] | None = None
    for token in token_ids:
        if token == markers.start or token == markers.channel:
            # A header: the role after <|start|>, the channel name after <|channel|>.
            header, target = [], None
        elif token == markers.message and header is not None:
            name = channel_of(header).strip()
            header = None
            target = reasoning if name == "analysis" else final if name == "final" else None
        elif token == markers.end or token in markers.stops:
            closed = closed or target is reasoning
            header, target = None, None
        elif header is not None:
            header.append(token)
        elif target is not None:
            target.append(token)
    # A final channel also means reasoning is over, even if the model never closed analysis.
    return ReasoningSplit(tuple(reasoning), tuple(final), closed=closed or bool(final))


def clean_prefix(token_ids: Sequence[int], kept: int, decode: Callable[[Sequence[int]], str]) -> tuple[int, str]:
    """The longest cut at or before ``kept`` tokens whose text ends in a complete character.

    A byte-level token can hold part of a multi-byte character; a cut after it decodes to
    U+FFFD. The cut backs off (at most 3 tokens) until the text ends cleanly. Returns the
    number of tokens kept and their text.
    """
    floor = max(0, kept - _MAX_BACKOFF_TOKENS)
    for count in range(kept, floor - 1, -1):
        text = decode(token_ids[:count])
        if not text.endswith(REPLACEMENT_CHARACTER) or count == 0:
            return count, text
    return floor, decode(token_ids[:floor])


def place_after_opening(rendered_prompt: str, opening: str, reasoning: str) -> str:
    """The prompt with ``reasoning`` inside the reasoning block the prompt opens.

    When the chat template already opened the block (its generation prompt ends in the
    opening marker, as DeepSeek-R1's does), the marker is not written twice.
    """
    if opening and not rendered_prompt.endswith(opening):
        return rendered_prompt + opening + reasoning
    return rendered_prompt + reasoning
