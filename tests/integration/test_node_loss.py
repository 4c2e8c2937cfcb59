"""Process and node loss on the two-node local cluster, mid-Run: the ingress replica, the strong
replica, a weak replica (found by its actor, not by a command line), and the second node's raylet.

Each test starts `cot-transfer run` as a user would, waits until rows are on disk and work is in
flight, kills its victim with SIGKILL (its engine processes with it, as a pod or node would go),
and then checks that the run finishes with every row exactly once, and that the kill hit work in
flight (the client had to run something again). The raylet goes last: the cluster keeps one node.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cluster import TwoNodeCluster
from tests.conftest import REPO, RunningService, descendants
from tests.integration.test_durability import complete_rows, keys, start, wait_for_rows
from tests.integration.test_two_node import two_nodes  # noqa: F401 - the module's cluster and service

pytestmark = [pytest.mark.integration, pytest.mark.own_stack]

PROBLEMS = REPO / "datasets" / "testbed-demo.jsonl"
FRACTIONS = "0.3,0.6,1"
EXPECTED_FRACTIONS = (0.0, 0.3, 0.6, 1.0)
# What the client logs when a problem failed in flight and is run again.
RAN_AGAIN = "failed transiently; running them again"
STREAM_BROKE = "continuing from the results on disk"
RUN_TIMEOUT_S = 900

ACTORS_SCRIPT = """
import json, ray
from ray._private.state import state
ray.init(address=%r, logging_level="ERROR")
head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"])
listed = []
for actor in state.actor_table(None).values():
    if actor["State"] == "ALIVE":
        node = actor["Address"]["NodeID"]
        listed.append({"class": actor["ActorClassName"], "pid": actor["Pid"], "head": node == head})
print(json.dumps(listed))
"""


def alive_actors(cluster: TwoNodeCluster) -> list[dict[str, Any]]:
    """The cluster's live actors with their process ids and nodes, as Ray's GCS lists them."""
    done = subprocess.run(
        [sys.executable, "-c", ACTORS_SCRIPT % cluster.address],
        env=dict(cluster.env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def replica_pids(cluster: TwoNodeCluster, deployment: str) -> list[tuple[int, bool]]:
    """(pid, on the head node) of each live replica of ``deployment``."""
    wanted = f"ServeReplica:cot_transfer:{deployment}"
    return [(actor["pid"], actor["head"]) for actor in alive_actors(cluster) if actor["class"] == wanted]


def kill_tree(pid: int) -> None:
    for process_id in [*descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process_id, signal.SIGKILL)


def worker_raylet_pids(cluster: TwoNodeCluster) -> list[int]:
    """The second node's raylet: the one whose command line names the worker's temp dir."""
    assert cluster.root is not None
    worker_dir = str(cluster.root / "worker")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "/raylet" in command.split(" ", 1)[0] and worker_dir in command:
                found.append(int(proc.name))
    return found


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "run"


def run_and_kill(service: RunningService, out: Path, kill: Any) -> str:
    """Starts a run, calls ``kill()`` once a few rows are on disk, and returns the run's stderr after
    checking it finished with every row exactly once."""
    process = start(service, "--problems", str(PROBLEMS), "--n", "4", "--fractions", FRACTIONS, "--out", str(out))
    wait_for_rows(out / "results.jsonl", 6, process)
    rows_at_kill = len(complete_rows(out / "results.jsonl"))
    kill()
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 0, stderr
    problem_ids = [json.loads(line)["id"] for line in PROBLEMS.read_text().splitlines() if line.strip()]
    expected = sorted((problem_id, fraction) for problem_id in problem_ids for fraction in EXPECTED_FRACTIONS)
    assert rows_at_kill < len(expected), "the run had finished before the kill"
    assert sorted(keys(complete_rows(out / "results.jsonl"))) == expected, "a row is missing or duplicated"
    return stderr


@pytest.mark.parametrize("deployment", ["WeakModel", "StrongModel", "TransferIngress"])
def test_a_replica_killed_mid_run_costs_no_row(
    deployment: str,
    two_nodes: tuple[TwoNodeCluster, RunningService],  # noqa: F811
    run_dir: Path,
) -> None:
    """The victim is found by its actor in Ray's GCS (a weak one on the second node: the head's
    stays), and killed with its engine processes once rows are on disk."""
    cluster, service = two_nodes
    replicas = replica_pids(cluster, deployment)
    assert replicas, f"no live {deployment} replica"
    victim = next((pid for pid, on_head in replicas if not on_head), replicas[0][0])
    stderr = run_and_kill(service, run_dir, lambda: kill_tree(victim))
    # The kill hit work in flight: the client ran problems again, or went on after a broken stream.
    assert RAN_AGAIN in stderr or STREAM_BROKE in stderr, stderr
    assert victim not in [pid for pid, _ in replica_pids(cluster, deployment)]


def test_losing_the_second_node_costs_no_row(
    two_nodes: tuple[TwoNodeCluster, RunningService],  # noqa: F811
    run_dir: Path,
) -> None:
    cluster, service = two_nodes
    raylets = worker_raylet_pids(cluster)
    assert len(raylets) == 1, raylets
    # Everything the node ran goes with it: its raylet and the workers under it.
    run_and_kill(service, run_dir, lambda: kill_tree(raylets[0]))
