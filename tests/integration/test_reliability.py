"""Bad input, cancelled and late callers, junk on the wire and credentials, against the real stack."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cot_transfer.client import CotTransferClient, RpcFailedError, Sampling
from cot_transfer.domain.requests import FractionResult, Problem
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


def clean_metric(service: RunningService, sample_prefix: str) -> float:
    with urllib.request.urlopen(service.metrics_url, timeout=10) as response:
        body = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(sample_prefix))


async def wait_for_metric(service: RunningService, sample_prefix: str, predicate: object, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    value = await asyncio.to_thread(clean_metric, service, sample_prefix)
    while not predicate(value) and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(1)
        value = await asyncio.to_thread(clean_metric, service, sample_prefix)
    return value


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


async def test_a_cancelled_call_aborts_its_engine_work_and_spares_the_others(service: RunningService) -> None:
    aborts_before = await asyncio.to_thread(
        clean_metric, service, 'cot_transfer_engine_aborts_total{model="testbed-weak"}'
    )
    async with service.client() as client:
        bystander = asyncio.create_task(client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer, n=4))
        doomed = asyncio.create_task(
            client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer, n=1024, sampling=Sampling(max_tokens=256))
        )
        await asyncio.sleep(1.5)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert len((await bystander).completions) == 4
    aborts = await wait_for_metric(
        service, 'cot_transfer_engine_aborts_total{model="testbed-weak"}', lambda value: value > aborts_before, 60
    )
    assert aborts > aborts_before
    running = await wait_for_metric(
        service, 'vllm_num_requests_running{engine="0",model_name="testbed-weak"', lambda value: value == 0, 60
    )
    assert running == 0


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
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
    assert (
        await wait_for_metric(service, cancelled_runs, lambda value: value > cancelled_before, 120) > cancelled_before
    )
    assert await wait_for_metric(service, aborts, lambda value: value > aborts_before, 120) > aborts_before
    running = await wait_for_metric(
        service, 'vllm_num_requests_running{engine="0",model_name="testbed-weak"', lambda value: value == 0, 120
    )
    assert running == 0


async def test_an_expired_deadline_is_deadline_exceeded_and_stops_the_work(service: RunningService) -> None:
    async with service.client() as client:
        with pytest.raises(RpcFailedError) as caught:
            await client.complete(PROBLEM.problem, reference_answer=PROBLEM.answer, n=1024, timeout_s=0.5)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    running = await wait_for_metric(
        service, 'vllm_num_requests_running{engine="0",model_name="testbed-weak"', lambda value: value == 0, 120
    )
    assert running == 0


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
problems_text = st.one_of(st.just(PROBLEM.problem), st.text(max_size=40), st.just(""), st.just(" \n"))
graders = st.sampled_from(["", "exact", "math", "choice", "nope", "\x00"])
fractions = st.lists(floats, max_size=6)
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
            list(transfer.Run(request, timeout=120, metadata=metadata))
    except grpc.RpcError as error:
        assert error.code() in DELIBERATE, f"{error.code()}: {error.details()} for {request!r}"
        assert "Traceback" not in (error.details() or "")


def test_the_service_is_still_serving_after_the_fuzzing(service: RunningService) -> None:
    assert health(service) == health_pb2.HealthCheckResponse.SERVING
