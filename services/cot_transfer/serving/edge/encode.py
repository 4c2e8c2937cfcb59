"""Responses out: domain results become wire messages here, once per message type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cot_transfer.domain.answers import grader_names
from cot_transfer.domain.requests import (
    CompletionResult,
    CotDelta,
    FractionResult,
    Prefix,
    ProblemError,
    StrongCot,
    StrongEvent,
)
from cot_transfer.domain.transfer import FractionSummary, Interval, RunSummary
from cot_transfer.serving.common.serving_config import SamplingDefaults, ServingConfig
from cot_transfer.serving.common.versions import serving_versions
from cot_transfer.serving.replicas.fingerprint import output_engine_settings
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.wire.messages import MODE_TO_PROTO, completion_to_proto, prefix_to_proto

# GetInfo's role of a model that only completes prefixes (``ServingConfig.receivers``).
RECEIVER_ROLE = "receiver"


def _sampling_to_proto(defaults: SamplingDefaults) -> pb.SamplingParams:
    message = pb.SamplingParams(temperature=defaults.temperature, top_p=defaults.top_p, max_tokens=defaults.max_tokens)
    if defaults.seed is not None:
        message.seed = defaults.seed
    return message


def _models_to_proto(config: ServingConfig, fingerprints: Mapping[str, str]) -> list[pb.ModelInfo]:
    """One entry per served name; a model serving both roles is listed once with both."""
    models: dict[str, pb.ModelInfo] = {}
    roles = [("strong", config.strong), ("weak", config.weak)]
    roles += [(RECEIVER_ROLE, receiver) for receiver in config.receivers]
    for role, deployment in roles:
        name = deployment.engine.name
        if name in models:
            models[name].roles.append(role)
            continue
        reasoning = deployment.reasoning_format
        models[name] = pb.ModelInfo(
            name=name,
            roles=[role],
            reasoning_format=reasoning if isinstance(reasoning, str) else "custom",
            fingerprint=fingerprints.get(name, ""),
            max_model_len=deployment.engine.max_model_len or 0,
            engine_settings=output_engine_settings(deployment.engine),
        )
    return list(models.values())


def service_info_to_proto(config: ServingConfig, fingerprints: Mapping[str, str] | None = None) -> pb.GetInfoResponse:
    """``fingerprints``: each served name's model fingerprint (``serving.fingerprint``)."""
    return pb.GetInfoResponse(
        strong_model=config.strong.engine.name,
        weak_model=config.weak.engine.name,
        graders=grader_names(),
        default_grader=config.default_grader,
        max_samples_per_request=config.limits.max_samples_per_request,
        max_problems_per_run=config.limits.max_problems_per_run,
        max_fractions=config.limits.max_fractions,
        max_message_bytes=config.limits.max_message_bytes,
        max_text_chars=config.limits.max_text_chars,
        max_samples_per_run=config.limits.max_samples_per_run,
        strong_sampling_defaults=_sampling_to_proto(config.strong.sampling),
        weak_sampling_defaults=_sampling_to_proto(config.weak.sampling),
        models=_models_to_proto(config, fingerprints or {}),
        versions=serving_versions(),
    )


def strong_event_to_proto(event: StrongEvent) -> pb.StreamPrefixesResponse:
    if isinstance(event, CotDelta):
        return pb.StreamPrefixesResponse(delta=pb.CotDelta(text=event.text))
    if isinstance(event, Prefix):
        return pb.StreamPrefixesResponse(prefix=prefix_to_proto(event))
    return pb.StreamPrefixesResponse(
        answer=pb.StrongAnswer(
            cot=event.cot,
            answer=event.answer or "",
            cot_num_tokens=event.cot_num_tokens,
            finish_reason=event.finish_reason,
            final_text=event.final_text,
            reasoning_truncated=event.reasoning_truncated,
        )
    )


