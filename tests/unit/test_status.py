"""The one mapping from errors to gRPC status codes."""

import grpc
import pytest
from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError

from cot_transfer.domain.errors import (
    AbortedError,
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    OverloadedError,
    UnavailableError,
)
from cot_transfer.serving.edge.status import status_for


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgumentError("n", "must be in [1, 8], got 0"), grpc.StatusCode.INVALID_ARGUMENT),
        (OutOfRangeError("prefix", "too long"), grpc.StatusCode.OUT_OF_RANGE),
        (NotFoundError("grader 'x' is unknown"), grpc.StatusCode.NOT_FOUND),
        (AlreadyExistsError("experiment_id 'x' is already running"), grpc.StatusCode.ALREADY_EXISTS),
        (AbortedError("experiment_id 'x' was taken over"), grpc.StatusCode.ABORTED),
        (OverloadedError("queue full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (UnavailableError("engine died"), grpc.StatusCode.UNAVAILABLE),
        (TimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED),
        (BackPressureError(num_queued_requests=3, max_queued_requests=2), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
def test_each_error_type_has_its_code(error: BaseException, code: grpc.StatusCode) -> None:
    assert status_for(error)[0] == code


def test_client_errors_keep_their_message() -> None:
    assert status_for(InvalidArgumentError("fractions[2]", "must be a number in [0, 1], got 1.5")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "fractions[2]: must be a number in [0, 1], got 1.5",
    )


def test_domain_errors_raised_in_another_replica_keep_their_code() -> None:
    try:
        raise InvalidArgumentError("prefix", "too long")
    except InvalidArgumentError as cause:
        wrapped = RayTaskError("complete", "traceback text", cause)
    assert status_for(wrapped) == (grpc.StatusCode.INVALID_ARGUMENT, "prefix: too long")


def test_unexpected_errors_are_internal_without_leaking_their_text() -> None:
    code, details = status_for(KeyError("/secret/path/model.bin"))
    assert code == grpc.StatusCode.INTERNAL
    assert "secret" not in details and "KeyError" not in details and "Traceback" not in details
    assert "incident" in details
