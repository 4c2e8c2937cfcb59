"""Cutting a CoT's tokens into prefixes (token, step and every-step cuts), and imported CoTs.

An imported CoT is text written elsewhere, in a declared reasoning format. It is tokenised with
the tokenizer of the model that cuts it (the strong model's: its replica does the cutting, and
nothing is generated), split in its format into reasoning and final answer, and its reasoning is
cut like a generated one.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from cot_transfer.domain.errors import InvalidArgumentError, OutOfRangeError
from cot_transfer.domain.reasoning import clean_prefix
from cot_transfer.domain.requests import Prefix, PrefixRequest, Problem, TransferRequest
from cot_transfer.domain.steps import CutMode, StepBoundary, StepCut, snap_down, step_cuts, step_ends
from cot_transfer.domain.truncation import prefix_token_count
from cot_transfer.engine.base import PromptTokenizer
from cot_transfer.serving.replicas.reasoning_formats import ReasoningCodec, resolve_format


def cut_prefixes(
    tokenizer: PromptTokenizer,
    cot_ids: Sequence[int],
    fractions: Sequence[float],
    cut: CutMode = CutMode.TOKEN,
    boundary: StepBoundary = StepBoundary.LINE,
) -> list[Prefix]:
    """The prefixes of a CoT: one per fraction (token and step cuts), or one per step boundary.

    Every cut lands on a token boundary and backs off to a complete character. With
    ``every_step`` a prefix's fraction is its share of the CoT's tokens.
    """
    if cut is CutMode.TOKEN:
        return [
            _prefix(tokenizer, cot_ids, fraction, prefix_token_count(fraction, len(cot_ids)), 0)
            for fraction in fractions
        ]
    cuts = cot_step_cuts(tokenizer, cot_ids, boundary)
    if cut is CutMode.STEP:
        return [
            _prefix_at(tokenizer, cot_ids, fraction, snap_down(prefix_token_count(fraction, len(cot_ids)), cuts))
            for fraction in fractions
        ]
    total = len(cot_ids)
    return [_prefix_at(tokenizer, cot_ids, step.num_tokens / total if total else 0.0, step) for step in cuts]


def cot_step_cuts(tokenizer: PromptTokenizer, cot_ids: Sequence[int], boundary: StepBoundary) -> list[StepCut]:
    """The token cut after every step of the CoT (``domain.steps`` has the boundary rule)."""
    text = tokenizer.decode(cot_ids)
    return step_cuts(step_ends(text, boundary), len(cot_ids), _PrefixLengths(tokenizer, cot_ids))


class _PrefixLengths:
    """``k -> len(decode(ids[:k]))`` without decoding the whole prefix at every probe.

    A probe near a known length (an anchor) decodes only the tokens since it, with one token of
    context before them: tokenizers that drop a leading space from the first token of a decode
    (SentencePiece) then drop it from the context token in both decodes, so the difference is
    what the tokens add. A probe far from every anchor decodes its prefix and becomes one.
    """

    _WINDOW = 256

    def __init__(self, tokenizer: PromptTokenizer, ids: Sequence[int]) -> None:
        self._decode = tokenizer.decode
        self._ids = ids
        self._anchors = [0]
        self._exact = {0: 0}

    def __call__(self, count: int) -> int:
        anchor = self._anchors[bisect.bisect_right(self._anchors, count) - 1]
        if count == anchor:
            return self._exact[anchor]
        if anchor == 0 or count - anchor > self._WINDOW:
            length = len(self._decode(self._ids[:count]))
            bisect.insort(self._anchors, count)
            self._exact[count] = length
            return length
        context = self._ids[anchor - 1 : anchor]
        added = len(self._decode(self._ids[anchor - 1 : count])) - len(self._decode(context))
        return self._exact[anchor] + added


def _prefix_at(tokenizer: PromptTokenizer, cot_ids: Sequence[int], fraction: float, step: StepCut) -> Prefix:
    return _prefix(tokenizer, cot_ids, fraction, step.num_tokens, step.num_steps)


def _prefix(tokenizer: PromptTokenizer, cot_ids: Sequence[int], fraction: float, tokens: int, num_steps: int) -> Prefix:
    kept, text = clean_prefix(cot_ids, tokens, tokenizer.decode)
    return Prefix(
        fraction=fraction,
        text=text,
        num_tokens=kept,
        cot_num_tokens=len(cot_ids),
        token_ids=tuple(cot_ids[:kept]),
        num_steps=num_steps,
    )


@dataclass(frozen=True)
class ImportedCot:
    """An imported CoT split in its format: the reasoning's token ids and the final answer's text."""

    reasoning_ids: tuple[int, ...]
    final_text: str
    has_reasoning_block: bool


def parse_imported_cot(tokenizer: PromptTokenizer, cot: str, cot_format: str, field: str = "cot") -> ImportedCot:
    """Splits an imported CoT in its declared format.

    A CoT in a format with a reasoning block must close it (the answer follows the block), or it
    does not parse: InvalidArgumentError naming ``field``. A ``plain`` CoT is all reasoning.
    """
    try:
        reasoning_format = resolve_format(cot_format or "plain")
    except ValueError as error:
        raise InvalidArgumentError(f"{field}_format", str(error)) from None
    ids = tokenizer.encode(cot)
    if not reasoning_format.has_reasoning_block:
        return ImportedCot(tuple(ids), "", has_reasoning_block=False)
    try:
        split = ReasoningCodec(reasoning_format, tokenizer).split(ids)
    except ValueError as error:
        raise InvalidArgumentError(field, f"cannot be parsed as {reasoning_format.name}: {error}") from None
    if not split.closed:
        raise InvalidArgumentError(
            field, f"does not parse as {reasoning_format.name}: its reasoning block is never closed"
        )
    return ImportedCot(split.reasoning_ids, tokenizer.decode(split.final_ids).strip(), has_reasoning_block=True)


def prefix_request_for(request: TransferRequest, problem: Problem) -> PrefixRequest:
    """The strong model's request for one problem of a run: generate and cut its CoT, or cut the
    imported one. An imported CoT over ``request.max_cot_chars`` is this problem's error."""
    if problem.cot is not None and request.max_cot_chars and len(problem.cot) > request.max_cot_chars:
        raise OutOfRangeError(
            "cot", f"at most {request.max_cot_chars} characters (limits.max_text_chars), got {len(problem.cot)}"
        )
    return PrefixRequest(
        problem=problem.problem,
        fractions=request.fractions,
        sampling=request.strong_sampling,
        grader=request.grader,
        # Run reads only the prefixes and the answer.
        stream_deltas=False,
        cut=request.cut,
        step_boundary=request.step_boundary,
        cot=problem.cot,
        cot_format=problem.cot_format or "plain",
    )


def check_step_count(request: TransferRequest, prefixes: Sequence[Prefix]) -> None:
    """An every-step cut with more prefixes than ``request.max_steps`` is its problem's error: each
    prefix is a row and rides in the StrongCot message."""
    if request.cut.cuts_every_step and request.max_steps and len(prefixes) > request.max_steps:
        raise OutOfRangeError(
            "cut", f"the CoT has {len(prefixes)} step cuts; at most {request.max_steps} (limits.max_fractions)"
        )