def completion_result_to_proto(result: CompletionResult) -> pb.CompleteResponse:
    return pb.CompleteResponse(
        completions=[completion_to_proto(completion) for completion in result.completions],
        num_correct=result.num_correct,
        potential=result.potential,
        prompt_num_tokens=result.prompt_num_tokens,
    )


def _interval_to_proto(interval: Interval | None) -> pb.Interval | None:
    return None if interval is None else pb.Interval(low=interval.low, high=interval.high)


def fraction_summary_to_proto(stats: FractionSummary) -> pb.FractionSummary:
    """Undefined rates and intervals stay unset; an unknown answer_in_prefix count reads as 0."""
    return pb.FractionSummary(
        fraction=stats.fraction,
        weak_potential_mean=stats.mean_potential or 0.0,
        unlocked=stats.unlocked,
        unlock_rate=stats.unlock_rate,
        unlock_rate_interval=_interval_to_proto(stats.unlock_rate_interval),
        unsolved_evaluated=stats.unsolved_evaluated,
        answer_in_prefix=stats.answer_in_prefix or 0,
        unlock_rate_without_answer=stats.unlock_rate_without_answer,
        unlock_rate_without_answer_interval=_interval_to_proto(stats.unlock_rate_without_answer_interval),
    )


def transfer_event_to_proto(event: StrongCot | FractionResult | ProblemError | RunSummary) -> pb.RunResponse:
    if isinstance(event, ProblemError):
        return pb.RunResponse(
            problem_error=pb.ProblemError(
                problem_id=event.problem_id, code=event.code, message=event.message, permanent=event.permanent
            )
        )
    if isinstance(event, StrongCot):
        return pb.RunResponse(
            strong_cot=pb.StrongCot(
                problem_id=event.problem_id,
                cot=event.cot,
                answer=event.answer or "",
                correct=event.correct,
                cot_num_tokens=event.cot_num_tokens,
                prefixes=[prefix_to_proto(prefix) for prefix in event.prefixes],
                final_text=event.final_text,
                finish_reason=event.finish_reason,
                reasoning_truncated=event.reasoning_truncated,
                imported=event.imported,
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
                answer_in_prefix=event.answer_in_prefix,
                answer_stated_in_prefix=event.answer_stated_in_prefix,
                receiver=event.receiver,
                mode=MODE_TO_PROTO.get(event.mode, pb.ANSWER_MODE_UNSPECIFIED),
                rounds=event.rounds,
                stop_reason=event.stop_reason,
                **kept_answers_to_proto(event),
            )
        )
    return pb.RunResponse(
        summary=pb.RunSummary(
            fractions=list(event.fractions),
            n_samples=event.n_samples,
            n_problems=event.n_problems,
            baseline_unsolved=event.baseline_unsolved,
            per_fraction=[fraction_summary_to_proto(stats) for stats in event.per_fraction],
            # The wire's rate is not optional: no known strong correctness reads as 0.
            strong_solve_rate=event.strong_solve_rate or 0.0,
            truncated_cots=event.truncated_cots,
            problem_errors=event.problem_errors,
            samples_drawn=event.samples_drawn,
            samples_brute_force=event.samples_brute_force,
            receivers=[
                pb.ReceiverSummary(
                    receiver=block.receiver,
                    mode=MODE_TO_PROTO[block.mode],
                    baseline_unsolved=block.baseline_unsolved,
                    per_fraction=[fraction_summary_to_proto(stats) for stats in block.per_fraction],
                )
                for block in event.receivers
            ],
            thresholds=pb.Thresholds(
                baseline_max_potential=event.thresholds.baseline_max_potential,
                unlock_min_potential=event.thresholds.unlock_min_potential,
            ),
        )
    )


def kept_answers_to_proto(result: FractionResult) -> dict[str, Any]:
    """The FractionResult wire fields of kept answers and step cuts."""
    return {
        "num_steps": result.num_steps,
        "answer_counts": [pb.AnswerCount(answer=answer, count=count) for answer, count in result.answer_counts],
        "completions": [completion_to_proto(completion) for completion in result.completions],
    }
