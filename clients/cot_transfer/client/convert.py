"""Client-side conversion between the typed API and protobuf messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cot_transfer.domain.requests import (
    CompletionResult,
    CotDelta,
    CotPrefix,
    FractionResult,
    GradedCompletion,
    Problem,
    ServiceInfo,
    StrongAnswer,
    StrongCot,
    StrongEvent,
)
from cot_transfer.domain.transfer import FractionStats, Thresholds, TransferSummary
from cot_transfer.v1 import cot_transfer_pb2 as pb


@dataclass(frozen=True)
class Sampling:
    """Sampling settings for a call; a field left None takes the service's default."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None

    def to_proto(self) -> pb.SamplingParams:
        message = pb.SamplingParams()
        if self.temperature is not None:
            message.temperature = self.temperature
        if self.top_p is not None:
            message.top_p = self.top_p
        if self.max_tokens is not None:
            message.max_tokens = self.max_tokens
        if self.seed is not None:
            message.seed = self.seed
        return message


def thresholds_to_proto(thresholds: Thresholds | None) -> pb.Thresholds:
    if thresholds is None:
        return pb.Thresholds()
    return pb.Thresholds(
        baseline_max_potential=thresholds.baseline_max_potential,
        unlock_min_potential=thresholds.unlock_min_potential,
    )


def problems_to_proto(problems: Sequence[Problem]) -> list[pb.Problem]:
    return [pb.Problem(id=problem.id, problem=problem.problem, answer=problem.answer) for problem in problems]


def problem_wire_bytes(problem: Problem) -> int:
    """What one problem adds to a serialized ``RunRequest`` (its field tag and length included)."""
    return pb.RunRequest(problems=problems_to_proto([problem])).ByteSize()


def strong_event_from_proto(message: pb.StreamPrefixesResponse) -> StrongEvent:
    kind = message.WhichOneof("event")
    if kind == "delta":
        return CotDelta(message.delta.text)
    if kind == "prefix":
        return _prefix_from_proto(message.prefix)
    if kind == "answer":
        answer = message.answer
        return StrongAnswer(answer.cot, answer.answer or None, answer.cot_num_tokens, answer.finish_reason)
    raise ValueError(f"unexpected StreamPrefixes message: {message!r}")


def _prefix_from_proto(prefix: pb.Prefix) -> CotPrefix:
    return CotPrefix(prefix.fraction, prefix.text, prefix.num_tokens, prefix.cot_num_tokens)


def service_info_from_proto(message: pb.GetInfoResponse) -> ServiceInfo:
    return ServiceInfo(
        strong_model=message.strong_model,
        weak_model=message.weak_model,
        graders=tuple(message.graders),
        default_grader=message.default_grader,
        max_samples_per_request=message.max_samples_per_request,
        max_problems_per_run=message.max_problems_per_run,
        max_fractions=message.max_fractions,
        max_message_bytes=message.max_message_bytes,
    )


def completion_result_from_proto(message: pb.CompleteResponse) -> CompletionResult:
    return CompletionResult(
        completions=[
            GradedCompletion(
                text=completion.text,
                extracted_answer=completion.extracted_answer or None,
                correct=completion.correct,
                num_tokens=completion.num_tokens,
                finish_reason=completion.finish_reason,
            )
            for completion in message.completions
        ],
        prompt_num_tokens=message.prompt_num_tokens,
    )


def transfer_event_from_proto(message: pb.RunResponse) -> StrongCot | FractionResult | TransferSummary:
    kind = message.WhichOneof("event")
    if kind == "strong_cot":
        cot = message.strong_cot
        return StrongCot(
            cot.problem_id,
            cot.cot,
            cot.answer or None,
            cot.correct,
            cot.cot_num_tokens,
            tuple(_prefix_from_proto(prefix) for prefix in cot.prefixes),
        )
    if kind == "result":
        result = message.result
        return FractionResult(
            problem_id=result.problem_id,
            fraction=result.fraction,
            prefix_num_tokens=result.prefix_num_tokens,
            cot_num_tokens=result.cot_num_tokens,
            n=result.n,
            num_correct=result.num_correct,
        )
    if kind == "summary":
        summary = message.summary
        return TransferSummary(
            fractions=tuple(summary.fractions),
            n_samples=summary.n_samples,
            n_problems=summary.n_problems,
            baseline_unsolved=summary.baseline_unsolved,
            per_fraction=tuple(
                FractionStats(stats.fraction, stats.weak_potential_mean, stats.unlocked, stats.unlock_rate)
                for stats in summary.per_fraction
            ),
            strong_solve_rate=summary.strong_solve_rate,
            thresholds=Thresholds(summary.thresholds.baseline_max_potential, summary.thresholds.unlock_min_potential),
        )
    raise ValueError(f"unexpected Run message: {message!r}")
