"""Headless load test against any address, with locust's CSV and HTML reports and a summary.

    python -m loadtests.run --host 127.0.0.1:9000 --users 4 --spawn-rate 2 --run-time 30s --out runs/load

wraps ``locust -f loadtests/locustfile.py --headless --csv OUT/locust --html OUT/report.html``.
Options this command does not know go to locust, so the locustfile's own options pass through:
``--complete-weight 1 --stream-weight 0 --run-weight 0 --n 8 --max-tokens 64``.

It writes ``OUT/summary.json`` (per entry: requests, failures, requests/s, p50/p99 in ms) and
exits non-zero when locust failed, any call failed, or no call was made at all.

Past capacity the service sheds load with RESOURCE_EXHAUSTED by design; ``--allow-status
RESOURCE_EXHAUSTED`` counts those calls as shed (``summary.json``: ``shed``) instead of failed,
so the run passes when every other call succeeds and nothing ends INTERNAL or UNKNOWN.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
CSV_PREFIX = "locust"
AGGREGATED = "Aggregated"
# grpc_user.failure_name: a failed call's entry is the RPC's entry with " [STATUS_CODE]" appended.
FAILURE_ENTRY = re.compile(r"^(?P<call>.*) \[(?P<code>[A-Z_]+)\]$")


def locust_command(
    host: str,
    users: int,
    spawn_rate: float,
    run_time: str,
    out_dir: Path,
    *,
    locustfile: Path = LOCUSTFILE,
    stop_timeout: str = "120s",
    extra: Sequence[str] = (),
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "--host",
        host,
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        run_time,
        # Users finish the call they are in when the time is up, so no call is cut short.
        "--stop-timeout",
        stop_timeout,
        "--csv",
        str(out_dir / CSV_PREFIX),
        "--html",
        str(out_dir / "report.html"),
        "--only-summary",
        *extra,
    ]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def read_stats(stats_csv: Path) -> dict[str, Any]:
    """Locust's ``*_stats.csv`` as ``{"entries": {name: {...}}, "aggregated": {...}}``.

    Times are milliseconds as locust records them (rounded to 2 significant digits above 100 ms).
    """
    entries: dict[str, dict[str, float]] = {}
    aggregated: dict[str, float] = {}
    with stats_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            stats = {
                "requests": int(_number(row["Request Count"])),
                "failures": int(_number(row["Failure Count"])),
                "rps": _number(row["Requests/s"]),
                "failures_per_s": _number(row["Failures/s"]),
                "avg_ms": _number(row["Average Response Time"]),
                "min_ms": _number(row["Min Response Time"]),
                "max_ms": _number(row["Max Response Time"]),
                "p50_ms": _number(row["50%"]),
                "p90_ms": _number(row["90%"]),
                "p99_ms": _number(row["99%"]),
            }
            if row["Name"] == AGGREGATED:
                aggregated = stats
            else:
                entries[row["Name"]] = stats
    return {"entries": entries, "aggregated": aggregated}


def failures_by_status(stats: dict[str, Any]) -> dict[str, int]:
    """Failed calls per gRPC status code (``OTHER`` for failures that carry no code)."""
    counts: dict[str, int] = {}
    for name, entry in stats["entries"].items():
        if int(entry["failures"]):
            match = FAILURE_ENTRY.match(name)
            code = match["code"] if match else "OTHER"
            counts[code] = counts.get(code, 0) + int(entry["failures"])
    return counts


def verdict(locust_rc: int, stats: dict[str, Any], allowed_statuses: Sequence[str] = ()) -> tuple[int, str]:
    """The exit code of this command and why; calls ending with an allowed status are shed, not failed."""
    total = stats.get("aggregated") or {}
    by_status = failures_by_status(stats)
    failed = {code: count for code, count in by_status.items() if code not in allowed_statuses}
    shed = {code: count for code, count in by_status.items() if code in allowed_statuses}
    shed_note = "".join(f"; {count} calls shed with {code}" for code, count in sorted(shed.items()))
    if failed:
        listed = ", ".join(f"{count} {code}" for code, count in sorted(failed.items()))
        return 1, f"{sum(failed.values())} calls failed ({listed}){shed_note}"
    if not total.get("requests"):
        return 1, "no call was made"
    # Locust exits 1 whenever a call failed, the shed ones included; any other code is its own error.
    if locust_rc != 0 and not (shed and locust_rc == 1):
        return locust_rc, f"locust exited with {locust_rc}"
    return 0, f"ok{shed_note}"


def format_table(stats: dict[str, Any]) -> str:
    rows = [*stats["entries"].items(), (AGGREGATED, stats["aggregated"])]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'entry':<{width}}  {'reqs':>6} {'fails':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"]
    for name, entry in rows:
        if not entry:
            continue
        lines.append(
            f"{name:<{width}}  {entry['requests']:>6} {entry['failures']:>6} {entry['rps']:>8.2f}"
            f" {entry['p50_ms']:>8.0f} {entry['p99_ms']:>8.0f}"
        )
    return "\n".join(lines)


def run_locust(
    host: str,
    users: int,
    spawn_rate: float,
    run_time: str,
    out_dir: Path,
    *,
    extra: Sequence[str] = (),
    stop_timeout: str = "120s",
    timeout_s: float | None = None,
    quiet: bool = False,
    env: dict[str, str] | None = None,
    allowed_statuses: Sequence[str] = (),
) -> tuple[int, dict[str, Any]]:
    """Runs locust headless into ``out_dir``; returns this command's exit code and the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    command = locust_command(host, users, spawn_rate, run_time, out_dir, stop_timeout=stop_timeout, extra=extra)
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    # ``env`` adds to this process's environment (e.g. the bearer token, never on the command line).
    child_env = {**os.environ, **(env or {}), "PYTHONPATH": python_path}
    log_path = out_dir / "locust.log"
    with log_path.open("w") as log:
        completed = subprocess.run(
            command,
            cwd=REPO,
            env=child_env,
            stdout=log if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
            timeout=timeout_s,
            check=False,
        )
    stats_csv = out_dir / f"{CSV_PREFIX}_stats.csv"
    stats = read_stats(stats_csv) if stats_csv.exists() else {"entries": {}, "aggregated": {}}
    code, reason = verdict(completed.returncode, stats, allowed_statuses)
    by_status = failures_by_status(stats)
    summary = {
        "host": host,
        "users": users,
        "spawn_rate": spawn_rate,
        "run_time": run_time,
        "locust_args": list(extra),
        "locust_exit_code": completed.returncode,
        "exit_code": code,
        "verdict": reason,
        "allowed_statuses": sorted(allowed_statuses),
        "failures_by_status": by_status,
        "shed": {status: count for status, count in by_status.items() if status in allowed_statuses},
        **stats,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return code, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run",
        description="Headless locust run against a cot-transfer gRPC address; unknown options go to locust.",
        # Abbreviations would swallow locust's options (--run for --run-time).
        allow_abbrev=False,
    )
    parser.add_argument("--host", required=True, help="HOST:PORT of the gRPC proxy")
    parser.add_argument("--users", type=int, default=4, help="concurrent users")
    parser.add_argument("--spawn-rate", type=float, default=2.0, help="users started per second")
    parser.add_argument("--run-time", default="30s", help="duration, e.g. 30s, 2m")
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSV, HTML and summary.json")
    parser.add_argument("--stop-timeout", default="120s", help="time users get to finish their last call")
    parser.add_argument(
        "--allow-status",
        action="append",
        default=[],
        metavar="CODE",
        help="a gRPC status that counts as shed load, not a failure (e.g. RESOURCE_EXHAUSTED past capacity);"
        " may be repeated",
    )
    args, extra = parser.parse_known_args(argv)
    code, summary = run_locust(
        args.host,
        args.users,
        args.spawn_rate,
        args.run_time,
        args.out,
        extra=extra,
        stop_timeout=args.stop_timeout,
        allowed_statuses=args.allow_status,
    )
    print(format_table(summary))
    print(f"{summary['verdict']}; reports: {args.out.resolve()} (report.html, {CSV_PREFIX}_stats.csv, summary.json)")
    return code


if __name__ == "__main__":
    sys.exit(main())
