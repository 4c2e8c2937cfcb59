"""Client retry and deadlines against a real in-process gRPC server (no Ray, no engine).

The retries under test are the channel's own (gRPC's service-config retry policy) and the
client's rule for shed RESOURCE_EXHAUSTED, so every count here is of calls the server saw.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from cot_transfer.client import CotTransferClient, RetryPolicy, RpcFailedError
from cot_transfer.client import client as client_module
from cot_transfer.domain.requests import CotDelta
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


class CountingInterceptor(grpc.aio.ServerInterceptor):
    """Counts calls that reach the server, also those gRPC refuses before any handler runs."""

    def __init__(self) -> None:
        self.calls = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        self.calls += 1
        return await continuation(handler_call_details)


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


class FlakyStrongModel(pb_grpc.StrongModelServicer):
    def __init__(self, before_first: list[grpc.StatusCode], after_first: list[grpc.StatusCode]) -> None:
        self.before_first = before_first
        self.after_first = after_first
        self.calls = 0

    async def StreamPrefixes(  # noqa: N802
        self, request: pb.StreamPrefixesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamPrefixesResponse]:
        self.calls += 1
        if self.before_first:
            await context.abort(self.before_first.pop(0), "try later")
        yield pb.StreamPrefixesResponse(delta=pb.CotDelta(text="a"))
        if self.after_first:
            await context.abort(self.after_first.pop(0), "replica died")
        yield pb.StreamPrefixesResponse(delta=pb.CotDelta(text="b"))


class Server:
    def __init__(self, server: grpc.aio.Server, address: str, interceptor: CountingInterceptor) -> None:
        self.server = server
        self.address = address
        self.interceptor = interceptor


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    servers: list[grpc.aio.Server] = []

    async def start(
        weak: FlakyWeakModel | None = None, strong: FlakyStrongModel | None = None, max_receive_bytes: int = 4 * 2**20
    ) -> Server:
        interceptor = CountingInterceptor()
        server = grpc.aio.server(
            interceptors=[interceptor], options=[("grpc.max_receive_message_length", max_receive_bytes)]
        )
        pb_grpc.add_WeakModelServicer_to_server(weak or FlakyWeakModel([]), server)
        pb_grpc.add_StrongModelServicer_to_server(strong or FlakyStrongModel([], []), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return Server(server, f"127.0.0.1:{port}", interceptor)

    yield start
    for server in servers:
        await server.stop(None)


FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.02)
# Four pauses of up to 5 s each: a call refused at once and not retried ends far sooner.
SLOW = RetryPolicy(max_attempts=5, initial_backoff_s=5.0, max_backoff_s=5.0, multiplier=1.0)


async def test_unavailable_and_shed_resource_exhausted_are_retried(start_server: StartServer) -> None:
    weak = FlakyWeakModel([UNAVAILABLE, RESOURCE_EXHAUSTED, UNAVAILABLE])
    server = await start_server(weak)
    async with CotTransferClient(server.address, retry=FAST, application="app") as client:
        result = await client.complete("1+2", reference_answer="3")
    assert weak.calls == 4
    assert result.potential == 1.0
    assert ("application", "app") in weak.metadata


@pytest.mark.parametrize("failure", [UNAVAILABLE, RESOURCE_EXHAUSTED])
async def test_retries_stop_after_max_attempts(start_server: StartServer, failure: grpc.StatusCode) -> None:
    weak = FlakyWeakModel([failure] * 10)
    server = await start_server(weak)
    async with CotTransferClient(server.address, retry=FAST) as client:
        with pytest.raises(RpcFailedError) as caught:
            await client.complete("1+2", reference_answer="3")
    assert caught.value.code == failure
    assert caught.value.retryable
    assert weak.calls == FAST.max_attempts


async def test_client_errors_are_not_retried(start_server: StartServer) -> None:
    weak = FlakyWeakModel([grpc.StatusCode.INVALID_ARGUMENT])
    server = await start_server(weak)
    async with CotTransferClient(server.address, retry=FAST) as client:
        with pytest.raises(RpcFailedError) as caught:
            await client.complete("1+2", reference_answer="3")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details == "try later"
    assert weak.calls == 1


@pytest.mark.parametrize("failure", [UNAVAILABLE, RESOURCE_EXHAUSTED])
async def test_retries_respect_the_overall_deadline(start_server: StartServer, failure: grpc.StatusCode) -> None:
    weak = FlakyWeakModel([failure] * 100)
    server = await start_server(weak)
    steady = RetryPolicy(max_attempts=100, initial_backoff_s=0.2, max_backoff_s=0.2, multiplier=1.0)
    async with CotTransferClient(server.address, retry=steady) as client:
        started = time.monotonic()
        with pytest.raises(RpcFailedError):
            await client.complete("1+2", reference_answer="3", timeout_s=0.5)
    assert time.monotonic() - started < 1.5
    assert 1 <= weak.calls < 10


async def _refused_for_size(server: Server) -> RpcFailedError:
    """Sends a 2000-character problem under the slow retry policy; the refusal must come at once, as
    a size refusal, never after a backoff."""
    async with CotTransferClient(server.address, retry=SLOW) as client:
        started = time.monotonic()
        with pytest.raises(RpcFailedError) as caught:
            await client.complete("x" * 2000, reference_answer="3")
    assert time.monotonic() - started < 2.0
    assert caught.value.code == RESOURCE_EXHAUSTED and caught.value.size_refusal
    return caught.value


async def test_a_request_the_server_finds_too_large_is_sent_once(start_server: StartServer) -> None:
    server = await start_server(max_receive_bytes=1000)
    refusal = await _refused_for_size(server)
    assert "Received message larger than max" in refusal.details
    assert not refusal.retryable
    assert server.interceptor.calls == 1


async def test_a_request_over_the_clients_own_limit_is_refused_at_once(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gRPC raises this refusal in the client, before sending, as RESOURCE_EXHAUSTED; a retry policy
    # that retried that code would replay it after each backoff.
    monkeypatch.setattr(client_module, "MAX_MESSAGE_BYTES", 1000)
    server = await start_server()
    refusal = await _refused_for_size(server)
    assert "Sent message larger than max" in refusal.details
    assert server.interceptor.calls == 0


async def test_a_large_request_stays_retryable(start_server: StartServer) -> None:
    """Past gRPC's default 256 KiB retry buffer a call would be committed and never retried."""
    weak = FlakyWeakModel([UNAVAILABLE])
    server = await start_server(weak, max_receive_bytes=8 * 2**20)
    async with CotTransferClient(server.address, retry=FAST) as client:
        result = await client.complete("x" * 2**20, reference_answer="3")
    assert result.potential == 1.0
    assert weak.calls == 2


