"""Client-side conversion between the typed API and protobuf messages."""

from __future__ import annotations

from dataclasses import dataclass

from cot_transfer.domain.receivers import FREE
from cot_transfer.domain.requests import (
    CompletionResult,
    CotDelta,
    FractionResult,
    ModelInfo,
    Problem,
    ProblemError,
    ResumedProblem,
    ServiceInfo,
    StrongAnswer,
    StrongCot,
    StrongEvent,
)
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.sampling_plan import SamplingPlan
from cot_transfer.domain.transfer import FractionSummary, Interval, ReceiverSummary, RunSummary, Thresholds
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.wire.messages import (
    MODE_FROM_PROTO,
    MODE_TO_PROTO,
    completion_from_proto,
    leak_flag,
    prefix_from_proto,
    prefix_to_proto,
)


@dataclass(frozen=True)
class Sampling:
    """The sampling a call asks for; a field left None takes the service's default.

    Not ``cot_transfer.domain.sampling.SamplingParams``: that is the *resolved* sampling, every
    field set, which the service derives from this and its defaults (``ServiceInfo`` reports
    them). On the wire both are the ``SamplingParams`` message, whose fields are optional."""

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


def mode_to_proto(mode: str) -> pb.AnswerMode:
    if mode not in MODE_TO_PROTO:
        raise ValueError(f"unknown answer mode {mode!r}; modes: {', '.join(MODE_TO_PROTO)}")
    return MODE_TO_PROTO[mode]


def mode_from_proto(value: int) -> str:
    # Unspecified: a service from before answer modes, which completes freely.
    return MODE_FROM_PROTO.get(value, FREE)


def sampling_plan_to_proto(plan: SamplingPlan) -> pb.SamplingPlan:
    message = pb.SamplingPlan(n_max=plan.n_max, rounds=list(plan.rounds), error_rate=plan.error_rate, rule=plan.rule)
    if plan.target_width is not None:
        message.target_width = plan.target_width
    return message


def thresholds_to_proto(thresholds: Thresholds | None) -> pb.Thresholds:
    if thresholds is None:
        return pb.Thresholds()
    return pb.Thresholds(
        baseline_max_potential=thresholds.baseline_max_potential,
        unlock_min_potential=thresholds.unlock_min_potential,
    )


def problem_to_proto(problem: Problem, resumed: ResumedProblem | None = None) -> pb.Problem:
    """``resumed``: the problem's stored prefixes and the rows still to draw on them."""
    message = pb.Problem(
        id=problem.id, problem=problem.problem, answer=problem.answer, cot=problem.cot, cot_format=problem.cot_format
    )
    if resumed is not None:
        message.prefixes.extend(prefix_to_proto(prefix) for prefix in resumed.prefixes)
        message.rows.extend(
            pb.RowKey(fraction=fraction, receiver=receiver, mode=mode_to_proto(mode))
            for fraction, receiver, mode in sorted(resumed.rows)
        )
    return message


def problem_wire_bytes(problem: Problem, resumed: ResumedProblem | None = None) -> int:
    """What one problem adds to a serialized ``RunRequest`` (its field tag and length included)."""
    return pb.RunRequest(problems=[problem_to_proto(problem, resumed)]).ByteSize()


def strong_event_from_proto(message: pb.StreamPrefixesResponse) -> StrongEvent:
    kind = message.WhichOneof("event")
    if kind == "delta":
        return CotDelta(message.delta.text)
    if kind == "prefix":
        return prefix_from_proto(message.prefix)
    if kind == "answer":
        answer = message.answer
        return StrongAnswer(
            answer.cot,
            answer.answer or None,
            answer.cot_num_tokens,
            answer.finish_reason,
            final_text=answer.final_text,
            reasoning_truncated=answer.reasoning_truncated,
        )
    raise ValueError(f"unexpected StreamPrefixes message: {message!r}")


def _sampling_defaults_from_proto(message: pb.GetInfoResponse, field: str) -> SamplingParams | None:
    if not message.HasField(field):  # a service from before GetInfo reported its defaults
        return None
    defaults: pb.SamplingParams = getattr(message, field)
    return SamplingParams(
        temperature=defaults.temperature,
        top_p=defaults.top_p,
        max_tokens=defaults.max_tokens,
        seed=defaults.seed if defaults.HasField("seed") else None,
    )


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
        max_text_chars=message.max_text_chars,
        max_samples_per_run=message.max_samples_per_run,
        models=tuple(
            ModelInfo(
                name=model.name,
                roles=tuple(model.roles),
                reasoning_format=model.reasoning_format,
                fingerprint=model.fingerprint,
                max_model_len=model.max_model_len,
                engine_settings=dict(model.engine_settings),
            )
            for model in message.models
        ),
        strong_sampling_defaults=_sampling_defaults_from_proto(message, "strong_sampling_defaults"),
        weak_sampling_defaults=_sampling_defaults_from_proto(message, "weak_sampling_defaults"),
        versions=dict(message.versions),
    )


