"""The RPC bodies of StrongModel, WeakModel, Transfer and grpc.health.v1.Health.

Each body is a plain async function over injected callables: the strong model's event stream,
one receiver completion, the transfer fan-out, the model fingerprints. ``TransferService`` binds
them to one service with auth, drain, per-RPC metrics and the one status table; health answers
from ``edge.health``'s cached reading. The Ray ingress (``wiring.deployments.TransferIngress``) is a
``TransferService`` whose callables are deployment handles; tests serve the same class from a
grpc.aio server with the replicas in process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2

from cot_transfer.domain.errors import OverloadedError, UnavailableError
from cot_transfer.domain.requests import CompletionRequest, CompletionResult, Prefix, PrefixRequest, StrongEvent
from cot_transfer.serving.common.metrics import NO_METRICS, ServiceMetrics
from cot_transfer.serving.common.serving_config import ServingConfig
from cot_transfer.serving.dataplane.fanout import RunEvents
from cot_transfer.serving.edge import decode, encode
from cot_transfer.serving.edge.auth import TokenAuth
from cot_transfer.serving.edge.callers import CallerLimit, caller_of
from cot_transfer.serving.edge.health import HEALTH_SERVICES, SERVICE_UNKNOWN, HealthState, ModelsServing
from cot_transfer.serving.edge.status import status_for
from cot_transfer.v1 import cot_transfer_pb2 as pb

StrongEvents = Callable[[PrefixRequest], AsyncIterator[StrongEvent]]
Complete = Callable[[CompletionRequest], Awaitable[CompletionResult]]
Fingerprints = Callable[[], Awaitable[Mapping[str, str]]]


async def stream_prefixes(
    request: pb.StreamPrefixesRequest, config: ServingConfig, strong_events: StrongEvents, metrics: ServiceMetrics
) -> AsyncIterator[pb.StreamPrefixesResponse]:
    started = time.monotonic()
    first_prefix = True
    async for event in strong_events(decode.prefix_request_from_proto(request, config)):
        if first_prefix and isinstance(event, Prefix):
            metrics.time_to_first_prefix(time.monotonic() - started)
            first_prefix = False
        yield encode.strong_event_to_proto(event)


async def complete(request: pb.CompleteRequest, config: ServingConfig, complete: Complete) -> pb.CompleteResponse:
    return encode.completion_result_to_proto(await complete(decode.completion_request_from_proto(request, config)))


async def get_info(config: ServingConfig, fingerprints: Fingerprints) -> pb.GetInfoResponse:
    return encode.service_info_to_proto(config, await fingerprints())


async def run(request: pb.RunRequest, config: ServingConfig, run_events: RunEvents) -> AsyncIterator[pb.RunResponse]:
    async for event in run_events(decode.transfer_request_from_proto(request, config)):
        yield encode.transfer_event_to_proto(event)


class RpcContext(Protocol):
    """What the bodies need of a call's context: Ray Serve's gRPC context and grpc.aio's both fit."""

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]] | None: ...

    def peer(self) -> str: ...

    def set_code(self, code: grpc.StatusCode) -> None: ...

    def set_details(self, details: str) -> None: ...


class RpcStatusError(Exception):
    """Carries a status already set on the gRPC context out of an RPC method."""


async def _fail(context: RpcContext, code: grpc.StatusCode, details: str) -> None:
    context.set_code(code)
    context.set_details(details)
    abort = getattr(context, "abort", None)
    if abort is not None:
        await abort(code, details)  # grpc.aio: the status as set, not "Unexpected <error>"
    # Ray Serve's proxy reads the code and details set on its context.
    raise RpcStatusError(details)


