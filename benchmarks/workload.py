"""The benchmark workloads and the default paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "local-cpu.yaml"
DEFAULT_PROBLEMS = REPO / "datasets" / "testbed-hard.jsonl"
WARMUP_PROBLEMS = REPO / "datasets" / "testbed-demo.jsonl"
DEFAULT_OUT = REPO / "benchmarks" / "results.json"
QUICK_OUT = REPO / "benchmarks" / "results-quick.json"
DEFAULT_DOC = REPO / "BENCHMARKS.md"
ARTIFACTS = REPO / "runs" / "bench"


# Keyword-only: a field with a default may stand before fields without, so results.json's
# ``workload`` keeps its key order.
@dataclass(frozen=True, kw_only=True)
class Workload:
    name: str
    num_problems: int
    fractions: tuple[float, ...]
    n: int
    naive_problems: int
    overhead_calls: int
    # A few tokens: the overhead phase times the serving path around the engine, not generation.
    overhead_max_tokens: int = 8
    locust_users: int
    locust_run_time: str


STANDARD = Workload(
    name="standard",
    num_problems=32,
    fractions=tuple(round(index / 10, 1) for index in range(11)),
    n=16,
    naive_problems=32,
    overhead_calls=50,
    locust_users=8,
    locust_run_time="60s",
)
QUICK = Workload(
    name="quick",
    num_problems=4,
    fractions=(0.0, 0.5, 1.0),
    n=4,
    naive_problems=1,
    overhead_calls=20,
    locust_users=2,
    locust_run_time="15s",
)
