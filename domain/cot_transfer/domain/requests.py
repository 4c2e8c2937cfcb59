"""Requests and results of the three operations, as the services see them.

The service edge builds these from protobuf messages (validating every field on the way),
so everything past the edge can trust them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.sampling_plan import SamplingPlan
from cot_transfer.domain.steps import CutMode, StepBoundary
from cot_transfer.domain.transfer import Thresholds


@dataclass(frozen=True)
class PrefixRequest:
    problem: str
    fractions: Sequence[float]
    sampling: SamplingParams
    grader: str
    # Whether the caller reads the CoT as it is written (CotDelta events). Off, the engine sends
    # only its final output: no per-token message between actors.
    stream_deltas: bool = True
    cut: CutMode = CutMode.TOKEN
    step_boundary: StepBoundary = StepBoundary.LINE
    # An imported CoT: it is cut instead of generated (the model is not called).
    cot: str | None = None
    # The reasoning format ``cot`` is written in (a ``serving.reasoning`` preset name).
    cot_format: str = "plain"


@dataclass(frozen=True)
class CotDelta:
    text: str


@dataclass(frozen=True)
class Prefix:
    fraction: float
    text: str
    num_tokens: int
    cot_num_tokens: int
    # The strong model's token ids of ``text``: a receiver with the same tokenizer takes them as they are.
    token_ids: tuple[int, ...] = ()
    # Whether ``text`` may already give the reference answer away (the lenient leak flag) and
    # whether it states it as an answer (the strict one): ``leaks.judge_prefix``. None where not
    # judged (the strong model cuts prefixes without knowing the reference).
    answer_in_prefix: bool | None = None
    answer_stated_in_prefix: bool | None = None
    # Step boundaries the prefix holds (step cuts only; 0 for token cuts).
    num_steps: int = 0


@dataclass(frozen=True)
class StrongAnswer:
    # The reasoning the prefixes are cut from (the whole output for the plain format).
    cot: str
    answer: str | None
    cot_num_tokens: int
    finish_reason: str
    # The final answer after the reasoning block; empty for the plain format.
    final_text: str = ""
    # The budget ran out inside the reasoning block.
    reasoning_truncated: bool = False
    # The CoT was imported: the model was not called.
    imported: bool = False


StrongEvent = CotDelta | Prefix | StrongAnswer


@dataclass(frozen=True)
class ModelInfo:
    """A served model as GetInfo reports it."""

    name: str
    roles: tuple[str, ...] = ()
    reasoning_format: str = ""
    # Changes when the weights, config or tokenizer behind the served name change.
    fingerprint: str = ""
    max_model_len: int = 0
    # The engine settings that change outputs (dtype, quantization, ...), each as JSON text.
    engine_settings: Mapping[str, str] = field(default_factory=dict, hash=False)


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
    # Longest text field accepted, in characters; 0 when the service does not say.
    max_text_chars: int = 0
    # The most samples one run may draw (``run_size``); 0 when the service does not say.
    max_samples_per_run: int = 0
    models: tuple[ModelInfo, ...] = ()
    # The sampling a request gets for the fields it leaves unset; None when the service does not say.
    strong_sampling_defaults: SamplingParams | None = None
    weak_sampling_defaults: SamplingParams | None = None
    # The serving software's versions by distribution name, and "python"; empty when the
    # service does not say.
    versions: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class CompletionRequest:
    problem: str
    prefix: str
    n: int
    sampling: SamplingParams
    reference_answer: str
    grader: str
    # The prefix as the strong model's token ids; used when they decode to ``prefix`` in the
    # receiver's tokenizer (a shared tokenizer), ignored otherwise.
    prefix_token_ids: tuple[int, ...] = ()
    # The served model that completes the prefix ("" is the weak model) and how it answers
    # (``receivers.FREE`` or ``receivers.FORCE_ANSWER``).
    receiver: str = ""
    mode: str = "free"


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
    # The dataset's other fields (level, subject, year, ...): they go into the results folder,
    # never to the service. A dict is not hashable, so problems hash by their other fields.
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # An imported CoT and the reasoning format it is written in: the strong model is not called.
    cot: str | None = None
    cot_format: str = ""


# One row of a run: (fraction, receiver, mode).
RowKey = tuple[float, str, str]


@dataclass(frozen=True)
class ResumedProblem:
    """A problem resumed on the CoT an earlier run of it returned: its rows are completed on
    exactly ``prefixes`` (the strong model is not called; none: it writes a new CoT), and only
    ``rows`` of them (none: every row of the run)."""

    prefixes: tuple[Prefix, ...] = ()
    rows: frozenset[RowKey] = frozenset()


@dataclass(frozen=True)
class TransferRequest:
    problems: Sequence[Problem]
    # Sorted, de-duplicated, always containing 0.0 (the baseline).
    fractions: Sequence[float]
    n: int
    strong_sampling: SamplingParams
    # The sampling of every receiver's completions (the wire's RunRequest.weak_sampling).
    receiver_sampling: SamplingParams
    thresholds: Thresholds
    grader: str
    experiment_id: str = ""
    # The served models that complete every prefix, and the answer modes each does it in;
    # ``primary`` is the (receiver, mode) the summary's top-level fields repeat.
    receivers: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("free",)
    primary: tuple[str, str] = ("", "free")
    cut: CutMode = CutMode.TOKEN
    step_boundary: StepBoundary = StepBoundary.LINE
    # Rows keep every completion's text, not only the answer counts.
    keep_completions: bool = False
    # Longest imported CoT, in characters: a longer one is its problem's error, not the run's.
    max_cot_chars: int = 0
    # Most prefixes of one problem's every-step cut: a CoT with more steps is its problem's error.
    max_steps: int = 0
    # Adaptive sampling (``cot_transfer.domain.sequential``); None draws ``n`` for every row.
    sampling_plan: SamplingPlan | None = None
    # Problem id -> its stored prefixes and missing rows, for the problems a resume completes.
    resumed: Mapping[str, ResumedProblem] = field(default_factory=dict)
    # A run going under ``experiment_id`` is ended for this one instead of refusing this one.
    take_over: bool = False


@dataclass(frozen=True)
class StrongCot:
    problem_id: str
    cot: str
    answer: str | None
    correct: bool
    cot_num_tokens: int
    prefixes: tuple[Prefix, ...] = ()
    final_text: str = ""
    finish_reason: str = ""
    # The budget ran out inside the reasoning: left out of the unlock statistics.
    reasoning_truncated: bool = False
    # The CoT came with the problem: the strong model was not called.
    imported: bool = False


@dataclass(frozen=True)
class FractionResult:
    problem_id: str
    fraction: float
    prefix_num_tokens: int
    cot_num_tokens: int
    n: int
    num_correct: int
    # The prefix's leak flags (``Prefix``): lenient and strict; None where not judged.
    answer_in_prefix: bool | None = None
    answer_stated_in_prefix: bool | None = None
    # The served model that completed the prefix ("" in rows from before receivers) and how.
    receiver: str = ""
    mode: str = "free"
    # The extracted answer of every sample, as (answer, count) pairs, most frequent first ("" for
    # samples that state none); and the completions' texts when the run keeps them.
    answer_counts: tuple[tuple[str, int], ...] = ()
    completions: tuple[GradedCompletion, ...] = ()
    # Step boundaries the prefix holds (step cuts only).
    num_steps: int = 0
    # Adaptive sampling: rounds drawn and why sampling stopped (``sequential.STOP_REASONS``);
    # 0 and "" for a row drawn in one go. ``n`` is then the samples the row drew.
    rounds: int = 0
    stop_reason: str = ""
    # Adaptive rows: the Rao-Blackwell estimate of the potential (``sequential_estimates``), as
    # k / n at an early stop is biased; None for a row drawn in one go.
    rao_blackwell_potential: float | None = None

    @property
    def potential(self) -> float:
        """The row's estimate of its potential: num_correct / n, or for an adaptive row its
        Rao-Blackwell estimate (unbiased under early stopping). Decisions (unsolved, unlocked)
        read num_correct / n, which is the stopping rule's call on a decided row."""
        if self.rao_blackwell_potential is not None:
            return self.rao_blackwell_potential
        return self.num_correct / self.n


# The status codes of errors no retry can fix: the request itself is at fault.
PERMANENT_CODES = frozenset({"OUT_OF_RANGE", "INVALID_ARGUMENT"})


@dataclass(frozen=True)
class ProblemError:
    """A problem a run could not run; the run goes on with the others."""

    problem_id: str
    # The gRPC status code name, e.g. "OUT_OF_RANGE".
    code: str
    message: str

    @property
    def permanent(self) -> bool:
        """A retry cannot fix it: a resumed run keeps it instead of running the problem again."""
        return self.code in PERMANENT_CODES