class TransferService:
    """Serves cot_transfer.v1.StrongModel, WeakModel and Transfer, and grpc.health.v1.Health.

    Method names are the RPC names: Ray Serve's gRPC proxy and grpc.aio both call the method
    named like the RPC. The context parameter must be named ``grpc_context``: Ray Serve passes the
    call's context only to a parameter of that name.
    """

    def __init__(
        self,
        config: ServingConfig,
        *,
        strong_events: StrongEvents,
        complete: Complete,
        run_events: RunEvents,
        fingerprints: Fingerprints,
        models_serving: ModelsServing,
        metrics: ServiceMetrics = NO_METRICS,
    ) -> None:
        self._config = config
        self._strong_events = strong_events
        self._complete = complete
        self._run_events = run_events
        self._fingerprints = fingerprints
        self._metrics = metrics
        self._auth = TokenAuth.from_env(config.auth_token_env)
        self._max_in_flight = config.ingress.max_ongoing_requests
        self._per_caller = CallerLimit(config.limits.max_concurrent_calls_per_caller)
        self._trusted_proxies = tuple(config.limits.trusted_proxies)
        self._health = HealthState(
            models_serving,
            refresh_interval_s=config.ingress.health_refresh_interval_s,
            max_watch_streams=config.ingress.max_watch_streams,
            watch_max_lifetime_s=config.ingress.watch_max_lifetime_s,
        )
        self._draining = False
        self._in_flight = 0

    @asynccontextmanager
    async def _rpc(self, method: str, grpc_context: RpcContext, *, per_caller: bool = True) -> AsyncIterator[None]:
        """Authenticates, counts and times one RPC, and turns any failure into its status code.
        ``per_caller``: the call counts against its caller's limit (work does; GetInfo, which a
        client asks between its runs, does not)."""
        started = time.monotonic()
        code = grpc.StatusCode.OK
        self._in_flight += 1
        try:
            if self._draining:
                raise UnavailableError("the service is shutting down; retry on another replica")
            if self._auth is not None:
                self._auth.check(grpc_context.invocation_metadata() or ())
            if self._in_flight > self._max_in_flight:
                # Serve's slot limit for this replica is higher (health calls have their own slots):
                # the work is bounded here, with a status the caller can retry on.
                raise OverloadedError(
                    f"this ingress replica is serving its limit of {self._max_in_flight} calls"
                    " (ingress.max_ongoing_requests); retry with backoff"
                )
            caller = caller_of(grpc_context.peer(), grpc_context.invocation_metadata() or (), self._trusted_proxies)
            with self._per_caller.hold(caller) if per_caller else nullcontext():
                yield
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except RpcStatusError:
            raise
        except Exception as error:
            code, details = status_for(error)
            await _fail(grpc_context, code, details)
        finally:
            self._in_flight -= 1
            self._metrics.rpc_finished(method, code.name, time.monotonic() - started)

    async def StreamPrefixes(  # noqa: N802 - the gRPC method name
        self, request: pb.StreamPrefixesRequest, grpc_context: RpcContext
    ) -> AsyncIterator[pb.StreamPrefixesResponse]:
        async with self._rpc("StreamPrefixes", grpc_context):
            async for response in stream_prefixes(request, self._config, self._strong_events, self._metrics):
                yield response

    async def Complete(self, request: pb.CompleteRequest, grpc_context: RpcContext) -> pb.CompleteResponse:  # noqa: N802
        async with self._rpc("Complete", grpc_context):
            response = await complete(request, self._config, self._complete)
        return response

    async def GetInfo(self, request: pb.GetInfoRequest, grpc_context: RpcContext) -> pb.GetInfoResponse:  # noqa: N802
        async with self._rpc("GetInfo", grpc_context, per_caller=False):
            info = await get_info(self._config, self._fingerprints)
        return info

    async def Run(self, request: pb.RunRequest, grpc_context: RpcContext) -> AsyncIterator[pb.RunResponse]:  # noqa: N802
        async with self._rpc("Run", grpc_context):
            async for response in run(request, self._config, self._run_events):
                yield response

    async def Check(  # noqa: N802 - grpc.health.v1.Health/Check, for Kubernetes gRPC probes
        self, request: health_pb2.HealthCheckRequest, grpc_context: RpcContext
    ) -> health_pb2.HealthCheckResponse:
        status = await self._health.status(request.service)
        if status == SERVICE_UNKNOWN:
            await _fail(grpc_context, grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def List(  # noqa: N802 - grpc.health.v1.Health/List
        self, request: health_pb2.HealthListRequest, grpc_context: RpcContext
    ) -> health_pb2.HealthListResponse:
        statuses = {}
        for service in sorted(HEALTH_SERVICES - {""}):
            status = await self._health.status(service)
            statuses[service] = health_pb2.HealthCheckResponse(status=status)
        return health_pb2.HealthListResponse(statuses=statuses)

    async def Watch(  # noqa: N802 - grpc.health.v1.Health/Watch
        self, request: health_pb2.HealthCheckRequest, grpc_context: RpcContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """Needs no token: bounded in number and lifetime (``HealthState.watch``), and not counted in
        ``in_flight``, since a drain ends the streams itself."""
        try:
            async for status in self._health.watch(request.service):
                yield health_pb2.HealthCheckResponse(status=status)
        except OverloadedError as error:
            await _fail(grpc_context, *status_for(error))

    def start_draining(self) -> None:
        """Health turns NOT_SERVING (Watch streams send it and end) and new calls get UNAVAILABLE;
        calls in flight finish."""
        self._draining = True
        self._health.start_draining()

    def in_flight(self) -> int:
        return self._in_flight
