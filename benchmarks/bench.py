"""The benchmark harness: the served pipeline against a naive baseline, side by side in one run.

    python -m benchmarks.bench            # the standard CPU workload (make bench)
    python -m benchmarks.bench --quick    # CI-size smoke of every phase
    python -m benchmarks.bench --config my-gpu.yaml   # the same workload on a GPU serving config

Phases, in this order, against one ``cot-transfer serve`` started on free ports:

1. served: ``Transfer.Run`` over gRPC (problems x fractions x n samples), timed from the call to
   the summary; the weak engine's prefix-cache counters (``vllm_prefix_cache_queries_total`` and
   ``vllm_prefix_cache_hits_total`` of the weak model on the service's metrics endpoint) are read
   before and after, once they have settled.
2. offline comparison (GPU configs, or ``--offline-compare``): the same weak prompts through
   ``WeakModel.Complete``, for weak completions per second.
3. overhead: the same ``Complete`` call through gRPC + Ray Serve and straight into an in-process
   ``WeakModelServer`` on a ``VLLMEngine`` with the same engine config, interleaved.
4. locust: ``WeakModel.Complete`` only, for a fixed time.
5. (stack stopped) offline ``LLM.generate`` on the weak prompts, when enabled.
6. naive: transformers ``generate`` one prefix after another on a spread subset of the problems,
   on the strong CoTs the served run wrote, extrapolated per sample to the whole workload; plus
   one transformers CoT per subset problem for the strong model's share.

Writes ``benchmarks/results.json`` (``--out``) and the results section of ``BENCHMARKS.md``
(``--doc``). See BENCHMARKS.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

import yaml

from benchmarks.naive import (
    HuggingFaceModel,
    NaiveTiming,
    WeakJob,
    best_thread_count,
    spread_subset,
    time_strong,
    time_weak,
    weak_budget,
)
from benchmarks.prefill import (
    PrefixCacheCounters,
    metric_label_values,
    metric_sum,
    percentile,
    prefill_lower_bound,
    prefix_cache_counters,
)
from benchmarks.results import markdown_section, update_doc, write_results
from cot_transfer.client import CotTransferClient, Sampling
from cot_transfer.domain.requests import CompletionRequest, FractionResult, Problem, StrongCot
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.transfer import TransferSummary
from cot_transfer.engine.config import EngineConfig
from cot_transfer.experiment.datasets import ProblemRecord, load_problems
from cot_transfer.serving.config import ServingConfig

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "local-cpu.yaml"
DEFAULT_PROBLEMS = REPO / "datasets" / "testbed-hard.jsonl"
WARMUP_PROBLEMS = REPO / "datasets" / "testbed-demo.jsonl"
DEFAULT_OUT = REPO / "benchmarks" / "results.json"
DEFAULT_DOC = REPO / "BENCHMARKS.md"
ARTIFACTS = REPO / "runs" / "bench"
SERVE_START_TIMEOUT_S = 900
# Ray's metrics agents export every 10 s (left as it is: a shorter interval costs CPU the served
# run would feel); counters count as settled once unchanged for longer than that.
COUNTER_SETTLE_S = 15.0


@dataclass(frozen=True)
class Workload:
    name: str
    num_problems: int
    fractions: tuple[float, ...]
    n: int
    naive_problems: int
    overhead_calls: int
    overhead_max_tokens: int
    locust_users: int
    locust_run_time: str


STANDARD = Workload(
    name="standard",
    num_problems=32,
    fractions=tuple(round(index / 10, 1) for index in range(11)),
    n=16,
    naive_problems=32,
    overhead_calls=50,
    overhead_max_tokens=8,
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
    overhead_max_tokens=8,
    locust_users=2,
    locust_run_time="15s",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The machine


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    memory_gib: float | None = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": cpu_model, "memory_gib": memory_gib}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def other_ray_clusters() -> list[str]:
    """Process ids of raylets already running here (another local Ray cluster skews timings)."""
    found = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True, check=False)
    return found.stdout.split()


def wait_for_other_ray_clusters(max_wait_s: float) -> list[str]:
    """Waits (politely, on a shared machine) for other local Ray clusters to go; returns those left."""
    deadline = time.monotonic() + max_wait_s
    others = other_ray_clusters()
    while others and time.monotonic() < deadline:
        log(f"another Ray cluster is running here (raylet {' '.join(others)}); waiting for it to stop")
        time.sleep(30)
        others = other_ray_clusters()
    return others


# ---------------------------------------------------------------------------------------------
# The served stack


def process_cpu_seconds(roots: Sequence[int] = ()) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of processes here, with a short name (Linux /proc).

    With ``roots``, only those processes and their descendants (e.g. this run's serve command,
    whose children are its Ray cluster and vLLM engines), not other users of the machine.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = command.rsplit("/", 1)[-1] if command else stat[stat.index("(") + 1 : stat.rindex(")")]
        found[int(entry.name)] = (name[:60], (int(fields[11]) + int(fields[12])) / ticks)
        parents[int(entry.name)] = int(fields[1])
    if not roots:
        return found
    wanted = set(roots)
    for pid in found:
        chain = pid
        while chain > 1 and chain not in wanted:
            chain = parents.get(chain, 0)
        if chain in wanted:
            wanted.add(pid)
    return {pid: value for pid, value in found.items() if pid in wanted}


def cpu_by_process(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two snapshots, summed by process name, largest first."""
    spent: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        previous = before.get(pid, (name, 0.0))[1]
        if seconds - previous > 0.05:
            spent[name] = spent.get(name, 0.0) + seconds - previous
    return {name: round(value, 1) for name, value in sorted(spent.items(), key=lambda item: -item[1])}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """``weak.engine.max_num_seqs=256``: sets a dotted key of the config (the value is YAML)."""
    path, separator, value = assignment.partition("=")
    if not separator or not path:
        raise SystemExit(f"bench: --set takes KEY.PATH=VALUE, got {assignment!r}")
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = yaml.safe_load(value)


