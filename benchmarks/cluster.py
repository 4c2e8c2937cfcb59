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
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.ports import free_ports

WEAK_SLOT = "weak_slot"
NODE_CPUS = 2
START_TIMEOUT_S = 120


def ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


@dataclass(frozen=True)
class TwoNodeCluster:
    address: str
    metrics_ports: tuple[int, int]
    """Ray's metrics export port of the head and of the second node."""
    env: Mapping[str, str] = field(default_factory=dict)
    root: Path | None = None
    """The nodes' temp dirs (Ray's session logs) and the ``ray start`` logs."""

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


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid``, the deepest first (the order to end them in)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [grandchild for child in map(int, children) for grandchild in [*_descendants(child), child]]


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)


def _stop_nodes(nodes: list[subprocess.Popen[bytes]], grace_s: float = 8.0) -> None:
    """Ends the processes of this cluster only: each ``ray start --block`` and everything under it
    (raylet, GCS, workers, the replicas' engine processes). ``ray stop`` would end every Ray process
    on the machine, another stack's too. The raylets and workers exit on SIGTERM within seconds;
    ``ray start --block``, the GCS and the autoscaler's monitor outlived 30 s of it, so a longer
    grace only delays their SIGKILL."""
    tree = [pid for node in reversed(nodes) for pid in [*_descendants(node.pid), node.pid]]
    # SIGTERM is how Ray asks its own processes to exit (``ray stop`` sends it).
    _signal_all(tree, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for node in nodes:
        with suppress(subprocess.TimeoutExpired):
            node.wait(timeout=max(0.1, deadline - time.monotonic()))
    while time.monotonic() < deadline and any(_alive(pid) for pid in tree):
        time.sleep(0.5)
    # Again with whatever a node started meanwhile.
    tree += [pid for node in nodes if node.poll() is None for pid in _descendants(node.pid)]
    _signal_all([pid for pid in tree if _alive(pid)], signal.SIGKILL)
    for node in nodes:
        if node.poll() is None:
            node.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _start_node(arguments: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``ray start ... --block``: the node's processes stay children of this one, so they can be
    ended by process id, and the node's own log says why it failed."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [ray_executable(), *arguments, "--block"], env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )


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
    """Starts the head and the second raylet, yields the cluster, and stops both.

    ``extra_env`` reaches every Ray process (the raylets pass their environment to the workers
    they start): e.g. the gRPC proxy's message limit, which it reads from its own environment.
    Each node has a temp dir of its own (sockets, logs), apart from any other Ray on this machine;
    it stays after the stop (``TwoNodeCluster.root``: the replicas' logs say why a deployment failed).
    """
    env: dict[str, Any] = {**os.environ, **(extra_env or {}), **_auth_env()}
    env.pop("RAY_ADDRESS", None)
    gcs_port, client_port, head_metrics, worker_metrics, *agent_ports = free_ports(10)
    address = f"127.0.0.1:{gcs_port}"
    # Short: Ray's unix socket paths live under it and must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="cot2n-"))
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        head = [
            "start",
            "--head",
            f"--port={gcs_port}",
            f"--ray-client-server-port={client_port}",
            "--include-dashboard=false",
            f"--temp-dir={root / 'head'}",
            *_node_arguments(head_metrics, agent_ports[:3]),
        ]
        nodes.append(_start_node(head, env, root / "head.log"))
        _wait_for_nodes(address, env, 1, nodes, root)
        worker = ["start", f"--address={address}", f"--temp-dir={root / 'worker'}"]
        nodes.append(
            _start_node([*worker, *_node_arguments(worker_metrics, agent_ports[3:])], env, root / "worker.log")
        )
        _wait_for_nodes(address, env, 2, nodes, root)
        yield TwoNodeCluster(address, (head_metrics, worker_metrics), env, root)
    finally:
        _stop_nodes(nodes)


def _wait_for_nodes(
    address: str, env: Mapping[str, str], count: int, nodes: list[subprocess.Popen[bytes]], root: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while alive_nodes(address, env) < count:
        failed = [node for node in nodes if node.poll() is not None]
        if failed:
            logs = "\n".join(path.read_text(errors="replace")[-2000:] for path in sorted(root.glob("*.log")))
            raise RuntimeError(f"ray start exited with {failed[0].returncode}:\n{logs}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the two-node cluster at {address} did not show {count} alive nodes")
        time.sleep(1.0)
