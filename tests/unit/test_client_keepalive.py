"""No silent hangs on the client side: a connection that goes quiet under a stream is found by
keepalive and fails retryable, a run finishes from disk after it, single-response calls have a
deadline, and the keepalive the client sends is one the server takes.

A real grpc.aio server sits behind a TCP proxy in this process that can go quiet: it stops
forwarding in both directions and keeps the sockets open (no FIN, no reset), as a connection does
whose NAT entry or peer vanished. No Ray, no engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cot_transfer.client import CotTransferClient, Keepalive, RetryPolicy, RpcFailedError
from cot_transfer.client.client import UNARY_TIMEOUT_S
from cot_transfer.client.keepalive import GRPC_SERVER_MIN_PING_INTERVAL_S
from cot_transfer.domain.requests import Problem, ProblemError
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from tests.conftest import IN_PROCESS_MAX_MODEL_LEN, LOCAL_CONFIG, InProcessService
from tests.fakes import ScriptedEngine

# Short enough for a test; the server is told to take pings this often (as a deployment whose
# client pings more often than every 5 minutes must tell its server).
KEEPALIVE = Keepalive(time_s=1.0, timeout_s=1.0)
SERVER_OPTIONS = [("grpc.http2.min_ping_interval_without_data_ms", round(KEEPALIVE.time_s * 1000))]
# A ping is due within time_s of the silence starting and is given up timeout_s later; the rest
# is room for a busy machine.
DETECTION_BOUND_S = KEEPALIVE.time_s + KEEPALIVE.timeout_s + 2.0
# What a hang would take instead: the test fails here rather than hanging.
HANG_S = 30.0


class QuietingProxy:
    """Forwards TCP connections to ``backend_port`` until ``go_quiet``: from then on the
    connections open at that moment forward nothing more, either way, and stay open. Connections
    made later are forwarded as usual (the network path came back)."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self._quiet: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.address = ""

    async def __aenter__(self) -> QuietingProxy:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()

    def go_quiet(self) -> None:
        for quiet in self._quiet:
            quiet.set()

    async def _connect(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        self._writers += [client_writer, backend_writer]
        quiet = asyncio.Event()
        self._quiet.append(quiet)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                _forward(client_reader, backend_writer, quiet), _forward(backend_reader, client_writer, quiet)
            )


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, quiet: asyncio.Event) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            if quiet.is_set():
                await asyncio.Future()  # hold the bytes and the socket: silence, not a reset
            writer.write(data)
            await writer.drain()
    writer.close()


class ScriptedRun(pb_grpc.TransferServicer):
    """A Run that sends one event, is silent for ``silence_s`` (a long strong CoT, a queue), then
    sends an event every 50 ms, for ``events`` events in all."""

    def __init__(self, silence_s: float, events: int = 10_000) -> None:
        self.silence_s = silence_s
        self.events = events

    async def Run(self, request: pb.RunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunResponse]:  # noqa: N802
        for index in range(self.events):
            yield pb.RunResponse(problem_error=pb.ProblemError(problem_id=f"p{index}", code="X", message=""))
            await asyncio.sleep(self.silence_s if index == 0 else 0.05)


class NeverAnswers(pb_grpc.WeakModelServicer):
    """A wedged server: it takes the call and never answers."""

    async def Complete(self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext) -> pb.CompleteResponse:  # noqa: N802
        await asyncio.Future()
        raise AssertionError("unreachable")


ADDERS = {
    "Transfer": pb_grpc.add_TransferServicer_to_server,
    "WeakModel": pb_grpc.add_WeakModelServicer_to_server,
    "StrongModel": pb_grpc.add_StrongModelServicer_to_server,
}


