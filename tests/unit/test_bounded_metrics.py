"""Bounded metrics: per-experiment series leave the endpoint after their retention, the service's
families are there from the first scrape, and merging runs off the event loop."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cot_transfer.serving.common.metrics import FAMILIES, ExperimentSeries
from cot_transfer.serving.wiring.metrics_endpoint import gather_exposition, merge_expositions


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_experiment_is_shown_while_running_and_for_the_retention_after_it_ends() -> None:
    clock = Clock()
    experiments = ExperimentSeries(retention_s=60, clock=clock)
    experiments.started("a")
    experiments.started("b")
    assert experiments.shown() == {"a", "b"}
    clock.now = 10
    experiments.ended("a")
    clock.now = 69
    assert experiments.shown() == {"a", "b"}
    clock.now = 71
    assert experiments.shown() == {"b"}  # a ended 61 s ago; b still runs however long


def test_the_record_stays_bounded_however_many_runs_were_made() -> None:
    clock = Clock()
    experiments = ExperimentSeries(retention_s=5, clock=clock)
    for run in range(10_000):
        clock.now = run
        experiments.started(f"anonymous-{run}")
        experiments.ended(f"anonymous-{run}")
    assert len(experiments.shown()) <= 6


def test_an_experiment_id_running_twice_stays_shown_until_both_end() -> None:
    clock = Clock()
    experiments = ExperimentSeries(retention_s=1, clock=clock)
    experiments.started("x")
    experiments.started("x")
    experiments.ended("x")
    clock.now = 100
    assert experiments.shown() == {"x"}
    experiments.ended("x")
    clock.now = 102
    assert experiments.shown() == frozenset()


NODE = """# HELP ray_cot_transfer_experiment_rows_done Transfer.Run: (problem, fraction) results finished.
# TYPE ray_cot_transfer_experiment_rows_done gauge
ray_cot_transfer_experiment_rows_done{WorkerId="w",experiment="old"} 6.0
ray_cot_transfer_experiment_rows_done{WorkerId="w",experiment="live"} 2.0
# HELP ray_cot_transfer_experiment_unlock_rate Transfer.Run: unlock rate so far, per truncation fraction.
# TYPE ray_cot_transfer_experiment_unlock_rate gauge
ray_cot_transfer_experiment_unlock_rate{WorkerId="w",experiment="old",fraction="0.5"} 0.5
ray_cot_transfer_experiment_unlock_rate{WorkerId="w",experiment="live",fraction="0.5"} 1.0
# HELP ray_cot_transfer_rpc_requests_total RPCs by method and gRPC status code.
# TYPE ray_cot_transfer_rpc_requests_total counter
ray_cot_transfer_rpc_requests_total{WorkerId="w",code="OK",method="Run"} 2.0
"""


def test_series_of_experiments_no_longer_shown_are_left_out_and_the_rest_kept() -> None:
    merged = merge_expositions([NODE], experiment_shown={"live"}.__contains__)
    experiments = {
        sample.labels.get("experiment")
        for family in text_string_to_metric_families(merged)
        for sample in family.samples
    }
    assert experiments == {"live", None}  # None: the rpc counter, which has no experiment label
    assert 'cot_transfer_rpc_requests_total{code="OK",method="Run"} 2.0' in merged


def test_a_fresh_service_shows_every_family_and_the_unlabelled_ones_at_zero() -> None:
    merged = merge_expositions([], declared=FAMILIES)
    families = {family.name: family for family in text_string_to_metric_families(merged)}
    for family in FAMILIES:
        assert family.name in families, family.name
        parsed = families[family.name]
        assert parsed.type == family.kind
        if not family.tags:
            assert parsed.samples and all(sample.value == 0 for sample in parsed.samples)
        else:
            assert parsed.samples == []
    running = families["cot_transfer_experiments_running"]
    assert [sample.value for sample in running.samples] == [0.0]


def test_declared_families_merge_with_the_recorded_ones_into_one_family() -> None:
    merged = merge_expositions([NODE], declared=FAMILIES)
    assert merged.count("# TYPE cot_transfer_rpc_requests_total counter") == 1
    assert 'cot_transfer_rpc_requests_total{code="OK",method="Run"} 2.0' in merged


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_the_fresh_exposition_passes_promtool() -> None:
    merged = merge_expositions([], declared=FAMILIES)
    checked = subprocess.run(["promtool", "check", "metrics"], input=merged, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_gathering_a_large_exposition_leaves_the_event_loop_free(tmp_path: Path) -> None:
    lines = ["# HELP ray_cot_transfer_experiment_rows_done d", "# TYPE ray_cot_transfer_experiment_rows_done gauge"]
    lines += [f'ray_cot_transfer_experiment_rows_done{{experiment="e{index}"}} 1.0' for index in range(60_000)]
    node = tmp_path / "node.txt"
    node.write_text("\n".join(lines) + "\n")
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    merged = await gather_exposition([node.as_uri()], experiment_shown=lambda experiment: experiment < "e1")
    took = time.monotonic() - started
    done.set()
    await ticking
    assert merged.count("cot_transfer_experiment_rows_done{") == 1  # only "e0" sorts before "e1"
    # The loop kept ticking through the merge: it ran in a worker thread. A merge on the loop
    # allows no tick until it ends. Ticks are counted rather than the longest pause compared with
    # the merge's time, which a shared machine's stall of the whole process (0.8 s of a 1.5 s
    # merge, once) can fail.
    assert took > 0.05 and len(gaps) >= 10, (took, len(gaps))
