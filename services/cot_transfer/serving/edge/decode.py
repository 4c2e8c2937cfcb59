"""Requests in: the one place where wire messages become domain types.

Every field is validated here, with the field's wire name in the error, so the data plane and
the replicas behind the edge only ever see well-formed requests. Responses go out through
``cot_transfer.serving.edge.encode``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from cot_transfer.domain.answers import get_grader
from cot_transfer.domain.errors import InvalidArgumentError, NotFoundError
from cot_transfer.domain.receivers import FREE, ReceiverMode, primary_key, receiver_modes, unique_in_order
from cot_transfer.domain.requests import (
    CompletionRequest,
    Prefix,
    PrefixRequest,
    Problem,
    ResumedProblem,
    TransferRequest,
)
from cot_transfer.domain.sampling import SamplingParams, check_sample_count, check_text
from cot_transfer.domain.sequential import DEFAULT_RULE, SamplingPlan
from cot_transfer.domain.steps import EVERY_STEP_FRACTIONS
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.domain.truncation import check_fraction, check_fractions, with_baseline
from cot_transfer.serving.common.serving_config import LimitsConfig, SamplingDefaults, ServingConfig
from cot_transfer.serving.replicas.reasoning_formats import resolve_format
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.wire.messages import CUT_FROM_PROTO, MODE_FROM_PROTO, STEP_BOUNDARY_FROM_PROTO


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


def _stored_prefix(message: pb.Prefix, field: str, limits: LimitsConfig) -> Prefix:
    if message.num_tokens < 0 or message.cot_num_tokens < message.num_tokens:
        raise InvalidArgumentError(
            field, f"needs 0 <= num_tokens <= cot_num_tokens, got {message.num_tokens} and {message.cot_num_tokens}"
        )
    if len(message.token_ids) > limits.max_text_chars:
        raise InvalidArgumentError(f"{field}.token_ids", f"at most {limits.max_text_chars} ids (limits.max_text_chars)")
    return Prefix(
        fraction=check_fraction(message.fraction, f"{field}.fraction"),
        text=capped_text(message.text, f"{field}.text", limits, required=False),
        num_tokens=message.num_tokens,
        cot_num_tokens=message.cot_num_tokens,
        token_ids=_token_ids(message.token_ids, f"{field}.token_ids"),
        num_steps=max(message.num_steps, 0),
    )


def _resumed(
    messages: Sequence[pb.Problem],
    fractions: Sequence[float],
    row_keys: Sequence[ReceiverMode],
    config: ServingConfig,
) -> dict[str, ResumedProblem]:
    """The resumed problems of a run: their stored prefixes and the rows still to draw. A row
    names a fraction of its problem's prefixes (of the run without them) and a (receiver, mode)
    of the run."""
    resumed = {}
    for index, message in enumerate(messages):
        if not message.prefixes and not message.rows:
            continue
        field = f"problems[{index}]"
        if len(message.prefixes) > config.limits.max_fractions + 2:  # every-step: the steps, 0 and 1
            raise InvalidArgumentError(f"{field}.prefixes", f"at most {config.limits.max_fractions + 2} prefixes")
        prefixes = tuple(
            _stored_prefix(prefix, f"{field}.prefixes[{position}]", config.limits)
            for position, prefix in enumerate(message.prefixes)
        )
        if len({prefix.fraction for prefix in prefixes}) < len(prefixes):
            raise InvalidArgumentError(f"{field}.prefixes", "one prefix per fraction")
        known = {prefix.fraction for prefix in prefixes} if prefixes else set(fractions)
        rows = set()
        for position, row in enumerate(message.rows):
            row_field = f"{field}.rows[{position}]"
            key = (
                receiver_from_proto(row.receiver, config, f"{row_field}.receiver"),
                mode_from_proto(row.mode, f"{row_field}.mode"),
            )
            if key not in row_keys:
                raise InvalidArgumentError(row_field, f"(receiver, mode) {key} is not one of the run's")
            if row.fraction not in known:
                raise InvalidArgumentError(f"{row_field}.fraction", f"{row.fraction} is not a fraction of the problem")
            rows.add((row.fraction, *key))
        resumed[message.id] = ResumedProblem(prefixes=prefixes, rows=frozenset(rows))
    return resumed


def transfer_request_from_proto(message: pb.RunRequest, config: ServingConfig) -> TransferRequest:
    problems = _problems(list(message.problems), config.limits)  # the sizes first, as for Complete
    plan = sampling_plan_from_proto(message, config)
    n = samples_per_request(message, plan, config)
    receivers, modes, primary = run_receivers_from_proto(message.receivers, message.modes, config)
    fractions = every_step_fractions(message) or with_baseline(_fractions(list(message.fractions), config.limits))
    return TransferRequest(
        problems=problems,
        fractions=fractions,
        n=n,
        strong_sampling=sampling_from_proto(message.strong_sampling, config.strong.sampling, "strong_sampling", n=1),
        receiver_sampling=sampling_from_proto(message.weak_sampling, config.weak.sampling, "weak_sampling", n=n),
        thresholds=_thresholds(message.thresholds, config),
        grader=_grader(message.grader, config.default_grader),
        experiment_id=_experiment_id(message.experiment_id),
        receivers=receivers,
        modes=modes,
        primary=primary,
        sampling_plan=plan,
        resumed=_resumed(message.problems, fractions, receiver_modes(receivers, modes), config),
        take_over=message.take_over,
        **cut_options_from_proto(message, config),
    )


def cut_options_from_proto(message: pb.RunRequest, config: ServingConfig) -> dict[str, Any]:
    """The TransferRequest fields of cut points, imported CoTs and kept answers."""
    if message.cut not in CUT_FROM_PROTO:
        raise InvalidArgumentError("cut", f"unknown cut mode {message.cut}; token, step, every_step or search")
    if message.step_boundary not in STEP_BOUNDARY_FROM_PROTO:
        raise InvalidArgumentError("step_boundary", f"unknown step boundary {message.step_boundary}; line or sentence")
    # Imported CoTs are cut on the strong model's replica, with its tokenizer (no generation).
    if message.cot_tokenizer and message.cot_tokenizer != config.strong.engine.name:
        served = {config.strong.engine.name, config.weak.engine.name}
        if message.cot_tokenizer not in served:
            raise NotFoundError(f"cot_tokenizer: no served model {message.cot_tokenizer!r}")
        raise InvalidArgumentError(
            "cot_tokenizer", f"imported CoTs are cut with the strong model's tokenizer ({config.strong.engine.name!r})"
        )
    return {
        "cut": CUT_FROM_PROTO[message.cut],
        "step_boundary": STEP_BOUNDARY_FROM_PROTO[message.step_boundary],
        "keep_completions": message.keep_completions,
        "max_cot_chars": config.limits.max_text_chars,
        "max_steps": config.limits.max_fractions,
    }


def every_step_fractions(message: pb.RunRequest) -> tuple[float, ...]:
    """An every-step run's summary fractions (its own ``fractions`` are not used); () otherwise."""
    return EVERY_STEP_FRACTIONS if message.cut in (pb.CUT_MODE_EVERY_STEP, pb.CUT_MODE_SEARCH) else ()


