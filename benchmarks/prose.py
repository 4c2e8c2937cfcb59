"""The result in sentences: the ``summary_lines`` of results.json and the bullets in BENCHMARKS.md."""

from __future__ import annotations

from benchmarks.record import BenchResult


def summary_lines(results: BenchResult) -> list[str]:
    served = results.served
    naive = results.naive
    lines = [
        f"Served: {served.rows} rows ({served.samples} weak samples) in {served.seconds:.1f} s ="
        f" {served.rows_per_s:.2f} rows/s, {served.samples_per_s:.1f} samples/s"
        f" (strong CoTs all done at {served.strong_cots_done_s:.1f} s)."
    ]
    if naive.subset_rows:
        whole = (
            f"; the whole workload: {naive.extrapolated_seconds:.0f} s"
            if naive.subset_rows == served.rows
            else f"; extrapolated per sample to the whole workload: {naive.extrapolated_seconds:.0f} s"
        )
        lines.append(
            f"Naive (transformers, one prefix after another, {naive.torch_threads.get('threads')} torch threads):"
            f" {naive.subset_rows} rows of {len(naive.subset_problems)} problems in"
            f" {naive.subset_weak_seconds:.1f} s ({naive.weak_seconds_per_sample * 1000:.1f} ms per sample)"
            f" + {naive.subset_strong_seconds:.1f} s of strong CoTs{whole}"
            f" ({naive.extrapolated_rows_per_s or 0.0:.2f} rows/s)."
            f" Weak-only speedup: {results.speedup_weak_only_vs_naive or 0.0:.1f}x."
        )
    prefill = results.prefill
    if prefill.lower_bound_tokens is not None:
        lines.append(
            f"Weak prefill: {prefill.computed_tokens:.0f} tokens computed (queries {prefill.queries_tokens:.0f}"
            f" - hits {prefill.hits_tokens:.0f}) vs a lower bound of {prefill.lower_bound_tokens} at block size"
            f" {prefill.block_size} ({prefill.prompt_tokens_expected} prompt tokens without any cache;"
            f" {prefill.distinct_prompt_lower_bound_tokens} for the distinct prompts alone)."
        )
    overhead = results.overhead
    if overhead is not None:
        lines.append(
            f"Overhead: Complete (n=1, {overhead.max_tokens} new tokens) served p50"
            f" {overhead.served_ms_p50:.1f} ms vs in-process p50 {overhead.direct_ms_p50:.1f} ms,"
            f" {overhead.calls} interleaved pairs."
        )
    locust = results.locust
    if locust is not None:
        lines.append(
            f"Locust: {locust.users} users for {locust.run_time}, Complete n={locust.n}:"
            f" {locust.requests} requests, p50 {locust.p50_ms} ms, p99 {locust.p99_ms} ms."
        )
    offline = results.offline
    if offline is not None and offline.served_vs_offline is not None:
        lines.append(
            f"Served weak completions/s {offline.served_weak.completions_per_s:.1f} vs offline LLM.generate"
            f" {offline.offline_llm_generate['completions_per_s']:.1f}: {offline.served_vs_offline:.0%}."
        )
    decisions = results.decisions
    if decisions is not None:
        lines.append(
            f"Time to the decisions: offline LLM.generate at n={decisions['n']}, graded and decided, in"
            f" {decisions['offline_seconds']:.1f} s ({decisions['offline_samples']} samples) against the served"
            f" adaptive run's {decisions['served_adaptive_seconds']:.1f} s ({decisions['served_adaptive_samples']}"
            f" samples): {decisions['decisions_speedup_vs_offline']:.2f}x, {decisions['rows_agreeing']} of"
            f" {decisions['rows']} decisions equal."
        )
    loads = results.load_average_1m
    lines.append("Load average (1 min) at phase boundaries: " + ", ".join(f"{k} {v}" for k, v in loads.items()) + ".")
    return lines
