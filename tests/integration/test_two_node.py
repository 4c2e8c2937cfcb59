"""Two weak replicas on a two-node local Ray cluster, routed by problem affinity.

The cluster is a head and a second raylet on this machine (``benchmarks.cluster``), each with one
``weak_slot``: one weak replica lands on each node. ``cot-transfer serve`` joins it through
RAY_ADDRESS, with the weak deployment's ``request_router_config`` naming
``cot_transfer.serving.wiring.routing:ProblemAffinityRouter``. The tests check that a concurrent
``Transfer.Run`` completes (the first router stalled there), that every call about one problem
reaches one replica, and that the service's metrics endpoint carries both nodes' replicas. The
side-by-side prefill figures are the benchmark's (``benchmarks.two_replicas``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

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
    make_test_config,
    serve_stack,
    settled,
)

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
    for problem in PROBLEMS[8:10]:
        before = await asyncio.to_thread(settled, lambda: weak_prompt_tokens(cluster, name))
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
