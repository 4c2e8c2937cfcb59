"""Two weak replicas on a two-node local Ray cluster: prefix-affinity routing against Serve's default.

    python -m benchmarks.two_replicas            # the standard workload, both routers
    python -m benchmarks.two_replicas --quick    # a smoke of the same phase

For each router in turn, on a fresh two-node cluster (``benchmarks.cluster``) with one weak
replica per node: one ``Transfer.Run`` of the workload, and the weak engines' prefix-cache
counters before and after, read from the service's metrics endpoint (which gathers every
node's exposition) and from each node's own Ray endpoint (to check that both replicas worked
and that the gathered sum is the nodes' sum). The ratio is the tokens the weak engines computed
over the lower bound of one prefix cache holding everything (``benchmarks.prefill``): scattering
a problem's prefixes over replicas computes its shared blocks once per replica.

Standalone, it merges its keys into an existing ``benchmarks/results.json``; ``benchmarks.bench``
runs it as its last phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmarks.cluster import WEAK_SLOT, two_node_cluster
from benchmarks.metrics import prefix_cache_counters, scrape, settled_counters
from benchmarks.prefill import prefill_lower_bound
from benchmarks.progress import log, timed, timed_async
from benchmarks.prompts import engine_settings, weak_prompt_groups
from benchmarks.record import TwoReplicaRouting, TwoReplicas
from benchmarks.served import served_run, warm_up
from benchmarks.stack import ServedStack, prepare_config
from benchmarks.workload import (
    ARTIFACTS,
    DEFAULT_CONFIG,
    DEFAULT_OUT,
    DEFAULT_PROBLEMS,
    QUICK,
    STANDARD,
    WARMUP_PROBLEMS,
    Workload,
)
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.serving.common.serving_config import PROXY_MAX_MESSAGE_ENV, ServingConfig
from cot_transfer.serving.wiring.routing import request_router_config

ROUTERS = ("prefix_affinity", "default")
CPU_BLOCK_SIZE = 32


def two_replica_source(source: Path, router: str, out_dir: Path) -> Path:
    """``source`` with two weak replicas, one per node (a ``WEAK_SLOT`` each), and ``router``."""
    data = yaml.safe_load(source.read_text())
    for role in ("strong", "weak"):
        model = Path(data[role]["engine"]["model"])
        if not model.is_absolute():
            data[role]["engine"]["model"] = str((source.parent / model).resolve())
    weak = data["weak"]
    # A fixed count replaces the autoscaler; the custom resource pins one replica to each node.
    weak.pop("autoscaling", None)
    resources = weak.pop("resources", None) or {}
    num_cpus, num_gpus = resources.get("num_cpus", 1), resources.get("num_gpus", 0)
    weak["deployment_config"] = {
        **weak.get("deployment_config", {}),
        "num_replicas": 2,
        "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus, "resources": {WEAK_SLOT: 1}},
    }
    engine_kwargs = weak["engine"].setdefault("engine_kwargs", {})
    if not num_gpus and "block_size" not in engine_kwargs:
        # vLLM-CPU caches whole blocks of 128 tokens by default, and the testbed's weak prompts
        # average under 100 tokens: a problem's prompts share almost no full block, so no router
        # could change the prefill. 32 is the CPU kernels' smallest block.
        engine_kwargs["block_size"] = CPU_BLOCK_SIZE
    if router == "prefix_affinity":
        # Serve's own option, passed through; the default router is Serve's unchanged.
        weak["deployment_config"]["request_router_config"] = request_router_config()
    else:
        # A config that routes by problem already (the GPU ones do) would make both arms affinity.
        weak["deployment_config"].pop("request_router_config", None)
    path = out_dir / f"two-replicas-{router}.source.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def node_counters(urls: Sequence[str], weak_name: str) -> list[tuple[float, float]]:
    """(queries, hits) of the weak model on each node's own Ray endpoint."""
    counters = []
    for url in urls:
        counted = prefix_cache_counters(scrape(url), weak_name, prefix="ray_vllm_")
        counters.append((counted.queries, counted.hits))
    return counters


async def measure(
    stack: ServedStack, config: ServingConfig, problems: Sequence[Problem], workload: Workload, node_urls: list[str]
) -> tuple[Any, Any, list[tuple[float, float]], list[tuple[float, float]]]:
    strong_sampling = config.strong.sampling.settings()
    weak_sampling = config.weak.sampling.settings()
    weak_name = config.weak.engine.name
    await warm_up(stack, load_problems(WARMUP_PROBLEMS)[0], weak_sampling, strong_sampling)
    before = await asyncio.to_thread(settled_counters, stack.metrics_url, weak_name)
    nodes_before = await asyncio.to_thread(node_counters, node_urls, weak_name)
    served, _ = await timed_async(
        f"two-replica run ({len(problems)} problems x {len(workload.fractions)} fractions x n={workload.n})",
        served_run(stack, problems, workload.fractions, workload.n, strong_sampling, weak_sampling),
    )
    after = await asyncio.to_thread(settled_counters, stack.metrics_url, weak_name)
    nodes_after = await asyncio.to_thread(node_counters, node_urls, weak_name)
    return served, after.minus(before), nodes_before, nodes_after


