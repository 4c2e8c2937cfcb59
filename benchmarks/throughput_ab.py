"""Serve's throughput mode against today's stack, in one run with the stacks alternated.

    python -m benchmarks.throughput_ab                       # RAY_SERVE_THROUGHPUT_OPTIMIZED=1, 2 rounds
    python -m benchmarks.throughput_ab --rounds 1 --problems-count 8 --locust-run-time 15s
    python -m benchmarks.throughput_ab --env RAY_SERVE_ENABLE_DIRECT_INGRESS=1   # another flag combination

Each round starts today's stack, then one with ``--env`` (A B A B: the machine's drift hits
both). On each stack, in this order: a served ``Transfer.Run`` over the first
``--problems-count`` problems (weak samples per second), the overhead of one ``Complete`` over an
in-process engine (``benchmarks.overhead``), and locust on ``WeakModel.Complete``
(``benchmarks.load``). Where ``--env`` turns on Serve's direct ingress, the ingress replica serves
gRPC on a port of its own, pinned here to a free one, while Serve's proxy still runs on the head
node: the overhead and locust phases then run against both, as two arms of one stack. After the
last stack, vLLM's offline ``LLM.generate`` on the first served run's weak prompts gives every
arm's ``served_vs_offline``. Written to ``--out`` (JSON) and printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import json
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.load import locust_phase
from benchmarks.machine import load_average, machine_info
from benchmarks.overhead import serving_overhead
from benchmarks.ports import free_ports
from benchmarks.progress import log, timed, timed_async
from benchmarks.prompts import weak_prompt_groups
from benchmarks.served import ServedRun, served_run, warm_up
from benchmarks.stack import ServedStack, prepare_config
from benchmarks.workload import ARTIFACTS, DEFAULT_CONFIG, DEFAULT_PROBLEMS, STANDARD, WARMUP_PROBLEMS, Workload
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.serving.common.serving_config import ServingConfig

THROUGHPUT_MODE = "RAY_SERVE_THROUGHPUT_OPTIMIZED"
DIRECT_INGRESS = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
# Serve hands each ingress replica a port from these ranges; one port each pins the single replica.
DIRECT_INGRESS_PORT_RANGES = {
    "grpc": ("RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT", "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT"),
    "http": ("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"),
}
# What `cot-transfer serve` writes to stderr once SIGINT's drain is over, either way.
DRAIN_LINES = ("drained:", "drain timed out", "shut down without draining")
BASELINE = "default"


def direct_ingress_enabled(env: Mapping[str, str]) -> bool:
    """Whether Serve 2.60 reads ``env`` as direct ingress: its own flag, else throughput mode's default."""
    if DIRECT_INGRESS in env:
        return env[DIRECT_INGRESS] == "1"
    return env.get(THROUGHPUT_MODE, "0").lower() in ("1", "true")


def pinned_direct_ingress(env: Mapping[str, str], grpc_port: int, http_port: int) -> dict[str, str]:
    """``env`` with the direct-ingress port ranges narrowed to one port each (the range's max is exclusive)."""
    pinned = dict(env)
    for (low, high), port in zip(DIRECT_INGRESS_PORT_RANGES.values(), (grpc_port, http_port), strict=True):
        pinned[low], pinned[high] = str(port), str(port + 1)
    return pinned


def drain_outcome(serve_log: str) -> str:
    """The serve command's own line on how SIGINT's drain went, or ``not reported``."""
    for line in serve_log.splitlines():
        if line.startswith(DRAIN_LINES):
            return line.strip()
    return "not reported"


@dataclass
class ArmRound:
    """One arm's measurements in one round; the overhead and locust blocks as the bench writes them."""

    arm: str
    round: int
    stack: str
    overhead: dict[str, Any] | None = None
    locust: dict[str, Any] | None = None
    served_seconds: float | None = None
    served_samples: int | None = None
    served_samples_per_s: float | None = None
    stack_start_s: float | None = None
    stack_stop_s: float | None = None
    drain: str | None = None
    # Why this arm has no numbers in this round (the stack or a phase failed), with the error's text.
    error: str | None = None


