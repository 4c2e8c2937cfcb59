"""A two-node Ray cluster on this machine: a head and a second raylet joined with ``ray start --address``.

Both raylets carry one unit of the custom resource ``WEAK_SLOT``; a weak replica that asks for one
lands on each node, so calls cross nodes and the service's metrics endpoint must gather every
node's exposition (the path a multi-node KubeRay cluster takes). Every address is loopback. Each
node gets its own metrics and agent ports: two raylets on one machine would clash on the defaults.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEAK_SLOT = "weak_slot"
NODE_CPUS = 2
START_TIMEOUT_S = 120


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


@dataclass(frozen=True)
class TwoNodeCluster:
    address: str
    metrics_ports: tuple[int, int]
    """Ray's metrics export port of the head and of the second node."""
    env: Mapping[str, str] = field(default_factory=dict)

    def client_env(self) -> dict[str, str]:
        """What ``cot-transfer serve`` needs in its environment to join the cluster."""
        auth = {key: self.env[key] for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN") if key in self.env}
        return {"RAY_ADDRESS": self.address, **auth}

    def node_metric_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}/metrics" for port in self.metrics_ports]


def _node_arguments(metrics_port: int, ports: list[int]) -> list[str]:
    agent_listen, agent_grpc, runtime_env_agent = ports
    return [
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={NODE_CPUS}",
        f"--resources={json.dumps({WEAK_SLOT: 1})}",
        f"--metrics-export-port={metrics_port}",
        f"--dashboard-agent-listen-port={agent_listen}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env_agent}",
        "--disable-usage-stats",
    ]


def _ray(arguments: list[str], env: Mapping[str, str], timeout_s: float = START_TIMEOUT_S) -> None:
    done = subprocess.run(
        [ray_executable(), *arguments], env=dict(env), capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        raise RuntimeError(f"ray {arguments[0]} failed ({done.returncode}): {done.stderr[-2000:]}")


def alive_nodes(address: str, env: Mapping[str, str]) -> int:
    """Nodes the cluster at ``address`` reports alive, read by a short-lived driver."""
    script = "import ray; ray.init(address=%r, logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
    done = subprocess.run(
        [sys.executable, "-c", script % address], env=dict(env), capture_output=True, text=True, timeout=120
    )
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else 0


def _auth_env() -> dict[str, str]:
    """Ray's token authentication with a fresh token: every process of the cluster and every
    driver that joins it reads the same one (the defaults disagreed between `ray start --head`
    and a joining raylet)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}


@contextmanager
def two_node_cluster(extra_env: Mapping[str, str] | None = None) -> Iterator[TwoNodeCluster]:
    """Starts the head and the second raylet, yields the cluster, and stops both (``ray stop``).

    ``extra_env`` reaches every Ray process (the raylets pass their environment to the workers
    they start): e.g. the gRPC proxy's message limit, which it reads from its own environment.
    """
    env: dict[str, Any] = {**os.environ, **(extra_env or {}), **_auth_env()}
    env.pop("RAY_ADDRESS", None)
    gcs_port, client_port, head_metrics, worker_metrics, *agent_ports = free_ports(10)
    address = f"127.0.0.1:{gcs_port}"
    try:
        _ray(
            [
                "start",
                "--head",
                f"--port={gcs_port}",
                f"--ray-client-server-port={client_port}",
                "--include-dashboard=false",
                *_node_arguments(head_metrics, agent_ports[:3]),
            ],
            env,
        )
        _ray(["start", f"--address={address}", *_node_arguments(worker_metrics, agent_ports[3:])], env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while alive_nodes(address, env) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the two-node cluster at {address} did not show two alive nodes")
            time.sleep(1.0)
        yield TwoNodeCluster(address, (head_metrics, worker_metrics), env)
    finally:
        # Both raylets run on this machine; `ray stop` ends the processes of this cluster.
        subprocess.run([ray_executable(), "stop", "--force"], env=env, capture_output=True, timeout=120)
