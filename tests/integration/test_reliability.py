"""Bad input, cancelled and late callers, junk on the wire and credentials, against the real stack."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import operator
import os
import re
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cot_transfer.client import CotTransferClient, RpcFailedError, Sampling
from cot_transfer.domain.requests import CotDelta, FractionResult, Problem, StrongCot
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from tests.conftest import REPO, RunningService

pytestmark = pytest.mark.integration

PROBLEM = load_problems(REPO / "datasets" / "testbed-demo.jsonl")[0]
# `make fuzz` sends the full 10,000; CI sends fewer.
FUZZ_EXAMPLES = int(os.environ.get("COT_TRANSFER_FUZZ_EXAMPLES", "300"))
DELIBERATE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def health(service: RunningService, name: str = "") -> int:
    """A plain health probe as Kubernetes sends it: no application metadata, no token."""
    with grpc.insecure_channel(service.address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=name), timeout=30)
    return int(response.status)


WEAK_RUNNING = 'vllm_num_requests_running{engine="0",model_name="testbed-weak"'
STRONG_RUNNING = 'vllm_num_requests_running{engine="0",model_name="testbed-strong"'
WEAK_ABORTS = 'cot_transfer_engine_aborts_total{model="testbed-weak"}'
STRONG_ABORTS = 'cot_transfer_engine_aborts_total{model="testbed-strong"}'


def series(service: RunningService, sample_prefix: str) -> float | None:
    """The sum of the series starting with ``sample_prefix``; None when there is none, so that a
    check can never pass on a series that is not there."""
    with urllib.request.urlopen(service.metrics_url, timeout=10) as response:
        body = response.read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(sample_prefix)]
    return sum(values) if values else None


def clean_metric(service: RunningService, sample_prefix: str) -> float:
    """A counter's value, 0 before its first increment."""
    return series(service, sample_prefix) or 0.0