async def _stack_phases(
    stack: ServedStack,
    targets: Mapping[str, ServedStack],
    config: ServingConfig,
    workload: Workload,
    problems: Sequence[Problem],
    args: argparse.Namespace,
    round_index: int,
    served_target: str,
) -> tuple[dict[str, ArmRound], ServedRun]:
    """The served run through ``served_target``, then overhead and locust through every target."""
    strong, weak = config.strong.sampling.settings(), config.weak.sampling.settings()
    rounds = {arm: ArmRound(arm, round_index, stack.address) for arm in targets}
    await warm_up(targets[served_target], load_problems(WARMUP_PROBLEMS)[0], weak, strong)
    served, _ = await timed_async(
        f"{served_target}: served run ({len(problems)} problems x {len(workload.fractions)} fractions)",
        served_run(targets[served_target], problems, workload.fractions, workload.n, strong, weak),
    )
    samples = sum(row.n for row in served.rows)
    for record in rounds.values():
        # One Transfer.Run is one call through the front door: both doors of a stack share it.
        record.served_seconds, record.served_samples = served.seconds, samples
        record.served_samples_per_s = samples / served.seconds
    for arm, target in targets.items():
        rounds[arm].stack = target.address
        overhead, _ = await timed_async(
            f"{arm}: overhead of one Complete",
            serving_overhead(target, config, problems[0], workload.overhead_calls, workload.overhead_max_tokens),
        )
        rounds[arm].overhead = overhead.model_dump()
        locust, _ = await timed_async(
            f"{arm}: locust on WeakModel.Complete",
            asyncio.to_thread(
                locust_phase,
                target,
                workload,
                args.problems,
                workload.n,
                weak.max_tokens,
                args.artifacts / f"locust-{arm.replace(' ', '-')}-{round_index}",
            ),
        )
        rounds[arm].locust = locust.model_dump()
    return rounds, served


def _one_stack(
    label: str,
    env: dict[str, str],
    round_index: int,
    config_path: Path,
    config: ServingConfig,
    workload: Workload,
    problems: Sequence[Problem],
    args: argparse.Namespace,
) -> tuple[list[ArmRound], ServedRun | None]:
    """A fresh stack with ``env``; with direct ingress, the proxy and the replica's own port as two arms."""
    folder = args.artifacts / f"{label.replace(' ', '-')}-{round_index}"
    folder.mkdir(parents=True, exist_ok=True)
    direct = direct_ingress_enabled(env)
    if direct:
        grpc_port, http_port = free_ports(2)
        env = pinned_direct_ingress(env, grpc_port, http_port)
    stack = ServedStack(config_path, folder / "serve.log", config.auth_token_env, env=env)
    targets = {label: stack}
    served_target = label
    if direct:
        # Serve still starts its proxy on the head node: the same stack through either door.
        replica = copy.copy(stack)
        targets = {f"{label} via proxy": stack, f"{label} direct": replica}
        served_target = f"{label} direct"
    rounds = {arm: ArmRound(arm, round_index, "") for arm in targets}
    served: ServedRun | None = None
    start_s: float | None = None
    try:
        _, start_s = timed(f"{label} round {round_index}: starting the stack", stack.start)
        if direct:
            host = stack.address.rpartition(":")[0]
            replica.address = f"{host}:{grpc_port}"
        rounds, served = asyncio.run(
            _stack_phases(stack, targets, config, workload, problems, args, round_index, served_target)
        )
    except Exception as error:
        # The other arm's rounds still run: the table then says "not run" here, and why.
        log(f"{label} round {round_index} failed: {traceback.format_exc()}")
        for record in rounds.values():
            record.error = f"{type(error).__name__}: {error}"[:500]
    finally:
        _, stop_s = timed(f"{label} round {round_index}: stopping the stack", stack.stop)
    drain = drain_outcome((folder / "serve.log").read_text())
    for record in rounds.values():
        record.stack_start_s, record.stack_stop_s, record.drain = start_s, stop_s, drain
    return list(rounds.values()), served


def _offline(config: ServingConfig, problems: Sequence[Problem], served: ServedRun, n: int) -> dict[str, Any]:
    from benchmarks.bench import offline_phase

    groups, prefix_lengths = weak_prompt_groups(config.weak, problems, served.strong)
    return offline_phase(config, groups, prefix_lengths, n)


