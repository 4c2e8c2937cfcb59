"""Two weak replicas on a two-node local Ray cluster, routed by problem affinity.

The cluster is a head and a second raylet on this machine (``benchmarks.cluster``), each with one
``weak_slot``: one weak replica lands on each node. ``cot-transfer serve`` joins it through
RAY_ADDRESS, with the weak deployment's ``request_router_config`` naming
``cot_transfer.serving.wiring.routing:ProblemAffinityRouter``. The tests check that a concurrent
``Transfer.Run`` completes (the first router stalled there), that every call about one problem
reaches one replica, and that the service's metrics endpoint carries both nodes' replicas; then
they kill replicas and a node mid-Run (below). The side-by-side prefill figures are the
benchmark's (``benchmarks.two_replicas``).
"""

from __future__ import annotations

import asyncio
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
import yaml
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.cluster import TwoNodeCluster, two_node_cluster
from benchmarks.metrics import metric_sum, scrape
from benchmarks.two_replicas import CPU_BLOCK_SIZE, two_replica_source
from cot_transfer.client import Sampling
from cot_transfer.domain.requests import FractionResult, StrongCot
from cot_transfer.domain.transfer import RunSummary
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.serving.common.serving_config import PROXY_MAX_MESSAGE_ENV
from cot_transfer.serving.wiring.routing import ROUTER_CLASS_PATH
from tests.conftest import (
    FAST_AUTOSCALING_ENV,
    REPO,
    TEST_TOKEN,
    TOKEN_ENV,
    RunningService,
    descendants,
    make_test_config,
    serve_stack,
    settled,
)
from tests.integration.test_durability import complete_rows, keys, start, wait_for_rows

pytestmark = [pytest.mark.integration, pytest.mark.own_stack]

PROBLEMS = load_problems(REPO / "datasets" / "testbed-demo.jsonl")
SAMPLING = Sampling(temperature=0.6, top_p=0.95, max_tokens=16)
NODE_COUNTER = "ray_vllm_prompt_tokens_total"
GATHERED_COUNTER = "vllm_prompt_tokens_total"
# The concurrent run below takes well under a minute on 2 shared cores; a stalled router never ends it.
RUN_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TwoNodeCluster, RunningService]]:
    tmp = tmp_path_factory.mktemp("two-node")
    config_path = tmp / "two-replicas.yaml"
    two_replica_source(make_test_config(tmp), "prefix_affinity", tmp).rename(config_path)
    max_message = str(yaml.safe_load(config_path.read_text()).get("limits", {}).get("max_message_bytes", 2**26))
    # The replicas inherit the raylets' environment, not the serve command's: the ingress reads
    # the service token and the gRPC proxy its message limit from there.
    raylet_env = {PROXY_MAX_MESSAGE_ENV: max_message, TOKEN_ENV: TEST_TOKEN, **FAST_AUTOSCALING_ENV}
    with (
        two_node_cluster(raylet_env) as cluster,
        serve_stack(
            tmp,
            config_path=config_path,
            env=cluster.client_env(),
            ray_metrics_url=cluster.node_metric_urls()[0],
        ) as running,
    ):
        yield cluster, running.service


def weak_name(service: RunningService) -> str:
    return str(yaml.safe_load(service.config_path.read_text())["weak"]["engine"]["served_name"])


def weak_prompt_tokens(cluster: TwoNodeCluster, name: str) -> list[float]:
    """Prompt tokens of the weak engine on each node, from each node's own Ray endpoint."""
    return [metric_sum(scrape(url), NODE_COUNTER, {"model_name": name}) for url in cluster.node_metric_urls()]


def replica_labels(exposition: str, name: str, model: str) -> set[str]:
    """The replicas with a series of ``name`` for ``model``: vLLM's Ray metrics carry ``ReplicaId``,
    which the service's endpoint renames ``replica``."""
    return {
        sample.labels.get("ReplicaId") or sample.labels.get("replica") or ""
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and sample.labels.get("model_name") == model
    }


async def test_a_concurrent_run_crosses_nodes_without_stalling(
    two_nodes: tuple[TwoNodeCluster, RunningService],
) -> None:
    cluster, service = two_nodes
    name = weak_name(service)
    problems = PROBLEMS[:8]
    fractions = [0.0, 0.25, 0.5, 0.75, 1.0]
    # 40 weak calls; the ingress sends up to max_concurrent_completions (32) of them at once,
    # all sharing the Run's internal request id, the case the first router never routed.
    assert yaml.safe_load(service.config_path.read_text())["ingress"]["max_concurrent_completions"] >= 16
    rows: list[FractionResult] = []
    summary: RunSummary | None = None

    async def run() -> None:
        nonlocal summary
        async with service.client(timeout_s=RUN_TIMEOUT_S) as client:
            async for event in client.run_transfer(
                problems, fractions, n=4, strong_sampling=SAMPLING, weak_sampling=SAMPLING
            ):
                if isinstance(event, FractionResult):
                    rows.append(event)
                elif isinstance(event, RunSummary):
                    summary = event
                else:
                    assert isinstance(event, StrongCot)

    await asyncio.wait_for(run(), timeout=RUN_TIMEOUT_S)
    assert summary is not None and len(rows) == len(problems) * len(fractions)
    assert all(row.n == 4 for row in rows)

    def nodes_and_gathered() -> list[float]:
        nodes = weak_prompt_tokens(cluster, name)
        gathered = metric_sum(scrape(service.metrics_url), GATHERED_COUNTER, {"model_name": name})
        return [*nodes, gathered]

    *nodes, gathered = await asyncio.to_thread(settled, nodes_and_gathered)
    # Eight problems hashed over two replicas: both did work (all on one has chance 2**-7).
    assert all(tokens > 0 for tokens in nodes), nodes
    # The service's endpoint gathers every node: its sum is theirs, and it names both replicas.
    assert gathered == pytest.approx(sum(nodes))
    gathered_replicas = replica_labels(scrape(service.metrics_url), GATHERED_COUNTER, name)
    node_replicas = [replica_labels(scrape(url), NODE_COUNTER, name) for url in cluster.node_metric_urls()]
    # One replica per node, both in the service's endpoint.
    assert all(len(replicas) == 1 for replicas in node_replicas), node_replicas
    assert gathered_replicas == set().union(*node_replicas) and len(gathered_replicas) == 2, (
        gathered_replicas,
        node_replicas,
    )


