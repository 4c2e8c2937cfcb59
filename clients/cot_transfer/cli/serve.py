"""`cot-transfer serve` and `demo`: the local Ray Serve + vLLM stack, which only the server extras install.

The serving packages are imported inside the commands, never at module import, so that the
client-only install (`pip install cot-transfer`) runs `run` and `report` and answers `serve` with
the extra to install instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from cot_transfer.cli.run import run_command
from cot_transfer.experiment.run_folder import clear_folder

# Paths relative to the working directory (the repository root in a checkout), never to where
# this package is installed: an installed CLI has no repository around it.
DEFAULT_CONFIG = Path("configs/local-cpu.yaml")
DEMO_PROBLEMS = Path("datasets/testbed-demo.jsonl")
RAY_LOGS = "/tmp/ray/session_latest/logs"
SERVER_INSTALL_HINT = "pip install 'cot-transfer[serve,cpu]' (or 'cot-transfer[serve,gpu]' on a CUDA machine)"


class ServerNotInstalledError(Exception):
    """The server's packages (the `serve` extra and an engine extra) are missing from this environment."""


class ServeStartError(Exception):
    """The local stack could not start for a reason the user can fix (e.g. a configured port is taken)."""


def _start_local(local: ModuleType, serving_config: object, **options: object) -> Any:
    try:
        return local.start_local(serving_config, **options)
    except local.PortUnavailableError as error:
        raise ServeStartError(f"serving config: {error}") from None


def _serving_modules() -> tuple[ModuleType, ModuleType]:
    """The serving config and local-start modules, or ``ServerNotInstalledError`` naming the extra."""
    try:
        from cot_transfer.serving.common import serving_config as config
        from cot_transfer.serving.wiring import local
    except ModuleNotFoundError as error:
        # A missing module of this project is a broken install, not a missing extra: let it show.
        if error.name is None or error.name.split(".")[0] == "cot_transfer":
            raise
        raise ServerNotInstalledError(
            f"`cot-transfer serve` and `demo` need the server, which is not installed here"
            f" ({error.name} is missing): {SERVER_INSTALL_HINT}"
        ) from None
    # vLLM is imported only once a replica starts its engine; a stack without it would start Ray
    # and then fail in every replica, so check for it before starting anything.
    if importlib.util.find_spec("vllm") is None:
        raise ServerNotInstalledError(f"the serving engine (vllm) is not installed: {SERVER_INSTALL_HINT}")
    return config, local


def _config_path(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"no serving config at {path} (relative to {Path.cwd()}); pass --config FILE")
    return path


def read_start_lines(
    process: subprocess.Popen[str], keys: tuple[str, ...], timeout_s: float, log_hint: Callable[[], str] = str
) -> dict[str, str]:
    """The ``KEY: VALUE`` lines a `cot-transfer serve` started as ``process`` prints once it is up
    (``grpc``, ``metrics``, ...), read from its stdout until every key in ``keys`` was printed.
    ``log_hint`` adds where to look to the error when it exits or stays silent."""
    lines: queue.Queue[str] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        # A thread, not select(): select cannot see lines already sitting in the reader's buffer.
        for line in stream:
            lines.put(line)

    assert process.stdout is not None
    threading.Thread(target=pump, args=(process.stdout,), daemon=True).start()
    printed: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not set(keys) <= set(printed):
        if process.poll() is not None and lines.empty():
            raise RuntimeError(f"cot-transfer serve exited with {process.returncode}: {log_hint()}")
        try:
            key, _, value = lines.get(timeout=1.0).partition(": ")
        except queue.Empty:
            continue
        if key in keys:
            printed[key] = value.strip()
    if not set(keys) <= set(printed):
        raise TimeoutError(f"cot-transfer serve did not print {keys} in {timeout_s:g} s: {log_hint()}")
    return printed


def serve_command(config_path: Path, log_level: str) -> int:
    config, local = _serving_modules()
    stack = _start_local(local, config.ServingConfig.from_yaml(_config_path(config_path)), log_level=log_level)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"grpc: {stack.grpc_address}", flush=True)
    print(f"metrics: {stack.metrics_url}", flush=True)
    print(f"logs: {RAY_LOGS} (replica logs; -v shows them here)", flush=True)
    try:
        stop.wait()
    finally:
        print(
            f"shutting down: draining calls in flight (up to {stack.drain_timeout_s:g} s)", file=sys.stderr, flush=True
        )
        drained = stack.shutdown()
        outcome = drained.describe() if drained else "shut down without draining (see the log)"
        print(outcome, file=sys.stderr, flush=True)
    return 0


def demo_command(args: argparse.Namespace) -> int:
    config, local = _serving_modules()
    serving_config = config.ServingConfig.from_yaml(_config_path(args.config))
    if args.problems is None and not DEMO_PROBLEMS.is_file():
        raise FileNotFoundError(f"no demo problems at {DEMO_PROBLEMS} (relative to {Path.cwd()}); pass --problems FILE")
    clear_folder(args.out)  # under the folder's lock: refused while another process writes it
    print("starting Ray Serve with two vLLM engines on CPU (about a minute)...", file=sys.stderr, flush=True)
    stack = _start_local(local, serving_config)
    print(f"grpc: {stack.grpc_address}", flush=True)
    try:
        return asyncio.run(run_command(stack.grpc_address, stack.application, args, default_problems=DEMO_PROBLEMS))
    finally:
        stack.shutdown()