def one_router(
    router: str, source: Path, overrides: Sequence[str], problems: Sequence[Problem], workload: Workload, out: Path
) -> TwoReplicaRouting:
    config_path, config = prepare_config(two_replica_source(source, router, out), out, overrides)
    config_path = config_path.rename(out / f"two-replicas-{router}.yaml")
    stack = ServedStack(config_path, out / f"serve-two-replicas-{router}.log", config.auth_token_env)
    # The replicas inherit the raylets' environment, not the serve command's: the gRPC proxy reads
    # its message limit there, and the ingress the service token when the config names one.
    env = {PROXY_MAX_MESSAGE_ENV: str(config.limits.max_message_bytes), **stack.client_env()}
    with two_node_cluster(env) as cluster:
        stack.env = cluster.client_env()
        try:
            _, start_s = timed(f"starting the two-replica stack ({router} router)", stack.start)
            served, delta, nodes_before, nodes_after = asyncio.run(
                measure(stack, config, problems, workload, cluster.node_metric_urls())
            )
        finally:
            timed("stopping the two-replica stack", stack.stop)
    groups, _ = weak_prompt_groups(config.weak, problems, served.strong)
    block_size = engine_settings(config.weak.engine)["block_size"]
    bound = prefill_lower_bound(groups, block_size, workload.n)
    per_node = [
        (after[0] - before[0], after[1] - before[1]) for before, after in zip(nodes_before, nodes_after, strict=True)
    ]
    return TwoReplicaRouting(
        router=router,
        stack_start_s=start_s,
        seconds=served.seconds,
        samples=sum(row.n for row in served.rows),
        samples_per_s=sum(row.n for row in served.rows) / served.seconds if served.seconds else 0.0,
        queries_tokens=delta.queries,
        hits_tokens=delta.hits,
        computed_tokens=delta.computed,
        lower_bound_tokens=bound.lower_bound,
        block_size=block_size,
        computed_tokens_per_node=[queries - hits for queries, hits in per_node],
        nodes_with_weak_work=sum(1 for queries, _ in per_node if queries > 0),
        prefill_ratio=delta.computed / bound.lower_bound if bound.lower_bound else None,
    )


def two_replica_phase(
    source: Path, overrides: Sequence[str], problems: Sequence[Problem], workload: Workload, out: Path
) -> TwoReplicas:
    out.mkdir(parents=True, exist_ok=True)
    runs = {router: one_router(router, source, overrides, problems, workload, out) for router in ROUTERS}
    for router, run in runs.items():
        log(f"two replicas, {router} router: prefill ratio {run.prefill_ratio}, {run.samples_per_s:.1f} samples/s")
    return TwoReplicas(nodes=2, replicas=2, prefix_affinity=runs["prefix_affinity"], default=runs["default"])


def merge_into(path: Path, phase: TwoReplicas) -> dict[str, Any]:
    """Sets the two-replica keys of an existing results file, leaving the rest as it is."""
    results = json.loads(path.read_text())
    results["prefill_ratio_two_replicas"] = phase.prefix_affinity.prefill_ratio
    results["prefill_ratio_two_replicas_default_router"] = phase.default.prefill_ratio
    results["two_replicas"] = phase.model_dump(mode="json")
    path.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.two_replicas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-size workload")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--problems", type=Path, default=DEFAULT_PROBLEMS)
    parser.add_argument("--problems-count", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON to merge the keys into")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS)
    args = parser.parse_args(argv)
    workload = QUICK if args.quick else STANDARD
    count = args.problems_count or workload.num_problems
    problems = load_problems(args.problems)[:count]
    phase = two_replica_phase(args.config, args.set, problems, workload, args.artifacts)
    # The whole phase, whether or not a results file takes its keys.
    (args.artifacts / "two-replicas.json").write_text(json.dumps(phase.model_dump(mode="json"), indent=2) + "\n")
    merged = merge_into(args.out, phase) if args.out.exists() else phase.model_dump(mode="json")
    print(
        json.dumps(
            {
                key: merged.get(key)
                for key in ("prefill_ratio_two_replicas", "prefill_ratio_two_replicas_default_router")
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
