"""Protobuf <-> domain conversion: the one place where wire messages become domain types.

Every field is validated here, with the field's wire name in the error, so the model servers
behind the edge only ever see well-formed requests.
"""

from __future__ import annotations

import re
import uuid

from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.grading import get_grader, grader_names
from cot_transfer.domain.requests import (
    CompletionRequest,
    CompletionResult,
    CotDelta,
    CotPrefix,
    FractionResult,
    PrefixRequest,
    Problem,
    StrongCot,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.domain.sampling import SamplingParams, check_sample_count, check_text
from cot_transfer.domain.transfer import Thresholds, TransferSummary
from cot_transfer.domain.truncation import check_fractions, with_baseline
from cot_transfer.serving.config import LimitsConfig, SamplingDefaults, ServingConfig
from cot_transfer.v1 import cot_transfer_pb2 as pb


def sampling_from_proto(message: pb.SamplingParams, defaults: SamplingDefaults, field: str, n: int) -> SamplingParams:
    settings = SamplingParams(
        temperature=message.temperature if message.HasField("temperature") else defaults.temperature,
        top_p=message.top_p if message.HasField("top_p") else defaults.top_p,
        max_tokens=message.max_tokens if message.HasField("max_tokens") else defaults.max_tokens,
        seed=message.seed if message.HasField("seed") else defaults.seed,
    )
    return settings.check(field, n=n)


def _fractions(values: list[float], limits: LimitsConfig) -> tuple[float, ...]:
    """Validated fractions in request order."""
    if len(values) > limits.max_fractions:
        raise InvalidArgumentError("fractions", f"at most {limits.max_fractions} fractions, got {len(values)}")
    return check_fractions(values)


def _grader(name: str, default: str) -> str:
    resolved = name or default
    get_grader(resolved)
    return resolved


def prefix_request_from_proto(message: pb.StreamPrefixesRequest, config: ServingConfig) -> PrefixRequest:
    return PrefixRequest(
        problem=check_text(message.problem, "problem"),
        # The stream answers in request order, so the order is kept.
        fractions=_fractions(list(message.fractions), config.limits),
        sampling=sampling_from_proto(message.sampling, config.strong.sampling, "sampling", n=1),
        grader=_grader(message.grader, config.default_grader),
    )


def completion_request_from_proto(message: pb.CompleteRequest, config: ServingConfig) -> CompletionRequest:
    n = check_sample_count(message.n, config.limits.max_samples_per_request)
    return CompletionRequest(
        problem=check_text(message.problem, "problem"),
        prefix=message.prefix,
        n=n,
        sampling=sampling_from_proto(message.sampling, config.weak.sampling, "sampling", n=n),
        reference_answer=check_text(message.reference_answer, "reference_answer"),
        grader=_grader(message.grader, config.default_grader),
    )


def _thresholds(message: pb.Thresholds, config: ServingConfig) -> Thresholds:
    defaults = config.thresholds
    return Thresholds(
        baseline_max_potential=(
            message.baseline_max_potential
            if message.HasField("baseline_max_potential")
            else defaults.baseline_max_potential
        ),
        unlock_min_potential=(
            message.unlock_min_potential if message.HasField("unlock_min_potential") else defaults.unlock_min_potential
        ),
    ).check("thresholds")


def _problems(messages: list[pb.Problem], limits: LimitsConfig) -> tuple[Problem, ...]:
    if not messages:
        raise InvalidArgumentError("problems", "at least one problem is required")
    if len(messages) > limits.max_problems_per_run:
        raise InvalidArgumentError("problems", f"at most {limits.max_problems_per_run} problems, got {len(messages)}")
    seen: set[str] = set()
    problems = []
    for index, message in enumerate(messages):
        field = f"problems[{index}]"
        problem_id = check_text(message.id, f"{field}.id")
        if problem_id in seen:
            raise InvalidArgumentError(f"{field}.id", f"duplicate id {problem_id!r}")
        seen.add(problem_id)
        problems.append(
            Problem(
                id=problem_id,
                problem=check_text(message.problem, f"{field}.problem"),
                answer=check_text(message.answer, f"{field}.answer"),
            )
        )
    return tuple(problems)


_EXPERIMENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _experiment_id(value: str) -> str:
    if not value:
        return uuid.uuid4().hex[:12]
    if not _EXPERIMENT_ID.fullmatch(value):
        raise InvalidArgumentError("experiment_id", "must be 1-64 letters, digits, '.', '_' or '-'")
    return value


def transfer_request_from_proto(message: pb.RunRequest, config: ServingConfig) -> TransferRequest:
    n = check_sample_count(message.n, config.limits.max_samples_per_request)
    return TransferRequest(
        problems=_problems(list(message.problems), config.limits),
        fractions=with_baseline(_fractions(list(message.fractions), config.limits)),
        n=n,
        strong_sampling=sampling_from_proto(message.strong_sampling, config.strong.sampling, "strong_sampling", n=1),
        weak_sampling=sampling_from_proto(message.weak_sampling, config.weak.sampling, "weak_sampling", n=n),
        thresholds=_thresholds(message.thresholds, config),
        grader=_grader(message.grader, config.default_grader),
        experiment_id=_experiment_id(message.experiment_id),
    )


def _prefix_to_proto(prefix: CotPrefix) -> pb.Prefix:
    return pb.Prefix(
        fraction=prefix.fraction, text=prefix.text, num_tokens=prefix.num_tokens, cot_num_tokens=prefix.cot_num_tokens
    )


def service_info_to_proto(config: ServingConfig) -> pb.GetInfoResponse:
    return pb.GetInfoResponse(
        strong_model=config.strong.engine.name,
        weak_model=config.weak.engine.name,
        graders=grader_names(),
        default_grader=config.default_grader,
        max_samples_per_request=config.limits.max_samples_per_request,
        max_problems_per_run=config.limits.max_problems_per_run,
        max_fractions=config.limits.max_fractions,
        max_message_bytes=config.limits.max_message_bytes,
    )


def strong_event_to_proto(event: StrongEvent) -> pb.StreamPrefixesResponse:
    if isinstance(event, CotDelta):
        return pb.StreamPrefixesResponse(delta=pb.CotDelta(text=event.text))
    if isinstance(event, CotPrefix):
        return pb.StreamPrefixesResponse(prefix=_prefix_to_proto(event))
    return pb.StreamPrefixesResponse(
        answer=pb.StrongAnswer(
            cot=event.cot,
            answer=event.answer or "",
            cot_num_tokens=event.cot_num_tokens,
            finish_reason=event.finish_reason,
        )
    )


def completion_result_to_proto(result: CompletionResult) -> pb.CompleteResponse:
    return pb.CompleteResponse(
        completions=[
            pb.Completion(
                text=completion.text,
                extracted_answer=completion.extracted_answer or "",
                correct=completion.correct,
                num_tokens=completion.num_tokens,
                finish_reason=completion.finish_reason,
            )
            for completion in result.completions
        ],
        num_correct=result.num_correct,
        potential=result.potential,
        prompt_num_tokens=result.prompt_num_tokens,
    )


def transfer_event_to_proto(event: StrongCot | FractionResult | TransferSummary) -> pb.RunResponse:
    if isinstance(event, StrongCot):
        return pb.RunResponse(
            strong_cot=pb.StrongCot(
                problem_id=event.problem_id,
                cot=event.cot,
                answer=event.answer or "",
                correct=event.correct,
                cot_num_tokens=event.cot_num_tokens,
                prefixes=[_prefix_to_proto(prefix) for prefix in event.prefixes],
            )
        )
    if isinstance(event, FractionResult):
        return pb.RunResponse(
            result=pb.FractionResult(
                problem_id=event.problem_id,
                fraction=event.fraction,
                prefix_num_tokens=event.prefix_num_tokens,
                cot_num_tokens=event.cot_num_tokens,
                n=event.n,
                num_correct=event.num_correct,
                potential=event.potential,
            )
        )
    return pb.RunResponse(
        summary=pb.RunSummary(
            fractions=list(event.fractions),
            n_samples=event.n_samples,
            n_problems=event.n_problems,
            baseline_unsolved=event.baseline_unsolved,
            per_fraction=[
                pb.FractionSummary(
                    fraction=stats.fraction,
                    weak_potential_mean=stats.weak_potential_mean,
                    unlocked=stats.unlocked,
                    unlock_rate=stats.unlock_rate,
                )
                for stats in event.per_fraction
            ],
            strong_solve_rate=event.strong_solve_rate,
            thresholds=pb.Thresholds(
                baseline_max_potential=event.thresholds.baseline_max_potential,
                unlock_min_potential=event.thresholds.unlock_min_potential,
            ),
        )
    )