def prepare_config(source: Path, out_dir: Path, overrides: Sequence[str] = ()) -> tuple[Path, ServingConfig]:
    """The serving config on free ports with absolute model paths and the ``--set`` overrides."""
    data = yaml.safe_load(source.read_text())
    for assignment in overrides:
        apply_override(data, assignment)
    data["grpc_port"] = free_port()
    data["http_port"] = free_port()
    data["metrics_port"] = free_port()
    for role in ("strong", "weak"):
        model = Path(data[role]["engine"]["model"])
        if not model.is_absolute():
            data[role]["engine"]["model"] = str((source.parent / model).resolve())
        if not (Path(data[role]["engine"]["model"]) / "config.json").exists():
            raise SystemExit(f"bench: the {role} model {data[role]['engine']['model']} is missing (no config.json)")
    path = out_dir / "serving.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, ServingConfig.from_yaml(path)


class ServedStack:
    """``cot-transfer serve --config FILE`` in a subprocess, as a user starts it; SIGINT stops it."""

    def __init__(self, config_path: Path, log_path: Path, token_env: str | None = None) -> None:
        self.config_path = config_path
        self.log_path = log_path
        # With auth on, the stack gets the caller's token, or a fresh one for this run.
        self.token_env = token_env
        self.token = (os.environ.get(token_env) or secrets.token_urlsafe(24)) if token_env else None
        self.process: subprocess.Popen[str] | None = None
        self.address = ""
        self.metrics_url = ""

    def start(self) -> None:
        log_file = self.log_path.open("w")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **self.client_env(),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cot_transfer.cli.main", "serve", "--config", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            cwd=REPO,
            env=env,
        )
        log_file.close()
        printed = self._read_start_lines(("grpc", "metrics"))
        self.address = printed["grpc"]
        self.metrics_url = printed["metrics"]

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def client(self, timeout_s: float) -> CotTransferClient:
        return CotTransferClient(self.address, timeout_s=timeout_s, token=self.token)

    def client_env(self) -> dict[str, str]:
        """What a subprocess client (locust) needs in its environment: the token, under the name it reads."""
        if not self.token_env or not self.token:
            return {}
        return {self.token_env: self.token, "COT_LOAD_TOKEN_ENV": self.token_env}

    def _read_start_lines(self, keys: tuple[str, ...]) -> dict[str, str]:
        assert self.process is not None and self.process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()

        def pump(stream: IO[str]) -> None:
            for line in stream:
                lines.put(line)

        threading.Thread(target=pump, args=(self.process.stdout,), daemon=True).start()
        printed: dict[str, str] = {}
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while time.monotonic() < deadline and not set(keys) <= set(printed):
            if self.process.poll() is not None and lines.empty():
                raise RuntimeError(f"cot-transfer serve exited with {self.process.returncode}; see {self.log_path}")
            try:
                key, _, value = lines.get(timeout=1.0).partition(": ")
            except queue.Empty:
                continue
            if key in keys:
                printed[key] = value.strip()
        if not set(keys) <= set(printed):
            raise TimeoutError(
                f"cot-transfer serve printed no {keys} in {SERVE_START_TIMEOUT_S} s; see {self.log_path}"
            )
        return printed

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=180)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def scrape(url: str, timeout_s: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode("utf-8"))


def settled_counters(url: str, model_name: str, timeout_s: float = 180.0) -> PrefixCacheCounters:
    """The weak engine's prefix-cache counters once they stop moving (metrics export lags)."""
    deadline = time.monotonic() + timeout_s
    last = prefix_cache_counters(scrape(url), model_name)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(2.0)
        current = prefix_cache_counters(scrape(url), model_name)
        if current != last:
            last, stable_since = current, time.monotonic()
        elif time.monotonic() - stable_since >= COUNTER_SETTLE_S:
            return current
    log(f"warning: the prefix-cache counters of {model_name} did not settle in {timeout_s:.0f} s")
    return last


# ---------------------------------------------------------------------------------------------
# Phases that talk to the service


