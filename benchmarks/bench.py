"""The benchmark harness: the served pipeline against a naive baseline, side by side in one run.

    python -m benchmarks.bench            # the standard CPU workload (make bench)
    python -m benchmarks.bench --quick    # CI-size smoke of every phase
    python -m benchmarks.bench --config my-gpu.yaml   # the same workload on a GPU serving config
    python -m benchmarks.bench --full     # every phase below, so every key of results.json from one run

Phases, in this order, against one ``cot-transfer serve`` started on free ports:

1. served: ``Transfer.Run`` over gRPC (problems x fractions x n samples), timed from the call to
   the summary; the weak engine's prefix-cache counters (``vllm_prefix_cache_queries_total`` and
   ``vllm_prefix_cache_hits_total`` of the weak model on the service's metrics endpoint) are read
   before and after, once they have settled.
2. offline comparison (GPU configs, or ``--offline-compare``): the same weak prompts through
   ``WeakModel.Complete``, for weak completions per second.
3. overhead: the same ``Complete`` call through gRPC + Ray Serve and straight into an in-process
   ``ReceiverServer`` on a ``VLLMEngine`` with the same engine config, interleaved.
4. locust: ``WeakModel.Complete`` only, for a fixed time.
5. adaptive (``--n-max``, ``benchmarks.adaptive``): brute force at n = n_max and adaptive sampling
   on the same imported CoTs.
6. (stack stopped) offline ``LLM.generate`` on the weak prompts, when enabled; then, with
   ``--decisions``, the offline script to every (problem, fraction) decision at n = n_max on the
   adaptive phase's prefixes, timed against the served adaptive run (``benchmarks.decisions``).
7. naive: transformers ``generate`` one prefix after another on a spread subset of the problems,
   on the strong CoTs the served run wrote, extrapolated per sample to the whole workload; plus
   one transformers CoT per subset problem for the strong model's share.
8. two replicas (``benchmarks.two_replicas``, with ``--two-replicas``): the served run again on a two-node local Ray
   cluster with one weak replica per node, once with the prefix-affinity router and once with
   Serve's default, for the weak prefill against its bound under each.

``--full`` turns on every optional phase (``--offline-compare --two-replicas --decisions``, n_max
128); a key whose phase did not run is null, shown as "not run" in the table.

Writes ``benchmarks/results.json`` (``--out``) and the results section of ``BENCHMARKS.md``
(``--doc``). See BENCHMARKS.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.adaptive import ServedAdaptive, adaptive_phase
from benchmarks.assemble import ServicePhases, Timings, bench_result, prefill_block
from benchmarks.decisions import DecisionsComparison, decisions_phase
from benchmarks.load import locust_phase
from benchmarks.machine import (
    cpu_by_process,
    load_average,
    machine_info,
    process_cpu_seconds,
    wait_for_other_ray_clusters,
)
from benchmarks.metrics import block_size_from_metrics, settled_counters, weak_token_counters
from benchmarks.naive import NaiveTiming, run_naive, spread_subset, weak_budget
from benchmarks.overhead import serving_overhead
from benchmarks.progress import log, timed, timed_async
from benchmarks.prompts import engine_settings, weak_prompt_groups
from benchmarks.prose import summary_lines
from benchmarks.record import BenchResult, Machine, RunInfo
from benchmarks.results import markdown_section, update_doc, write_results
from benchmarks.served import served_run, served_weak_replay, warm_up, weak_jobs
from benchmarks.stack import ServedStack, prepare_config, uses_gpu
from benchmarks.workload import (
    ARTIFACTS,
    DEFAULT_CONFIG,
    DEFAULT_DOC,
    DEFAULT_OUT,
    DEFAULT_PROBLEMS,
    QUICK,
    QUICK_OUT,
    STANDARD,
    WARMUP_PROBLEMS,
    Workload,
)
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.serving.common.serving_config import ServingConfig


async def service_phases(
    stack: ServedStack,
    config: ServingConfig,
    workload: Workload,
    problems: Sequence[Problem],
    args: argparse.Namespace,
    offline_enabled: bool,
    loads: dict[str, float],
) -> ServicePhases:
    """Every phase that needs the served stack, in one event loop."""
    strong_sampling = config.strong.sampling.settings()
    weak_sampling = config.weak.sampling.settings()
    weak_name = config.weak.engine.name
    await warm_up(stack, load_problems(WARMUP_PROBLEMS)[0], weak_sampling, strong_sampling)
    before = await asyncio.to_thread(settled_counters, stack.metrics_url, weak_name)
    tokens_before = await asyncio.to_thread(weak_token_counters, stack.metrics_url, weak_name)
    loads["served_start"] = load_average()
    roots = [os.getpid(), stack.pid]
    cpu_before = process_cpu_seconds(roots)
    served, _ = await timed_async(
        f"served run ({len(problems)} problems x {len(workload.fractions)} fractions x n={workload.n})",
        served_run(stack, problems, workload.fractions, workload.n, strong_sampling, weak_sampling),
    )
    loads["served_end"] = load_average()
    cpu_during_served = cpu_by_process(cpu_before, process_cpu_seconds(roots))
    after = await asyncio.to_thread(settled_counters, stack.metrics_url, weak_name)
    tokens_after = await asyncio.to_thread(weak_token_counters, stack.metrics_url, weak_name)
    ray_metrics_url = f"http://127.0.0.1:{config.metrics_port}/metrics"
    phases = ServicePhases(
        served=served,
        prefill_delta=after.minus(before),
        cpu_seconds_by_process=cpu_during_served,
        weak_tokens={key: tokens_after[key] - tokens_before[key] for key in tokens_after},
        metric_block_sizes=await asyncio.to_thread(block_size_from_metrics, ray_metrics_url),
    )
    if offline_enabled:
        phases.replay, _ = await timed_async(
            "served weak replay (WeakModel.Complete on the run's prompts)",
            served_weak_replay(
                stack,
                weak_jobs(problems, served.strong),
                workload.n,
                weak_sampling,
                config.ingress.max_concurrent_completions,
            ),
        )
    if not args.skip_overhead:
        phases.overhead, _ = await timed_async(
            "serving overhead (served vs in-process Complete)",
            serving_overhead(
                stack,
                config,
                problems[0],
                workload.overhead_calls,
                workload.overhead_max_tokens,
                args.overhead_gpu_memory,
            ),
        )
    if not args.skip_locust:
        loads["locust_start"] = load_average()
        phases.locust, _ = await timed_async(
            "locust on WeakModel.Complete",
            asyncio.to_thread(
                locust_phase,
                stack,
                workload,
                args.problems,
                workload.n,
                weak_sampling.max_tokens,
                args.artifacts / "locust",
            ),
        )
        loads["locust_end"] = load_average()
    return phases


def workload_of(args: argparse.Namespace) -> Workload:
    workload = QUICK if args.quick else STANDARD
    return replace(
        workload,
        num_problems=args.problems_count or workload.num_problems,
        naive_problems=args.naive_problems or workload.naive_problems,
        locust_run_time=args.locust_run_time or workload.locust_run_time,
        locust_users=args.locust_users or workload.locust_users,
    )


def load_workload_problems(path: Path, workload: Workload) -> list[Problem]:
    problems = load_problems(path)[: workload.num_problems]
    if len(problems) < workload.num_problems:
        raise SystemExit(f"bench: {path} holds {len(problems)} problems, the workload needs {workload.num_problems}")
    return problems


def machine_at_start(max_wait_other_ray_s: float) -> Machine:
    machine = Machine(**machine_info())
    others = wait_for_other_ray_clusters(max_wait_other_ray_s)
    if others:
        log(f"warning: raylet processes still running here ({' '.join(others)}): timings will be skewed")
    machine.load_before = load_average()
    machine.other_raylets_at_start = len(others)
    return machine


def run_info(args: argparse.Namespace, workload: Workload, config: ServingConfig, device: str) -> RunInfo:
    command = "python -m benchmarks.bench" + ("" if len(sys.argv) <= 1 else " " + " ".join(sys.argv[1:]))
    return RunInfo(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=args.command_label.strip() or command,
        workload_name=workload.name,
        workload=asdict(workload),
        device=device,
        config=str(args.config),
        config_overrides=list(args.set),
        problems_file=str(args.problems),
        strong_sampling=asdict(config.strong.sampling.settings()),
        weak_sampling=asdict(config.weak.sampling.settings()),
        max_concurrent_completions=config.ingress.max_concurrent_completions,
    )


def run(args: argparse.Namespace) -> BenchResult:
    """The phases in order: the served stack's, then (stack stopped) offline and naive."""
    workload = workload_of(args)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    config_path, config = prepare_config(args.config, args.artifacts, args.set)
    device = "cuda" if uses_gpu(config) else "cpu"
    offline_enabled = args.offline_compare or device == "cuda"
    problems = load_workload_problems(args.problems, workload)
    machine = machine_at_start(args.max_wait_other_ray)
    loads: dict[str, float] = {"start": load_average()}
    stack = ServedStack(config_path, args.artifacts / "serve.log", config.auth_token_env)
    try:
        _, start_s = timed("starting the served stack", stack.start)
        phases = asyncio.run(service_phases(stack, config, workload, problems, args, offline_enabled, loads))
        adaptive, served_adaptive = (
            adaptive_phase(stack, config, workload, problems, args.n_max, args.artifacts)
            if args.n_max
            else (None, None)
        )
    finally:
        timed("stopping the served stack", stack.stop)
    groups, prefix_lengths = weak_prompt_groups(config.weak, problems, phases.served.strong)
    # After the stack is stopped: on a GPU the served engines and this one cannot share the memory.
    offline = offline_phase(config, groups, prefix_lengths, workload.n) if offline_enabled else None
    decisions = decisions_of(config, problems, served_adaptive, args.n_max, args.artifacts) if args.decisions else None
    # The naive baseline, with the served stack down so it has the machine to itself.
    subset = spread_subset(problems, workload.naive_problems)
    loads["naive_start"] = load_average()
    if args.skip_naive:
        naive_weak, naive_strong = NaiveTiming(), NaiveTiming()
    else:
        subset_ids = {problem.id for problem in subset}
        jobs = [job for job in weak_jobs(problems, phases.served.strong) if job.problem_id in subset_ids]
        naive_weak, naive_strong = run_naive(config, device, subset, jobs, workload.n)
    loads["naive_end"] = load_average()
    two_replicas = None
    # Opt-in: it starts two more stacks (two two-node clusters), minutes on 2 cores.
    if args.two_replicas:
        from benchmarks.two_replicas import two_replica_phase

        # Last: it starts two fresh two-node clusters of its own (one per router). A failure there
        # is reported and leaves its keys null; the phases before it keep their results.
        try:
            two_replicas, _ = timed(
                "two weak replicas on two nodes, both routers",
                lambda: two_replica_phase(args.config, args.set, problems, workload, args.artifacts),
            )
        except Exception:
            log(f"warning: the two-replica phase failed; its keys stay null:\n{traceback.format_exc()}")
    machine.load_after = load_average()
    results = bench_result(
        run_info(args, workload, config, device),
        machine,
        loads,
        phases,
        Timings(start_s, naive_weak, naive_strong, [problem.id for problem in subset], offline),
        prefill_block(
            config.weak.engine.name,
            phases.prefill_delta,
            engine_settings(config.weak.engine),
            groups,
            workload.n,
            phases.overhead,
            phases.metric_block_sizes,
        ),
    )
    if two_replicas is not None:
        results.two_replicas = two_replicas
        results.prefill_ratio_two_replicas = two_replicas.prefix_affinity.prefill_ratio
        results.prefill_ratio_two_replicas_default_router = two_replicas.default.prefill_ratio
    if adaptive is not None:
        results = results.model_copy(update={**adaptive.keys(), "adaptive": asdict(adaptive)})
    if decisions is not None:
        results = results.model_copy(update={**decisions.keys(), "decisions": asdict(decisions)})
    results.summary_lines = summary_lines(results)
    return results


