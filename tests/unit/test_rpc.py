"""The RPC bodies (edge.rpc.TransferService) without Ray: status codes from the one table, auth,
drain and health, through a real gRPC channel to the in-process service."""

from __future__ import annotations

import inspect

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cot_transfer.serving.edge.rpc import TransferService
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from tests.conftest import LOCAL_CONFIG, InProcessService
from tests.fakes import ScriptedEngine


@pytest.mark.parametrize("method", ["StreamPrefixes", "Complete", "GetInfo", "Run", "Check", "List", "Watch"])
def test_every_rpc_takes_its_context_as_grpc_context(method: str) -> None:
    # Ray Serve's proxy passes the call's context only to a parameter of this name.
    assert list(inspect.signature(getattr(TransferService, method)).parameters) == ["self", "request", "grpc_context"]


async def test_a_bad_request_is_invalid_argument_naming_the_field(in_process_service: InProcessService) -> None:
    async with grpc.aio.insecure_channel(in_process_service.address) as channel:
        weak = pb_grpc.WeakModelStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await weak.Complete(pb.CompleteRequest(problem="1+2", reference_answer="3", n=0))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith("n:")
        info = await pb_grpc.TransferStub(channel).GetInfo(pb.GetInfoRequest())  # the service still answers
        assert info.weak_model == LOCAL_CONFIG.weak.engine.name


async def test_a_token_is_required_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPC_TEST_TOKEN", "secret")
    config = LOCAL_CONFIG.model_copy(update={"auth_token_env": "RPC_TEST_TOKEN"})
    engine = ScriptedEngine(["Answer: 3"])
    async with (
        InProcessService(engine, {config.weak.engine.name: engine}, config=config) as service,
        grpc.aio.insecure_channel(service.address) as channel,
    ):
        transfer = pb_grpc.TransferStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await transfer.GetInfo(pb.GetInfoRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await transfer.GetInfo(pb.GetInfoRequest(), metadata=(("authorization", "Bearer nope"),))
        assert wrong.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await transfer.GetInfo(pb.GetInfoRequest(), metadata=(("authorization", "Bearer secret"),))


async def test_draining_turns_health_and_new_calls_away(in_process_service: InProcessService) -> None:
    async with grpc.aio.insecure_channel(in_process_service.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = await health.Check(health_pb2.HealthCheckRequest(service="cot_transfer.v1.Transfer"))
        assert serving.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        listed = await health.List(health_pb2.HealthListRequest())
        assert set(listed.statuses) == {
            "cot_transfer.v1.StrongModel",
            "cot_transfer.v1.WeakModel",
            "cot_transfer.v1.Transfer",
        }

        in_process_service.servicer.start_draining()
        draining = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert draining.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pb_grpc.TransferStub(channel).GetInfo(pb.GetInfoRequest())
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
