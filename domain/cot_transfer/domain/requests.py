"""Requests and results of the three operations, as the services see them.

The service edge builds these from protobuf messages (validating every field on the way),
so everything past the edge can trust them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.transfer import Thresholds


@dataclass(frozen=True)
class PrefixRequest:
    problem: str
    fractions: Sequence[float]
    sampling: SamplingParams
    grader: str


@dataclass(frozen=True)
class CotDelta:
    text: str


@dataclass(frozen=True)
class CotPrefix:
    fraction: float
    text: str
    num_tokens: int
    cot_num_tokens: int


@dataclass(frozen=True)
class StrongAnswer:
    cot: str
    answer: str | None
    cot_num_tokens: int
    finish_reason: str


StrongEvent = CotDelta | CotPrefix | StrongAnswer


@dataclass(frozen=True)
class ServiceInfo:
    strong_model: str
    weak_model: str
    graders: tuple[str, ...]
    default_grader: str
    max_samples_per_request: int
    max_problems_per_run: int
    max_fractions: int
    # Largest request the service accepts, in bytes; 0 when the service does not say.
    max_message_bytes: int = 0


@dataclass(frozen=True)
class CompletionRequest:
    problem: str
    prefix: str
    n: int
    sampling: SamplingParams
    reference_answer: str
    grader: str


@dataclass(frozen=True)
class GradedCompletion:
    text: str
    extracted_answer: str | None
    correct: bool
    num_tokens: int
    finish_reason: str


@dataclass(frozen=True)
class CompletionResult:
    completions: Sequence[GradedCompletion]
    prompt_num_tokens: int

    @property
    def num_correct(self) -> int:
        return sum(1 for completion in self.completions if completion.correct)

    @property
    def potential(self) -> float:
        return self.num_correct / len(self.completions) if self.completions else 0.0


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str


@dataclass(frozen=True)
class TransferRequest:
    problems: Sequence[Problem]
    # Sorted, de-duplicated, always containing 0.0 (the baseline).
    fractions: Sequence[float]
    n: int
    strong_sampling: SamplingParams
    weak_sampling: SamplingParams
    thresholds: Thresholds
    grader: str
    experiment_id: str = ""


@dataclass(frozen=True)
class StrongCot:
    problem_id: str
    cot: str
    answer: str | None
    correct: bool
    cot_num_tokens: int
    prefixes: tuple[CotPrefix, ...] = ()


@dataclass(frozen=True)
class FractionResult:
    problem_id: str
    fraction: float
    prefix_num_tokens: int
    cot_num_tokens: int
    n: int
    num_correct: int

    @property
    def potential(self) -> float:
        return self.num_correct / self.n