def sampling_of(settings: SamplingParams) -> Sampling:
    return Sampling(temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens)


async def warm_up(stack: ServedStack, problem: ProblemRecord, weak: SamplingParams, strong: SamplingParams) -> None:
    """One call of each kind, so the timed phases see warm replicas and handles."""
    async with stack.client(600) as client:
        await client.wait_ready(60)
        await client.complete(problem.problem, reference_answer=problem.answer, n=2, sampling=sampling_of(weak))
        spec = Problem(problem.id, problem.problem, problem.answer)
        async for _ in client.run_transfer(
            [spec], [0.0, 1.0], n=2, strong_sampling=sampling_of(strong), weak_sampling=sampling_of(weak)
        ):
            pass


def weak_token_counters(url: str, model_name: str) -> dict[str, float]:
    text = scrape(url)
    labels = {"model_name": model_name}
    return {
        "prompt_tokens": metric_sum(text, "vllm_prompt_tokens_total", labels),
        "generation_tokens": metric_sum(text, "vllm_generation_tokens_total", labels),
        "preemptions": metric_sum(text, "vllm_num_preemptions_total", labels),
    }


@dataclass
class ServedRun:
    seconds: float
    strong_done_s: float
    strong: dict[str, StrongCot]
    rows: list[FractionResult]
    summary: TransferSummary | None


async def served_run(
    stack: ServedStack,
    problems: Sequence[ProblemRecord],
    fractions: Sequence[float],
    n: int,
    strong: SamplingParams,
    weak: SamplingParams,
) -> ServedRun:
    specs = [Problem(problem.id, problem.problem, problem.answer) for problem in problems]
    records: dict[str, StrongCot] = {}
    rows: list[FractionResult] = []
    summary: TransferSummary | None = None
    strong_done = 0.0
    async with stack.client(4 * 3600) as client:
        started = time.perf_counter()
        async for event in client.run_transfer(
            specs, fractions, n=n, strong_sampling=sampling_of(strong), weak_sampling=sampling_of(weak)
        ):
            if isinstance(event, StrongCot):
                records[event.problem_id] = event
                strong_done = time.perf_counter() - started
            elif isinstance(event, FractionResult):
                rows.append(event)
            else:
                summary = event
        seconds = time.perf_counter() - started
    return ServedRun(seconds, strong_done, records, rows, summary)


def weak_jobs(problems: Sequence[ProblemRecord], strong: dict[str, StrongCot]) -> list[WeakJob]:
    """Every (problem, fraction) of the served run with the prefix the service cut."""
    return [
        WeakJob(problem.id, problem.problem, problem.answer, prefix.fraction, prefix.text)
        for problem in problems
        for prefix in strong[problem.id].prefixes
    ]


async def served_weak_replay(
    stack: ServedStack, jobs: Sequence[WeakJob], n: int, weak: SamplingParams, concurrency: int
) -> dict[str, Any]:
    """The weak prompts of the run through ``WeakModel.Complete``: served weak completions per second."""
    slots = asyncio.Semaphore(concurrency)
    completions = 0

    async def one(job: WeakJob) -> None:
        nonlocal completions
        async with slots:
            result = await client.complete(
                job.problem, reference_answer=job.answer, prefix=job.prefix, n=n, sampling=sampling_of(weak)
            )
        completions += len(result.completions)

    async with stack.client(4 * 3600) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(job) for job in jobs))
        seconds = time.perf_counter() - started
    return {
        "requests": len(jobs),
        "completions": completions,
        "seconds": seconds,
        "concurrency": concurrency,
        "completions_per_s": completions / seconds if seconds else 0.0,
    }


