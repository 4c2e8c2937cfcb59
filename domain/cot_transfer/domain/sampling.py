"""Sampling settings and their allowed ranges."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cot_transfer.domain.errors import InvalidArgumentError

MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class SamplingParams:
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None = None

    def check(self, field: str, n: int = 1) -> SamplingParams:
        """Raises ``InvalidArgumentError`` naming ``field``'s sub-field when out of range."""
        if math.isnan(self.temperature) or not 0.0 <= self.temperature <= MAX_TEMPERATURE:
            raise InvalidArgumentError(
                f"{field}.temperature", f"must be in [0, {MAX_TEMPERATURE}], got {self.temperature}"
            )
        if math.isnan(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise InvalidArgumentError(f"{field}.top_p", f"must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise InvalidArgumentError(f"{field}.max_tokens", f"must be at least 1, got {self.max_tokens}")
        if self.temperature == 0.0 and n > 1:
            raise InvalidArgumentError(
                f"{field}.temperature",
                f"0 (greedy) gives {n} identical samples; use a temperature above 0 when n > 1",
            )
        return self


def check_sample_count(n: int, cap: int, field: str = "n") -> int:
    if not 1 <= n <= cap:
        raise InvalidArgumentError(field, f"must be in [1, {cap}], got {n}")
    return n


def check_text(value: str, field: str) -> str:
    if not value.strip():
        raise InvalidArgumentError(field, "must not be empty")
    return value
