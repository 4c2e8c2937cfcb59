"""Client retry and deadlines against a real in-process gRPC server (no Ray, no engine)."""

from collections.abc import AsyncIterator

import grpc
import pytest

from cot_transfer.client import CotTransferClient, RetryPolicy, RpcFailedError
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc


class FlakyWeakModel(pb_grpc.WeakModelServicer):
    def __init__(self, failures: list[grpc.StatusCode]) -> None:
        self.failures = failures
        self.calls = 0
        self.metadata: list[tuple[str, str]] = []

    async def Complete(self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext) -> pb.CompleteResponse:  # noqa: N802
        self.calls += 1
        self.metadata = [(item.key, item.value) for item in context.invocation_metadata() or ()]
        if self.failures:
            await context.abort(self.failures.pop(0), "try later")
        return pb.CompleteResponse(
            completions=[pb.Completion(text="x", extracted_answer="3", correct=True, num_tokens=1)],
            num_correct=1,
            potential=1.0,
        )


@pytest.fixture
async def server_with() -> AsyncIterator[object]:
    servers: list[grpc.aio.Server] = []

    async def start(servicer: FlakyWeakModel) -> str:
        server = grpc.aio.server()
        pb_grpc.add_WeakModelServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(None)


FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.02)


async def test_unavailable_and_resource_exhausted_are_retried(server_with) -> None:  # type: ignore[no-untyped-def]
    servicer = FlakyWeakModel([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
    async with CotTransferClient(await server_with(servicer), retry=FAST, application="app") as client:
        result = await client.complete("1+2", reference_answer="3")
    assert servicer.calls == 3
    assert result.potential == 1.0
    assert ("application", "app") in servicer.metadata


async def test_retries_stop_after_max_attempts(server_with) -> None:  # type: ignore[no-untyped-def]
    servicer = FlakyWeakModel([grpc.StatusCode.UNAVAILABLE] * 10)
    async with CotTransferClient(await server_with(servicer), retry=FAST) as client:
        with pytest.raises(RpcFailedError) as caught:
            await client.complete("1+2", reference_answer="3")
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == FAST.max_attempts


async def test_client_errors_are_not_retried(server_with) -> None:  # type: ignore[no-untyped-def]
    servicer = FlakyWeakModel([grpc.StatusCode.INVALID_ARGUMENT])
    async with CotTransferClient(await server_with(servicer), retry=FAST) as client:
        with pytest.raises(RpcFailedError) as caught:
            await client.complete("1+2", reference_answer="3")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details == "try later"
    assert servicer.calls == 1


async def test_retries_respect_the_overall_deadline(server_with) -> None:  # type: ignore[no-untyped-def]
    servicer = FlakyWeakModel([grpc.StatusCode.UNAVAILABLE] * 100)
    slow = RetryPolicy(max_attempts=100, initial_backoff_s=0.2, max_backoff_s=0.2, multiplier=1.0)
    async with CotTransferClient(await server_with(servicer), retry=slow) as client:
        with pytest.raises(RpcFailedError):
            await client.complete("1+2", reference_answer="3", timeout_s=0.5)
    assert servicer.calls < 10


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=3.0, multiplier=2.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 3.0), (5, 3.0)]:
        assert all(0.0 <= policy.backoff_s(attempt) <= ceiling for _ in range(50))
