"""What every replica server holds: its engine, its served name, its metrics and the codec of its
reasoning format; and the context check both servers make before they generate."""

from __future__ import annotations

from cot_transfer.domain.errors import OutOfRangeError
from cot_transfer.engine.base import Engine
from cot_transfer.serving.common.metrics import NO_METRICS, ServiceMetrics
from cot_transfer.serving.replicas.reasoning_formats import PLAIN, ReasoningCodec, ReasoningFormat


def check_fits_context(prompt_tokens: int, new_tokens: int, max_model_len: int, field: str) -> None:
    if prompt_tokens + new_tokens > max_model_len:
        raise OutOfRangeError(
            field,
            f"prompt of {prompt_tokens} tokens plus a budget of {new_tokens} new tokens exceeds the model's"
            f" context of {max_model_len} tokens",
        )


class EngineServer:
    # The served name when none is given (metrics label it).
    default_name = "model"

    def __init__(
        self,
        engine: Engine,
        model_name: str | None = None,
        metrics: ServiceMetrics = NO_METRICS,
        reasoning_format: ReasoningFormat = PLAIN,
    ) -> None:
        self._engine = engine
        self._model_name = model_name or self.default_name
        self._metrics = metrics
        self._format = reasoning_format
        self._codec: ReasoningCodec | None = None

    @property
    def codec(self) -> ReasoningCodec:
        # The tokenizer exists only once the engine has started.
        if self._codec is None:
            self._codec = ReasoningCodec(self._format, self._engine.tokenizer)
        return self._codec
