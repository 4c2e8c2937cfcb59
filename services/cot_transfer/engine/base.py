"""The engine interface the model services are written against.

Services only ever call these methods, so a deployment can be handed any engine: vLLM in
production and in the integration tests, a scripted fake in the pure-logic tests.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from cot_transfer.domain.errors import UnavailableError
from cot_transfer.domain.sampling import SamplingParams

_T = TypeVar("_T")


class PromptTokenizer(Protocol):
    """The parts of a Hugging Face tokenizer the services need."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens the chat template did not put there."""

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids``, special tokens removed."""

    def render_problem(self, problem: str, template_kwargs: dict[str, Any] | None = None) -> str:
        """The prompt text for ``problem``: through the chat template where the model has one.

        ``template_kwargs`` go to the chat template (e.g. Qwen3's ``enable_thinking``)."""

    def is_special(self, token_id: int) -> bool:
        """Whether ``token_id`` is a special token (end of sequence, padding, ...)."""


@dataclass(frozen=True)
class GenerationRequest:
    prompt_token_ids: Sequence[int]
    n: int
    # ``sampling.max_tokens`` is the number of NEW tokens the engine may generate.
    sampling: SamplingParams
    # True: each output carries only what is new since the last one (for streaming).
    # False: a single output with every sample complete.
    stream_deltas: bool = False
    # Texts that end a sample when generated (not included in its text).
    stop: Sequence[str] = ()


@dataclass(frozen=True)
class SampleOutput:
    index: int
    text: str
    token_ids: Sequence[int]
    # None while the sample is still running; "stop" or "length" once done.
    finish_reason: str | None


@dataclass(frozen=True)
class GenerationOutput:
    request_id: str
    samples: Sequence[SampleOutput]
    finished: bool


def started(part: _T | None) -> _T:
    """``part`` of an engine that ``start`` sets up; ``UnavailableError`` while it is still None."""
    if part is None:
        raise UnavailableError("the engine has not started")
    return part


class Engine(abc.ABC):
    """An LLM engine as the model services see it."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model; must finish before ``generate`` is called."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        """Generate for ``request``. Closing or cancelling the iterator aborts the engine work."""

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop the work of ``request_id`` if it is still running."""

    @abc.abstractmethod
    async def check_health(self) -> None:
        """Raise ``UnavailableError`` when the engine cannot serve."""

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """Release the engine's processes and memory."""

    @property
    @abc.abstractmethod
    def tokenizer(self) -> PromptTokenizer:
        """The model's tokenizer; valid after ``start``."""

    @property
    @abc.abstractmethod
    def max_model_len(self) -> int:
        """Context length in tokens: prompt plus generated tokens; valid after ``start``."""

    def stats(self) -> dict[str, float]:
        """Engine load for autoscaling: ``running`` and ``waiting`` sequences, ``kv_cache_usage``."""
        return {}

    def fingerprint(self) -> str:
        """What identifies a model that has no local folder (one on a server); empty: the folder does."""
        return ""


class LoadedModel:
    """``Engine.tokenizer`` and ``Engine.max_model_len`` for an engine that learns both as it
    starts (``start`` sets ``_tokenizer`` and ``_max_model_len``); listed before ``Engine``."""

    _tokenizer: PromptTokenizer | None = None
    _max_model_len: int = 0

    @property
    def tokenizer(self) -> PromptTokenizer:
        return started(self._tokenizer)

    @property
    def max_model_len(self) -> int:
        return self._max_model_len