def decisions_of(
    config: ServingConfig, problems: Sequence[Problem], served: ServedAdaptive | None, n_max: int, artifacts: Path
) -> DecisionsComparison | None:
    """The offline script against the adaptive phase's served run; None (its keys null) when that run
    failed or the script did, the phases before it keeping their results."""
    if served is None:
        log("warning: no served adaptive run to time the decisions against; their keys stay null")
        return None
    try:
        return decisions_phase(config, problems, served, n_max, artifacts / "decisions")
    except Exception:
        log(f"warning: the decisions phase failed; its keys stay null:\n{traceback.format_exc()}")
        return None


def offline_phase(
    config: ServingConfig, groups: list[list[list[int]]], prefix_lengths: list[list[int]], n: int
) -> dict[str, Any]:
    from benchmarks.offline import offline_completions_per_s

    weak_sampling = config.weak.sampling.settings()
    prompts = [prompt for group in groups for prompt in group]
    budgets = [weak_budget(length, weak_sampling.max_tokens) for lengths in prefix_lengths for length in lengths]
    offline, _ = timed(
        "offline LLM.generate on the weak prompts",
        lambda: offline_completions_per_s(config.weak.engine, prompts, budgets, n, weak_sampling),
    )
    return offline


# The adaptive phase's n_max when --full or --decisions names none: the paper's protocol.
DECISIONS_N_MAX = 128
_SKIPS = ("skip_overhead", "skip_naive", "skip_locust")


