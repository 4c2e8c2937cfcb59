"""The strong model's replica server: generate a CoT and cut it into prefixes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Sequence

from cot_transfer.domain.answers import Grader, get_grader
from cot_transfer.domain.reasoning import clean_prefix
from cot_transfer.domain.requests import CotDelta, Prefix, PrefixRequest, StrongAnswer, StrongEvent
from cot_transfer.engine.base import GenerationRequest, PromptTokenizer
from cot_transfer.serving.replicas.cuts import cut_prefixes, parse_imported_cot
from cot_transfer.serving.replicas.engine_server import EngineServer, check_fits_context


class StrongModelServer(EngineServer):
    default_name = "strong"

    async def stream_prefixes(self, request: PrefixRequest) -> AsyncGenerator[StrongEvent, None]:
        grader = get_grader(request.grader)
        tokenizer = self._engine.tokenizer
        if request.cot is not None:
            async for event in imported_events(tokenizer, request, grader):
                yield event
            return
        codec = self.codec
        prompt_ids = await codec.strong_prompt_ids(request.problem)
        check_fits_context(
            len(prompt_ids), request.sampling.max_tokens, self._engine.max_model_len, "sampling.max_tokens"
        )
        request_id = f"strong-{uuid.uuid4().hex}"
        output_ids: list[int] = []
        finish_reason = "length"
        generation = GenerationRequest(prompt_ids, n=1, sampling=request.sampling, stream_deltas=request.stream_deltas)
        try:
            async for output in self._engine.generate(generation, request_id):
                sample = output.samples[0]
                output_ids.extend(sample.token_ids)
                if sample.text and request.stream_deltas:
                    yield CotDelta(sample.text)
                if sample.finish_reason is not None:
                    finish_reason = sample.finish_reason
        except (asyncio.CancelledError, GeneratorExit):
            await self._engine.abort(request_id)
            self._metrics.aborted(self._model_name)
            raise
        finally:
            self._metrics.tokens(self._model_name, prompt=len(prompt_ids), generated=len(output_ids))
        split = codec.split(output_ids)
        # The CoT is the reasoning only: the fractions count its tokens, not the answer after it.
        cot_ids = _without_trailing_special(tokenizer, list(split.reasoning_ids))
        # A budget that ran out inside a multi-byte character leaves part of it: the CoT ends at
        # the last complete character, so no prefix nor the CoT itself holds U+FFFD.
        kept, cot = clean_prefix(cot_ids, len(cot_ids), tokenizer.decode)
        cot_ids = cot_ids[:kept]
        for prefix in await _cut(tokenizer, cot_ids, request):
            yield prefix
        if self._format.has_reasoning_block:
            # The blank lines between the closed block and the answer are layout, not answer.
            final_text = tokenizer.decode(_without_trailing_special(tokenizer, list(split.final_ids))).strip()
            answer = grader.extract(final_text)
        else:
            final_text, answer = "", grader.extract(cot)
        yield StrongAnswer(
            cot=cot,
            answer=answer,
            cot_num_tokens=len(cot_ids),
            finish_reason=finish_reason,
            final_text=final_text,
            reasoning_truncated=self._format.has_reasoning_block and not split.closed and finish_reason == "length",
        )


async def _cut(tokenizer: PromptTokenizer, cot_ids: Sequence[int], request: PrefixRequest) -> list[Prefix]:
    # Step cuts decode the CoT a few times per boundary: off the event loop.
    return await asyncio.to_thread(
        cut_prefixes, tokenizer, cot_ids, request.fractions, request.cut, request.step_boundary
    )


async def imported_events(
    tokenizer: PromptTokenizer, request: PrefixRequest, grader: Grader
) -> AsyncGenerator[StrongEvent, None]:
    """The prefixes and answer of an imported CoT (``request.cot``): nothing is generated."""
    assert request.cot is not None
    parsed = await asyncio.to_thread(parse_imported_cot, tokenizer, request.cot, request.cot_format)
    cot_ids = _without_trailing_special(tokenizer, list(parsed.reasoning_ids))
    kept, cot = clean_prefix(cot_ids, len(cot_ids), tokenizer.decode)
    cot_ids = cot_ids[:kept]
    for prefix in await _cut(tokenizer, cot_ids, request):
        yield prefix
    final_text = parsed.final_text
    yield StrongAnswer(
        cot=cot,
        answer=grader.extract(final_text if parsed.has_reasoning_block else cot),
        cot_num_tokens=len(cot_ids),
        finish_reason="imported",
        final_text=final_text,
        imported=True,
    )


def _without_trailing_special(tokenizer: PromptTokenizer, token_ids: list[int]) -> list[int]:
    """Drops end-of-sequence tokens so the CoT length counts only the reasoning itself."""
    end = len(token_ids)
    while end > 0 and tokenizer.is_special(token_ids[end - 1]):
        end -= 1
    return token_ids[:end]