def arm_table(records: Sequence[Mapping[str, Any]], offline_per_s: float | None) -> list[str]:
    """Markdown rows, one per arm, each cell the rounds' values in run order (``a / b``)."""

    def cells(arm: str, value: Any, digits: int) -> str:
        values = [value(record) for record in records if record["arm"] == arm]
        shown = [f"{v:.{digits}f}" if v is not None else "not run" for v in values]
        return " / ".join(shown) if shown else "not run"

    def overhead(key: str) -> Any:
        return lambda record: record["overhead"][key] if record["overhead"] else None

    def vs_offline(record: Mapping[str, Any]) -> float | None:
        per_s = record["served_samples_per_s"]
        return per_s / offline_per_s if per_s is not None and offline_per_s else None

    arms = list(dict.fromkeys(record["arm"] for record in records))
    rows = [
        "| arm | overhead p50 (ms) | overhead p99 (ms) | served p50 (ms) | served samples/s | served_vs_offline"
        " | locust rps | locust failures | stack stop (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in arms:
        rows.append(
            f"| {arm} | {cells(arm, overhead('overhead_ms_p50'), 1)} | {cells(arm, overhead('overhead_ms_p99'), 1)}"
            f" | {cells(arm, overhead('served_ms_p50'), 1)} | {cells(arm, lambda r: r['served_samples_per_s'], 1)}"
            f" | {cells(arm, vs_offline, 2)} | {cells(arm, lambda r: r['locust']['rps'] if r['locust'] else None, 2)}"
            f" | {cells(arm, lambda r: r['locust']['failures'] if r['locust'] else None, 0)}"
            f" | {cells(arm, lambda r: r['stack_stop_s'], 0)} |"
        )
    return rows


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--problems", type=Path, default=DEFAULT_PROBLEMS)
    parser.add_argument("--problems-count", type=int, default=16, help="problems of the served run")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"environment of the other arm's stacks (repeatable; default {THROUGHPUT_MODE}=1)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="stacks started per arm, alternated")
    parser.add_argument("--locust-run-time", default="30s")
    parser.add_argument("--overhead-calls", type=int, default=STANDARD.overhead_calls)
    parser.add_argument("--skip-offline", action="store_true", help="no offline LLM.generate: served_vs_offline null")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS / "throughput-ab")
    parser.add_argument("--out", type=Path, default=None, help="JSON (default ARTIFACTS/throughput-ab.json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    command = "python -m benchmarks.throughput_ab " + " ".join(argv if argv is not None else sys.argv[1:])
    other = dict(item.split("=", 1) for item in (args.env or [f"{THROUGHPUT_MODE}=1"]))
    label = "throughput mode" if other == {THROUGHPUT_MODE: "1"} else " ".join(args.env)
    workload = replace(
        STANDARD,
        num_problems=args.problems_count,
        locust_run_time=args.locust_run_time,
        overhead_calls=args.overhead_calls,
    )
    problems = load_problems(args.problems)[: workload.num_problems]
    args.artifacts.mkdir(parents=True, exist_ok=True)
    config_path, config = prepare_config(args.config, args.artifacts, args.set)
    out = args.out or args.artifacts.parent / "throughput-ab.json"
    result: dict[str, Any] = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "env": other,
        "workload": asdict(workload),
        "stack_seconds": None,
        "offline_llm_generate": None,
        "rounds": [],
    }
    started = time.perf_counter()
    first_served: ServedRun | None = None
    for round_index in range(args.rounds):
        for arm, env in ((BASELINE, {}), (label, other)):
            arm_rounds, served = _one_stack(arm, env, round_index, config_path, config, workload, problems, args)
            first_served = first_served or served
            result["rounds"].extend(asdict(record) for record in arm_rounds)
            # Written after every stack: a run cut short keeps the stacks it measured.
            out.write_text(json.dumps(result, indent=2) + "\n")
    result["stack_seconds"] = time.perf_counter() - started
    if not args.skip_offline and first_served is not None:
        try:
            result["offline_llm_generate"] = _offline(config, problems, first_served, workload.n)
        except Exception:
            log(f"the offline run failed; served_vs_offline stays null: {traceback.format_exc()}")
    result["machine"]["load_after"] = load_average()
    out.write_text(json.dumps(result, indent=2) + "\n")
    offline = result["offline_llm_generate"]
    print("\n".join(arm_table(result["rounds"], offline["completions_per_s"] if offline else None)))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
