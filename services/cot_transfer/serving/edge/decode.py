"""Protobuf <-> domain conversion: the one place where wire messages become domain types.

Every field is validated here, with the field's wire name in the error, so the model servers
behind the edge only ever see well-formed requests.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence

from cot_transfer.domain.answers import get_grader, grader_names
from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.requests import (
    CompletionRequest,
    CompletionResult,
    CotDelta,
    CotPrefix,
    FractionResult,
    PrefixRequest,
    Problem,
    ProblemError,
    StrongCot,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.domain.sampling import SamplingParams, check_sample_count, check_text
from cot_transfer.domain.transfer import FractionSummary, Interval, RunSummary, Thresholds
from cot_transfer.domain.truncation import check_fractions, with_baseline
from cot_transfer.serving.adaptive_wire import samples_per_request, sampling_plan_from_proto
from cot_transfer.serving.config import LimitsConfig, SamplingDefaults, ServingConfig
from cot_transfer.serving.cut_wire import (
    cot_from_proto,
    cut_options_from_proto,
    every_step_fractions,
    kept_answers_to_proto,
)
from cot_transfer.serving.receivers import (
    MODE_TO_PROTO,
    RECEIVER_ROLE,
    mode_from_proto,
    receiver_from_proto,
    run_receivers_from_proto,
)
from cot_transfer.v1 import cot_transfer_pb2 as pb


def sampling_from_proto(message: pb.SamplingParams, defaults: SamplingDefaults, field: str, n: int) -> SamplingParams:
    settings = SamplingParams(
        temperature=message.temperature if message.HasField("temperature") else defaults.temperature,
        top_p=message.top_p if message.HasField("top_p") else defaults.top_p,
        max_tokens=message.max_tokens if message.HasField("max_tokens") else defaults.max_tokens,
        seed=message.seed if message.HasField("seed") else defaults.seed,
    )
    return settings.check(field, n=n)


def capped_text(value: str, field: str, limits: LimitsConfig, required: bool = True) -> str:
    """A text field within ``limits.max_text_chars``: checked first, before any tokenisation, so
    an oversized input costs the service nothing but this comparison."""
    if len(value) > limits.max_text_chars:
        raise InvalidArgumentError(
            field, f"at most {limits.max_text_chars} characters (limits.max_text_chars), got {len(value)}"
        )
    return check_text(value, field) if required else value


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
        problem=capped_text(message.problem, "problem", config.limits),
        # The stream answers in request order, so the order is kept.
        fractions=_fractions(list(message.fractions), config.limits),
        sampling=sampling_from_proto(message.sampling, config.strong.sampling, "sampling", n=1),
        grader=_grader(message.grader, config.default_grader),
    )


def completion_request_from_proto(message: pb.CompleteRequest, config: ServingConfig) -> CompletionRequest:
    # The sizes first: an oversized request is refused for its size whatever else is wrong.
    problem = capped_text(message.problem, "problem", config.limits)
    prefix = capped_text(message.prefix, "prefix", config.limits, required=False)
    reference_answer = capped_text(message.reference_answer, "reference_answer", config.limits)
    if len(message.prefix_token_ids) > config.limits.max_text_chars:
        # A token stands for at least one character, so the text cap bounds the ids too.
        raise InvalidArgumentError(
            "prefix_token_ids",
            f"at most {config.limits.max_text_chars} ids (limits.max_text_chars), got {len(message.prefix_token_ids)}",
        )
    n = check_sample_count(message.n, config.limits.max_samples_per_request)
    return CompletionRequest(
        problem=problem,
        prefix=prefix,
        n=n,
        sampling=sampling_from_proto(message.sampling, config.weak.sampling, "sampling", n=n),
        reference_answer=reference_answer,
        grader=_grader(message.grader, config.default_grader),
        prefix_token_ids=_token_ids(message.prefix_token_ids, "prefix_token_ids"),
        receiver=receiver_from_proto(message.receiver, config, "receiver"),
        mode=mode_from_proto(message.mode, "mode"),
    )


def _token_ids(values: Sequence[int], field: str) -> tuple[int, ...]:
    for index, value in enumerate(values):
        if value < 0:
            raise InvalidArgumentError(f"{field}[{index}]", f"must be a token id >= 0, got {value}")
    return tuple(values)


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
        problem_id = capped_text(message.id, f"{field}.id", limits)
        if problem_id in seen:
            raise InvalidArgumentError(f"{field}.id", f"duplicate id {problem_id!r}")
        seen.add(problem_id)
        cot, cot_format = cot_from_proto(message, field)
        problems.append(
            Problem(
                id=problem_id,
                problem=capped_text(message.problem, f"{field}.problem", limits),
                answer=capped_text(message.answer, f"{field}.answer", limits),
                cot=cot,
                cot_format=cot_format,
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
    problems = _problems(list(message.problems), config.limits)  # the sizes first, as for Complete
    plan = sampling_plan_from_proto(message, config)
    n = samples_per_request(message, plan, config)
    receivers, modes, primary = run_receivers_from_proto(message.receivers, message.modes, config)
    return TransferRequest(
        problems=problems,
        fractions=every_step_fractions(message) or with_baseline(_fractions(list(message.fractions), config.limits)),
        n=n,
        strong_sampling=sampling_from_proto(message.strong_sampling, config.strong.sampling, "strong_sampling", n=1),
        weak_sampling=sampling_from_proto(message.weak_sampling, config.weak.sampling, "weak_sampling", n=n),
        thresholds=_thresholds(message.thresholds, config),
        grader=_grader(message.grader, config.default_grader),
        experiment_id=_experiment_id(message.experiment_id),
        receivers=receivers,
        modes=modes,
        primary=primary,
        sampling_plan=plan,
        **cut_options_from_proto(message, config),
    )


def _prefix_to_proto(prefix: CotPrefix) -> pb.Prefix:
    return pb.Prefix(
        fraction=prefix.fraction,
        text=prefix.text,
        num_tokens=prefix.num_tokens,
        cot_num_tokens=prefix.cot_num_tokens,
        token_ids=prefix.token_ids,
        answer_in_prefix=prefix.answer_in_prefix,  # None leaves the optional field unset
        num_steps=prefix.num_steps,
    )


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
        strong_sampling_defaults=_sampling_to_proto(config.strong.sampling),
        weak_sampling_defaults=_sampling_to_proto(config.weak.sampling),
        models=_models_to_proto(config, fingerprints or {}),
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
            final_text=event.final_text,
            reasoning_truncated=event.reasoning_truncated,
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
                prefixes=[_prefix_to_proto(prefix) for prefix in event.prefixes],
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
