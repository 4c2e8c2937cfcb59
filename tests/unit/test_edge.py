"""Protobuf <-> domain conversion: defaults, validation naming the field, and round trips."""

import math
from pathlib import Path

import pytest

from cot_transfer.client.convert import (
    Sampling,
    completion_result_from_proto,
    strong_event_from_proto,
    transfer_event_from_proto,
)
from cot_transfer.domain.errors import InvalidArgumentError, NotFoundError
from cot_transfer.domain.requests import (
    CompletionResult,
    CotDelta,
    FractionResult,
    GradedCompletion,
    Prefix,
    StrongAnswer,
    StrongCot,
)
from cot_transfer.domain.transfer import FractionSummary, Interval, RunSummary, Thresholds
from cot_transfer.serving.common.serving_config import ServingConfig
from cot_transfer.serving.edge import decode, encode
from cot_transfer.v1 import cot_transfer_pb2 as pb

CONFIG = ServingConfig.from_yaml(Path(__file__).resolve().parents[2] / "configs" / "local-cpu.yaml")


def run_request(**overrides: object) -> pb.RunRequest:
    fields: dict[str, object] = {
        "problems": [pb.Problem(id="a", problem="1+2", answer="3")],
        "fractions": [0.5, 1.0],
        "n": 4,
    }
    fields.update(overrides)
    return pb.RunRequest(**fields)  # type: ignore[arg-type]


def test_unset_sampling_fields_take_the_config_defaults() -> None:
    request = decode.completion_request_from_proto(
        pb.CompleteRequest(problem="1+2", n=2, reference_answer="3", sampling=Sampling(top_p=0.5).to_proto()), CONFIG
    )
    defaults = CONFIG.weak.sampling
    assert request.sampling.temperature == defaults.temperature
    assert request.sampling.top_p == 0.5
    assert request.sampling.max_tokens == defaults.max_tokens
    assert request.grader == CONFIG.default_grader


def test_explicit_zero_temperature_is_kept_not_defaulted() -> None:
    request = decode.prefix_request_from_proto(
        pb.StreamPrefixesRequest(problem="1+2", fractions=[1.0], sampling=Sampling(temperature=0.0).to_proto()), CONFIG
    )
    assert request.sampling.temperature == 0.0


def test_run_request_always_measures_the_baseline_and_sorts_fractions() -> None:
    request = decode.transfer_request_from_proto(run_request(fractions=[1.0, 0.5, 0.5]), CONFIG)
    assert request.fractions == (0.0, 0.5, 1.0)
    assert request.thresholds == Thresholds(0.0, 0.5)


def test_prefix_request_keeps_request_order() -> None:
    request = decode.prefix_request_from_proto(pb.StreamPrefixesRequest(problem="x", fractions=[1.0, 0.2]), CONFIG)
    assert tuple(request.fractions) == (1.0, 0.2)


@pytest.mark.parametrize(
    ("request_message", "field"),
    [
        (run_request(fractions=[1.5]), "fractions[0]"),
        (run_request(fractions=[0.2, math.nan]), "fractions[1]"),
        (run_request(fractions=[-0.1]), "fractions[0]"),
        (run_request(fractions=[]), "fractions"),
        # One over the cap (distinct values: duplicates collapse before the count).
        (run_request(fractions=[i / 1000 for i in range(1, CONFIG.limits.max_fractions + 2)]), "fractions"),
        (run_request(n=0), "n"),
        (run_request(n=100_000), "n"),
        (run_request(problems=[]), "problems"),
        (run_request(problems=[pb.Problem(id="a", problem="  ", answer="3")]), "problems[0].problem"),
        (run_request(problems=[pb.Problem(id="", problem="x", answer="3")]), "problems[0].id"),
        (run_request(problems=[pb.Problem(id="a", problem="x", answer="")]), "problems[0].answer"),
        (
            run_request(
                problems=[pb.Problem(id="a", problem="x", answer="1"), pb.Problem(id="a", problem="y", answer="2")]
            ),
            "problems[1].id",
        ),
        (run_request(weak_sampling=Sampling(temperature=0.0).to_proto()), "weak_sampling.temperature"),
        (run_request(strong_sampling=Sampling(top_p=1.5).to_proto()), "strong_sampling.top_p"),
        (run_request(weak_sampling=Sampling(max_tokens=0).to_proto()), "weak_sampling.max_tokens"),
        (run_request(thresholds=pb.Thresholds(unlock_min_potential=2.0)), "thresholds.unlock_min_potential"),
    ],
)
def test_invalid_run_fields_are_named(request_message: pb.RunRequest, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        decode.transfer_request_from_proto(request_message, CONFIG)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_unknown_grader_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="known graders"):
        decode.completion_request_from_proto(
            pb.CompleteRequest(problem="x", n=1, reference_answer="1", grader="nope"), CONFIG
        )


