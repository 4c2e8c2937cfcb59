"""Local start: a Ray cluster on this machine, Serve with its gRPC proxy, and the app."""

from __future__ import annotations

import errno
import logging
import os
import socket
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
# Ray Serve's gRPC proxy listens on every IPv6 (and dual-stack IPv4) address, whatever `host` says.
GRPC_PROXY_HOST = "::"


class PortUnavailableError(Exception):
    """A port the serving config names is taken on this machine; the message names the config key."""


def check_ports_free(config: ServingConfig, *, with_metrics_port: bool = True) -> None:
    """Raises ``PortUnavailableError`` naming the first config key whose port cannot be bound.

    Checked before Ray starts, so a taken port costs a second, not a minute of engine start-up
    and a traceback from inside Ray's proxy actor."""
    wanted = [
        ("grpc_port", config.grpc_port, (config.host, GRPC_PROXY_HOST)),
        ("http_port", config.http_port, (config.host,)),
    ]
    if with_metrics_port:
        wanted.append(("metrics_port", config.metrics_port, (config.host,)))
    for key, port, hosts in wanted:
        if port == 0:
            continue
        for host in hosts:
            reason = bind_failure(host, port)
            if reason is not None:
                raise PortUnavailableError(
                    f"{key}: port {port} on {host!r} is not free ({reason}); stop what holds it or pick another port"
                )


def bind_failure(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound right now, or None when it can (or the host's family is absent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return None  # no IPv6 on this machine: the proxy falls back the same way
    with sock:
        # As the servers themselves bind: a port left in TIME_WAIT by an earlier run is free to them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6:
                return None
            return error.strerror or str(error)
    return None


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
    # A joined cluster exports its metrics on its own raylets' ports, not on this config's.
    check_ports_free(config, with_metrics_port=not join_address)
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
    try:
        serve.start(
            http_options=HTTPOptions(host=config.host, port=config.http_port),
            grpc_options=gRPCOptions(port=config.grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
            logging_config={"log_level": log_level},
            # Raylets that share one machine would all bind the same proxy ports; the head's serve it all.
            proxy_location="HeadOnly" if join_address else None,
        )
    except Exception as error:
        # Between the check above and the proxies' start, Ray's own processes bind ports of their
        # choosing; one of them can take a configured port. Say which, not Ray's proxy traceback.
        if "Failed to bind" not in str(error):
            raise
        ray.shutdown()
        raise PortUnavailableError(
            f"grpc_port/http_port: port {config.grpc_port} or {config.http_port} is not free: another process"
            " took it while Ray started, and Ray Serve's proxy could not bind it; pick other ports and start again"
        ) from None
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
