"""The result blocks computed from what the phases measured: throughput, the extrapolated naive
baseline, the prefill accounting against its bound, and the offline comparison."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.metrics import PrefixCacheCounters
from benchmarks.naive import NaiveTiming
from benchmarks.prefill import prefill_lower_bound
from benchmarks.record import (
    BenchResult,
    Locust,
    Machine,
    Naive,
    OfflineComparison,
    Overhead,
    Prefill,
    Replay,
    RunInfo,
    Served,
)
from benchmarks.served import ServedRun


@dataclass
class ServicePhases:
    """What the phases against the running stack measured."""

    served: ServedRun
    prefill_delta: PrefixCacheCounters
    cpu_seconds_by_process: dict[str, float]
    weak_tokens: dict[str, float]
    metric_block_sizes: list[int]
    replay: Replay | None = None
    overhead: Overhead | None = None
    locust: Locust | None = None


@dataclass(frozen=True)
class Timings:
    """What the harness timed itself, around and after the served stack."""

    stack_start_s: float
    naive_weak: NaiveTiming
    naive_strong: NaiveTiming
    naive_subset: list[str]
    offline: dict[str, Any] | None


def served_block(
    served: ServedRun,
    stack_start_s: float,
    weak_tokens: dict[str, float],
    cpu_seconds_by_process: dict[str, float],
) -> Served:
    rows = len(served.rows)
    samples = sum(row.n for row in served.rows)
    return Served(
        seconds=served.seconds,
        strong_cots_done_s=served.strong_done_s,
        problems=served.problems,
        rows=rows,
        samples=samples,
        rows_per_s=rows / served.seconds,
        samples_per_s=samples / served.seconds,
        strong_solve_rate=served.summary.strong_solve_rate if served.summary is not None else None,
        weak_potential_mean=sum(row.num_correct for row in served.rows) / samples if samples else None,
        stack_start_s=stack_start_s,
        weak_engine_tokens=weak_tokens,
        weak_generated_tokens_per_s=weak_tokens["generation_tokens"] / served.seconds,
        cpu_seconds_by_process=cpu_seconds_by_process,
    )


def naive_block(
    weak: NaiveTiming, strong: NaiveTiming, device: str, subset_problems: Sequence[str], served: Served
) -> Naive:
    """The naive timings, extrapolated per sample (weak) and per problem (strong) to the whole workload."""
    weak_total_s = weak.seconds_per_sample * served.samples
    strong_per_problem = strong.seconds / max(1, strong.rows)
    strong_total_s = strong_per_problem * served.problems
    total_s = weak_total_s + strong_total_s
    return Naive(
        backend=f"transformers generate ({device})",
        strong_cots="the served run's strong CoTs are reused as the weak prompts (identical prompts); "
        "one transformers CoT per subset problem is also generated and timed for the strong model's share",
        subset_problems=list(subset_problems),
        torch_threads=weak.threads,
        subset_rows=weak.rows,
        subset_samples=weak.samples,
        subset_weak_seconds=weak.seconds,
        subset_strong_seconds=strong.seconds,
        weak_seconds_per_sample=weak.seconds_per_sample,
        subset_weak_generated_tokens=weak.generated_tokens,
        weak_generated_tokens_per_s=weak.generated_tokens / weak.seconds if weak.seconds else None,
        strong_seconds_per_problem=strong_per_problem,
        weak_potential_mean_subset=weak.correct / weak.samples if weak.samples else None,
        extrapolated_weak_seconds=weak_total_s,
        extrapolated_strong_seconds=strong_total_s,
        extrapolated=weak.rows < served.rows,
        extrapolated_seconds=total_s,
        extrapolated_rows_per_s=served.rows / total_s if total_s else None,
        extrapolated_samples_per_s=served.samples / total_s if total_s else None,
    )


def prefill_block(
    weak_model: str,
    delta: PrefixCacheCounters,
    weak_engine: dict[str, int],
    groups: Sequence[Sequence[Sequence[int]]],
    n: int,
    overhead: Overhead | None,
    metric_block_sizes: list[int],
) -> tuple[Prefill, float | None]:
    """The weak engine's prefill against the bound at its block size, and the headline ratio."""
    prefill = Prefill(
        weak_model=weak_model,
        queries_tokens=delta.queries,
        hits_tokens=delta.hits,
        computed_tokens=delta.computed,
        weak_engine=weak_engine,
        block_size_of_the_in_process_engine=overhead.block_size if overhead is not None else None,
        block_sizes_from_vllm_cache_config_info=metric_block_sizes,
    )
    block_size = weak_engine.get("block_size")
    if not block_size:
        return prefill, None
    bound = prefill_lower_bound(groups, block_size, n)
    distinct = prefill_lower_bound(groups, block_size, 1)
    prefill = prefill.model_copy(
        update={
            "block_size": block_size,
            "prompt_tokens_expected": bound.prompt_tokens,
            "lower_bound_tokens": bound.lower_bound,
            "distinct_prompts": distinct.prompts,
            "distinct_prompt_tokens": distinct.prompt_tokens,
            "distinct_prompt_lower_bound_tokens": distinct.lower_bound,
            "ratio_vs_distinct_prompt_bound": delta.computed / distinct.lower_bound,
            "ratio_vs_no_cache": delta.computed / bound.prompt_tokens,
        }
    )
    return prefill, delta.computed / bound.lower_bound


def offline_block(replay: Replay | None, offline: dict[str, Any] | None) -> OfflineComparison | None:
    if replay is None or offline is None:
        return None
    return OfflineComparison(
        served_weak=replay,
        offline_llm_generate=offline,
        served_vs_offline=replay.completions_per_s / offline["completions_per_s"]
        if offline["completions_per_s"]
        else None,
    )


def served_vs_offline(served_samples_per_s: float, offline: dict[str, Any] | None) -> float | None:
    """The served ``Transfer.Run`` (strong CoTs included) against the offline script on its weak prompts."""
    if offline is None or not offline.get("completions_per_s"):
        return None
    return float(served_samples_per_s / offline["completions_per_s"])


def bench_result(
    run: RunInfo,
    machine: Machine,
    loads: dict[str, float],
    phases: ServicePhases,
    timings: Timings,
    prefill: tuple[Prefill, float | None],
) -> BenchResult:
    """The typed result: every block, and the headlines taken from them."""
    served = phases.served
    served_summary = served_block(served, timings.stack_start_s, phases.weak_tokens, phases.cpu_seconds_by_process)
    naive = naive_block(timings.naive_weak, timings.naive_strong, run.device, timings.naive_subset, served_summary)
    overhead, locust = phases.overhead, phases.locust
    return BenchResult(
        speedup_vs_naive=naive.extrapolated_seconds / served.seconds if naive.extrapolated_seconds else None,
        prefill_ratio=prefill[1],
        serve_overhead_ms_p50=overhead.overhead_ms_p50 if overhead is not None else None,
        serve_overhead_ms_p99=overhead.overhead_ms_p99 if overhead is not None else None,
        locust_rps=locust.rps if locust is not None else None,
        locust_failures=locust.failures if locust is not None else None,
        served_vs_offline=served_vs_offline(served_summary.samples_per_s, timings.offline),
        run=run,
        machine=machine,
        load_average_1m=loads,
        served=served_summary,
        naive=naive,
        speedup_weak_only_vs_naive=naive.extrapolated_weak_seconds / served.seconds
        if naive.extrapolated_weak_seconds
        else None,
        prefill=prefill[0],
        overhead=overhead,
        locust=locust,
        offline=offline_block(phases.replay, timings.offline),
    )