def expand_phases(args: argparse.Namespace) -> argparse.Namespace:
    """``--full`` turns on every phase, so every key of results.json comes from one run;
    ``--decisions`` needs the adaptive phase's served run, at n_max = 128 unless ``--n-max`` says."""
    if args.full:
        skipped = [f"--{name.replace('_', '-')}" for name in _SKIPS if getattr(args, name)]
        if skipped:
            raise SystemExit(f"bench: --full runs every phase; drop {' '.join(skipped)}")
        args.offline_compare = args.two_replicas = args.decisions = True
    if args.decisions and not args.n_max:
        args.n_max = DECISIONS_N_MAX
    return args


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-size workload (4 problems x 3 fractions x n=4)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="serving config (a GPU one runs on CUDA)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. weak.engine.engine_kwargs.block_size=32 (repeatable)",
    )
    parser.add_argument("--problems", type=Path, default=DEFAULT_PROBLEMS, help="JSONL problems")
    parser.add_argument("--problems-count", type=int, default=0, help="override the workload's problem count")
    parser.add_argument("--naive-problems", type=int, default=0, help="problems the naive baseline is timed on")
    parser.add_argument("--locust-users", type=int, default=0, help="override the locust users")
    parser.add_argument("--locust-run-time", default="", help="override the locust duration (e.g. 60s)")
    parser.add_argument(
        "--max-wait-other-ray",
        type=float,
        default=900.0,
        help="seconds to wait for another local Ray cluster to stop before starting (then go on, warned)",
    )
    parser.add_argument("--skip-overhead", action="store_true", help="skip the serving-overhead phase")
    parser.add_argument(
        "--overhead-gpu-memory",
        type=float,
        default=0.15,
        help="GPU only: memory share of the overhead phase's in-process engine (the stack holds the rest)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive baseline (no speedup)")
    parser.add_argument("--skip-locust", action="store_true", help="skip the locust phase")
    parser.add_argument(
        "--two-replicas",
        action="store_true",
        help="also the two-replica, two-node phase (prefix-affinity against the default router)",
    )
    parser.add_argument(
        "--offline-compare", action="store_true", help="also compare with offline LLM.generate (always on a GPU)"
    )
    parser.add_argument(
        "--n-max",
        type=int,
        default=0,
        help="also compare adaptive sampling at this n_max with brute force at n = n_max (benchmarks.adaptive)",
    )
    parser.add_argument(
        "--decisions",
        action="store_true",
        help="also time an offline LLM.generate script to every decision at n = n_max against the served"
        f" adaptive run (benchmarks.decisions; --n-max defaults to {DECISIONS_N_MAX})",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="every phase in one run (offline compare, two replicas, adaptive at n_max"
        f" {DECISIONS_N_MAX}, decisions): every key of results.json from it",
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results.json)")
    parser.add_argument("--doc", type=Path, default=None, help="Markdown file whose results section is rewritten")
    parser.add_argument("--no-doc", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS, help="serve log, locust reports")
    parser.add_argument("--command-label", default="", help="how the run is named in the results (e.g. make bench)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = expand_phases(arguments().parse_args(argv))
    if args.out is None:
        args.out = DEFAULT_OUT if not args.quick else QUICK_OUT
    results = run(args)
    written = write_results(args.out, results.to_json())
    if not args.no_doc and (args.doc is not None or not args.quick):
        update_doc(args.doc or DEFAULT_DOC, markdown_section(written))
    for line in written["summary_lines"]:
        print(line)
    print({key: written[key] for key in list(written)[:6]})
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
