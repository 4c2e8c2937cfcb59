"""Cutting a CoT into prefixes at fractions of its length in tokens."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from cot_transfer.domain.errors import InvalidArgumentError

# 0.29 * 100 is 28.999999999999996 in binary floating point; without this slack the cut
# would land one token short of what the fraction plainly means.
_FLOAT_SLACK = 1e-9


def check_fraction(value: float, field: str) -> float:
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgumentError(field, f"must be a number in [0, 1], got {value}")
    return float(value)


def check_fractions(fractions: Iterable[float], field: str = "fractions") -> tuple[float, ...]:
    """Validated and de-duplicated fractions, in the order given; empty input is an error."""
    checked = [check_fraction(value, f"{field}[{index}]") for index, value in enumerate(fractions)]
    if not checked:
        raise InvalidArgumentError(field, "at least one fraction is required")
    return tuple(dict.fromkeys(checked))


def normalize_fractions(fractions: Iterable[float], field: str = "fractions") -> tuple[float, ...]:
    """Validated, de-duplicated and sorted fractions; empty input is an error."""
    return tuple(sorted(check_fractions(fractions, field)))


def with_baseline(fractions: Sequence[float]) -> tuple[float, ...]:
    """The fractions plus 0.0, the baseline that unlocking is measured against."""
    return tuple(sorted({0.0, *fractions}))


def prefix_token_count(fraction: float, total_tokens: int) -> int:
    """Tokens kept by a cut at ``fraction`` of a CoT of ``total_tokens`` tokens: floor(f * L)."""
    if total_tokens < 0:
        raise ValueError(f"total_tokens must be >= 0, got {total_tokens}")
    check_fraction(fraction, "fraction")
    return min(total_tokens, math.floor(fraction * total_tokens + _FLOAT_SLACK))
