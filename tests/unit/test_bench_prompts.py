"""The offline baseline's prompts (benchmarks.prompts) are the ones the weak server sends its
engine, reasoning block included: the decisions benchmark compares the two on the same prompts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from benchmarks.prompts import weak_prompt_groups
from cot_transfer.domain import requests as rq
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.engine.base import GenerationOutput, GenerationRequest, SampleOutput
from cot_transfer.serving.replicas.reasoning_formats import resolve_format
from cot_transfer.serving.replicas.receiver_server import ReceiverServer
from tests.conftest import LOCAL_CONFIG, REPO
from tests.fakes import RecordingEngine

pytest.importorskip("transformers")

WEAK_FOLDER = REPO / "models" / "testbed" / "weak"
PROBLEM = rq.Problem("p1", "What is 1+2?", "3")
COT = "First, 1+2 is three.\nSo the answer is 3."


class PromptRecorder(RecordingEngine):
    """The weak model's tokenizer; records each prompt and answers 3."""

    def __init__(self) -> None:
        from transformers import AutoTokenizer

        from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer

        super().__init__(HuggingFaceTokenizer(AutoTokenizer.from_pretrained(str(WEAK_FOLDER))), max_model_len=2048)

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        self.requests.append(request)
        samples = [SampleOutput(index, "Answer: 3", [1], "stop") for index in range(request.n)]
        yield GenerationOutput(request_id, samples, finished=True)


@pytest.mark.parametrize("reasoning_format", ["plain", "qwen3"])
async def test_the_offline_prompts_are_the_weak_servers(reasoning_format: str) -> None:
    weak = LOCAL_CONFIG.weak.model_copy(
        update={
            "engine": LOCAL_CONFIG.weak.engine.model_copy(update={"model": str(WEAK_FOLDER)}),
            "reasoning_format": reasoning_format,
        }
    )
    prefixes = tuple(
        rq.Prefix(fraction, COT[:cut], cut, len(COT))
        for fraction, cut in ((0.0, 0), (0.5, COT.index("\n") + 1), (1.0, len(COT)))
    )
    strong = {PROBLEM.id: rq.StrongCot(PROBLEM.id, COT, "3", True, len(COT), prefixes=prefixes)}
    groups, prefix_lengths = weak_prompt_groups(weak, [PROBLEM], strong)

    engine = PromptRecorder()
    server = ReceiverServer(engine, weak.engine.name, reasoning_format=resolve_format(reasoning_format))
    for prefix in prefixes:
        await server.complete(
            rq.CompletionRequest(PROBLEM.problem, prefix.text, 1, SamplingParams(0.6, 0.95, 16, 0), "3", "exact")
        )
    assert groups == [[list(request.prompt_token_ids) for request in engine.requests]]
    assert prefix_lengths[0][0] == 0 and all(length > 0 for length in prefix_lengths[0][1:])
    rendered = engine.tokenizer.decode(engine.requests[-1].prompt_token_ids)
    if reasoning_format == "qwen3":
        # The receiver's reasoning block is open before the prefix: what the old offline prompts left out.
        assert "<think>\n" + COT in rendered
    else:
        assert "<think>" not in rendered and rendered.endswith(COT)
