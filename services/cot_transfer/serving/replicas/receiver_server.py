"""A receiver's replica server: complete a prefix n times and grade every completion.

Every served model that completes prefixes runs one: the weak model, the strong model (its
self-potential) and the receiver-only models."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from cot_transfer.domain.answers import grade
from cot_transfer.domain.errors import UnavailableError
from cot_transfer.domain.receivers import FORCE_ANSWER
from cot_transfer.domain.requests import CompletionRequest, CompletionResult, GradedCompletion
from cot_transfer.engine.base import Engine, GenerationOutput, GenerationRequest
from cot_transfer.serving.common.serving_config import DEFAULT_FORCE_ANSWER_MAX_TOKENS
from cot_transfer.serving.replicas.engine_server import EngineServer, check_fits_context
from cot_transfer.serving.replicas.force_answer import closing_ids, graded_text
from cot_transfer.serving.replicas.graders import service_grader


class ReceiverServer(EngineServer):
    default_name = "weak"

    def __init__(
        self,
        engine: Engine,
        *options: Any,
        force_answer_max_tokens: int = DEFAULT_FORCE_ANSWER_MAX_TOKENS,
        **named: Any,
    ) -> None:
        """``options`` and ``named``: ``EngineServer``'s (model name, metrics, reasoning format);
        ``force_answer_max_tokens``: the answer budget of force-answer mode."""
        super().__init__(engine, *options, **named)
        self._force_answer_max_tokens = force_answer_max_tokens

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        grader = service_grader(request.grader, self._metrics)
        codec = self.codec
        # The weak model continues the strong model's reasoning inside its own reasoning block
        # (its answer turn for the plain format), so the prefix goes after the rendered prompt.
        prompt_ids, prefix_tokens = await codec.receiver_prompt_ids(
            request.problem, request.prefix, request.prefix_token_ids
        )
        # The budget covers the whole reasoning, prefix included; at least one token is left so
        # a prefix that used the whole budget can still be closed.
        new_tokens = max(1, request.sampling.max_tokens - prefix_tokens)
        forced = request.mode == FORCE_ANSWER
        if forced:
            # The reasoning is closed after the prefix; the answer alone gets its own short budget.
            prompt_ids = [*prompt_ids, *closing_ids(codec, self._engine.tokenizer)]
            new_tokens = self._force_answer_max_tokens
        check_fits_context(len(prompt_ids), new_tokens, self._engine.max_model_len, "prefix")
        generation = GenerationRequest(
            prompt_ids, n=request.n, sampling=replace(request.sampling, max_tokens=new_tokens)
        )
        request_id = f"weak-{uuid.uuid4().hex}"
        final: GenerationOutput | None = None
        try:
            async for output in self._engine.generate(generation, request_id):
                final = output
        except asyncio.CancelledError:
            await self._engine.abort(request_id)
            self._metrics.aborted(self._model_name)
            raise
        if final is None or not final.finished:
            raise UnavailableError("the engine ended the request without a final output")
        samples = sorted(final.samples, key=lambda sample: sample.index)
        # The receiver is graded on its own answer, never on the received prefix.
        # Splitting n long outputs and grading (sympy, for the math grader) run off the event
        # loop, so other requests keep flowing.
        graded = await asyncio.to_thread(
            lambda: [
                grade(
                    grader,
                    graded_text(codec, sample.text) if forced else self._answer_text(sample.token_ids, sample.text),
                    request.reference_answer,
                )
                for sample in samples
            ]
        )
        completions = [
            GradedCompletion(
                text=sample.text,
                extracted_answer=answer.extracted,
                correct=answer.correct,
                num_tokens=len(sample.token_ids),
                finish_reason=sample.finish_reason or "length",
            )
            for sample, answer in zip(samples, graded, strict=True)
        ]
        result = CompletionResult(completions=completions, prompt_num_tokens=len(prompt_ids))
        generated = sum(completion.num_tokens for completion in completions)
        self._metrics.tokens(self._model_name, prompt=len(prompt_ids), generated=generated)
        self._metrics.completions(self._model_name, len(completions))
        self._metrics.graded(grader.name, len(completions), result.num_correct)
        return result

    def _answer_text(self, token_ids: Sequence[int], text: str) -> str:
        """The text a completion is graded on: its final answer once it closed its reasoning
        block; the whole completion for the plain format or a reasoning block left open."""
        if not self._format.has_reasoning_block:
            return text
        split = self.codec.split(token_ids)
        if not split.closed:
            return text
        return self._engine.tokenizer.decode(split.final_ids)
