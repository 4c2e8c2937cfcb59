"""Where one served ``Complete`` spends its time: py-spy on every process it passes through.

    python -m benchmarks.profile_overhead                   # local CPU config, 30 s of calls
    python -m benchmarks.profile_overhead --seconds 60 --max-tokens 8
    python -m benchmarks.profile_overhead --env RAY_SERVE_THROUGHPUT_OPTIMIZED=1   # the profile under Serve's flags

Starts the served stack, then sends one ``Complete`` (n = 1, a few tokens) after another from
this process while ``py-spy record`` samples the Serve gRPC proxy, the ingress replica, the
weak replica and the weak engine's core process (non-blocking, idle stacks left out). A
process's samples / rate / calls is its CPU time per call; its top frames say what that time
is. Written to ``--out`` (JSON, with the top stacks) and printed as a table.

The A/B of throughput mode with throughput, overhead and locust per arm is ``benchmarks.throughput_ab``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.overhead import percentile
from benchmarks.progress import log
from benchmarks.stack import ServedStack, prepare_config
from benchmarks.workload import ARTIFACTS, DEFAULT_CONFIG, DEFAULT_PROBLEMS
from cot_transfer.client import Sampling
from cot_transfer.experiment.datasets import load_problems

# The processes a Complete passes through, by the title Ray gives them (``ps -o args``).
PROCESSES = {
    "grpc proxy": "ray::ProxyActor",
    "ingress replica": "ServeReplica:cot_transfer:TransferIngress",
    "weak replica": "ServeReplica:cot_transfer:WeakModel",
}
# vLLM's engine core runs in a child process of its replica, titled by vLLM.
ENGINE_CORE = "EngineCore"
RATE_HZ = 250
TOP_FRAMES = 12
# py-spy names a file by its path under its sys.path entry: this project's packages' folders.
_OWN_FRAME = re.compile(r"\((cot_transfer|serving|engine|domain|client|experiment)/[^()]*\)$")
_BOOTSTRAP_FRAMES = ("Thread._bootstrap", "Thread.run ", "<module> ", "Worker.main_loop", "_worker ")


@dataclass
class ProcessProfile:
    name: str
    pid: int
    samples: int = 0
    cpu_ms_per_call: float = 0.0
    top_self: list[tuple[str, int]] = field(default_factory=list)
    top_own_code: list[tuple[str, int]] = field(default_factory=list)
    # Frames by the samples under them, threads' and event loops' bootstraps left out.
    top_inclusive: list[tuple[str, int]] = field(default_factory=list)


def _processes() -> list[tuple[str, int]]:
    """(role, pid) of the stack's processes, found by their titles."""
    listing = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True, check=True).stdout
    rows = [line.split(None, 2) for line in listing.splitlines()[1:] if len(line.split(None, 2)) == 3]
    found: list[tuple[str, int]] = []
    weak_pid = 0
    for pid, _, args in rows:
        for name, title in PROCESSES.items():
            if title in args:
                found.append((name, int(pid)))
                if name == "weak replica":
                    weak_pid = int(pid)
    for pid, ppid, args in rows:
        if ENGINE_CORE in args and int(ppid) == weak_pid:
            found.append(("weak engine core", int(pid)))
    return found


def _summarise(name: str, pid: int, raw: Path, calls: int) -> ProcessProfile:
    """Self time by leaf frame and by the innermost frame of this project's own code."""
    profile = ProcessProfile(name, pid)
    leaves: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    if raw.is_file():
        for line in raw.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            profile.samples += count
            leaves[frames[-1]] += count
            mine = [frame for frame in frames if _OWN_FRAME.search(frame)]
            own[mine[-1] if mine else "(outside cot_transfer)"] += count
            for frame in set(frames):
                if frame and not frame.startswith(_BOOTSTRAP_FRAMES):
                    inclusive[frame] += count
    profile.cpu_ms_per_call = profile.samples / RATE_HZ * 1000 / max(calls, 1)
    profile.top_self = leaves.most_common(TOP_FRAMES)
    profile.top_own_code = own.most_common(TOP_FRAMES)
    profile.top_inclusive = inclusive.most_common(TOP_FRAMES)
    return profile


