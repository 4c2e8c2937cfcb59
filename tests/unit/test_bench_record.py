"""The typed benchmark result: its blocks from the phases' measurements, its keys, its prose."""

import json
from pathlib import Path

import pytest

from benchmarks.assemble import (
    ServicePhases,
    Timings,
    bench_result,
    naive_block,
    offline_block,
    prefill_block,
    served_block,
)
from benchmarks.load import locust_block
from benchmarks.metrics import PrefixCacheCounters
from benchmarks.naive import NaiveTiming
from benchmarks.prose import summary_lines
from benchmarks.record import BenchResult, Machine, Replay, RunInfo
from benchmarks.results import HEADLINE_KEYS, write_results
from benchmarks.served import ServedRun
from benchmarks.workload import QUICK
from cot_transfer.domain.requests import FractionResult
from loadtests.names import COMPLETE

ROWS = [FractionResult(f"p{index}", fraction, 0, 10, 4, 2) for index in range(2) for fraction in (0.0, 1.0)]
# What ``loadtests.run`` reports of a quick run: Complete's entry, the only call the phase makes.
LOCUST_SUMMARY = {"entries": {COMPLETE: {"requests": 40, "failures": 0, "rps": 2.5, "p50_ms": 100.0, "p99_ms": 300.0}}}
SERVED = ServedRun(problems=2, seconds=10.0, strong_done_s=4.0, strong={}, rows=ROWS, summary=None)


def result(**changes: object) -> BenchResult:
    served = served_block(SERVED, 30.0, {"generation_tokens": 500.0, "prompt_tokens": 0.0}, {"python": 1.0})
    weak = NaiveTiming(rows=2, samples=8, generated_tokens=80, seconds=16.0, correct=4, threads={"threads": 1})
    strong = NaiveTiming(rows=1, samples=1, seconds=3.0)
    naive = naive_block(weak, strong, "cpu", ["p0"], served)
    groups = [[[1, 2, 3, 4, 5], [1, 2, 3]]]
    prefill, ratio = prefill_block("weak", PrefixCacheCounters(100.0, 40.0), {"block_size": 2}, groups, 4, None, [128])
    fields: dict[str, object] = {
        "speedup_vs_naive": naive.extrapolated_seconds / SERVED.seconds,
        "prefill_ratio": ratio,
        "serve_overhead_ms_p50": None,
        "serve_overhead_ms_p99": None,
        "locust_rps": 2.5,
        "locust_failures": 0,
        "run": RunInfo(
            date="2026-12-01 19:00 UTC",
            command="make bench",
            workload_name="quick",
            workload={},
            device="cpu",
            config="configs/local-cpu.yaml",
            config_overrides=[],
            problems_file="datasets/testbed-hard.jsonl",
            strong_sampling={},
            weak_sampling={},
            max_concurrent_completions=64,
        ),
        "machine": Machine(cores=2, cpu_model="Test CPU", memory_gib=24.0, load_before=1.0),
        "load_average_1m": {"start": 1.0},
        "served": served,
        "naive": naive,
        "speedup_weak_only_vs_naive": naive.extrapolated_weak_seconds / SERVED.seconds,
        "prefill": prefill,
        "overhead": None,
        "locust": locust_block(0, LOCUST_SUMMARY, QUICK, 4, 256, Path("runs/bench/locust")),
        "offline": None,
    }
    fields.update(changes)
    return BenchResult.model_validate(fields)


def test_the_blocks_hold_throughput_and_the_extrapolated_baseline() -> None:
    results = result()
    assert results.served.rows == 4 and results.served.samples == 16
    assert results.served.rows_per_s == pytest.approx(0.4)
    assert results.served.weak_potential_mean == pytest.approx(0.5)
    # 2 s per weak sample x 16 samples, plus 3 s per strong CoT x 2 problems.
    assert results.naive.extrapolated_seconds == pytest.approx(32.0 + 6.0)
    assert results.naive.extrapolated is True
    assert results.speedup_vs_naive == pytest.approx(3.8)