async def serving_overhead(
    stack: ServedStack,
    config: ServingConfig,
    problem: ProblemRecord,
    calls: int,
    max_tokens: int,
    gpu_memory_utilization: float = 0.15,
) -> dict[str, Any]:
    """Paired latencies of one Complete call served vs in-process; the differences are the overhead."""
    from cot_transfer.engine.vllm_engine import VLLMEngine
    from cot_transfer.serving.weak import WeakModelServer

    weak = config.weak.sampling
    # A fixed seed: both engines (same weights, same config) generate the same tokens.
    sampling = SamplingParams(weak.temperature, weak.top_p, max_tokens, seed=1234)
    request = CompletionRequest(
        problem=problem.problem,
        prefix="",
        n=1,
        sampling=sampling,
        reference_answer=problem.answer,
        grader=config.default_grader,
    )
    client_sampling = Sampling(sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.seed)
    engine_config = config.weak.engine
    if uses_gpu(config):
        # The served engines hold their share of the GPU; this third engine gets a small KV cache.
        engine_config = engine_config.model_copy(update={"gpu_memory_utilization": gpu_memory_utilization})
    engine = VLLMEngine(engine_config)
    started = time.perf_counter()
    await engine.start()
    start_s = time.perf_counter() - started
    block_size = int(engine.llm.vllm_config.cache_config.block_size)
    max_num_seqs = int(engine.llm.vllm_config.scheduler_config.max_num_seqs)
    server = WeakModelServer(engine, config.weak.engine.name)
    try:
        async with stack.client(120) as client:

            async def served() -> tuple[float, int]:
                began = time.perf_counter()
                result = await client.complete(
                    request.problem, reference_answer=request.reference_answer, n=1, sampling=client_sampling
                )
                return (time.perf_counter() - began) * 1000, sum(c.num_tokens for c in result.completions)

            async def direct() -> tuple[float, int]:
                began = time.perf_counter()
                result = await server.complete(request)
                return (time.perf_counter() - began) * 1000, sum(c.num_tokens for c in result.completions)

            for _ in range(5):
                await served()
                await direct()
            served_ms: list[float] = []
            direct_ms: list[float] = []
            same_tokens = 0
            for index in range(calls):
                # Alternate which goes first, so drift in the machine's load hits both alike.
                if index % 2 == 0:
                    served_result, direct_result = await served(), await direct()
                else:
                    direct_result, served_result = await direct(), await served()
                served_ms.append(served_result[0])
                direct_ms.append(direct_result[0])
                same_tokens += int(served_result[1] == direct_result[1])
    finally:
        await engine.shutdown()
    differences = [served - direct for served, direct in zip(served_ms, direct_ms, strict=True)]
    return {
        "calls": calls,
        "n": 1,
        "max_tokens": max_tokens,
        "engine_start_s": start_s,
        "block_size": block_size,
        "max_num_seqs": max_num_seqs,
        "pairs_with_equal_generated_tokens": same_tokens,
        "served_ms_p50": percentile(served_ms, 0.5),
        "served_ms_p99": percentile(served_ms, 0.99),
        "direct_ms_p50": percentile(direct_ms, 0.5),
        "direct_ms_p99": percentile(direct_ms, 0.99),
        "overhead_ms_p50": percentile(differences, 0.5),
        "overhead_ms_p99": percentile(differences, 0.99),
        "overhead_ms_mean": sum(differences) / len(differences),
    }


