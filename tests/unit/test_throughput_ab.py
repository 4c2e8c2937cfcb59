"""The throughput-mode A/B's pieces that need no stack: which env is direct ingress, the pinned
port ranges, the drain line it reads back, and the table it prints."""

from typing import Any

import pytest

from benchmarks.throughput_ab import arm_table, direct_ingress_enabled, drain_outcome, pinned_direct_ingress


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}, True),
        ({"RAY_SERVE_THROUGHPUT_OPTIMIZED": "true"}, True),
        ({"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"}, False),
        # Serve reads the flag of its own before throughput mode's default for it.
        ({"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}, False),
        ({"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}, True),
        ({"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}, False),
    ],
)
def test_direct_ingress_follows_serve_s_reading_of_the_env(env: dict[str, str], expected: bool) -> None:
    assert direct_ingress_enabled(env) is expected


def test_pinned_ranges_hold_one_port_each_and_keep_the_rest() -> None:
    pinned = pinned_direct_ingress({"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}, 24000, 25000)
    assert pinned == {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": "24000",
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": "24001",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": "25000",
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": "25001",
    }


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ("INFO ready\nshutting down: draining\ndrained: 1 calls in flight finished in 2.1 s\n", "drained: 1 calls"),
        ("Traceback ...\nshut down without draining (see the log)\n", "shut down without draining"),
        ("drain timed out after 60.0 s: 2 of 3 calls still in flight are cut\n", "drain timed out"),
        ("INFO ready\n", "not reported"),
    ],
)
def test_drain_outcome_is_the_serve_command_s_own_line(log: str, expected: str) -> None:
    assert drain_outcome(log).startswith(expected)


def _record(arm: str, round_index: int, overhead_p50: float | None, rps: float | None) -> dict[str, Any]:
    overhead = None
    if overhead_p50 is not None:
        overhead = {
            "overhead_ms_p50": overhead_p50,
            "overhead_ms_p99": 2 * overhead_p50,
            "served_ms_p50": overhead_p50 + 40,
        }
    return {
        "arm": arm,
        "round": round_index,
        "overhead": overhead,
        "locust": None if rps is None else {"rps": rps, "failures": 0},
        "served_samples_per_s": None if overhead_p50 is None else 40.0,
        "stack_stop_s": 14.0,
    }


def test_table_has_one_row_per_arm_with_the_rounds_in_run_order() -> None:
    records = [
        _record("default", 0, 30.0, 1.8),
        _record("throughput mode direct", 0, 12.0, 1.9),
        _record("default", 1, 32.0, 1.7),
        _record("throughput mode direct", 1, None, None),
    ]
    rows = arm_table(records, offline_per_s=80.0)
    assert len(rows) == 4
    assert rows[2].startswith("| default | 30.0 / 32.0 | 60.0 / 64.0 | 70.0 / 72.0 | 40.0 / 40.0 | 0.50 / 0.50 |")
    assert "| 1.80 / 1.70 | 0 / 0 | 14 / 14 |" in rows[2]
    # A round whose stack failed shows as such, beside the round that ran.
    assert rows[3].startswith("| throughput mode direct | 12.0 / not run |")


def test_without_an_offline_run_served_vs_offline_is_not_run() -> None:
    rows = arm_table([_record("default", 0, 30.0, 1.8)], offline_per_s=None)
    assert "| 40.0 | not run | 1.80 |" in rows[2]