async def test_a_stream_is_retried_until_its_first_message(start_server: StartServer) -> None:
    strong = FlakyStrongModel(before_first=[UNAVAILABLE, UNAVAILABLE], after_first=[])
    server = await start_server(strong=strong)
    async with CotTransferClient(server.address, retry=FAST) as client:
        events = [event async for event in client.stream_prefixes("1+2", [0.5])]
    assert events == [CotDelta("a"), CotDelta("b")]
    assert strong.calls == 3


async def test_a_stream_that_fails_after_its_first_message_is_not_replayed(start_server: StartServer) -> None:
    strong = FlakyStrongModel(before_first=[], after_first=[UNAVAILABLE])
    server = await start_server(strong=strong)
    received: list[Any] = []
    async with CotTransferClient(server.address, retry=FAST) as client:
        with pytest.raises(RpcFailedError) as caught:
            async for event in client.stream_prefixes("1+2", [0.5]):
                received.append(event)
    assert caught.value.code == UNAVAILABLE
    assert caught.value.details == "replica died"
    assert received == [CotDelta("a")]
    assert strong.calls == 1


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=3.0, multiplier=2.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 3.0), (5, 3.0)]:
        assert all(0.0 <= policy.backoff_s(attempt) <= ceiling for _ in range(50))


def test_the_service_config_retries_only_unavailable_and_within_grpcs_cap() -> None:
    config = json.loads(RetryPolicy(max_attempts=12, initial_backoff_s=0.5).service_config(["a.B"]))
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": "a.B"}]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert method["retryPolicy"]["maxAttempts"] == 5
    assert method["retryPolicy"]["initialBackoff"] == "0.500s"
    assert json.loads(RetryPolicy(max_attempts=1).service_config(["a.B"])) == {"methodConfig": []}


@pytest.mark.parametrize(
    ("code", "details", "retryable"),
    [
        (UNAVAILABLE, "connection reset", True),
        (RESOURCE_EXHAUSTED, "the service is at capacity; retry with backoff", True),
        (RESOURCE_EXHAUSTED, "SERVER: Received message larger than max (2003 vs. 1000)", False),
        (RESOURCE_EXHAUSTED, "CLIENT: Sent message larger than max (4003 vs. 3000)", False),
        (grpc.StatusCode.OUT_OF_RANGE, "prompt past the context", False),
    ],
)
def test_which_failures_are_retryable(code: grpc.StatusCode, details: str, retryable: bool) -> None:
    assert RpcFailedError(code, details).retryable is retryable


def test_the_proxys_internal_for_a_replica_that_died_is_retryable_and_a_bug_is_not() -> None:
    """Ray Serve's gRPC proxy reports an ingress replica killed under a call as INTERNAL with Ray's
    text (seen in tests/integration/test_node_loss.py); the service's own INTERNAL is a bug."""
    died = (
        "The actor died unexpectedly before finishing this task.\n\tclass_name: ServeReplica:cot_transfer:"
        "TransferIngress\n\tactor_id: 69ab3541fdad651b1f65c33a05000000"
    )
    assert RpcFailedError(grpc.StatusCode.INTERNAL, died).retryable
    unreachable = (  # its node went away (seen when the second node's raylet was killed)
        "The actor 0a63f7532d9199871436905805000000 is unavailable: The actor is temporarily unavailable: RpcError:"
        " RPC error: Socket closed rpc_code: 14. The task may or may not have been executed on the actor."
    )
    assert RpcFailedError(grpc.StatusCode.INTERNAL, unreachable).retryable
    assert not RpcFailedError(grpc.StatusCode.INTERNAL, "internal error (incident 3f2a); the logs have it").retryable
    assert not RpcFailedError(grpc.StatusCode.INVALID_ARGUMENT, "The actor died unexpectedly").retryable
