"""Ray Serve deployments: the strong and weak model replicas and the gRPC ingress.

The deployments are thin: each model replica owns an engine (injected, vLLM by default) and
a data-plane server; the ingress converts protobuf at the edge, calls the model deployments
through handles, and turns every failure into a status code through ``status.status_for``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import grpc
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from cot_transfer.domain.errors import UnavailableError
from cot_transfer.domain.requests import CompletionRequest, CompletionResult, CotPrefix, PrefixRequest, StrongEvent
from cot_transfer.engine.base import Engine
from cot_transfer.engine.config import EngineConfig
from cot_transfer.serving.common.metrics import FAMILIES, ExperimentSeries, RayServiceMetrics
from cot_transfer.serving.common.serving_config import (
    DEFAULT_FORCE_ANSWER_MAX_TOKENS,
    ModelDeploymentConfig,
    ServingConfig,
)
from cot_transfer.serving.dataplane.admission import call_when_admitted, stream_when_admitted
from cot_transfer.serving.dataplane.fanout import TransferRunner
from cot_transfer.serving.edge import decode, encode
from cot_transfer.serving.edge.auth import TokenAuth
from cot_transfer.serving.edge.status import status_for
from cot_transfer.serving.replicas.fingerprint import model_fingerprint
from cot_transfer.serving.replicas.reasoning_formats import PLAIN, ReasoningFormat, resolve_format
from cot_transfer.serving.replicas.receiver_server import WeakModelServer
from cot_transfer.serving.replicas.strong_server import StrongModelServer
from cot_transfer.serving.wiring.autoscaling import ENGINE_RUNNING, ENGINE_WAITING
from cot_transfer.serving.wiring.metrics_endpoint import gather_exposition, node_metric_urls
from cot_transfer.v1 import cot_transfer_pb2 as pb

logger = logging.getLogger(__name__)

EngineFactory = Callable[[EngineConfig], Engine]
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def engine_for(config: EngineConfig) -> Engine:
    """The engine a config names: an OpenAI-compatible server (``engine.endpoint``) or vLLM in the replica."""
    if config.endpoint is not None:
        from cot_transfer.engine.openai_engine import OpenAIEngine

        return OpenAIEngine(config)
    from cot_transfer.engine.vllm_engine import VLLMEngine

    return VLLMEngine(config)


class _ModelReplica:
    async def _start_engine(self, engine_config: EngineConfig, engine_factory: EngineFactory | None) -> Engine:
        self._model_path = engine_config.model
        self._engine = (engine_factory or engine_for)(engine_config)
        await self._engine.start()
        return self._engine

    async def fingerprint(self) -> str:
        """The fingerprint of the model folder this replica serves (``serving.fingerprint``)."""
        return await asyncio.to_thread(model_fingerprint, self._model_path)

    async def check_health(self) -> None:
        """Serve's periodic replica health check; the gRPC health probe reads its outcome."""
        await self._engine.check_health()

    def record_autoscaling_stats(self) -> dict[str, float]:
        """The engine's queue, for the engine_queue autoscaling policy."""
        stats = self._engine.stats()
        return {ENGINE_RUNNING: stats.get("running", 0.0), ENGINE_WAITING: stats.get("waiting", 0.0)}

    async def __del__(self) -> None:
        # Serve awaits this on graceful shutdown; the engine may be missing if start failed.
        engine: Engine | None = getattr(self, "_engine", None)
        if engine is not None:
            await engine.shutdown()


@serve.deployment
class StrongModelDeployment(_ModelReplica):
    # Ray actors may have an async constructor; type checkers insist __init__ returns None.
    async def __init__(  # type: ignore[misc]
        self,
        engine_config: EngineConfig,
        engine_factory: EngineFactory | None = None,
        reasoning_format: ReasoningFormat = PLAIN,
        force_answer_max_tokens: int = DEFAULT_FORCE_ANSWER_MAX_TOKENS,
    ) -> None:
        engine = await self._start_engine(engine_config, engine_factory)
        metrics = RayServiceMetrics()
        self._server = StrongModelServer(engine, engine_config.name, metrics, reasoning_format)
        # The same engine completes prefixes as a receiver: the strong model's self-potential.
        self._receiver = WeakModelServer(engine, engine_config.name, metrics, reasoning_format, force_answer_max_tokens)

    async def stream_prefixes(self, request: PrefixRequest) -> AsyncIterator[StrongEvent]:
        async for event in self._server.stream_prefixes(request):
            yield event

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        return await self._receiver.complete(request)