@contextlib.asynccontextmanager
async def serving(
    servicer: Any, services: tuple[str, ...] = ("Transfer",), options: list[tuple[str, int]] | None = None
) -> AsyncIterator[int]:
    """A grpc.aio server on 127.0.0.1 serving ``services`` with ``servicer``; its port."""
    server = grpc.aio.server(options=SERVER_OPTIONS if options is None else options)
    for service in services:
        ADDERS[service](servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


async def _events_until_failure(client: CotTransferClient, on_event: object) -> tuple[RpcFailedError, float]:
    """Reads the client's Run until it fails: (the failure, monotonic time of it)."""
    assert callable(on_event)
    with pytest.raises(RpcFailedError) as caught:
        async with asyncio.timeout(HANG_S):
            async for event in client.run_transfer([Problem("p", "1+2", "3")], [0.5], n=1):
                on_event(event)
    return caught.value, time.monotonic()


@pytest.mark.parametrize(
    ("silence_s", "quiet_at"),
    [
        pytest.param(0.0, "the 5th event", id="while-events-stream"),
        # gRPC stops pinging after two pings on a connection the client sends nothing on, unless
        # told otherwise: a connection that dies after a long silence would never be found.
        pytest.param(60.0, "3 s into the silence", id="after-a-long-silence"),
    ],
)
async def test_a_run_whose_connection_goes_quiet_fails_retryable_within_the_keepalive(
    silence_s: float, quiet_at: str
) -> None:
    async with serving(ScriptedRun(silence_s)) as port, QuietingProxy(port) as proxy:
        quiet_since: list[float] = []

        def go_quiet() -> None:
            proxy.go_quiet()
            quiet_since.append(time.monotonic())

        received: list[object] = []

        def on_event(event: object) -> None:
            received.append(event)
            if quiet_at == "the 5th event" and len(received) == 5:
                go_quiet()
            if quiet_at.endswith("into the silence") and len(received) == 1:
                asyncio.get_running_loop().call_later(3.0, go_quiet)

        async with CotTransferClient(proxy.address, keepalive=KEEPALIVE) as client:
            failure, failed_at = await _events_until_failure(client, on_event)
    assert failure.code == grpc.StatusCode.UNAVAILABLE, failure
    assert failure.retryable
    assert quiet_since, f"the connection failed before it went quiet: {failure}"
    assert failed_at - quiet_since[0] < DETECTION_BOUND_S
    assert all(isinstance(event, ProblemError) for event in received)


async def test_a_healthy_stream_silent_for_many_keepalive_periods_is_not_cut() -> None:
    """Neither the keepalive (at the server's own minimum interval) nor a deadline ends a long
    healthy stream: the unary deadline is far shorter than the stream."""
    silence_s = 5 * KEEPALIVE.time_s
    async with (
        serving(ScriptedRun(silence_s, events=3)) as port,
        CotTransferClient(f"127.0.0.1:{port}", keepalive=KEEPALIVE, unary_timeout_s=0.5) as client,
    ):
        started = time.monotonic()
        async with asyncio.timeout(HANG_S):
            events = [event async for event in client.run_transfer([Problem("p", "1+2", "3")], [0.5], n=1)]
    assert [event.problem_id for event in events if isinstance(event, ProblemError)] == ["p0", "p1", "p2"]
    assert time.monotonic() - started >= silence_s


async def test_the_default_keepalive_is_one_a_default_grpc_server_takes() -> None:
    """A gRPC server left at its defaults (as Ray Serve's proxy is) closes a connection pinged more
    often than every 5 minutes with GOAWAY too_many_pings, failing the calls on it: the client's
    default interval is no shorter."""
    assert Keepalive().time_s >= GRPC_SERVER_MIN_PING_INTERVAL_S
    async with (
        serving(ScriptedRun(silence_s=HANG_S, events=2), options=[]) as port,
        CotTransferClient(f"127.0.0.1:{port}", keepalive=KEEPALIVE) as client,
    ):
        failure, _ = await _events_until_failure(client, lambda event: None)
    assert failure.code == grpc.StatusCode.UNAVAILABLE
    assert "too many pings" in failure.details.lower()


async def test_a_single_response_call_to_a_wedged_server_ends_at_the_unary_deadline() -> None:
    async with (
        serving(NeverAnswers(), ("WeakModel",)) as port,
        CotTransferClient(f"127.0.0.1:{port}", keepalive=KEEPALIVE, unary_timeout_s=0.5) as client,
    ):
        started = time.monotonic()
        with pytest.raises(RpcFailedError) as caught:
            await client.complete("1+2", reference_answer="3")
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3.0


def test_single_response_calls_have_a_finite_deadline_by_default() -> None:
    default = inspect.signature(CotTransferClient).parameters["unary_timeout_s"].default
    assert default == UNARY_TIMEOUT_S and math.isfinite(default)


async def test_a_run_whose_connection_goes_quiet_is_finished_from_disk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The experiment runner over the quieting proxy against the service's own RPC bodies: the
    first row makes the connection go quiet; keepalive finds it, the runner continues from disk on
    a new connection, and every row arrives exactly once."""
    strong = ScriptedEngine(["1+2 makes 3. Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
    weak = ScriptedEngine(["Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN, delay_s=0.3)
    service = InProcessService(strong, {LOCAL_CONFIG.weak.engine.name: weak})
    problems = [Problem(f"p{index}", f"{index}+2", "3") for index in range(4)]
    settings = ExperimentSettings(fractions=(0.5, 1.0), n=2)
    out = tmp_path / "run"
    retry = RetryPolicy(max_attempts=10, initial_backoff_s=0.2, max_backoff_s=1.0)
    async with serving(service.servicer, tuple(ADDERS)) as port, QuietingProxy(port) as proxy:
        quiet_once = [proxy.go_quiet]

        def on_row(row: object) -> None:
            while quiet_once:
                quiet_once.pop()()

        async with CotTransferClient(proxy.address, keepalive=KEEPALIVE) as client:
            with caplog.at_level(logging.WARNING, logger="cot_transfer.experiment.runner"):
                async with asyncio.timeout(HANG_S):
                    summary = await run_experiment(client, problems, settings, out, on_row=on_row, retry=retry)
    assert not quiet_once, "the run never went quiet"
    assert "run interrupted (UNAVAILABLE)" in caplog.text
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    keys = [(row["problem_id"], row["fraction"]) for row in rows]
    assert sorted(keys) == sorted((problem.id, fraction) for problem in problems for fraction in (0.0, 0.5, 1.0))
    assert summary["unfinished_problems"] == []