def cot_from_proto(message: pb.Problem, field: str) -> tuple[str | None, str]:
    """A problem's imported CoT and its format name. The CoT's length is checked per problem
    (a long one is its problem's error); an unknown format is the request's."""
    cot = message.cot if message.HasField("cot") else None
    name = message.cot_format or "plain"
    try:
        resolve_format(name)
    except ValueError as error:
        raise InvalidArgumentError(f"{field}.cot_format", str(error)) from None
    return cot, name


def sampling_plan_from_proto(message: pb.RunRequest, config: ServingConfig) -> SamplingPlan | None:
    """The run's plan, None when it sets none (every row draws ``n``). With a plan, ``n`` is
    n_max: a request may leave ``n`` at 0 or set it to n_max."""
    if not message.HasField("sampling_plan"):
        return None
    wire = message.sampling_plan
    plan = SamplingPlan(
        n_max=wire.n_max,
        rounds=tuple(wire.rounds) or tuple(config.adaptive.rounds),
        error_rate=wire.error_rate if wire.HasField("error_rate") else config.adaptive.error_rate,
        target_width=wire.target_width if wire.HasField("target_width") else None,
        rule=wire.rule if wire.HasField("rule") else DEFAULT_RULE,
    ).check(config.adaptive.max_n_max, config.adaptive.max_rounds)
    if message.n not in (0, plan.n_max):
        raise InvalidArgumentError("n", f"must be 0 or sampling_plan.n_max ({plan.n_max}) with a plan, got {message.n}")
    for index, size in enumerate(plan.round_sizes()):
        # Each round is one request to the receiver.
        check_sample_count(size, config.limits.max_samples_per_request, f"sampling_plan.rounds[{index}]")
    return plan


def samples_per_request(message: pb.RunRequest, plan: SamplingPlan | None, config: ServingConfig) -> int:
    """The run's ``n``: n_max with a plan, else the request's n within the per-request cap."""
    if plan is not None:
        return plan.n_max
    return check_sample_count(message.n, config.limits.max_samples_per_request)


def served_receivers(config: ServingConfig) -> tuple[str, ...]:
    """The served names that can complete prefixes: the weak model, the strong model and the
    configured receiver-only models."""
    names = (config.weak.engine.name, config.strong.engine.name, *(r.engine.name for r in config.receivers))
    return unique_in_order(names)


def receiver_from_proto(name: str, config: ServingConfig, field: str) -> str:
    """A receiver named in a request ("" is the weak model); an unknown one is NOT_FOUND."""
    if not name:
        return config.weak.engine.name
    served = served_receivers(config)
    if name not in served:
        raise NotFoundError(f"{field}: unknown receiver {name!r}; this service serves {', '.join(served)}")
    return name


def mode_from_proto(value: int, field: str) -> str:
    """An answer mode; unspecified is free, anything else unknown is INVALID_ARGUMENT."""
    if value == pb.ANSWER_MODE_UNSPECIFIED:
        return FREE
    if value not in MODE_FROM_PROTO:
        raise InvalidArgumentError(field, f"unknown answer mode {value}; modes: free (1), force_answer (2)")
    return MODE_FROM_PROTO[value]


def run_receivers_from_proto(
    receivers: Sequence[str], modes: Sequence[int], config: ServingConfig
) -> tuple[tuple[str, ...], tuple[str, ...], ReceiverMode]:
    """A RunRequest's receivers, modes (repeats dropped, order kept) and primary (receiver, mode)."""
    names = unique_in_order(
        receiver_from_proto(name, config, f"receivers[{index}]") for index, name in enumerate(receivers)
    ) or (config.weak.engine.name,)
    asked = unique_in_order(mode_from_proto(value, f"modes[{index}]") for index, value in enumerate(modes)) or (FREE,)
    return names, asked, primary_key(names, asked, (config.weak.engine.name,))
