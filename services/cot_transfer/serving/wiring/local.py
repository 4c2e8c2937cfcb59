"""Local start: a Ray cluster on this machine, Serve with its gRPC proxy, and the app."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import grpc

from cot_transfer.serving.common.serve_options import cpu_demand
from cot_transfer.serving.common.serving_config import (
    PROXY_MAX_MESSAGE_ENV,
    IngressConfig,
    ModelDeploymentConfig,
    ServingConfig,
)
from cot_transfer.serving.wiring.deployments import GRPC_SERVICER_FUNCTIONS, EngineFactory, build_app_from_config

logger = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "RAY_ADDRESS"


@dataclass(frozen=True)
class LocalStack:
    grpc_address: str
    application: str
    metrics_url: str

    drain_timeout_s: float = 60.0

    def shutdown(self, drain_timeout_s: float | None = None) -> DrainResult | None:
        """Ordered: the ingress drains (health NOT_SERVING, new calls UNAVAILABLE, calls in flight
        finish, up to ``drain_timeout_s``, by default the config's), then Serve and its proxies
        stop, then the Ray cluster. Returns how the drain went; None when it could not run."""
        import ray
        from ray import serve

        drained: DrainResult | None = None
        try:
            drained = self.drain(self.drain_timeout_s if drain_timeout_s is None else drain_timeout_s)
        except Exception:
            logger.warning("draining failed; shutting down anyway", exc_info=True)
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
        return drained

    def drain(self, timeout_s: float) -> DrainResult:
        from ray import serve

        started = time.monotonic()
        ingress = serve.get_app_handle(self.application)
        ingress.start_draining.remote().result(timeout_s=10)
        in_flight_at_start = in_flight = int(ingress.in_flight.remote().result(timeout_s=10))
        while in_flight > 0 and time.monotonic() - started < timeout_s:
            time.sleep(0.5)
            in_flight = int(ingress.in_flight.remote().result(timeout_s=10))
        return DrainResult(in_flight_at_start, in_flight, time.monotonic() - started)


@dataclass(frozen=True)
class DrainResult:
    in_flight_at_start: int
    # Calls still running when the drain timeout ran out; they are cut by the shutdown.
    still_in_flight: int
    seconds: float

    def describe(self) -> str:
        if self.still_in_flight:
            return (
                f"drain timed out after {self.seconds:.1f} s: {self.still_in_flight} of"
                f" {self.in_flight_at_start} calls still in flight are cut"
            )
        return f"drained: {self.in_flight_at_start} calls in flight finished in {self.seconds:.1f} s"


def _logical_cpus(config: ServingConfig) -> int:
    """Enough Ray CPUs for every replica the autoscalers may start, and at least the machine's."""
    deployments: list[ModelDeploymentConfig | IngressConfig] = [config.strong, config.weak, *config.receivers]
    deployments.append(config.ingress)
    demand = sum(cpu_demand(deployment.serve_options()) for deployment in deployments)
    return max(os.cpu_count() or 1, int(demand + 0.999))


def start_local(
    config: ServingConfig,
    engine_factory: EngineFactory | None = None,
    ready_timeout_s: float = 600.0,
    log_level: str = "WARNING",
) -> LocalStack:
    import ray
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    # Ray's processes inherit this driver's environment: the gRPC proxy reads its limit from it.
    os.environ[PROXY_MAX_MESSAGE_ENV] = str(config.limits.max_message_bytes)
    common: dict[str, Any] = {
        "logging_level": logging.getLevelNamesMapping()[log_level],
        # Replica logs stay in Ray's log files unless asked for, so the terminal shows results.
        "log_to_driver": log_level == "INFO",
        "runtime_env": {"env_vars": {"VLLM_LOGGING_LEVEL": log_level, "TOKENIZERS_PARALLELISM": "false"}},
    }
    # With RAY_ADDRESS set (Ray's own variable), the stack joins that running cluster, e.g. a head
    # and a second raylet started with `ray start`: the cluster's nodes, resources and ports are
    # theirs, and its raylets must carry RAY_SERVE_GRPC_MAX_MESSAGE_SIZE in their environment.
    join_address = os.environ.get(RAY_ADDRESS_ENV)
    if join_address:
        ray.init(address=join_address, **common)
    else:
        ray.init(
            num_cpus=_logical_cpus(config),
            include_dashboard=False,
            # A local cluster stays on this machine: Ray's own ports bind to loopback.
            _node_ip_address="127.0.0.1",
            _metrics_export_port=config.metrics_port,
            **common,
        )
    serve.start(
        http_options=HTTPOptions(host=config.host, port=config.http_port),
        grpc_options=gRPCOptions(port=config.grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
        logging_config={"log_level": log_level},
        # Raylets that share one machine would all bind the same proxy ports; the head's serve it all.
        proxy_location="HeadOnly" if join_address else None,
    )
    serve.run(
        build_app_from_config(config, engine_factory),
        name=config.app_name,
        route_prefix=config.route_prefix,
        blocking=False,
    )
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    address = f"{host}:{config.grpc_port}"
    wait_until_serving(address, config.app_name, ready_timeout_s)
    return LocalStack(
        grpc_address=address,
        application=config.app_name,
        metrics_url=f"http://{host}:{config.http_port}{config.route_prefix.rstrip('/')}/metrics",
        drain_timeout_s=config.ingress.drain_timeout_s,
    )


def wait_until_serving(address: str, application: str, timeout_s: float) -> None:
    """Blocks until the gRPC proxy lists the application as routable."""
    from ray.serve.generated import serve_pb2, serve_pb2_grpc

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = serve_pb2_grpc.RayServeAPIServiceStub(channel)
        while True:
            try:
                request = serve_pb2.ListApplicationsRequest()  # type: ignore[attr-defined]
                listed = stub.ListApplications(request, timeout=5)
                if application in listed.application_names:
                    return
            except grpc.RpcError as error:
                logger.debug("gRPC proxy not ready yet: %s", error.code())
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gRPC proxy at {address} did not serve {application!r} in {timeout_s:.0f} s")
            time.sleep(0.5)