def completion_result_from_proto(message: pb.CompleteResponse) -> CompletionResult:
    return CompletionResult(
        completions=[completion_from_proto(completion) for completion in message.completions],
        prompt_num_tokens=message.prompt_num_tokens,
    )


def _interval_from_proto(message: pb.FractionSummary, name: str) -> Interval | None:
    if not message.HasField(name):
        return None
    interval = getattr(message, name)
    return Interval(interval.low, interval.high)


def fraction_summary_from_proto(message: pb.FractionSummary, n_problems: int) -> FractionSummary:
    """The wire carries the run's problem count, not each fraction's: a finished run has a
    result for every problem at every fraction."""
    return FractionSummary(
        fraction=message.fraction,
        n_problems=n_problems,
        mean_potential=message.weak_potential_mean,
        mean_potential_interval=None,
        unsolved_evaluated=message.unsolved_evaluated,
        unlocked=message.unlocked,
        unlock_rate=message.unlock_rate if message.HasField("unlock_rate") else None,
        unlock_rate_interval=_interval_from_proto(message, "unlock_rate_interval"),
        answer_in_prefix=message.answer_in_prefix,
        unlock_rate_without_answer=(
            message.unlock_rate_without_answer if message.HasField("unlock_rate_without_answer") else None
        ),
        unlock_rate_without_answer_interval=_interval_from_proto(message, "unlock_rate_without_answer_interval"),
    )


def transfer_event_from_proto(message: pb.RunResponse) -> StrongCot | FractionResult | ProblemError | RunSummary:
    kind = message.WhichOneof("event")
    if kind == "problem_error":
        error = message.problem_error
        return ProblemError(problem_id=error.problem_id, code=error.code, message=error.message)
    if kind == "strong_cot":
        cot = message.strong_cot
        return StrongCot(
            cot.problem_id,
            cot.cot,
            cot.answer or None,
            cot.correct,
            cot.cot_num_tokens,
            tuple(prefix_from_proto(prefix) for prefix in cot.prefixes),
            final_text=cot.final_text,
            finish_reason=cot.finish_reason,
            reasoning_truncated=cot.reasoning_truncated,
            imported=cot.imported,
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
            answer_in_prefix=leak_flag(result, "answer_in_prefix"),
            answer_stated_in_prefix=leak_flag(result, "answer_stated_in_prefix"),
            receiver=result.receiver,
            mode=mode_from_proto(result.mode),
            answer_counts=tuple((count.answer, count.count) for count in result.answer_counts),
            completions=tuple(completion_from_proto(completion) for completion in result.completions),
            num_steps=result.num_steps,
            rounds=result.rounds,
            stop_reason=result.stop_reason,
            # An adaptive row's potential is its Rao-Blackwell estimate, computed by the service.
            rao_blackwell_potential=result.potential if result.rounds > 0 else None,
        )
    if kind == "summary":
        summary = message.summary
        return RunSummary(
            fractions=tuple(summary.fractions),
            n_samples=summary.n_samples,
            n_problems=summary.n_problems,
            baseline_unsolved=summary.baseline_unsolved,
            per_fraction=tuple(
                fraction_summary_from_proto(stats, summary.n_problems) for stats in summary.per_fraction
            ),
            strong_solve_rate=summary.strong_solve_rate,
            truncated_cots=summary.truncated_cots,
            problem_errors=summary.problem_errors,
            samples_drawn=summary.samples_drawn,
            samples_brute_force=summary.samples_brute_force,
            thresholds=Thresholds(summary.thresholds.baseline_max_potential, summary.thresholds.unlock_min_potential),
            receivers=tuple(
                ReceiverSummary(
                    receiver=block.receiver,
                    mode=mode_from_proto(block.mode),
                    baseline_unsolved=block.baseline_unsolved,
                    per_fraction=tuple(
                        fraction_summary_from_proto(stats, summary.n_problems) for stats in block.per_fraction
                    ),
                )
                for block in summary.receivers
            ),
        )
    raise ValueError(f"unexpected Run message: {message!r}")