async def _calls(stack: ServedStack, problem: str, answer: str, seconds: float, max_tokens: int) -> list[float]:
    sampling = Sampling(max_tokens=max_tokens, seed=1234)
    latencies: list[float] = []
    async with stack.client(120) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            began = time.perf_counter()
            await client.complete(problem, reference_answer=answer, n=1, sampling=sampling)
            latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def _spy(spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    command = [spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--duration", str(int(seconds))]
    command += ["--nonblocking", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _served_latencies(
    args: argparse.Namespace, env: dict[str, str], artifacts: Path, spy: str | None
) -> tuple[list[float], list[tuple[str, int]]]:
    """Complete latencies (ms) against a fresh stack with ``env``; with ``spy``, each process of
    the path is recorded meanwhile into ``artifacts/PID.txt``."""
    artifacts.mkdir(parents=True, exist_ok=True)
    config_path, config = prepare_config(args.config, artifacts)
    problem = load_problems(args.problems)[0]
    stack = ServedStack(config_path, artifacts / "serve.log", config.auth_token_env, env=env)
    stack.start()
    try:
        asyncio.run(_calls(stack, problem.problem, problem.answer, 5.0, args.max_tokens))  # warm-up
        targets = _processes() if spy is not None else []
        if targets:
            log(f"profiling {', '.join(f'{name} ({pid})' for name, pid in targets)} for {args.seconds:.0f} s")
        spies = [_spy(spy, pid, args.seconds, artifacts / f"{pid}.txt") for _, pid in targets if spy is not None]
        latencies = asyncio.run(_calls(stack, problem.problem, problem.answer, args.seconds, args.max_tokens))
        for process in spies:
            process.wait(timeout=120)
    finally:
        stack.stop()
    return latencies, targets


def _compare(args: argparse.Namespace, other: dict[str, str]) -> dict[str, object]:
    """Served p50 with Serve's defaults and with ``other``, alternated (A B A B: drift hits both)."""
    arms: dict[str, list[float]] = {"default": [], "with env": []}
    for round_index in range(args.rounds):
        for arm, env in (("default", {}), ("with env", other)):
            latencies, _ = _served_latencies(args, env, args.artifacts / f"{arm.replace(' ', '-')}-{round_index}", None)
            arms[arm].append(percentile(latencies, 0.5))
            log(f"{arm} round {round_index}: p50 {arms[arm][-1]:.1f} ms over {len(latencies)} calls")
    return {"env": other, "served_ms_p50": arms}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--problems", type=Path, default=DEFAULT_PROBLEMS)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long calls are sent and profiled")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="environment of the stack (repeatable)"
    )
    parser.add_argument(
        "--compare-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="no profile: served p50 with Serve's defaults against this environment, --rounds times each",
    )
    parser.add_argument("--rounds", type=int, default=2, help="--compare-env: stacks started per arm")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS / "profile")
    parser.add_argument("--out", type=Path, default=None, help="JSON summary (default ARTIFACTS/profile.json)")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.profile_overhead " + " ".join(argv if argv is not None else sys.argv[1:])
    out = args.out or args.artifacts.parent / "profile.json"
    if args.compare_env:
        comparison = {"command": command, **_compare(args, dict(item.split("=", 1) for item in args.compare_env))}
        out.write_text(json.dumps(comparison, indent=2) + "\n")
        print(json.dumps(comparison["served_ms_p50"]))
        return 0
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed (pip install py-spy; it is in the dev extra)")
    env = dict(assignment.split("=", 1) for assignment in args.env)
    latencies, targets = _served_latencies(args, env, args.artifacts, spy)
    profiles = [_summarise(name, pid, args.artifacts / f"{pid}.txt", len(latencies)) for name, pid in targets]
    summary = {
        "command": command,
        "calls": len(latencies),
        "served_ms_p50": percentile(latencies, 0.5),
        "cores": os.cpu_count(),
        "env": env,
        "processes": [asdict(profile) for profile in profiles],
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{len(latencies)} Complete calls, served p50 {summary['served_ms_p50']:.1f} ms; CPU per call by process:")
    for profile in profiles:
        print(f"  {profile.name:18} {profile.cpu_ms_per_call:6.2f} ms")
        for frame, count in profile.top_inclusive[:8]:
            print(f"      {count / RATE_HZ * 1000 / max(len(latencies), 1):6.2f} ms  {frame}")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
