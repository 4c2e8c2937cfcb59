"""Shared fixtures: the real stack, started once per session through `cot-transfer serve`."""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
import yaml

from cot_transfer.client import CotTransferClient

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
# Another serving config for the integration tests (e.g. GPU models) can be named here.
CONFIG_ENV = "COT_TRANSFER_TEST_CONFIG"
SERVE_START_TIMEOUT_S = 600
TOKEN_ENV = "COT_TRANSFER_TEST_TOKEN"
TEST_TOKEN = secrets.token_urlsafe(16)
# Replicas and handles report load to Serve's autoscaler every 10 s by default; the local
# cluster's processes inherit these from the serve command.
FAST_AUTOSCALING_ENV = {
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
}


@dataclass(frozen=True)
class RunningService:
    address: str
    metrics_url: str
    # Ray's own exposition of the (single) local node: Serve's replica metrics live there.
    ray_metrics_url: str
    application: str
    config_path: Path
    log_path: Path
    # Every call but the health check must carry it: the stack runs with auth on.
    token: str = ""

    def client(self, timeout_s: float = 300) -> CotTransferClient:
        return CotTransferClient(self.address, application=self.application, timeout_s=timeout_s, token=self.token)

    def cli(self, command: str, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        """``cot-transfer COMMAND --address <this service> ARGS`` from a second process, as a user runs it."""
        return subprocess.run(
            [sys.executable, "-m", "cot_transfer.cli.main", command, "--address", self.address, *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=REPO,
            env={**os.environ, "COT_TRANSFER_TOKEN": self.token},
        )


# Ray's metrics agents export every 10 s: a counter unchanged for longer has shown all earlier work.
SETTLE_S = 14.0


def settled(read: Callable[[], T], timeout_s: float = 120.0) -> T:
    """``read()`` once it has returned the same value for ``SETTLE_S``: exported counters lag the
    work, and a session's service may just have served an earlier test's."""
    last, since, deadline = read(), time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(2.0)
        current = read()
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= SETTLE_S:
            return last
    raise AssertionError(f"the counters did not settle in {timeout_s} s: {last}")


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``, the deepest first (the order to kill them in)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [grandchild for child in map(int, children) for grandchild in [*descendants(child), child]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_test_config(tmp_dir: Path, overrides: dict[str, Any] | None = None) -> Path:
    """The local CPU config on free ports, with absolute model paths; ``overrides`` are merged in."""
    source = Path(os.environ.get(CONFIG_ENV, REPO / "configs" / "local-cpu.yaml"))
    data = yaml.safe_load(source.read_text())
    data["grpc_port"] = free_port()
    data["http_port"] = free_port()
    data["metrics_port"] = free_port()
    data["auth_token_env"] = TOKEN_ENV
    # The weak deployment may grow to a second replica under load (tests/integration/test_autoscaling.py);
    # short delays keep that test brief.
    data["weak"]["autoscaling"] = {
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 2,
        "upscale_delay_s": 2,
        "downscale_delay_s": 10,
        "look_back_period_s": 3,
    }
    _merge(data, overrides or {})
    for role in ("strong", "weak"):
        model = Path(data[role]["engine"]["model"])
        if not model.is_absolute():
            data[role]["engine"]["model"] = str((source.parent / model).resolve())
    path = tmp_dir / "serving.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _merge(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            _merge(data[key], value)
        else:
            data[key] = value


@dataclass(frozen=True)
class ServeProcess:
    """A running ``cot-transfer serve``; ``stop`` sends SIGINT and waits for the drain and shutdown."""

    service: RunningService
    process: subprocess.Popen[str]

    def stop(self, timeout_s: float = 180) -> int:
        return _stop(self.process, timeout_s)


def _stop(process: subprocess.Popen[str], timeout_s: float = 180) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextlib.contextmanager
def serve_stack(
    tmp_dir: Path,
    overrides: dict[str, Any] | None = None,
    *,
    config_path: Path | None = None,
    env: dict[str, str] | None = None,
    ray_metrics_url: str | None = None,
) -> Iterator[ServeProcess]:
    """`cot-transfer serve` in a subprocess, as a user would start it; stopped with SIGINT.

    ``config_path`` serves a prepared config (``overrides`` then do not apply), ``env`` adds to the
    command's environment (e.g. RAY_ADDRESS of a cluster to join), and ``ray_metrics_url`` is the
    Ray node endpoint of such a cluster (by default the local node's, on the config's port)."""
    config_path = config_path or make_test_config(tmp_dir, overrides)
    log_path = tmp_dir / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cot_transfer.cli.main", "serve", "--config", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=REPO,
            env={**os.environ, **FAST_AUTOSCALING_ENV, TOKEN_ENV: TEST_TOKEN, **(env or {})},
        )
        try:
            printed = _wait_for_start_lines(process, log_path, ("grpc", "metrics"))
            metrics_port = yaml.safe_load(config_path.read_text())["metrics_port"]
            service = RunningService(
                address=printed["grpc"],
                metrics_url=printed["metrics"],
                ray_metrics_url=ray_metrics_url or f"http://127.0.0.1:{metrics_port}/metrics",
                application="cot_transfer",
                config_path=config_path,
                log_path=log_path,
                token=TEST_TOKEN,
            )
            yield ServeProcess(service, process)
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The stack most integration tests share, started once per session."""
    with serve_stack(tmp_path_factory.mktemp("service")) as running:
        yield running.service


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests with a stack of their own run first: two local Ray clusters at once would starve a
    2-core machine, and the shared stack starts lazily, with the first test that needs it."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("own_stack") else 1)


def _wait_for_start_lines(process: subprocess.Popen[str], log_path: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """Reads `KEY: VALUE` lines from the serve command's stdout until every key was printed."""
    lines: queue.Queue[str] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        # A thread, not select(): select cannot see lines already sitting in the reader's buffer.
        for line in stream:
            lines.put(line)

    assert process.stdout is not None
    threading.Thread(target=pump, args=(process.stdout,), daemon=True).start()
    printed: dict[str, str] = {}
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while time.monotonic() < deadline and not set(keys) <= set(printed):
        if process.poll() is not None and lines.empty():
            raise RuntimeError(f"cot-transfer serve exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            key, _, value = lines.get(timeout=1.0).partition(": ")
        except queue.Empty:
            continue
        if key in keys:
            printed[key] = value.strip()
    if not set(keys) <= set(printed):
        raise TimeoutError(f"cot-transfer serve did not print {keys} in {SERVE_START_TIMEOUT_S} s:\n{_tail(log_path)}")
    return printed


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
