"""The async client: typed calls, deadlines, and retry with backoff on transient statuses."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from cot_transfer.client.convert import (
    Sampling,
    completion_result_from_proto,
    problems_to_proto,
    service_info_from_proto,
    strong_event_from_proto,
    thresholds_to_proto,
    transfer_event_from_proto,
)
from cot_transfer.domain.requests import (
    CompletionResult,
    FractionResult,
    Problem,
    ServiceInfo,
    StrongCot,
    StrongEvent,
)
from cot_transfer.domain.transfer import Thresholds, TransferSummary
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc

T = TypeVar("T")

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# Transfer.Run sends every problem inline; raise gRPC's 4 MiB default for large datasets.
MAX_MESSAGE_BYTES = 64 * 2**20


class RpcFailedError(Exception):
    """A call ended with a non-OK status; ``code`` and ``details`` are the server's."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for unary calls on UNAVAILABLE / RESOURCE_EXHAUSTED."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    multiplier: float = 2.0

    def backoff_s(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**attempt)
        return random.uniform(0.0, ceiling)


class CotTransferClient:
    """Client of a cot-transfer service (Ray Serve's gRPC proxy or any compatible server).

    Use as ``async with CotTransferClient("host:9000") as client: ...``.
    """

    def __init__(
        self,
        target: str,
        *,
        application: str = "cot_transfer",
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        """``credentials``: TLS, e.g. ``grpc.ssl_channel_credentials(root_certificates)``; plaintext when
        None. ``token``: sent as ``authorization: Bearer <token>`` on every call."""
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        self._channel = (
            grpc.aio.secure_channel(target, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=options)
        )
        # Ray Serve routes a gRPC call to an application by this metadata key.
        auth = (("authorization", f"Bearer {token}"),) if token else ()
        self._metadata = (("application", application), *auth, *metadata)
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        self._strong = pb_grpc.StrongModelStub(self._channel)
        self._weak = pb_grpc.WeakModelStub(self._channel)
        self._transfer = pb_grpc.TransferStub(self._channel)

    async def __aenter__(self) -> CotTransferClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def wait_ready(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._channel.channel_ready(), timeout_s)

    async def get_info(self, timeout_s: float | None = None) -> ServiceInfo:
        """The served models, graders and request limits."""
        timeout = timeout_s if timeout_s is not None else self._timeout_s
        response = await self._with_retry(
            lambda remaining: self._transfer.GetInfo(pb.GetInfoRequest(), timeout=remaining, metadata=self._metadata),
            timeout,
        )
        return service_info_from_proto(response)

    async def complete(
        self,
        problem: str,
        *,
        reference_answer: str,
        prefix: str = "",
        n: int = 1,
        sampling: Sampling | None = None,
        grader: str = "",
        timeout_s: float | None = None,
    ) -> CompletionResult:
        request = pb.CompleteRequest(
            problem=problem,
            prefix=prefix,
            n=n,
            sampling=(sampling or Sampling()).to_proto(),
            reference_answer=reference_answer,
            grader=grader,
        )
        timeout = timeout_s if timeout_s is not None else self._timeout_s
        response = await self._with_retry(
            lambda remaining: self._weak.Complete(request, timeout=remaining, metadata=self._metadata), timeout
        )
        return completion_result_from_proto(response)

    async def stream_prefixes(
        self,
        problem: str,
        fractions: Sequence[float],
        *,
        sampling: Sampling | None = None,
        grader: str = "",
        timeout_s: float | None = None,
    ) -> AsyncIterator[StrongEvent]:
        request = pb.StreamPrefixesRequest(
            problem=problem, fractions=list(fractions), sampling=(sampling or Sampling()).to_proto(), grader=grader
        )
        call = self._strong.StreamPrefixes(
            request, timeout=timeout_s if timeout_s is not None else self._timeout_s, metadata=self._metadata
        )
        async for message in _stream(call):
            yield strong_event_from_proto(message)

    async def run_transfer(
        self,
        problems: Sequence[Problem],
        fractions: Sequence[float],
        *,
        n: int,
        strong_sampling: Sampling | None = None,
        weak_sampling: Sampling | None = None,
        thresholds: Thresholds | None = None,
        grader: str = "",
        experiment_id: str = "",
        timeout_s: float | None = None,
    ) -> AsyncIterator[StrongCot | FractionResult | TransferSummary]:
        request = pb.RunRequest(
            problems=problems_to_proto(problems),
            fractions=list(fractions),
            n=n,
            strong_sampling=(strong_sampling or Sampling()).to_proto(),
            weak_sampling=(weak_sampling or Sampling()).to_proto(),
            thresholds=thresholds_to_proto(thresholds),
            grader=grader,
            experiment_id=experiment_id,
        )
        call = self._transfer.Run(
            request, timeout=timeout_s if timeout_s is not None else self._timeout_s, metadata=self._metadata
        )
        async for message in _stream(call):
            yield transfer_event_from_proto(message)

    async def _with_retry(self, call: Callable[[float | None], Awaitable[T]], timeout_s: float | None) -> T:
        """Retries transient failures until the attempts or the overall deadline run out."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        attempt = 0
        while True:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                return await call(remaining)
            except grpc.aio.AioRpcError as error:
                attempt += 1
                pause = self._retry.backoff_s(attempt - 1)
                out_of_time = deadline is not None and loop.time() + pause >= deadline
                if error.code() not in RETRYABLE_CODES or attempt >= self._retry.max_attempts or out_of_time:
                    raise RpcFailedError(error.code(), error.details() or "") from None
                await asyncio.sleep(pause)


async def _stream(call: grpc.aio.UnaryStreamCall[Any, Any]) -> AsyncIterator[Any]:
    try:
        async for message in call:
            yield message
    except grpc.aio.AioRpcError as error:
        raise RpcFailedError(error.code(), error.details() or "") from None
    finally:
        call.cancel()
