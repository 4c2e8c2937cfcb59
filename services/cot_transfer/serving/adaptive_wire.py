"""The wire form of adaptive sampling: a RunRequest's SamplingPlan, decoded and checked."""

from __future__ import annotations

from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.sampling import check_sample_count
from cot_transfer.domain.sequential import SamplingPlan
from cot_transfer.serving.config import ServingConfig
from cot_transfer.v1 import cot_transfer_pb2 as pb


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
