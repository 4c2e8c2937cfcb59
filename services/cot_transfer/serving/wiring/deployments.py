"""Ray Serve deployments and the app builder: the strong, weak and receiver-only model replicas
and the gRPC ingress.

The deployments are thin: each model replica owns an engine (injected, vLLM by default) and a
replica server (``replicas``); the ingress is the edge's ``TransferService`` with deployment
handles for its callables.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar, cast

from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from cot_transfer.domain.requests import CompletionRequest, CompletionResult, PrefixRequest, StrongEvent
from cot_transfer.engine.base import Engine
from cot_transfer.engine.config import EngineConfig
from cot_transfer.engine.stall_guard import StallGuard
from cot_transfer.serving.common.metrics import FAMILIES, ExperimentSeries, RayServiceMetrics
from cot_transfer.serving.common.serving_config import (
    DEFAULT_FORCE_ANSWER_MAX_TOKENS,
    ModelDeploymentConfig,
    ServingConfig,
)
from cot_transfer.serving.dataplane.admission import call_when_admitted, stream_when_admitted
from cot_transfer.serving.dataplane.fanout import TransferRunner
from cot_transfer.serving.edge.rpc import TransferService
from cot_transfer.serving.replicas.fingerprint import endpoint_fingerprint, model_fingerprint
from cot_transfer.serving.replicas.reasoning_formats import PLAIN, ReasoningFormat, resolve_format
from cot_transfer.serving.replicas.receiver_server import ReceiverServer
from cot_transfer.serving.replicas.strong_server import StrongModelServer
from cot_transfer.serving.wiring.autoscaling import ENGINE_RUNNING, ENGINE_WAITING
from cot_transfer.serving.wiring.metrics_endpoint import gather_exposition, node_metric_urls
from cot_transfer.serving.wiring.replica_timeouts import answer_within, events_within

logger = logging.getLogger(__name__)

EngineFactory = Callable[[EngineConfig], Engine]
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Parsing every node's exposition is heavy, and the ingress replica serves gRPC on the same CPU:
# scrapes that come together share one gathering, and it answers the scrapes of the next second too.
METRICS_REUSE_S = 1.0

T = TypeVar("T")


class SharedRead(Generic[T]):
    """``read()`` shared by the callers that ask while it runs, its result reused for ``max_age_s``
    after it started (a failed read is not reused)."""

    def __init__(self, read: Callable[[], Awaitable[T]], max_age_s: float) -> None:
        self._read = read
        self._max_age_s = max_age_s
        self._task: asyncio.Future[T] | None = None
        self._started = 0.0

    async def __call__(self) -> T:
        if not self._reusable():
            self._started = time.monotonic()
            self._task = asyncio.ensure_future(self._read())
        assert self._task is not None
        # A caller that gives up does not cancel the read the others wait on.
        return await asyncio.shield(self._task)

    def _reusable(self) -> bool:
        task = self._task
        if task is None:
            return False
        if not task.done():
            return True
        failed = task.cancelled() or task.exception() is not None
        return not failed and time.monotonic() - self._started < self._max_age_s


def engine_for(config: EngineConfig) -> Engine:
    """The engine a config names: an OpenAI-compatible server (``engine.endpoint``) or vLLM in the replica."""
    if config.endpoint is not None:
        from cot_transfer.engine.openai_engine import OpenAIEngine

        return OpenAIEngine(config)
    from cot_transfer.engine.vllm_engine import VLLMEngine

    return VLLMEngine(config)


def guarded(engine: Engine, config: EngineConfig) -> Engine:
    """``engine`` behind a ``StallGuard`` at the config's ``stall_timeout_s`` (None: as it is)."""
    if config.stall_timeout_s is None:
        return engine
    return StallGuard(engine, config.stall_timeout_s)


