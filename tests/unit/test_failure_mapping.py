"""Failures that are the cluster's, not the request's, are retryable; details fit in a trailer.

Ray raises its own errors when an actor, worker, raylet or node dies, or an object is lost with its
owner; on a cluster those are ordinary events, and the same call succeeds once Serve has replaced
the replica. Details echo what the caller sent, so they are bounded before they become the
grpc-message trailer."""

from __future__ import annotations

import grpc
import pytest
from ray.exceptions import (
    ActorDiedError,
    GetTimeoutError,
    LocalRayletDiedError,
    NodeDiedError,
    ObjectLostError,
    ObjectReconstructionFailedError,
    OutOfMemoryError,
    OwnerDiedError,
    RaySystemError,
    RayTaskError,
    TaskCancelledError,
    WorkerCrashedError,
)
from ray.serve._private.common import DeploymentID
from ray.serve.exceptions import DeploymentUnavailableError

from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.serving.dataplane.failures import MAX_DETAILS_CHARS, bounded_details
from cot_transfer.serving.edge.status import status_for
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from tests.conftest import InProcessService

OBJECT = "a" * 56  # an object id's hex


@pytest.mark.parametrize(
    "error",
    [
        ObjectLostError(OBJECT, b"", ""),
        OwnerDiedError(OBJECT, b"", ""),
        ObjectReconstructionFailedError(OBJECT, b"", ""),
        NodeDiedError("node 10.0.0.2 died"),
        LocalRayletDiedError(),
        WorkerCrashedError(),
        RaySystemError("the GCS went away"),
        ActorDiedError(),
        OutOfMemoryError("the memory monitor killed the worker"),
        DeploymentUnavailableError(DeploymentID(name="Weak", app_name="cot_transfer")),
    ],
    ids=lambda error: type(error).__name__,
)
def test_losing_a_process_or_node_is_unavailable_which_clients_retry(error: BaseException) -> None:
    code, details = status_for(error)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "retry" in details


def test_a_replica_that_saw_another_die_passes_unavailable_on() -> None:
    # The ingress awaits the strong replica, which awaited a weak one that died.
    wrapped = RayTaskError("stream_prefixes", "traceback text", ActorDiedError())
    assert status_for(wrapped)[0] == grpc.StatusCode.UNAVAILABLE


def test_a_bug_in_a_replica_stays_internal() -> None:
    wrapped = RayTaskError("complete", "traceback text", KeyError("x"))
    assert status_for(wrapped)[0] == grpc.StatusCode.INTERNAL


@pytest.mark.parametrize(
    ("error", "code"),
    [(GetTimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED), (TaskCancelledError(), grpc.StatusCode.CANCELLED)],
)
def test_ray_timeouts_and_cancellations_keep_their_meaning(error: BaseException, code: grpc.StatusCode) -> None:
    assert status_for(error)[0] == code


def test_long_details_are_cut_saying_how_much_was_left_out() -> None:
    details = status_for(InvalidArgumentError("receiver", "x" * 100_000))[1]
    assert len(details) <= MAX_DETAILS_CHARS
    assert details.startswith("receiver: xxx") and details.endswith("more characters)")
    assert bounded_details("short") == "short"


async def test_a_huge_echoed_name_still_arrives_as_its_own_status(in_process_service: InProcessService) -> None:
    """Without the bound the trailer is over gRPC's metadata limit and the client sees RESOURCE_EXHAUSTED
    (measured), which it would retry: the same refusal, again and again."""
    async with grpc.aio.insecure_channel(in_process_service.address) as channel:
        weak = pb_grpc.WeakModelStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await weak.Complete(pb.CompleteRequest(problem="1+2", reference_answer="3", n=1, receiver="r" * 200_000))
    assert refused.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert len(refused.value.details() or "") <= MAX_DETAILS_CHARS