def test_the_prefill_block_has_its_bound_only_where_the_block_size_is_known() -> None:
    counters = PrefixCacheCounters(100.0, 40.0)
    known, ratio = prefill_block("weak", counters, {"block_size": 2}, [[[1, 2, 3, 4, 5]]], 1, None, [])
    assert ratio == pytest.approx(60.0 / 5) and known.model_dump()["lower_bound_tokens"] == 5
    unknown, no_ratio = prefill_block("weak", counters, {}, [[[1, 2, 3]]], 1, None, [])
    assert no_ratio is None
    assert "lower_bound_tokens" not in unknown.model_dump() and unknown.model_dump()["computed_tokens"] == 60.0


def test_results_json_keeps_its_keys_headlines_first(tmp_path: Path) -> None:
    written = write_results(tmp_path / "results.json", result().to_json())
    keys = list(json.loads((tmp_path / "results.json").read_text()))
    assert keys[: len(HEADLINE_KEYS)] == list(HEADLINE_KEYS)
    assert keys[len(HEADLINE_KEYS) :] == [
        "served_vs_offline", "prefill_ratio_two_replicas", "prefill_ratio_two_replicas_default_router",
        "adaptive_sample_ratio", "adaptive_decision_agreement", "adaptive_unlock_rates_within_brute_force_ci",
        "decisions_speedup_vs_offline", "decisions_agreement_vs_offline",
        "run", "machine", "load_average_1m", "served", "naive", "speedup_weak_only_vs_naive",
        "prefill", "overhead", "locust", "offline", "two_replicas", "adaptive", "decisions", "summary_lines",
    ]  # fmt: skip
    assert written["overhead"] is None and written["serve_overhead_ms_p50"] is None


def test_the_summary_lines_describe_each_phase_that_ran() -> None:
    replay = Replay(requests=4, completions=16, seconds=2.0, concurrency=8, completions_per_s=8.0)
    offline = offline_block(replay, {"completions_per_s": 10.0})
    assert offline is not None and offline.served_vs_offline == pytest.approx(0.8)
    lines = summary_lines(result(offline=offline))
    assert lines[0].startswith("Served: 4 rows (16 weak samples) in 10.0 s")
    assert any(line.startswith("Naive (transformers") and "extrapolated" in line for line in lines)
    assert any(line.startswith("Weak prefill: 60 tokens computed") for line in lines)
    assert any(line.startswith("Locust: 2 users for 15s") for line in lines)
    assert any("80%" in line for line in lines)
    assert not any(line.startswith("Overhead") for line in lines)
    assert offline_block(None, {"completions_per_s": 1.0}) is None


def test_bench_result_takes_the_headlines_from_the_blocks() -> None:
    phases = ServicePhases(
        served=SERVED,
        prefill_delta=PrefixCacheCounters(100.0, 40.0),
        cpu_seconds_by_process={},
        weak_tokens={"generation_tokens": 200.0},
        metric_block_sizes=[],
    )
    weak = NaiveTiming(rows=4, samples=16, seconds=48.0, threads={"threads": 2})
    timings = Timings(20.0, weak, NaiveTiming(rows=2, samples=2, seconds=4.0), ["p0", "p1"], None)
    prefill = prefill_block("weak", phases.prefill_delta, {"block_size": 2}, [[[1, 2, 3]]], 4, None, [])
    results = bench_result(result().run, result().machine, {"start": 0.5}, phases, timings, prefill)
    assert results.speedup_vs_naive == pytest.approx((48.0 + 4.0) / 10.0)
    assert results.speedup_weak_only_vs_naive == pytest.approx(4.8)
    assert results.naive.extrapolated is False
    assert results.prefill_ratio == prefill[1]
    assert results.locust_rps is None and results.serve_overhead_ms_p50 is None and results.offline is None