def test_complete_requires_a_reference_answer() -> None:
    with pytest.raises(InvalidArgumentError, match="reference_answer"):
        decode.completion_request_from_proto(pb.CompleteRequest(problem="x", n=1), CONFIG)


def test_events_round_trip_through_the_wire_format() -> None:
    for event in (
        CotDelta("1+2"),
        Prefix(0.5, "1+", 2, 4),
        StrongAnswer("1+2=3", "3", 5, "stop"),
        StrongAnswer("1+2", None, 3, "length"),
    ):
        wire = encode.strong_event_to_proto(event).SerializeToString()
        assert strong_event_from_proto(pb.StreamPrefixesResponse.FromString(wire)) == event
    result = CompletionResult(
        [GradedCompletion("x", "3", True, 2, "stop"), GradedCompletion("y", None, False, 9, "length")], 7
    )
    decoded = completion_result_from_proto(
        pb.CompleteResponse.FromString(encode.completion_result_to_proto(result).SerializeToString())
    )
    assert decoded == result
    assert encode.completion_result_to_proto(result).potential == 0.5
    # What the wire carries of a FractionSummary: no per-fraction problem count or mean interval.
    unlocked_half = FractionSummary(
        1.0,
        2,
        0.9,
        None,
        1,
        1,
        1.0,
        Interval(0.025, 1.0),
        answer_in_prefix=1,
        unlock_rate_without_answer=None,
        unlock_rate_without_answer_interval=None,
    )
    undefined = FractionSummary(0.0, 2, 0.1, None, 0, 0, None, None, answer_in_prefix=0)
    free = FractionSummary(
        0.5,
        2,
        0.5,
        None,
        1,
        0,
        0.0,
        Interval(0.0, 0.975),
        answer_in_prefix=0,
        unlock_rate_without_answer=0.0,
        unlock_rate_without_answer_interval=Interval(0.0, 0.975),
    )
    summary = RunSummary(
        (0.0, 0.5, 1.0),
        4,
        2,
        1,
        (undefined, free, unlocked_half),
        1.0,
        Thresholds(0.0, 0.5),
        truncated_cots=1,
        problem_errors=2,
    )
    results = (FractionResult("a", 0.5, 2, 4, 8, 3), FractionResult("a", 0.5, 2, 4, 8, 3, answer_in_prefix=True))
    for run_event in (StrongCot("a", "cot", "3", True, 3), *results, summary):
        wire = encode.transfer_event_to_proto(run_event).SerializeToString()
        assert transfer_event_from_proto(pb.RunResponse.FromString(wire)) == run_event


def test_the_fraction_cap_counts_distinct_fractions() -> None:
    cap = CONFIG.limits.max_fractions
    at_cap = [i / 1000 for i in range(1, cap + 1)]
    decode.transfer_request_from_proto(run_request(fractions=at_cap), CONFIG)  # at the cap: accepted
    with pytest.raises(InvalidArgumentError, match=f"at most {cap} fractions, got {cap + 1}"):
        decode.transfer_request_from_proto(run_request(fractions=[*at_cap, 0.999]), CONFIG)