def locust_phase(
    stack: ServedStack, workload: Workload, problems_path: Path, n: int, max_tokens: int, out_dir: Path
) -> dict[str, Any]:
    from loadtests.names import COMPLETE
    from loadtests.run import run_locust

    extra = [
        "--complete-weight",
        "1",
        "--stream-weight",
        "0",
        "--run-weight",
        "0",
        "--n",
        str(n),
        "--max-tokens",
        str(max_tokens),
        "--problems",
        str(problems_path),
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
    entry = summary["entries"].get(COMPLETE, {})
    failures = sum(int(stats["failures"]) for stats in summary["entries"].values())
    return {
        "exit_code": code,
        "users": workload.locust_users,
        "run_time": workload.locust_run_time,
        "n": n,
        "max_tokens": max_tokens,
        "requests": entry.get("requests", 0),
        "failures": failures,
        "rps": entry.get("rps", 0.0),
        "p50_ms": entry.get("p50_ms"),
        "p99_ms": entry.get("p99_ms"),
        "reports": str(out_dir),
    }


# ---------------------------------------------------------------------------------------------
# Putting it together


def weak_prompt_groups(
    tokenizer_path: str, problems: Sequence[ProblemRecord], strong: dict[str, StrongCot]
) -> tuple[list[list[list[int]]], list[list[int]]]:
    """The weak prompts (token ids) per problem as the weak server builds them, and the prefix lengths."""
    from transformers import AutoTokenizer

    from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer

    tokenizer = HuggingFaceTokenizer(AutoTokenizer.from_pretrained(tokenizer_path))
    groups = []
    prefix_lengths = []
    for problem in problems:
        rendered = tokenizer.render_problem(problem.problem)
        prefixes = strong[problem.id].prefixes
        groups.append([tokenizer.encode(rendered + prefix.text) for prefix in prefixes])
        prefix_lengths.append([len(tokenizer.encode(prefix.text)) if prefix.text else 0 for prefix in prefixes])
    return groups, prefix_lengths


def engine_settings(config: EngineConfig) -> dict[str, int]:
    """Block size and batch limits vLLM resolves for an engine config (the platform's defaults
    included), from the same arguments ``VLLMEngine`` starts the engine with; no engine starts."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from cot_transfer.engine.vllm_engine import set_cpu_kv_cache_space, vllm_engine_arguments

    set_cpu_kv_cache_space(config)
    args = AsyncEngineArgs(**vllm_engine_arguments(config))
    resolved = args.create_engine_config()
    return {
        "block_size": int(resolved.cache_config.block_size),
        "max_num_seqs": int(resolved.scheduler_config.max_num_seqs),
        "max_num_batched_tokens": int(resolved.scheduler_config.max_num_batched_tokens),
    }


def block_size_from_metrics(ray_metrics_url: str) -> list[int]:
    try:
        text = scrape(ray_metrics_url)
    except OSError:
        return []
    return sorted({int(value) for value in metric_label_values(text, "ray_vllm_cache_config_info", "block_size")})


def uses_gpu(config: ServingConfig) -> bool:
    return config.strong.resources.num_gpus > 0 or config.weak.resources.num_gpus > 0


def timed(label: str, action: Callable[[], Any]) -> tuple[Any, float]:
    log(f"{label}...")
    started = time.perf_counter()
    value = action()
    seconds = time.perf_counter() - started
    log(f"{label}: {seconds:.1f} s")
    return value, seconds


async def timed_async(label: str, action: Any) -> tuple[Any, float]:
    log(f"{label}...")
    started = time.perf_counter()
    value = await action
    seconds = time.perf_counter() - started
    log(f"{label}: {seconds:.1f} s")
    return value, seconds


async def service_phases(
    stack: ServedStack,
    config: ServingConfig,
    workload: Workload,
    problems: Sequence[ProblemRecord],
    warmup_problem: ProblemRecord,
    args: argparse.Namespace,
    offline_enabled: bool,
    loads: dict[str, float],
) -> dict[str, Any]:
    """Every phase that needs the served stack, in one event loop."""
    strong_sampling = config.strong.sampling.settings()
    weak_sampling = config.weak.sampling.settings()
    weak_name = config.weak.engine.name
    await warm_up(stack, warmup_problem, weak_sampling, strong_sampling)
    before = await asyncio.to_thread(settled_counters, stack.metrics_url, weak_name)
    tokens_before = await asyncio.to_thread(weak_token_counters, stack.metrics_url, weak_name)
    loads["served_start"] = load_average()
    roots = [os.getpid(), stack.pid]
    cpu_before = process_cpu_seconds(roots)
    served, _ = await timed_async(
        f"served run ({len(problems)} problems x {len(workload.fractions)} fractions x n={workload.n})",
        served_run(stack, problems, workload.fractions, workload.n, strong_sampling, weak_sampling),
    )
    loads["served_end"] = load_average()
    cpu_during_served = cpu_by_process(cpu_before, process_cpu_seconds(roots))
    after = await asyncio.to_thread(settled_counters, stack.metrics_url, weak_name)
    tokens_after = await asyncio.to_thread(weak_token_counters, stack.metrics_url, weak_name)
    ray_metrics_url = f"http://127.0.0.1:{config.metrics_port}/metrics"
    phases: dict[str, Any] = {
        "served": served,
        "prefill_delta": after.minus(before),
        "cpu_seconds_by_process": cpu_during_served,
        "weak_tokens": {key: tokens_after[key] - tokens_before[key] for key in tokens_after},
        "metric_block_sizes": await asyncio.to_thread(block_size_from_metrics, ray_metrics_url),
        "replay": None,
        "overhead": None,
        "locust": None,
    }
    if offline_enabled:
        jobs = weak_jobs(problems, served.strong)
        phases["replay"], _ = await timed_async(
            "served weak replay (WeakModel.Complete on the run's prompts)",
            served_weak_replay(stack, jobs, workload.n, weak_sampling, config.ingress.max_concurrent_completions),
        )
    if not args.skip_overhead:
        phases["overhead"], _ = await timed_async(
            "serving overhead (served vs in-process Complete)",
            serving_overhead(
                stack,
                config,
                problems[0],
                workload.overhead_calls,
                workload.overhead_max_tokens,
                args.overhead_gpu_memory,
            ),
        )
    if not args.skip_locust:
        loads["locust_start"] = load_average()
        phases["locust"], _ = await timed_async(
            "locust on WeakModel.Complete",
            asyncio.to_thread(
                locust_phase,
                stack,
                workload,
                args.problems,
                workload.n,
                weak_sampling.max_tokens,
                args.artifacts / "locust",
            ),
        )
        loads["locust_end"] = load_average()
    return phases


def run(args: argparse.Namespace) -> dict[str, Any]:
    workload = QUICK if args.quick else STANDARD
    workload = replace(
        workload,
        num_problems=args.problems_count or workload.num_problems,
        naive_problems=args.naive_problems or workload.naive_problems,
        locust_run_time=args.locust_run_time or workload.locust_run_time,
        locust_users=args.locust_users or workload.locust_users,
    )
    artifacts = args.artifacts
    artifacts.mkdir(parents=True, exist_ok=True)
    config_path, config = prepare_config(args.config, artifacts, args.set)
    device = "cuda" if uses_gpu(config) else "cpu"
    offline_enabled = args.offline_compare or device == "cuda"
    problems = load_problems(args.problems)[: workload.num_problems]
    if len(problems) < workload.num_problems:
        raise SystemExit(
            f"bench: {args.problems} holds {len(problems)} problems, the workload needs {workload.num_problems}"
        )
    warmup_problem = load_problems(WARMUP_PROBLEMS)[0]
    strong_sampling = config.strong.sampling.settings()
    weak_sampling = config.weak.sampling.settings()
    machine = machine_info()
    others = wait_for_other_ray_clusters(args.max_wait_other_ray)
    machine["load_before"] = load_average()
    if others:
        log(f"warning: raylet processes still running here ({' '.join(others)}): timings will be skewed")
    machine["other_raylets_at_start"] = len(others)
    loads: dict[str, float] = {"start": load_average()}

    stack = ServedStack(config_path, artifacts / "serve.log", config.auth_token_env)
    try:
        _, start_s = timed("starting the served stack", stack.start)
        phases = asyncio.run(
            service_phases(stack, config, workload, problems, warmup_problem, args, offline_enabled, loads)
        )
    finally:
        timed("stopping the served stack", stack.stop)
    served: ServedRun = phases["served"]
    prefill_delta: PrefixCacheCounters = phases["prefill_delta"]
    metric_block_sizes: list[int] = phases["metric_block_sizes"]
    replay: dict[str, Any] | None = phases["replay"]
    overhead: dict[str, Any] | None = phases["overhead"]
    locust: dict[str, Any] | None = phases["locust"]
    weak_tokens: dict[str, float] = phases["weak_tokens"]
    cpu_during_served: dict[str, float] = phases["cpu_seconds_by_process"]
    jobs = weak_jobs(problems, served.strong)

    offline = None
    if offline_enabled:
        from benchmarks.offline import offline_completions_per_s

        groups, prefix_lengths = weak_prompt_groups(config.weak.engine.model, problems, served.strong)
        prompts = [prompt for group in groups for prompt in group]
        budgets = [weak_budget(length, weak_sampling.max_tokens) for lengths in prefix_lengths for length in lengths]
        offline, _ = timed(
            "offline LLM.generate on the weak prompts",
            lambda: offline_completions_per_s(config.weak.engine, prompts, budgets, workload.n, weak_sampling),
        )

    # The naive baseline, with the served stack down so it has the machine to itself.
    subset_ids = {problem.id for problem in spread_subset(problems, workload.naive_problems)}
    subset_problems = [problem for problem in problems if problem.id in subset_ids]
    subset_jobs = [job for job in jobs if job.problem_id in subset_ids]
    loads["naive_start"] = load_average()
    if args.skip_naive:
        naive_weak, naive_strong = NaiveTiming(), NaiveTiming()
    else:
        naive_weak, naive_strong = run_naive(config, device, subset_problems, subset_jobs, workload.n)
    loads["naive_end"] = load_average()

    # Prefill accounting.
    groups, _ = weak_prompt_groups(config.weak.engine.model, problems, served.strong)
    weak_engine = engine_settings(config.weak.engine)
    block_size: int | None = weak_engine["block_size"]
    prefill: dict[str, Any] = {
        "weak_model": config.weak.engine.name,
        "queries_tokens": prefill_delta.queries,
        "hits_tokens": prefill_delta.hits,
        "computed_tokens": prefill_delta.computed,
        "weak_engine": weak_engine,
        "block_size_of_the_in_process_engine": overhead["block_size"] if overhead is not None else None,
        "block_sizes_from_vllm_cache_config_info": metric_block_sizes,
    }
    prefill_ratio = None
    if block_size:
        bound = prefill_lower_bound(groups, int(block_size), workload.n)
        distinct = prefill_lower_bound(groups, int(block_size), 1)
        prefill.update(
            {
                "block_size": int(block_size),
                "prompt_tokens_expected": bound.prompt_tokens,
                "lower_bound_tokens": bound.lower_bound,
                "distinct_prompts": distinct.prompts,
                "distinct_prompt_tokens": distinct.prompt_tokens,
                "distinct_prompt_lower_bound_tokens": distinct.lower_bound,
                "ratio_vs_distinct_prompt_bound": prefill_delta.computed / distinct.lower_bound,
                "ratio_vs_no_cache": prefill_delta.computed / bound.prompt_tokens,
            }
        )
        prefill_ratio = prefill_delta.computed / bound.lower_bound

    # Throughput and the extrapolated baseline.
    total_rows = len(served.rows)
    total_samples = sum(row.n for row in served.rows)
    naive_weak_total_s = naive_weak.seconds_per_sample * total_samples
    naive_strong_total_s = (naive_strong.seconds / max(1, naive_strong.rows)) * len(problems)
    naive_total_s = naive_weak_total_s + naive_strong_total_s
    served_block = {
        "seconds": served.seconds,
        "strong_cots_done_s": served.strong_done_s,
        "problems": len(problems),
        "rows": total_rows,
        "samples": total_samples,
        "rows_per_s": total_rows / served.seconds,
        "samples_per_s": total_samples / served.seconds,
        "strong_solve_rate": served.summary.strong_solve_rate if served.summary is not None else None,
        "weak_potential_mean": (sum(row.num_correct for row in served.rows) / total_samples if total_samples else None),
        "stack_start_s": start_s,
        "weak_engine_tokens": weak_tokens,
        "weak_generated_tokens_per_s": weak_tokens["generation_tokens"] / served.seconds,
        # This run's processes only (the harness, the serve command and its descendants).
        "cpu_seconds_by_process": cpu_during_served,
    }
    naive_block = {
        "backend": f"transformers generate ({device})",
        "strong_cots": "the served run's strong CoTs are reused as the weak prompts (identical prompts); "
        "one transformers CoT per subset problem is also generated and timed for the strong model's share",
        "subset_problems": [problem.id for problem in subset_problems],
        "torch_threads": naive_weak.threads,
        "subset_rows": naive_weak.rows,
        "subset_samples": naive_weak.samples,
        "subset_weak_seconds": naive_weak.seconds,
        "subset_strong_seconds": naive_strong.seconds,
        "weak_seconds_per_sample": naive_weak.seconds_per_sample,
        "subset_weak_generated_tokens": naive_weak.generated_tokens,
        "weak_generated_tokens_per_s": naive_weak.generated_tokens / naive_weak.seconds if naive_weak.seconds else None,
        "strong_seconds_per_problem": naive_strong.seconds / max(1, naive_strong.rows),
        "weak_potential_mean_subset": naive_weak.correct / naive_weak.samples if naive_weak.samples else None,
        "extrapolated_weak_seconds": naive_weak_total_s,
        "extrapolated_strong_seconds": naive_strong_total_s,
        "extrapolated": naive_weak.rows < total_rows,
        "extrapolated_seconds": naive_total_s,
        "extrapolated_rows_per_s": total_rows / naive_total_s if naive_total_s else None,
        "extrapolated_samples_per_s": total_samples / naive_total_s if naive_total_s else None,
    }
    speedup = naive_total_s / served.seconds if served.seconds and naive_total_s else None
    machine["load_after"] = load_average()
    command = "python -m benchmarks.bench" + ("" if len(sys.argv) <= 1 else " " + " ".join(sys.argv[1:]))
    results = {
        "speedup_vs_naive": speedup,
        "prefill_ratio": prefill_ratio,
        "serve_overhead_ms_p50": overhead["overhead_ms_p50"] if overhead is not None else None,
        "serve_overhead_ms_p99": overhead["overhead_ms_p99"] if overhead is not None else None,
        "locust_rps": locust["rps"] if locust is not None else None,
        "locust_failures": locust["failures"] if locust is not None else None,
        "run": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": args.command_label.strip() or command,
            "workload_name": workload.name,
            "workload": asdict(workload),
            "device": device,
            "config": str(args.config),
            "config_overrides": list(args.set),
            "problems_file": str(args.problems),
            "strong_sampling": asdict(strong_sampling),
            "weak_sampling": asdict(weak_sampling),
            "max_concurrent_completions": config.ingress.max_concurrent_completions,
        },
        "machine": machine,
        "load_average_1m": loads,
        "served": served_block,
        "naive": naive_block,
        "speedup_weak_only_vs_naive": (
            naive_weak_total_s / served.seconds if served.seconds and naive_weak_total_s else None
        ),
        "prefill": prefill,
        "overhead": overhead,
        "locust": locust,
        "offline": None,
    }
    if offline is not None and replay is not None:
        results["offline"] = {
            "served_weak": replay,
            "offline_llm_generate": offline,
            "served_vs_offline": replay["completions_per_s"] / offline["completions_per_s"]
            if offline["completions_per_s"]
            else None,
        }
    results["summary_lines"] = summary_lines(results)
    return results


def run_naive(
    config: ServingConfig, device: str, problems: Sequence[ProblemRecord], jobs: Sequence[WeakJob], n: int
) -> tuple[NaiveTiming, NaiveTiming]:
    import torch

    torch.manual_seed(0)
    torch_device = "cuda" if device == "cuda" else "cpu"
    strong_model = HuggingFaceModel(config.strong.engine.model, torch_device, config.strong.engine.dtype)
    weak_model = HuggingFaceModel(config.weak.engine.model, torch_device, config.weak.engine.dtype)
    # Untimed calls first: the first generate pays for lazy initialisation, and the thread count
    # that suits this machine now is chosen for the baseline.
    threads = best_thread_count(weak_model, problems[0].problem, n, config.weak.sampling.settings())
    log(f"naive baseline: torch threads {threads}")
    strong_model.sample(strong_model.prompt_ids(problems[0].problem), 1, config.strong.sampling.settings(), 4)
    strong, _ = timed(
        f"naive strong CoTs ({len(problems)} problems)",
        lambda: time_strong(strong_model, [problem.problem for problem in problems], config.strong.sampling.settings()),
    )
    weak, _ = timed(
        f"naive weak completions ({len(jobs)} rows x n={n})",
        lambda: time_weak(weak_model, jobs, n, config.weak.sampling.settings(), config.default_grader),
    )
    weak.threads = threads
    return weak, strong


def summary_lines(results: dict[str, Any]) -> list[str]:
    served = results["served"]
    naive = results["naive"]
    lines = [
        f"Served: {served['rows']} rows ({served['samples']} weak samples) in {served['seconds']:.1f} s ="
        f" {served['rows_per_s']:.2f} rows/s, {served['samples_per_s']:.1f} samples/s"
        f" (strong CoTs all done at {served['strong_cots_done_s']:.1f} s)."
    ]
    if naive["subset_rows"]:
        lines.append(
            f"Naive (transformers, one prefix after another, {naive['torch_threads'].get('threads')} torch threads):"
            f" {naive['subset_rows']} rows of {len(naive['subset_problems'])} problems in"
            f" {naive['subset_weak_seconds']:.1f} s ({naive['weak_seconds_per_sample'] * 1000:.1f} ms per sample)"
            f" + {naive['subset_strong_seconds']:.1f} s of strong CoTs"
            + (
                f"; the whole workload: {naive['extrapolated_seconds']:.0f} s"
                if naive["subset_rows"] == served["rows"]
                else f"; extrapolated per sample to the whole workload: {naive['extrapolated_seconds']:.0f} s"
            )
            + f" ({naive['extrapolated_rows_per_s']:.2f} rows/s)."
            f" Weak-only speedup: {results['speedup_weak_only_vs_naive']:.1f}x."
        )
    prefill = results["prefill"]
    if "lower_bound_tokens" in prefill:
        lines.append(
            f"Weak prefill: {prefill['computed_tokens']:.0f} tokens computed (queries {prefill['queries_tokens']:.0f}"
            f" - hits {prefill['hits_tokens']:.0f}) vs a lower bound of {prefill['lower_bound_tokens']} at block size"
            f" {prefill['block_size']} ({prefill['prompt_tokens_expected']} prompt tokens without any cache;"
            f" {prefill['distinct_prompt_lower_bound_tokens']} for the distinct prompts alone)."
        )
    overhead = results["overhead"]
    if overhead is not None:
        lines.append(
            f"Overhead: Complete (n=1, {overhead['max_tokens']} new tokens) served p50"
            f" {overhead['served_ms_p50']:.1f} ms vs in-process p50 {overhead['direct_ms_p50']:.1f} ms,"
            f" {overhead['calls']} interleaved pairs."
        )
    locust = results["locust"]
    if locust is not None:
        lines.append(
            f"Locust: {locust['users']} users for {locust['run_time']}, Complete n={locust['n']}:"
            f" {locust['requests']} requests, p50 {locust['p50_ms']} ms, p99 {locust['p99_ms']} ms."
        )
    offline = results["offline"]
    if offline is not None:
        lines.append(
            f"Served weak completions/s {offline['served_weak']['completions_per_s']:.1f} vs offline LLM.generate"
            f" {offline['offline_llm_generate']['completions_per_s']:.1f}: {offline['served_vs_offline']:.0%}."
        )
    loads = results["load_average_1m"]
    lines.append("Load average (1 min) at phase boundaries: " + ", ".join(f"{k} {v}" for k, v in loads.items()) + ".")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-size workload (4 problems x 3 fractions x n=4)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="serving config (a GPU one runs on CUDA)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. weak.engine.engine_kwargs.block_size=32 (repeatable)",
    )
    parser.add_argument("--problems", type=Path, default=DEFAULT_PROBLEMS, help="JSONL problems")
    parser.add_argument("--problems-count", type=int, default=0, help="override the workload's problem count")
    parser.add_argument("--naive-problems", type=int, default=0, help="problems the naive baseline is timed on")
    parser.add_argument("--locust-users", type=int, default=0, help="override the locust users")
    parser.add_argument("--locust-run-time", default="", help="override the locust duration (e.g. 60s)")
    parser.add_argument(
        "--max-wait-other-ray",
        type=float,
        default=900.0,
        help="seconds to wait for another local Ray cluster to stop before starting (then go on, warned)",
    )
    parser.add_argument("--skip-overhead", action="store_true", help="skip the serving-overhead phase")
    parser.add_argument(
        "--overhead-gpu-memory",
        type=float,
        default=0.15,
        help="GPU only: memory share of the overhead phase's in-process engine (the stack holds the rest)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive baseline (no speedup)")
    parser.add_argument("--skip-locust", action="store_true", help="skip the locust phase")
    parser.add_argument(
        "--offline-compare", action="store_true", help="also compare with offline LLM.generate (always on a GPU)"
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results.json)")
    parser.add_argument("--doc", type=Path, default=None, help="Markdown file whose results section is rewritten")
    parser.add_argument("--no-doc", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS, help="serve log, locust reports")
    parser.add_argument("--command-label", default="", help="how the run is named in the results (e.g. make bench)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = DEFAULT_OUT if not args.quick else REPO / "benchmarks" / "results-quick.json"
    results = run(args)
    written = write_results(args.out, results)
    if not args.no_doc and (args.doc is not None or not args.quick):
        update_doc(args.doc or DEFAULT_DOC, markdown_section(written))
    for line in written["summary_lines"]:
        print(line)
    print({key: written[key] for key in list(written)[:6]})
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
