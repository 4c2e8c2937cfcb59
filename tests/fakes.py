"""A scripted engine for the pure-logic tests of the model servers.

It is never used by the demo or the integration tests, which run vLLM.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from cot_transfer.domain.requests import (
    CotDelta,
    Prefix,
    Problem,
    ServiceInfo,
    StrongAnswer,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.engine.base import Engine, GenerationOutput, GenerationRequest, PromptTokenizer, SampleOutput

EOS = 0


class CharTokenizer:
    """One token per character; id 0 is end of sequence."""

    def encode(self, text: str) -> list[int]:
        return [ord(char) for char in text]

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(token) for token in token_ids if token != EOS)

    def render_problem(self, problem: str, template_kwargs: dict[str, Any] | None = None) -> str:
        return f"Q: {problem}\nA: "

    def is_special(self, token_id: int) -> bool:
        return token_id == EOS


class RecordingEngine(Engine):
    """The lifecycle every fake engine shares: nothing to start or stop, always healthy, and a
    record of the requests drawn and the ids aborted; subclasses write ``generate``."""

    def __init__(self, tokenizer: PromptTokenizer, max_model_len: int) -> None:
        self.requests: list[GenerationRequest] = []
        self.aborted: list[str] = []
        self._tokenizer = tokenizer
        self._max_model_len = max_model_len

    async def start(self) -> None:
        return None

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def check_health(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    @property
    def tokenizer(self) -> PromptTokenizer:
        return self._tokenizer

    @property
    def max_model_len(self) -> int:
        return self._max_model_len


class ScriptedEngine(RecordingEngine):
    """Answers every request with the same continuations, one per sample index."""

    def __init__(self, continuations: Sequence[str], max_model_len: int = 256, delay_s: float = 0.0) -> None:
        super().__init__(CharTokenizer(), max_model_len)
        self.continuations = list(continuations)
        self._delay_s = delay_s

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        self.requests.append(request)
        tokens = [
            [ord(char) for char in self.continuations[index % len(self.continuations)]][: request.sampling.max_tokens]
            for index in range(request.n)
        ]
        for sample_tokens in tokens:
            if len(sample_tokens) < request.sampling.max_tokens:
                sample_tokens.append(EOS)
        if request.stream_deltas:
            for position in range(max(len(sample) for sample in tokens)):
                await asyncio.sleep(self._delay_s)
                samples = [
                    SampleOutput(
                        index=index,
                        text=self._tokenizer.decode(sample[position : position + 1]),
                        token_ids=sample[position : position + 1],
                        finish_reason=_finish(sample, request) if position == len(sample) - 1 else None,
                    )
                    for index, sample in enumerate(tokens)
                    if position < len(sample)
                ]
                yield GenerationOutput(request_id, samples, finished=position == max(map(len, tokens)) - 1)
            return
        await asyncio.sleep(self._delay_s)
        yield GenerationOutput(
            request_id,
            [
                SampleOutput(index, self._tokenizer.decode(sample), sample, _finish(sample, request))
                for index, sample in enumerate(tokens)
            ],
            finished=True,
        )


def _finish(sample: list[int], request: GenerationRequest) -> str:
    return "stop" if sample and sample[-1] == EOS else "length"


# The sampling the data-plane tests run with (a temperature above 0, as n > 1 requires).
SAMPLING = SamplingParams(0.6, 0.95, 50)


def transfer_request(
    problems: Sequence[Problem], fractions: Sequence[float] = (0.0, 0.5, 1.0), n: int = 2, **options: Any
) -> TransferRequest:
    """A run of ``problems`` with the tests' sampling, default thresholds and the exact grader;
    ``options`` set any other TransferRequest field."""
    return TransferRequest(
        problems=list(problems),
        fractions=fractions,
        n=n,
        strong_sampling=options.pop("strong_sampling", SAMPLING),
        receiver_sampling=options.pop("receiver_sampling", SAMPLING),
        thresholds=options.pop("thresholds", Thresholds()),
        grader=options.pop("grader", "exact"),
        **options,
    )


def service_info(**reported: Any) -> ServiceInfo:
    """What a service serving "strong" and "weak" with the exact grader tells the client, within
    the limits the client tests assume; ``reported`` sets what else it reports (its models,
    sampling defaults, versions)."""
    return ServiceInfo("strong", "weak", ("exact",), "exact", 1024, 10000, 101, **reported)


async def cot_events(
    cot: str, fractions: Sequence[float], answer: str, prefix_text: Callable[[str], str] = str
) -> AsyncIterator[StrongEvent]:
    """What a strong model that writes ``cot`` and answers ``answer`` streams: the CoT, then the
    prefix of each fraction (its first floor(f × len) characters, one token each), then the answer."""
    yield CotDelta(cot)
    for fraction in fractions:
        kept = int(fraction * len(cot))
        yield Prefix(fraction, prefix_text(cot[:kept]), kept, len(cot))
    yield StrongAnswer(cot, answer, len(cot), "stop")
