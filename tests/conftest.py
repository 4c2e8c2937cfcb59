"""Shared fixtures: the real stack, started once per session through `cot-transfer serve`, and the
service's own RPC bodies in process (``InProcessService``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2_grpc

from benchmarks.ports import free_port
from cot_transfer.cli.serve import read_start_lines
from cot_transfer.client import CotTransferClient
from cot_transfer.domain.requests import CompletionRequest, CompletionResult, FractionResult, TransferRequest
from cot_transfer.engine.base import Engine
from cot_transfer.serving.common.serving_config import DEFAULT_FORCE_ANSWER_MAX_TOKENS, ServingConfig
from cot_transfer.serving.dataplane.fanout import TransferEvent, TransferRunner, by_receiver
from cot_transfer.serving.edge.rpc import TransferService
from cot_transfer.serving.replicas.receiver_server import ReceiverServer
from cot_transfer.serving.replicas.strong_server import StrongModelServer
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from tests.fakes import ScriptedEngine

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


LOCAL_CONFIG = ServingConfig.from_yaml(REPO / "configs" / "local-cpu.yaml")
# The scripted models of the default in-process service: the strong one reasons to 3, the weak one answers 3.
IN_PROCESS_MAX_MODEL_LEN = 512


class InProcessService:
    """The service without Ray: its own ``TransferService`` (the RPC bodies, edge.rpc) over its
    fan-out and replica servers on scripted engines, served by a grpc.aio server in this process.

    ``receiver_engines``: served name -> the engine that completes its prefixes (the weak model's
    name at least; the strong model's engine under its name measures self-potential)."""

    def __init__(
        self,
        strong_engine: Engine,
        receiver_engines: Mapping[str, Engine],
        config: ServingConfig = LOCAL_CONFIG,
        force_answer_max_tokens: Mapping[str, int] | None = None,
    ) -> None:
        self.strong = StrongModelServer(strong_engine, config.strong.engine.name)
        limits = force_answer_max_tokens or {}
        self.receivers = {
            name: ReceiverServer(
                engine, name, force_answer_max_tokens=limits.get(name, DEFAULT_FORCE_ANSWER_MAX_TOKENS)
            )
            for name, engine in receiver_engines.items()
        }
        self._names = (config.strong.engine.name, *receiver_engines)
        # What the service was asked: every Run (as the fan-out got it) and every completion a
        # receiver drew, through Complete or a run.
        self.runs: list[TransferRequest] = []
        self.completions: list[CompletionRequest] = []
        self._complete = by_receiver(
            {name: server.complete for name, server in self.receivers.items()},
            self.receivers[config.weak.engine.name].complete,
        )
        self.runner = TransferRunner(
            self.strong.stream_prefixes, self._recorded_complete, max_concurrent_completions=8, limits=config.limits
        )
        self.servicer = TransferService(
            config,
            strong_events=self.strong.stream_prefixes,
            complete=self._recorded_complete,
            run_events=self._recorded_run,
            fingerprints=self._fingerprints,
            models_serving=self._serving,
        )
        self._server: grpc.aio.Server | None = None
        self.address = ""

    @property
    def run_problems(self) -> list[list[str]]:
        """The problem ids of each Run, in order."""
        return [[problem.id for problem in run.problems] for run in self.runs]

    async def until_in_flight(self, calls: int, what: str, within_s: float = 5.0) -> None:
        """Waits until the servicer has ``calls`` calls in flight (``what`` names them if they never start)."""
        deadline = time.monotonic() + within_s
        while self.servicer.in_flight() < calls:
            assert time.monotonic() < deadline, f"{what} never started"
            await asyncio.sleep(0.01)

    async def _recorded_complete(self, request: CompletionRequest) -> CompletionResult:
        self.completions.append(request)
        return await self._complete(request)

    def _recorded_run(self, request: TransferRequest) -> AsyncIterator[TransferEvent]:
        self.runs.append(request)
        return self.runner.run(request)

    async def _fingerprints(self) -> dict[str, str]:
        return {name: f"f-{name}" for name in self._names}

    async def _serving(self) -> bool:
        return True

    async def __aenter__(self) -> InProcessService:
        self._server = grpc.aio.server()
        pb_grpc.add_StrongModelServicer_to_server(self.servicer, self._server)
        pb_grpc.add_WeakModelServicer_to_server(self.servicer, self._server)
        pb_grpc.add_TransferServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._server is not None:
            await self._server.stop(None)


async def killed_after_rows(
    rows: int, run: Callable[[Callable[[FractionResult], None]], Coroutine[Any, Any, object]]
) -> None:
    """A client killed mid-run: starts ``run`` (given its on_row callback) and cancels it once
    ``rows`` rows are written."""
    written = 0
    enough = asyncio.Event()

    def on_row(row: FractionResult) -> None:
        nonlocal written
        written += 1
        if written >= rows:
            enough.set()

    task = asyncio.create_task(run(on_row))
    await enough.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
async def in_process_service() -> AsyncIterator[InProcessService]:
    """The default in-process service: the strong model writes "1+2 makes 3. Answer: 3", the weak
    model answers 3."""
    strong = ScriptedEngine(["1+2 makes 3. Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
    weak = ScriptedEngine(["Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
    async with InProcessService(strong, {LOCAL_CONFIG.weak.engine.name: weak}) as service:
        yield service


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
    Ray node endpoint of such a cluster (by default the local node's, on the config's port).
    A stack on ports of its own choosing starts again on new ports when another process took one
    of them (the command then exits naming the port, see ``PortUnavailableError``)."""
    attempts = 1 if config_path is not None else PORT_ATTEMPTS
    for attempt in range(1, attempts + 1):
        path = config_path or make_test_config(tmp_dir, overrides)
        process, printed = _start_serve(tmp_dir, path, env)
        if printed is not None:
            break
        if attempt == attempts or PORT_TAKEN not in _tail(tmp_dir / "serve.log"):
            raise RuntimeError(f"cot-transfer serve exited with {process.returncode}: \n{_tail(tmp_dir / 'serve.log')}")
    assert printed is not None
    try:
        metrics_port = yaml.safe_load(path.read_text())["metrics_port"]
        service = RunningService(
            address=printed["grpc"],
            metrics_url=printed["metrics"],
            ray_metrics_url=ray_metrics_url or f"http://127.0.0.1:{metrics_port}/metrics",
            application="cot_transfer",
            config_path=path,
            log_path=tmp_dir / "serve.log",
            token=TEST_TOKEN,
        )
        yield ServeProcess(service, process)
    finally:
        _stop(process)


# What `cot-transfer serve` prints when a configured port is taken (cot_transfer.serving.wiring.local).
PORT_TAKEN = "is not free"
PORT_ATTEMPTS = 3


def _start_serve(
    tmp_dir: Path, config_path: Path, env: dict[str, str] | None
) -> tuple[subprocess.Popen[str], dict[str, str] | None]:
    """The started command and the lines it printed once up; None for them when it exited first."""
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
        return process, read_start_lines(process, ("grpc", "metrics"), SERVE_START_TIMEOUT_S)
    except RuntimeError:
        if process.poll() is None:
            raise
        return process, None
    except BaseException:
        _stop(process)
        raise


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The stack most integration tests share, started once per session."""
    with serve_stack(tmp_path_factory.mktemp("service")) as running:
        yield running.service


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests with a stack of their own run first: two local Ray clusters at once would starve a
    2-core machine, and the shared stack starts lazily, with the first test that needs it."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("own_stack") else 1)


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
