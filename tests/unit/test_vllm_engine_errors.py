"""What vLLM's own errors become: the caller's input is final, an engine hiccup is retried, and a
plain ValueError from vLLM's internals (its configuration, a bug) is not passed off as the
caller's fault. vLLM's AsyncLLM is replaced by one that raises; the mapping is the engine's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from vllm.exceptions import GenerationError, RetryableRequestError, VLLMValidationError

from cot_transfer.domain.errors import InvalidArgumentError, UnavailableError
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.engine.base import GenerationRequest
from cot_transfer.engine.config import EngineConfig
from cot_transfer.engine.vllm_engine import VLLMEngine

REQUEST = GenerationRequest(
    prompt_token_ids=[1, 2, 3], n=1, sampling=SamplingParams(temperature=0.6, top_p=0.95, max_tokens=4)
)


class RaisingLLM:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def generate(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise self.error
        yield  # an async generator, as AsyncLLM.generate is


def engine_raising(error: Exception) -> VLLMEngine:
    engine = VLLMEngine(EngineConfig(model="/models/weak"))
    engine._llm = RaisingLLM(error)  # type: ignore[assignment]
    return engine


async def drain(engine: VLLMEngine) -> None:
    async for _ in engine.generate(REQUEST, "r1"):
        pass


async def test_vllms_request_validation_is_the_callers_final_error() -> None:
    error = VLLMValidationError("The decoder prompt is longer than the maximum model length", parameter="prompt")
    with pytest.raises(InvalidArgumentError, match="longer than the maximum model length"):
        await drain(engine_raising(error))


@pytest.mark.parametrize("error", [GenerationError(), RetryableRequestError()], ids=lambda e: type(e).__name__)
async def test_a_generation_that_failed_in_the_engine_is_unavailable_and_retried(error: Exception) -> None:
    with pytest.raises(UnavailableError):
        await drain(engine_raising(error))


async def test_a_plain_value_error_from_vllms_internals_is_not_the_callers_fault() -> None:
    with pytest.raises(ValueError, match="replay requires") as raised:
        await drain(engine_raising(ValueError("sampling distribution replay requires temperature > 0")))
    assert not isinstance(raised.value, InvalidArgumentError)  # the edge makes it INTERNAL, with an incident
