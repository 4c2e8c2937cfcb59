"""The load phase: locust on ``WeakModel.Complete`` only, for a fixed time (loadtests/ drives it)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.record import Locust
from benchmarks.stack import ServedStack
from benchmarks.workload import Workload


def locust_phase(
    stack: ServedStack, workload: Workload, problems_path: Path, n: int, max_tokens: int, out_dir: Path
) -> Locust:
    from loadtests.run import run_locust

    extra = [
        *("--complete-weight", "1", "--stream-weight", "0", "--run-weight", "0"),
        *("--n", str(n), "--max-tokens", str(max_tokens), "--problems", str(problems_path)),
    ]
    code, summary = run_locust(
        stack.address,
        workload.locust_users,
        workload.locust_users,
        workload.locust_run_time,
        out_dir,
        extra=extra,
        quiet=True,
        env=stack.client_env(),
    )
    return locust_block(code, summary, workload, n, max_tokens, out_dir)


def locust_block(
    code: int, summary: Mapping[str, Any], workload: Workload, n: int, max_tokens: int, reports: Path
) -> Locust:
    """Complete's rate and latency from ``loadtests.run``'s summary; failures count every call."""
    from loadtests.names import COMPLETE

    entry = summary["entries"].get(COMPLETE, {})
    return Locust(
        exit_code=code,
        users=workload.locust_users,
        run_time=workload.locust_run_time,
        n=n,
        max_tokens=max_tokens,
        requests=entry.get("requests", 0),
        failures=sum(int(stats["failures"]) for stats in summary["entries"].values()),
        rps=entry.get("rps", 0.0),
        p50_ms=entry.get("p50_ms"),
        p99_ms=entry.get("p99_ms"),
        reports=str(reports),
    )