@serve.deployment
class WeakModelDeployment(_ModelReplica):
    async def __init__(  # type: ignore[misc]
        self,
        engine_config: EngineConfig,
        engine_factory: EngineFactory | None = None,
        reasoning_format: ReasoningFormat = PLAIN,
        force_answer_max_tokens: int = DEFAULT_FORCE_ANSWER_MAX_TOKENS,
    ) -> None:
        engine = await self._start_engine(engine_config, engine_factory)
        self._server = WeakModelServer(
            engine, engine_config.name, RayServiceMetrics(), reasoning_format, force_answer_max_tokens
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        return await self._server.complete(request)


class RpcStatusError(Exception):
    """Carries a status already set on the gRPC context out of a deployment method."""


HEALTH_SERVICES = frozenset(
    {"", "cot_transfer.v1.StrongModel", "cot_transfer.v1.WeakModel", "cot_transfer.v1.Transfer"}
)
HEALTH_PROBE_TIMEOUT_S = 5.0
STRONG_DEPLOYMENT = "StrongModel"
WEAK_DEPLOYMENT = "WeakModel"
# The receiver-only models (ServingConfig.receivers): Receiver0, Receiver1, ...
RECEIVER_DEPLOYMENT = "Receiver"


@serve.deployment
class TransferIngress:
    """Serves cot_transfer.v1.StrongModel, WeakModel and Transfer, and grpc.health.v1.Health.

    Method names are the RPC names: Ray Serve's gRPC proxy calls the method named like the RPC.
    """

    def __init__(
        self,
        strong: DeploymentHandle,
        weak: DeploymentHandle,
        config: ServingConfig,
        receivers: list[DeploymentHandle] | None = None,
    ) -> None:
        self._strong = strong
        self._weak = weak
        # Served name -> the deployment that completes its prefixes (the edge admits no other name).
        self._receivers: dict[str, DeploymentHandle] = {
            config.strong.engine.name: strong,
            **{model.engine.name: handle for model, handle in zip(config.receivers, receivers or [], strict=True)},
            config.weak.engine.name: weak,  # last: a name both roles share is the weak model's
        }
        self._config = config
        self._auth = TokenAuth.from_env(config.auth_token_env)
        self._experiments = ExperimentSeries(config.ingress.experiment_series_retention_s)
        self._metrics = RayServiceMetrics(self._experiments)
        self._fingerprints: dict[str, str] | None = None
        # A run's own calls wait out a full model queue (RESOURCE_EXHAUSTED is for callers who can
        # retry); the client's deadline or cancellation still ends them.
        self._runner = TransferRunner(
            stream_prefixes=self._strong_events_when_admitted,
            complete=self._complete_when_admitted,
            max_concurrent_completions=config.ingress.max_concurrent_completions,
            metrics=self._metrics,
            max_concurrent_cots=config.ingress.max_concurrent_cots,
        )
        self._draining = False
        self._in_flight = 0

    @asynccontextmanager
    async def _rpc(self, method: str, grpc_context: RayServegRPCContext) -> AsyncIterator[None]:
        """Authenticates, counts and times one RPC, and turns any failure into its status code."""
        started = time.monotonic()
        code = grpc.StatusCode.OK
        self._in_flight += 1
        try:
            if self._draining:
                raise UnavailableError("the service is shutting down; retry on another replica")
            if self._auth is not None:
                self._auth.check(grpc_context.invocation_metadata())
            yield
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            code, details = status_for(error)
            grpc_context.set_code(code)
            grpc_context.set_details(details)
            raise RpcStatusError(details) from None
        finally:
            self._in_flight -= 1
            self._metrics.rpc_finished(method, code.name, time.monotonic() - started)

    async def __call__(self, request: Request) -> Response:
        """HTTP through Serve's proxy: ``GET {route_prefix}/metrics`` is the service's Prometheus endpoint."""
        if request.method == "GET" and request.url.path.rstrip("/").endswith("/metrics"):
            urls = await asyncio.to_thread(node_metric_urls)
            shown = self._experiments.shown()
            exposition = await gather_exposition(urls, declared=FAMILIES, experiment_shown=shown.__contains__)
            return PlainTextResponse(exposition, media_type=PROMETHEUS_CONTENT_TYPE)
        return PlainTextResponse("this application serves gRPC; GET <route prefix>/metrics for Prometheus\n", 404)

    async def _strong_events(self, request: PrefixRequest) -> AsyncGenerator[StrongEvent, None]:
        events = cast(DeploymentResponseGenerator, self._strong.stream_prefixes.options(stream=True).remote(request))
        finished = False
        try:
            async for event in events:
                yield event
            finished = True
        finally:
            if not finished:
                # Serve cancels the calls a cancelled request awaits in its own task, but a
                # Transfer.Run reads its strong streams in tasks of its own: without this, a run
                # cancelled (or past its deadline) mid-CoT would leave the strong engine writing.
                events.cancel()

    async def _complete(self, request: CompletionRequest) -> CompletionResult:
        # "" is the weak model, as for a client from before receivers.
        receiver = self._receivers.get(request.receiver, self._weak)
        result: CompletionResult = await receiver.complete.remote(request)
        return result

    def _strong_events_when_admitted(self, request: PrefixRequest) -> AsyncIterator[StrongEvent]:
        return stream_when_admitted(
            lambda: self._strong_events(request),
            BackPressureError,
            on_retry=lambda: self._metrics.backpressure_retry(STRONG_DEPLOYMENT),
            max_wait_s=self._config.ingress.backpressure_max_wait_s,
            what=f"the {STRONG_DEPLOYMENT} deployment",
        )

    async def _complete_when_admitted(self, request: CompletionRequest) -> CompletionResult:
        return await call_when_admitted(
            lambda: self._complete(request),
            BackPressureError,
            on_retry=lambda: self._metrics.backpressure_retry(WEAK_DEPLOYMENT),
            max_wait_s=self._config.ingress.backpressure_max_wait_s,
            what=f"the {WEAK_DEPLOYMENT} deployment",
        )

    async def _model_fingerprints(self) -> dict[str, str]:
        """Each served name's fingerprint, read once: the folder here if this node has it, else
        from a replica of the deployment (the ingress may run where the weights are not)."""
        if self._fingerprints is None:
            fingerprints = {}
            models = [(self._config.strong, self._strong), (self._config.weak, self._weak)]
            models += [(model, self._receivers[model.engine.name]) for model in self._config.receivers]
            for deployment, handle in models:
                fingerprint = await asyncio.to_thread(model_fingerprint, deployment.engine.model)
                if not fingerprint:
                    fingerprint = await handle.fingerprint.remote()
                fingerprints[deployment.engine.name] = fingerprint
            self._fingerprints = fingerprints
        return self._fingerprints

    async def StreamPrefixes(  # noqa: N802 - the gRPC method name
        self, request: pb.StreamPrefixesRequest, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[pb.StreamPrefixesResponse]:
        async with self._rpc("StreamPrefixes", grpc_context):
            started = time.monotonic()
            first_prefix = True
            prefix_request = decode.prefix_request_from_proto(request, self._config)
            async for event in self._strong_events(prefix_request):
                if first_prefix and isinstance(event, CotPrefix):
                    self._metrics.time_to_first_prefix(time.monotonic() - started)
                    first_prefix = False
                yield encode.strong_event_to_proto(event)

    async def Complete(  # noqa: N802 - the gRPC method name
        self, request: pb.CompleteRequest, grpc_context: RayServegRPCContext
    ) -> pb.CompleteResponse:
        async with self._rpc("Complete", grpc_context):
            result = await self._complete(decode.completion_request_from_proto(request, self._config))
        return encode.completion_result_to_proto(result)

    async def GetInfo(  # noqa: N802 - the gRPC method name
        self, request: pb.GetInfoRequest, grpc_context: RayServegRPCContext
    ) -> pb.GetInfoResponse:
        async with self._rpc("GetInfo", grpc_context):
            info = encode.service_info_to_proto(self._config, await self._model_fingerprints())
        return info

    async def Run(  # noqa: N802 - the gRPC method name
        self, request: pb.RunRequest, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[pb.RunResponse]:
        async with self._rpc("Run", grpc_context):
            transfer_request = decode.transfer_request_from_proto(request, self._config)
            async for event in self._runner.run(transfer_request):
                yield encode.transfer_event_to_proto(event)

    async def _serving_status(self, service: str) -> int:
        if service not in HEALTH_SERVICES:
            return int(health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        if self._draining:
            return int(health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            async with asyncio.timeout(HEALTH_PROBE_TIMEOUT_S):
                running = await asyncio.to_thread(_running_replicas, serve.get_replica_context().app_name)
        except Exception:
            logger.warning("health check: Serve's status could not be read", exc_info=True)
            return int(health_pb2.HealthCheckResponse.NOT_SERVING)
        if all(running.get(name, 0) > 0 for name in (STRONG_DEPLOYMENT, WEAK_DEPLOYMENT)):
            return int(health_pb2.HealthCheckResponse.SERVING)
        return int(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def Check(  # noqa: N802 - grpc.health.v1.Health/Check, for Kubernetes gRPC probes
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> health_pb2.HealthCheckResponse:
        status = await self._serving_status(request.service)
        if status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service!r}")
            raise RpcStatusError(f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(  # noqa: N802 - grpc.health.v1.Health/Watch
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last: int | None = None
        while True:
            status = await self._serving_status(request.service)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(1.0)

    def start_draining(self) -> None:
        """Health turns NOT_SERVING and new calls get UNAVAILABLE; calls in flight finish."""
        self._draining = True

    def in_flight(self) -> int:
        return self._in_flight


def _running_replicas(application: str) -> dict[str, int]:
    """Replicas in the RUNNING state per deployment of ``application``, as Serve's controller sees
    them: it health-checks every replica (``check_health``) on its own schedule, outside the request
    queues, so a model deployment that is busy, even with a full queue, still counts as serving."""
    deployments = serve.status().applications[application].deployments
    return {
        name: sum(count for state, count in deployment.replica_states.items() if state == "RUNNING")
        for name, deployment in deployments.items()
    }


def _model_deployment_options(name: str, deployment: ModelDeploymentConfig) -> dict[str, Any]:
    return {"name": name, **deployment.serve_options()}


def build_app_from_config(config: ServingConfig, engine_factory: EngineFactory | None = None) -> serve.Application:
    # serve.deployment turns the classes into Deployments, which mypy cannot see.
    strong_options = _model_deployment_options(STRONG_DEPLOYMENT, config.strong)
    strong = StrongModelDeployment.options(**strong_options).bind(  # type: ignore[attr-defined]
        config.strong.engine,
        engine_factory,
        resolve_format(config.strong.reasoning_format),
        config.strong.force_answer_max_tokens,
    )
    weak_options = _model_deployment_options(WEAK_DEPLOYMENT, config.weak)
    weak = WeakModelDeployment.options(**weak_options).bind(  # type: ignore[attr-defined]
        config.weak.engine,
        engine_factory,
        resolve_format(config.weak.reasoning_format),
        config.weak.force_answer_max_tokens,
    )
    receivers = [
        WeakModelDeployment.options(  # type: ignore[attr-defined]
            **_model_deployment_options(f"{RECEIVER_DEPLOYMENT}{index}", receiver)
        ).bind(
            receiver.engine,
            engine_factory,
            resolve_format(receiver.reasoning_format),
            receiver.force_answer_max_tokens,
        )
        for index, receiver in enumerate(config.receivers)
    ]
    return TransferIngress.options(  # type: ignore[attr-defined]
        name="TransferIngress", **config.ingress.serve_options()
    ).bind(strong, weak, config, receivers)


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve's ``import_path`` builder: ``cot_transfer.serving.wiring.deployments:build_app``.

    ``args`` holds either ``config`` (the serving config as a mapping, as the Kubernetes
    manifests embed it) or ``config_path`` (a YAML file).
    """
    if "config" in args:
        config = ServingConfig.model_validate(args["config"])
    elif "config_path" in args:
        config = ServingConfig.from_yaml(args["config_path"])
    else:
        raise ValueError("build_app needs args 'config' (a mapping) or 'config_path' (a YAML file)")
    return build_app_from_config(config)


GRPC_SERVICER_FUNCTIONS = [
    "cot_transfer.v1.cot_transfer_pb2_grpc.add_StrongModelServicer_to_server",
    "cot_transfer.v1.cot_transfer_pb2_grpc.add_WeakModelServicer_to_server",
    "cot_transfer.v1.cot_transfer_pb2_grpc.add_TransferServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]
