"""A/B of the order ``TransferRunner`` admits weak requests in (its scheduling key), on the same engines.

    python -m benchmarks.ordering [--quick] [--reps 2] [--set weak.engine.engine_kwargs.block_size=32]

Both engines run in this process (``VLLMEngine`` + ``StrongModelServer`` / ``ReceiverServer``,
no Ray, no gRPC), so each order runs the same workload on the same warm engines, the orders
alternate, and the prefix caches are reset before every run. Strong and weak sampling are
seeded, so every run gets the same CoTs and the same work; one untimed run warms the engines
first. Per run it reports the wall time
and the weak engine's prefill tokens computed (vLLM's own prefix-cache counters, read from this
process's Prometheus registry). Writes ``runs/bench/ordering.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.metrics import PrefixCacheCounters, prefix_cache_counters
from benchmarks.prefill import prefill_lower_bound
from benchmarks.progress import log
from benchmarks.stack import prepare_config
from benchmarks.workload import ARTIFACTS, DEFAULT_CONFIG, DEFAULT_PROBLEMS, QUICK, STANDARD
from cot_transfer.domain.requests import Prefix, StrongCot, TransferRequest
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.serving.dataplane.fanout import SchedulingKey, TransferRunner, longest_generation_first


def longest_prefix_first(prefix: Prefix) -> float:
    """The alternative key: the longest prompt of a problem first."""
    return -float(prefix.num_tokens)


def arrival_order(prefix: Prefix) -> float:
    """No priority: requests run in the order they are created (each problem's fractions in
    request order, problems as their CoTs finish), as a plain semaphore admits them."""
    return 0.0


ORDERS: dict[str, SchedulingKey] = {
    "arrival order (before)": arrival_order,
    "longest prefix first": longest_prefix_first,
    "longest generation first (default)": longest_generation_first,
}


def weak_counters(model_name: str) -> PrefixCacheCounters:
    from prometheus_client import REGISTRY, generate_latest

    # vLLM's own in-process metrics: named ``vllm:...``, where Ray's export renames them ``vllm_...``.
    return prefix_cache_counters(generate_latest(REGISTRY).decode(), model_name, prefix="vllm:")


async def compare(args: argparse.Namespace) -> dict[str, Any]:
    from cot_transfer.engine.vllm_engine import VLLMEngine
    from cot_transfer.serving.replicas.receiver_server import ReceiverServer
    from cot_transfer.serving.replicas.strong_server import StrongModelServer

    workload = QUICK if args.quick else STANDARD
    args.artifacts.mkdir(parents=True, exist_ok=True)
    _, config = prepare_config(args.config, args.artifacts, args.set)
    problems = load_problems(args.problems)[: workload.num_problems]
    # The strong engine first: each engine's Prometheus logger replaces the one before it in
    # this process's registry, and the weak engine's counters are the ones read.
    strong_engine = VLLMEngine(config.strong.engine)
    await strong_engine.start()
    weak_engine = VLLMEngine(config.weak.engine)
    await weak_engine.start()
    strong = StrongModelServer(strong_engine, config.strong.engine.name)
    weak = ReceiverServer(weak_engine, config.weak.engine.name)
    request = TransferRequest(
        problems=problems,
        fractions=workload.fractions,
        n=workload.n,
        strong_sampling=replace(config.strong.sampling.settings(), seed=11),
        receiver_sampling=replace(config.weak.sampling.settings(), seed=12),
        thresholds=Thresholds(),
        grader=config.default_grader,
    )
    block_size = int(weak_engine.llm.vllm_config.cache_config.block_size)
    runs: list[dict[str, Any]] = []
    bound: dict[str, int] | None = None
    try:
        # One untimed run first: the first run after start-up pays for warming the engines.
        warm_up = TransferRunner(
            strong.stream_prefixes,
            weak.complete,
            config.ingress.max_concurrent_completions,
            max_concurrent_cots=config.ingress.max_concurrent_cots,
        )
        [event async for event in warm_up.run(request)]
        for rep in range(args.reps):
            names = list(ORDERS) if rep % 2 == 0 else list(reversed(ORDERS))
            for name in names:
                await strong_engine.llm.reset_prefix_cache()
                await weak_engine.llm.reset_prefix_cache()
                runner = TransferRunner(
                    strong.stream_prefixes,
                    weak.complete,
                    config.ingress.max_concurrent_completions,
                    scheduling_key=ORDERS[name],
                    max_concurrent_cots=config.ingress.max_concurrent_cots,
                )
                before = weak_counters(config.weak.engine.name)
                load = os.getloadavg()[0]
                started = time.perf_counter()
                records = [event async for event in runner.run(request) if isinstance(event, StrongCot)]
                seconds = time.perf_counter() - started
                # vLLM's stat loggers record after each engine step; let the last one land.
                await asyncio.sleep(2.0)
                delta = weak_counters(config.weak.engine.name).minus(before)
                if bound is None:
                    bound = _bound(weak_engine, problems, records, block_size, workload.n)
                runs.append(
                    {
                        "order": name,
                        "rep": rep,
                        "seconds": seconds,
                        "prefill_computed_tokens": delta.computed,
                        "prefill_queries_tokens": delta.queries,
                        "load_average_1m": round(load, 2),
                    }
                )
                log(f"{name}: {seconds:.1f} s, {delta.computed:.0f} weak prefill tokens computed (load {load:.1f})")
    finally:
        await weak_engine.shutdown()
        await strong_engine.shutdown()
    summary = {}
    for name in ORDERS:
        mine = [run for run in runs if run["order"] == name]
        summary[name] = {
            "seconds_mean": sum(run["seconds"] for run in mine) / len(mine),
            "seconds_min": min(run["seconds"] for run in mine),
            "prefill_computed_tokens_mean": sum(run["prefill_computed_tokens"] for run in mine) / len(mine),
        }
    return {
        "workload": workload.name,
        "config": str(args.config),
        "config_overrides": list(args.set),
        "block_size": block_size,
        "prefill_lower_bound": bound,
        "runs": runs,
        "summary": summary,
    }


def _bound(
    engine: Any, problems: Sequence[Any], records: Sequence[StrongCot], block_size: int, n: int
) -> dict[str, int]:
    tokenizer = engine.tokenizer
    by_id = {record.problem_id: record for record in records}
    groups = []
    for problem in problems:
        rendered = tokenizer.render_problem(problem.problem)
        groups.append([tokenizer.encode(rendered + prefix.text) for prefix in by_id[problem.id].prefixes])
    bound = prefill_lower_bound(groups, block_size, n)
    return {"lower_bound_tokens": bound.lower_bound, "prompt_tokens": bound.prompt_tokens}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ordering", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=2, help="runs of each order (alternating)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--problems", type=Path, default=DEFAULT_PROBLEMS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS)
    parser.add_argument("--out", type=Path, default=ARTIFACTS / "ordering.json")
    args = parser.parse_args(argv)
    result = asyncio.run(compare(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"block_size": result["block_size"], "bound": result["prefill_lower_bound"], **result["summary"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