async def test_every_call_about_a_problem_reaches_one_replica(
    two_nodes: tuple[TwoNodeCluster, RunningService],
) -> None:
    cluster, service = two_nodes
    name = weak_name(service)
    # One problem's settled counters are the next one's starting point: each settle waits 14 s.
    after = await asyncio.to_thread(settled, lambda: weak_prompt_tokens(cluster, name))
    for problem in PROBLEMS[8:10]:
        before = after
        async with service.client(timeout_s=RUN_TIMEOUT_S) as client:
            # Concurrent: every prefix of the problem is pending in the ingress's router at once.
            calls = [
                client.complete(problem.problem, reference_answer=problem.answer, prefix=prefix, n=2, sampling=SAMPLING)
                for prefix in ("", "Let", "Let me", "Let me think", "Let me think about it", "So")
            ]
            await asyncio.wait_for(asyncio.gather(*calls), timeout=RUN_TIMEOUT_S)
        after = await asyncio.to_thread(settled, lambda: weak_prompt_tokens(cluster, name))
        moved = [node for node, (old, new) in enumerate(zip(before, after, strict=True)) if new > old]
        assert len(moved) == 1, (problem.id, before, after)


def test_the_config_pins_one_weak_replica_per_node_and_names_the_router(tmp_path: Path) -> None:
    affinity = yaml.safe_load(two_replica_source(make_test_config(tmp_path), "prefix_affinity", tmp_path).read_text())
    weak = affinity["weak"]
    assert weak["deployment_config"]["num_replicas"] == 2
    assert weak["deployment_config"]["ray_actor_options"]["resources"] == {"weak_slot": 1}
    assert weak["deployment_config"]["request_router_config"]["request_router_class"] == ROUTER_CLASS_PATH
    # On CPU, blocks small enough for a problem's prompts to share some (vLLM-CPU's default is 128).
    assert weak["engine"]["engine_kwargs"]["block_size"] == CPU_BLOCK_SIZE
    default = yaml.safe_load(two_replica_source(make_test_config(tmp_path), "default", tmp_path).read_text())
    # Serve's default router: the option is not set at all.
    assert "request_router_config" not in default["weak"]["deployment_config"]
    # Also from a config that routes by problem itself, as the GPU configs do.
    (tmp_path / "routed").mkdir()
    routed = make_test_config(
        tmp_path / "routed",
        {"weak": {"deployment_config": {"request_router_config": weak["deployment_config"]["request_router_config"]}}},
    )
    default = yaml.safe_load(two_replica_source(routed, "default", tmp_path).read_text())
    assert "request_router_config" not in default["weak"]["deployment_config"]


# Process and node loss, mid-Run, on this cluster: the ingress replica, the strong replica, a weak
# replica (found by its actor, not by a command line), and the second node's raylet. Each test
# starts `cot-transfer run` as a user would, waits until rows are on disk, kills its victim with
# SIGKILL (its engine processes with it, as a pod or node would go), and checks that the run
# finishes with every row exactly once and that the kill hit work in flight. They run after the
# tests above (file order), and the raylet goes last: the cluster keeps one node after it.
PROBLEMS_FILE = REPO / "datasets" / "testbed-demo.jsonl"
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
    process = start(service, "--problems", str(PROBLEMS_FILE), "--n", "4", "--fractions", FRACTIONS, "--out", str(out))
    wait_for_rows(out / "results.jsonl", 6, process)
    rows_at_kill = len(complete_rows(out / "results.jsonl"))
    kill()
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 0, stderr
    problem_ids = [json.loads(line)["id"] for line in PROBLEMS_FILE.read_text().splitlines() if line.strip()]
    expected = sorted((problem_id, fraction) for problem_id in problem_ids for fraction in EXPECTED_FRACTIONS)
    assert rows_at_kill < len(expected), "the run had finished before the kill"
    assert sorted(keys(complete_rows(out / "results.jsonl"))) == expected, "a row is missing or duplicated"
    return stderr


@pytest.mark.parametrize("deployment", ["WeakModel", "StrongModel", "TransferIngress"])
def test_a_replica_killed_mid_run_costs_no_row(
    deployment: str,
    two_nodes: tuple[TwoNodeCluster, RunningService],
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
    two_nodes: tuple[TwoNodeCluster, RunningService],
    run_dir: Path,
) -> None:
    cluster, service = two_nodes
    raylets = worker_raylet_pids(cluster)
    assert len(raylets) == 1, raylets
    # Everything the node ran goes with it: its raylet and the workers under it.
    run_and_kill(service, run_dir, lambda: kill_tree(raylets[0]))