class _ModelReplica:
    """A model deployment's replica: its engine and the receiver server on it (every served model
    completes prefixes; the strong model's own completions measure its self-potential)."""

    # Ray actors may have an async constructor; type checkers insist __init__ returns None.
    async def __init__(  # type: ignore[misc]
        self,
        engine_config: EngineConfig,
        engine_factory: EngineFactory | None = None,
        reasoning_format: ReasoningFormat = PLAIN,
        force_answer_max_tokens: int = DEFAULT_FORCE_ANSWER_MAX_TOKENS,
    ) -> None:
        self._model_path = engine_config.model
        self._tokenizer_folder = engine_config.tokenizer_folder
        self._engine = guarded((engine_factory or engine_for)(engine_config), engine_config)
        await self._engine.start()
        self._name = engine_config.name
        self._metrics = RayServiceMetrics()
        self._format = reasoning_format
        self._receiver = ReceiverServer(
            self._engine, self._name, self._metrics, reasoning_format, force_answer_max_tokens=force_answer_max_tokens
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        return await self._receiver.complete(request)

    async def fingerprint(self) -> str:
        """The fingerprint of the model folder this replica serves (``serving.fingerprint``), or of the
        model on the server its engine calls."""
        served = self._engine.fingerprint()
        if served:
            return await asyncio.to_thread(endpoint_fingerprint, served, self._tokenizer_folder)
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
    # Built on the first CoT (not a cached_property: Serve pickles the class, and its lock cannot be).
    _strong: StrongModelServer | None = None

    async def stream_prefixes(self, request: PrefixRequest) -> AsyncIterator[StrongEvent]:
        if self._strong is None:
            self._strong = StrongModelServer(self._engine, self._name, self._metrics, self._format)
        async for event in self._strong.stream_prefixes(request):
            yield event


@serve.deployment
class ReceiverDeployment(_ModelReplica):
    """The weak model's and each receiver-only model's deployment."""


STRONG_DEPLOYMENT = "StrongModel"
WEAK_DEPLOYMENT = "WeakModel"
# The receiver-only models (ServingConfig.receivers): Receiver0, Receiver1, ...
RECEIVER_DEPLOYMENT = "Receiver"


@serve.deployment
class TransferIngress(TransferService):
    """The gRPC ingress: ``edge.rpc.TransferService`` over the model deployments' handles, plus
    Prometheus over HTTP."""

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
        self._backpressure_max_wait_s = config.ingress.backpressure_max_wait_s
        self._replica_call_timeout_s = config.ingress.replica_call_timeout_s
        self._experiments = ExperimentSeries(config.ingress.experiment_series_retention_s)
        metrics = RayServiceMetrics(self._experiments)
        self._exposition = SharedRead(self._gather_exposition, METRICS_REUSE_S)
        self._ray_metrics = metrics
        self._model_configs = [(config.strong, strong), (config.weak, weak)]
        self._model_configs += [(model, self._receivers[model.engine.name]) for model in config.receivers]
        # A run's own calls wait out a full model queue (RESOURCE_EXHAUSTED is for callers who can
        # retry); the client's deadline or cancellation still ends them.
        runner = TransferRunner(
            stream_prefixes=self._strong_events_when_admitted,
            complete=self._complete_when_admitted,
            max_concurrent_completions=config.ingress.max_concurrent_completions,
            metrics=metrics,
            max_concurrent_cots=config.ingress.max_concurrent_cots,
            limits=config.limits,
        )
        super().__init__(
            config,
            strong_events=self._strong_events,
            complete=self._complete,
            run_events=runner.run,
            fingerprints=self._model_fingerprints,
            models_serving=self._models_serving,
            metrics=metrics,
        )

    async def __call__(self, request: Request) -> Response:
        """HTTP through Serve's proxy: ``GET {route_prefix}/metrics`` is the service's Prometheus endpoint."""
        if request.method == "GET" and request.url.path.rstrip("/").endswith("/metrics"):
            return PlainTextResponse(await self._exposition(), media_type=PROMETHEUS_CONTENT_TYPE)
        return PlainTextResponse("this application serves gRPC; GET <route prefix>/metrics for Prometheus\n", 404)

    async def _gather_exposition(self) -> str:
        urls = await asyncio.to_thread(node_metric_urls)
        shown = self._experiments.shown()
        return await gather_exposition(urls, declared=FAMILIES, experiment_shown=shown.__contains__)

    async def _strong_events(self, request: PrefixRequest) -> AsyncGenerator[StrongEvent, None]:
        events = cast(DeploymentResponseGenerator, self._strong.stream_prefixes.options(stream=True).remote(request))
        finished = False
        try:
            async for event in events_within(events, self._replica_call_timeout_s, f"the {STRONG_DEPLOYMENT} replica"):
                yield event
            finished = True
        finally:
            if not finished:
                # Serve cancels the calls a cancelled request awaits in its own task, but a
                # Transfer.Run reads its strong streams in tasks of its own: without this, a run
                # cancelled (or past its deadline) mid-CoT would leave the strong engine writing.
                events.cancel()

    async def _complete(self, request: CompletionRequest) -> CompletionResult:
        receiver = self._receivers.get(request.receiver, self._weak)
        response = receiver.complete.remote(request)
        result: CompletionResult = await answer_within(
            response, response.cancel, self._replica_call_timeout_s, f"the {receiver.deployment_name} replica"
        )
        return result

    def _strong_events_when_admitted(self, request: PrefixRequest) -> AsyncIterator[StrongEvent]:
        return stream_when_admitted(
            lambda: self._strong_events(request),
            BackPressureError,
            on_retry=lambda: self._ray_metrics.backpressure_retry(STRONG_DEPLOYMENT),
            max_wait_s=self._backpressure_max_wait_s,
            what=f"the {STRONG_DEPLOYMENT} deployment",
        )

    async def _complete_when_admitted(self, request: CompletionRequest) -> CompletionResult:
        return await call_when_admitted(
            lambda: self._complete(request),
            BackPressureError,
            on_retry=lambda: self._ray_metrics.backpressure_retry(WEAK_DEPLOYMENT),
            max_wait_s=self._backpressure_max_wait_s,
            what=f"the {WEAK_DEPLOYMENT} deployment",
        )

    async def _model_fingerprints(self) -> dict[str, str]:
        """Each served name's fingerprint at every GetInfo (the runner checks it before each batch, so
        weights swapped under a running service are seen): the folder here if this node has it (its
        digests are cached by size and mtime, so this costs a stat per file), else from a replica
        of the deployment (the ingress may run where the weights are not)."""
        fingerprints = {}
        for deployment, handle in self._model_configs:
            fingerprint = await asyncio.to_thread(model_fingerprint, deployment.engine.model)
            if not fingerprint:
                response = handle.fingerprint.remote()
                fingerprint = await answer_within(
                    response,
                    response.cancel,
                    self._replica_call_timeout_s,
                    f"the {handle.deployment_name} replica",
                )
            fingerprints[deployment.engine.name] = fingerprint
        return fingerprints

    async def _models_serving(self) -> bool:
        """Read by the health state's one background reader (``edge.health``), not per probe."""
        running = await asyncio.to_thread(_running_replicas, serve.get_replica_context().app_name)
        return all(running.get(name, 0) > 0 for name in (STRONG_DEPLOYMENT, WEAK_DEPLOYMENT))


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


def _bind_model(
    kind: Any, name: str, deployment: ModelDeploymentConfig, engine_factory: EngineFactory | None
) -> serve.Application:
    """One model deployment of the app: ``kind``'s replicas under ``name``, as ``deployment`` says."""
    # serve.deployment turns the classes into Deployments, which mypy cannot see.
    application: serve.Application = kind.options(**_model_deployment_options(name, deployment)).bind(
        deployment.engine,
        engine_factory,
        resolve_format(deployment.reasoning_format),
        deployment.force_answer_max_tokens,
    )
    return application


def build_app_from_config(config: ServingConfig, engine_factory: EngineFactory | None = None) -> serve.Application:
    strong = _bind_model(StrongModelDeployment, STRONG_DEPLOYMENT, config.strong, engine_factory)
    weak = _bind_model(ReceiverDeployment, WEAK_DEPLOYMENT, config.weak, engine_factory)
    receivers = [
        _bind_model(ReceiverDeployment, f"{RECEIVER_DEPLOYMENT}{index}", receiver, engine_factory)
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