async def wait_for_series(
    service: RunningService, sample_prefix: str, predicate: Callable[[float], bool], timeout_s: float
) -> float:
    """Polls until the series exists and satisfies ``predicate``; fails the test otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(series, service, sample_prefix)
        if value is not None and predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{sample_prefix} was {value} after {timeout_s} s")
        await asyncio.sleep(0.5)


async def wait_for_metric(service: RunningService, sample_prefix: str, predicate: object, timeout_s: float) -> float:
    return await wait_for_series(service, sample_prefix, predicate, timeout_s)  # type: ignore[arg-type]


def test_health_answers_kubernetes_probes_without_credentials(service: RunningService) -> None:
    assert health(service) == health_pb2.HealthCheckResponse.SERVING
    for name in ("cot_transfer.v1.StrongModel", "cot_transfer.v1.WeakModel", "cot_transfer.v1.Transfer"):
        assert health(service, name) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health(service, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_calls_need_the_bearer_token(service: RunningService) -> None:
    for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED), ("wrong", grpc.StatusCode.PERMISSION_DENIED)):
        async with CotTransferClient(service.address, application=service.application, token=token) as client:
            with pytest.raises(RpcFailedError) as caught:
                await client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer)
            assert caught.value.code == code
            assert service.token not in caught.value.details
            with pytest.raises(RpcFailedError) as caught:
                [event async for event in client.stream_prefixes(PROBLEM.problem, [0.5])]
            assert caught.value.code == code
    async with service.client() as client:
        assert (await client.get_info()).weak_model


RAY_LOGS = Path("/tmp/ray/session_latest/logs")


def files_holding(secret: str, paths: list[Path]) -> list[Path]:
    needle = secret.encode()
    return [path for path in paths if path.is_file() and needle in path.read_bytes()]


async def test_the_token_is_in_no_serve_or_ray_log_after_accepted_and_refused_calls(service: RunningService) -> None:
    async with service.client() as client:
        await client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer, n=1)
    for token in (None, "wrong-" + service.token[:4]):
        async with CotTransferClient(service.address, application=service.application, token=token) as client:
            with pytest.raises(RpcFailedError):
                await client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer)
    # Serve writes its access logs as the calls finish; give it a moment to flush.
    await asyncio.sleep(2)
    ray_logs = await asyncio.to_thread(lambda: sorted(RAY_LOGS.rglob("*")))
    assert any(path.match("*serve*") for path in ray_logs), f"no Serve logs under {RAY_LOGS}"
    assert await asyncio.to_thread(files_holding, service.token, [service.log_path, *ray_logs]) == []


def _weak_replica_fault(replica: object, on: bool) -> bool:
    """Runs inside a weak-model replica's process: makes every Complete raise an unexpected error
    (or undoes that)."""
    from cot_transfer.serving.replicas import receiver_server as weak

    if on:
        original = weak.ReceiverServer.complete

        async def broken(self: object, request: object) -> None:
            raise RuntimeError("injected fault: /secret/path and other internals")

        weak._original_complete = original  # type: ignore[attr-defined]
        weak.ReceiverServer.complete = broken  # type: ignore[method-assign,assignment]
    elif hasattr(weak, "_original_complete"):
        weak.ReceiverServer.complete = weak._original_complete  # type: ignore[method-assign]
    return True


@contextlib.contextmanager
def fault_in_the_weak_replicas() -> Iterator[None]:
    import cloudpickle
    import ray

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="auto", logging_level=logging.ERROR, log_to_driver=False)
    try:
        replicas = [
            ray.get_actor(actor["name"], namespace=actor["namespace"])
            for actor in ray.util.list_named_actors(all_namespaces=True)
            if "WeakModel" in actor["name"] and actor["name"].startswith("SERVE_REPLICA")
        ]
        assert replicas, "no weak-model replica found"
        ray.get([replica.__ray_call__.remote(_weak_replica_fault, True) for replica in replicas], timeout=60)
        try:
            yield
        finally:
            ray.get([replica.__ray_call__.remote(_weak_replica_fault, False) for replica in replicas], timeout=60)
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


async def test_a_fault_in_a_replica_is_internal_with_an_incident_id_and_no_traceback(service: RunningService) -> None:
    with fault_in_the_weak_replicas():
        async with service.client() as client:
            with pytest.raises(RpcFailedError) as caught:
                await client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer, n=1)
    assert caught.value.code == grpc.StatusCode.INTERNAL
    incident = re.fullmatch(
        r"internal error \(incident ([0-9a-f]{12})\); the service logs have the details", caught.value.details
    )
    assert incident is not None, caught.value.details
    assert "injected" not in caught.value.details and "Traceback" not in caught.value.details
    # The details are in the service's logs, under that id.
    ray_logs = await asyncio.to_thread(lambda: sorted(RAY_LOGS.rglob("*")))
    assert await asyncio.to_thread(files_holding, incident.group(1), ray_logs)
    async with service.client() as client:  # the fault undone, the replica serves again
        assert (await client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer, n=1)).completions


async def test_a_cancelled_call_aborts_its_engine_work_and_spares_the_others(service: RunningService) -> None:
    # The engine is seen idle, then at work on the doomed call alone, before the cancel: a call
    # cancelled before its work reaches the engine has nothing to abort. The exported gauge lags
    # the engine by seconds, and CI twice read an earlier test's work (or the bystander's) as the
    # doomed call's and cancelled it 10 ms after it reached the ingress.
    await wait_for_series(service, WEAK_RUNNING, lambda value: value == 0, 120)
    # Read once the engine is idle, so that an earlier test's abort, exported late, is not taken
    # for this call's.
    aborts_before = await asyncio.to_thread(clean_metric, service, WEAK_ABORTS)
    async with service.client() as client:
        doomed = asyncio.create_task(
            client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer, n=1024, sampling=Sampling(max_tokens=256))
        )
        await wait_for_series(service, WEAK_RUNNING, lambda value: value > 0, 60)
        bystander = asyncio.create_task(client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer, n=4))
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert len((await bystander).completions) == 4
    aborts = await wait_for_metric(service, WEAK_ABORTS, lambda value: value > aborts_before, 60)
    assert aborts > aborts_before
    assert await wait_for_series(service, WEAK_RUNNING, lambda value: value == 0, 60) == 0


async def test_a_cancelled_stream_aborts_its_engine_work(service: RunningService) -> None:
    """A Transfer.Run left mid-stream: the server sees CANCELLED and the weak requests in flight are aborted."""
    cancelled_runs = 'cot_transfer_rpc_requests_total{code="CANCELLED",method="Run"}'
    aborts = 'cot_transfer_engine_aborts_total{model="testbed-weak"}'
    cancelled_before = await asyncio.to_thread(clean_metric, service, cancelled_runs)
    aborts_before = await asyncio.to_thread(clean_metric, service, aborts)
    problems = [
        Problem(problem.id, problem.problem, problem.answer)
        for problem in load_problems(REPO / "datasets" / "testbed-demo.jsonl")
    ]
    first_row = asyncio.Event()
    async with service.client() as client:

        async def read_until_cancelled() -> None:
            fractions = [index / 10 for index in range(11)]
            async for event in client.run_transfer(problems, fractions, n=64):
                if isinstance(event, FractionResult):
                    first_row.set()

        reader = asyncio.create_task(read_until_cancelled())
        await asyncio.wait_for(first_row.wait(), 300)
        await wait_for_series(service, WEAK_RUNNING, lambda value: value > 0, 60)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
    assert (
        await wait_for_metric(service, cancelled_runs, lambda value: value > cancelled_before, 120) > cancelled_before
    )
    assert await wait_for_metric(service, aborts, lambda value: value > aborts_before, 120) > aborts_before
    assert await wait_for_series(service, WEAK_RUNNING, lambda value: value == 0, 120) == 0


async def test_an_expired_deadline_is_deadline_exceeded_and_aborts_the_engine_work(service: RunningService) -> None:
    aborts_before = await asyncio.to_thread(clean_metric, service, WEAK_ABORTS)
    async with service.client() as client:
        with pytest.raises(RpcFailedError) as caught:
            await client.complete(
                PROBLEM.problem, reference_answer=PROBLEM.answer, n=1024, sampling=Sampling(max_tokens=256), timeout_s=3
            )
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server let go of the work when the deadline passed: the engine request was aborted.
    assert await wait_for_series(service, WEAK_ABORTS, lambda value: value > aborts_before, 120) > aborts_before
    assert await wait_for_series(service, WEAK_RUNNING, lambda value: value == 0, 120) == 0


def _many_problems(copies: int) -> list[Problem]:
    base = load_problems(REPO / "datasets" / "testbed-demo.jsonl")
    return [
        Problem(f"{problem.id}-{copy}", problem.problem, problem.answer) for copy in range(copies) for problem in base
    ]


# Long, hot CoTs: the strong engine is still writing most of them when the caller leaves.
LONG_COTS = Sampling(temperature=1.0, max_tokens=400)


async def test_a_cancelled_stream_prefixes_mid_cot_aborts_the_strong_engine_request(service: RunningService) -> None:
    aborts_before = await asyncio.to_thread(clean_metric, service, STRONG_ABORTS)
    first_delta = asyncio.Event()
    async with service.client() as client:

        async def read_one_delta_then_hang() -> None:
            async for event in client.stream_prefixes(PROBLEM.problem, [0.5, 1.0], sampling=LONG_COTS):
                if isinstance(event, CotDelta):
                    first_delta.set()
                    await asyncio.Event().wait()

        readers = [asyncio.create_task(read_one_delta_then_hang()) for _ in range(8)]
        # Cancelled once a CoT is being written, not after a fixed wait that a loaded machine
        # may spend before any CoT reached the engine.
        await asyncio.wait_for(first_delta.wait(), 120)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    assert await wait_for_series(service, STRONG_ABORTS, lambda value: value > aborts_before, 60) > aborts_before
    assert await wait_for_series(service, STRONG_RUNNING, lambda value: value == 0, 60) == 0


async def test_a_cancelled_run_while_cots_are_written_aborts_the_strong_engine_requests(
    service: RunningService,
) -> None:
    async def cancel_a_run_mid_cot(client: CotTransferClient, delay_s: float) -> None:
        first_cot = asyncio.Event()

        async def read_until_cancelled() -> None:
            # 360 CoTs, written ingress.max_concurrent_cots (32) at a time: when the first one
            # arrives, most are still being written or waiting their turn.
            async for event in client.run_transfer(_many_problems(30), [1.0], n=1, strong_sampling=LONG_COTS):
                if isinstance(event, StrongCot):
                    first_cot.set()

        reader = asyncio.create_task(read_until_cancelled())
        await asyncio.wait_for(first_cot.wait(), 300)
        await asyncio.sleep(delay_s)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader

    # The testbed's CoTs are short and written in batches, so a cancel can land in the moment
    # between one batch finishing and the next starting, with no CoT in flight to abort: the run
    # is cancelled again (a few times at most, each a little later into the next batch) until one
    # cancel meets CoTs being written.
    rose = False
    async with service.client() as client:
        for delay_s in (0.0, 0.5, 1.5):
            before = await asyncio.to_thread(clean_metric, service, STRONG_ABORTS)
            await cancel_a_run_mid_cot(client, delay_s)
            try:
                await wait_for_series(service, STRONG_ABORTS, functools.partial(operator.lt, before), 60)
            except AssertionError:
                continue
            rose = True
            break
    assert rose, "no cancelled Transfer.Run aborted a strong engine request"
    assert await wait_for_series(service, STRONG_RUNNING, lambda value: value == 0, 60) == 0


async def test_a_stream_prefixes_past_its_deadline_aborts_the_strong_engine_request(service: RunningService) -> None:
    aborts_before = await asyncio.to_thread(clean_metric, service, STRONG_ABORTS)
    async with service.client() as client:

        async def stream_with_deadline() -> None:
            async for event in client.stream_prefixes(PROBLEM.problem, [1.0], sampling=LONG_COTS, timeout_s=0.3):
                if isinstance(event, CotDelta):
                    await asyncio.sleep(2)  # a slow reader: the deadline passes mid-CoT

        results = await asyncio.gather(*(stream_with_deadline() for _ in range(8)), return_exceptions=True)
    codes = {result.code for result in results if isinstance(result, RpcFailedError)}
    assert codes == {grpc.StatusCode.DEADLINE_EXCEEDED}
    assert await wait_for_series(service, STRONG_ABORTS, lambda value: value > aborts_before, 60) > aborts_before


def test_junk_on_the_wire_does_not_take_the_service_down(service: RunningService) -> None:
    host, port = service.address.rsplit(":", 1)
    for junk in (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        os.urandom(4096),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512),
    ):
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(junk)
            raw.settimeout(2)
            with contextlib.suppress(OSError):
                raw.recv(1024)
    metadata = (("application", service.application), ("authorization", f"Bearer {service.token}"))
    with grpc.insecure_channel(service.address) as channel:
        for method in ("/cot_transfer.v1.WeakModel/Complete", "/cot_transfer.v1.Transfer/Run", "/no.Such/Method"):
            call = channel.unary_unary(method)  # raw bytes in and out: no protobuf (de)serialisation
            with pytest.raises(grpc.RpcError):
                call(b"\xff\xfe\x00garbage" + os.urandom(64), timeout=30, metadata=metadata)
    assert health(service) == health_pb2.HealthCheckResponse.SERVING


floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-0.5, max_value=2.5),
    st.sampled_from([0.0, 1.0, 0.5, 1e-12, math.nan, -0.0]),
)
sampling_params = st.builds(
    pb.SamplingParams,
    temperature=st.one_of(st.none(), floats),
    top_p=st.one_of(st.none(), floats),
    max_tokens=st.one_of(st.none(), st.integers(-5, 8), st.integers(-(2**31), 2**31 - 1)),
    seed=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
)
# The integration config's limits.max_text_chars is the default; past it is refused at the edge.
MAX_TEXT_CHARS = 1_000_000
MAX_FRACTIONS = 101
unusual_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S", "Z", "C")), max_size=40
)
large_text = st.sampled_from(
    [
        "\u00e9" * (MAX_TEXT_CHARS + 1),  # past the cap in characters: refused naming the field
        "\U0001f600" * 20_000,  # 80 kB of 4-byte characters, within the cap (tokenised, then OUT_OF_RANGE)
        "\u202e\u200d\ufeff" * 1000,  # bidi override, zero-width joiner, byte-order mark
    ]
)
problems_text = st.one_of(
    st.just(PROBLEM.problem), st.text(max_size=40), unusual_text, st.just(""), st.just(" \n"), large_text
)
graders = st.sampled_from(["", "exact", "math", "choice", "nope", "\x00"])
fractions = st.one_of(
    st.lists(floats, max_size=6),
    # More than limits.max_fractions, each valid: refused for the count alone.
    st.lists(st.floats(0.0, 1.0), min_size=MAX_FRACTIONS + 1, max_size=MAX_FRACTIONS + 3),
)
small_n = st.one_of(st.integers(-3, 4), st.integers(-(2**31), 2**31 - 1))
complete_requests = st.builds(
    pb.CompleteRequest,
    problem=problems_text,
    prefix=st.text(max_size=40),
    n=small_n,
    sampling=sampling_params,
    reference_answer=st.one_of(st.just(PROBLEM.answer), st.text(max_size=5)),
    grader=graders,
)
prefix_requests = st.builds(
    pb.StreamPrefixesRequest, problem=problems_text, fractions=fractions, sampling=sampling_params, grader=graders
)
run_requests = st.builds(
    pb.RunRequest,
    problems=st.lists(
        st.builds(pb.Problem, id=st.text(max_size=4), problem=problems_text, answer=st.text(max_size=3)), max_size=2
    ),
    fractions=fractions,
    n=small_n,
    strong_sampling=sampling_params,
    weak_sampling=sampling_params,
    thresholds=st.builds(
        pb.Thresholds,
        baseline_max_potential=st.one_of(st.none(), floats),
        unlock_min_potential=st.one_of(st.none(), floats),
    ),
    grader=graders,
    experiment_id=st.one_of(st.just(""), st.text(max_size=70)),
)


@pytest.fixture(scope="module")
def stubs(service: RunningService):  # type: ignore[no-untyped-def]
    channel = grpc.insecure_channel(service.address)
    metadata = (("application", service.application), ("authorization", f"Bearer {service.token}"))
    yield pb_grpc.WeakModelStub(channel), pb_grpc.StrongModelStub(channel), pb_grpc.TransferStub(channel), metadata
    channel.close()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(request=st.one_of(complete_requests, prefix_requests, run_requests))
def test_fuzzed_requests_get_ok_or_a_deliberate_status(stubs, request) -> None:  # type: ignore[no-untyped-def]
    weak, strong, transfer, metadata = stubs
    try:
        if isinstance(request, pb.CompleteRequest):
            weak.Complete(request, timeout=120, metadata=metadata)
        elif isinstance(request, pb.StreamPrefixesRequest):
            list(strong.StreamPrefixes(request, timeout=120, metadata=metadata))
        else:
            for response in transfer.Run(request, timeout=120, metadata=metadata):
                # A problem that cannot be run is reported in the stream, with a deliberate code too.
                if response.WhichOneof("event") == "problem_error":
                    assert grpc.StatusCode[response.problem_error.code] in DELIBERATE, response
                    assert "Traceback" not in response.problem_error.message
    except grpc.RpcError as error:
        assert error.code() in DELIBERATE, f"{error.code()}: {error.details()} for {request!r}"
        assert "Traceback" not in (error.details() or "")


def test_the_service_is_still_serving_after_the_fuzzing(service: RunningService) -> None:
    assert health(service) == health_pb2.HealthCheckResponse.SERVING
