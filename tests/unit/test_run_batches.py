"""Experiments larger than one request: problems go out in batches the service's limits allow."""

import pytest

from cot_transfer.client.convert import problem_wire_bytes
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.runner import REQUEST_OVERHEAD_BYTES, RequestTooLargeError, problem_batches

PROBLEMS = [Problem(f"p{index}", "x" * (index + 1), "1") for index in range(10)]


def ids(batches: list[list[Problem]]) -> list[list[str]]:
    return [[problem.id for problem in batch] for batch in batches]


def test_batches_keep_order_and_the_problem_cap() -> None:
    batches = problem_batches(PROBLEMS, max_problems=4, max_request_bytes=0, wire_bytes=problem_wire_bytes)
    assert ids(batches) == [["p0", "p1", "p2", "p3"], ["p4", "p5", "p6", "p7"], ["p8", "p9"]]


def test_everything_fits_in_one_call_when_the_limits_allow() -> None:
    batches = problem_batches(PROBLEMS, max_problems=10_000, max_request_bytes=64 * 2**20, wire_bytes=len_of_text)
    assert ids(batches) == [[problem.id for problem in PROBLEMS]]


def len_of_text(problem: Problem) -> int:
    return len(problem.problem)


def test_batches_stay_under_the_byte_limit() -> None:
    budget = 12  # bytes for problems in each request
    batches = problem_batches(
        PROBLEMS[:6], max_problems=100, max_request_bytes=REQUEST_OVERHEAD_BYTES + budget, wire_bytes=len_of_text
    )
    # Sizes 1..6: greedy in order, each batch's sum at most 12.
    assert ids(batches) == [["p0", "p1", "p2", "p3"], ["p4", "p5"]]
    assert all(sum(map(len_of_text, batch)) <= budget for batch in batches)


def test_a_problem_too_large_for_any_request_is_refused_before_any_call() -> None:
    huge = Problem("huge", "x" * 5000, "1")
    with pytest.raises(RequestTooLargeError, match=r"'huge' is 50\d\d bytes; the service accepts requests up to"):
        problem_batches(
            [PROBLEMS[0], huge],
            max_problems=10,
            max_request_bytes=REQUEST_OVERHEAD_BYTES + 1000,
            wire_bytes=problem_wire_bytes,
        )


def test_wire_bytes_match_the_serialized_request() -> None:
    from cot_transfer.v1 import cot_transfer_pb2 as pb

    problems = PROBLEMS[:3]
    request = pb.RunRequest(problems=[pb.Problem(id=p.id, problem=p.problem, answer=p.answer) for p in problems])
    assert request.ByteSize() == sum(map(problem_wire_bytes, problems))


def test_a_cap_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_problems"):
        problem_batches(PROBLEMS, max_problems=0, max_request_bytes=0, wire_bytes=len_of_text)
