"""The outcome of one math-answer comparison: what ``math_compare`` returns in a worker and
``math_equivalence`` hands back (its own module, so neither imports the other's half)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    EQUIVALENT = "equivalent"
    DIFFERENT = "different"
    # A guard refused an expression whose comparison would run unbounded.
    REFUSED = "refused"
    # math-verify raised; the answer was not compared.
    ERROR = "error"
    # The comparison overran its time limit (set by the worker pool).
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Comparison:
    outcome: Outcome
    detail: str = ""

    @property
    def equivalent(self) -> bool:
        return self.outcome is Outcome.EQUIVALENT
