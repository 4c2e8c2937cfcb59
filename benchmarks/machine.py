"""Probes of the machine the benchmark runs on (psutil): CPU, memory, load, other Ray clusters,
and the CPU time of this run's own processes."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from benchmarks.progress import log


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo on Linux (psutil does not report it), else the platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "cores": psutil.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
    }


def load_average() -> float:
    return round(psutil.getloadavg()[0], 2)


def other_ray_clusters() -> list[str]:
    """Process ids of raylets already running here (another local Ray cluster skews timings)."""
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        command = " ".join(process.info["cmdline"] or ())
        if "raylet" in (process.info["name"] or "") or "raylet" in command:
            found.append(str(process.info["pid"]))
    return found


def wait_for_other_ray_clusters(max_wait_s: float) -> list[str]:
    """Waits (politely, on a shared machine) for other local Ray clusters to go; returns those left."""
    deadline = time.monotonic() + max_wait_s
    others = other_ray_clusters()
    while others and time.monotonic() < deadline:
        log(f"another Ray cluster is running here (raylet {' '.join(others)}); waiting for it to stop")
        time.sleep(30)
        others = other_ray_clusters()
    return others


def _short_name(process: psutil.Process) -> str:
    try:
        command = process.cmdline()
    except (psutil.Error, OSError):
        command = []
    name = command[0].rsplit("/", 1)[-1] if command and command[0] else process.name()
    return name[:60]


def process_cpu_seconds(roots: Sequence[int] = ()) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of processes here, with a short name.

    With ``roots``, only those processes and their descendants (e.g. this run's serve command,
    whose children are its Ray cluster and vLLM engines), not other users of the machine.
    """
    if roots:
        processes: list[psutil.Process] = []
        for pid in dict.fromkeys(roots):
            try:
                root = psutil.Process(pid)
                processes += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
    else:
        processes = list(psutil.process_iter())
    found: dict[int, tuple[str, float]] = {}
    for process in processes:
        try:
            with process.oneshot():
                times = process.cpu_times()
                found[process.pid] = (_short_name(process), times.user + times.system)
        except psutil.Error:
            continue
    return found


def cpu_by_process(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two snapshots, summed by process name, largest first."""
    spent: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        previous = before.get(pid, (name, 0.0))[1]
        if seconds - previous > 0.05:
            spent[name] = spent.get(name, 0.0) + seconds - previous
    return {name: round(value, 1) for name, value in sorted(spent.items(), key=lambda item: -item[1])}
