"""Health costs nothing the service needs (edge.health, edge.rpc): Check, List and Watch answer from
one cached reading of the model deployments; Watch streams (no token needed) are bounded in number
and lifetime and send only changes; work calls are bounded by the service itself, below Serve's
slot limit for the ingress, so health calls and Watch streams never take a slot from work; and
concurrent /metrics scrapes share one gathering (wiring.deployments.SharedRead)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cot_transfer.serving.common.serving_config import IngressConfig, ServingConfig
from cot_transfer.serving.edge import health as health_module
from cot_transfer.serving.edge.health import NOT_SERVING, SERVING, HealthState
from cot_transfer.serving.edge.rpc import TransferService
from cot_transfer.serving.wiring.deployments import SharedRead
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from tests.conftest import LOCAL_CONFIG, InProcessService
from tests.fakes import ScriptedEngine

WATCH = health_pb2.HealthCheckRequest(service="cot_transfer.v1.Transfer")


def config_with(**ingress: Any) -> ServingConfig:
    return LOCAL_CONFIG.model_copy(update={"ingress": LOCAL_CONFIG.ingress.model_copy(update=ingress)})


class ModelsServing:
    """The model deployments' state as the service reads it, counting the reads."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.serving = True
        self.reads = 0
        self._delay_s = delay_s

    async def __call__(self) -> bool:
        self.reads += 1
        await asyncio.sleep(self._delay_s)
        return self.serving


async def _never(*args: Any) -> Any:
    raise AssertionError("a health test made a model call")


def _never_streamed(request: Any) -> AsyncIterator[Any]:
    raise AssertionError("a health test opened a model stream")


@asynccontextmanager
async def health_stub(
    models: Callable[[], Awaitable[bool]], config: ServingConfig
) -> AsyncIterator[tuple[TransferService, health_pb2_grpc.HealthStub]]:
    """The service's health RPCs alone, over a real channel, on ``models`` as the deployments' state."""
    service = TransferService(
        config,
        strong_events=_never_streamed,
        complete=_never,
        run_events=_never_streamed,
        fingerprints=_never,
        models_serving=models,
    )
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield service, health_pb2_grpc.HealthStub(channel)
    finally:
        await server.stop(None)


async def test_a_flood_of_checks_reads_the_deployments_once() -> None:
    models = ModelsServing(delay_s=0.2)
    async with health_stub(models, config_with(health_refresh_interval_s=30)) as (_, health):
        started = time.monotonic()
        answers = await asyncio.gather(*(health.Check(WATCH, timeout=5) for _ in range(300)))
        assert {answer.status for answer in answers} == {SERVING}
        listed = await health.List(health_pb2.HealthListRequest())
        assert {status.status for status in listed.statuses.values()} == {SERVING}
        assert models.reads == 1
        assert time.monotonic() - started < 5


async def test_checks_see_a_change_within_the_refresh_interval_without_waiting_on_a_read() -> None:
    models = ModelsServing()
    state = HealthState(models, refresh_interval_s=0.1, max_watch_streams=1, watch_max_lifetime_s=60)
    assert await state.status("") == SERVING
    models.serving = False
    deadline = time.monotonic() + 2
    while await state.status("") == SERVING:
        assert time.monotonic() < deadline, "the reading never changed"
        await asyncio.sleep(0.02)
    reads = models.reads
    await asyncio.sleep(0.35)
    assert models.reads - reads <= 5  # one read per interval, whoever asks


async def test_an_unreadable_state_is_not_serving() -> None:
    async def broken() -> bool:
        raise RuntimeError("the controller is away")

    state = HealthState(broken, refresh_interval_s=30, max_watch_streams=1, watch_max_lifetime_s=60)
    assert await state.status("") == NOT_SERVING


async def test_the_reader_stops_when_no_one_asks_and_the_next_check_reads_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health_module, "IDLE_STOP_S", 0.2)
    models = ModelsServing()
    state = HealthState(models, refresh_interval_s=0.05, max_watch_streams=1, watch_max_lifetime_s=60)
    assert await state.status("") == SERVING
    await asyncio.sleep(0.5)
    reads = models.reads
    await asyncio.sleep(0.3)
    assert models.reads == reads, "the reader went on with no one asking"
    models.serving = False
    assert await state.status("") == NOT_SERVING  # not the old reading


async def test_watch_sends_only_changes() -> None:
    models = ModelsServing()
    async with health_stub(models, config_with(health_refresh_interval_s=0.05)) as (_, health):
        call = health.Watch(WATCH)
        first = await call.read()
        assert first.status == SERVING
        await asyncio.sleep(0.3)  # several readings, no change: nothing sent
        models.serving = False
        changed = await asyncio.wait_for(call.read(), timeout=2)
        assert changed.status == NOT_SERVING
        models.serving = True
        assert (await asyncio.wait_for(call.read(), timeout=2)).status == SERVING
        call.cancel()


async def test_watch_streams_past_the_bound_are_resource_exhausted_and_a_closed_one_frees_its_place() -> None:
    async with health_stub(ModelsServing(), config_with(max_watch_streams=2)) as (service, health):
        open_calls = [health.Watch(WATCH) for _ in range(2)]
        for call in open_calls:
            assert (await call.read()).status == SERVING
        refused = health.Watch(WATCH)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await asyncio.wait_for(refused.read(), timeout=2)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ingress.max_watch_streams" in (error.value.details() or "")
        # Check is not a stream and is never refused by the bound.
        assert (await health.Check(WATCH, timeout=2)).status == SERVING
        open_calls[0].cancel()
        deadline = time.monotonic() + 2
        while service._health.watch_streams() > 1:
            assert time.monotonic() < deadline, "a cancelled Watch kept its place"
            await asyncio.sleep(0.02)
        again = health.Watch(WATCH)
        assert (await asyncio.wait_for(again.read(), timeout=2)).status == SERVING
        again.cancel()
        open_calls[1].cancel()


async def test_a_watch_stream_ends_ok_after_its_lifetime() -> None:
    async with health_stub(ModelsServing(), config_with(watch_max_lifetime_s=0.3)) as (service, health):
        started = time.monotonic()
        call = health.Watch(WATCH)
        assert (await call.read()).status == SERVING
        assert await asyncio.wait_for(call.read(), timeout=5) == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert 0.3 <= time.monotonic() - started < 5
        assert service._health.watch_streams() == 0


async def test_draining_sends_not_serving_to_watch_streams_and_ends_them() -> None:
    async with health_stub(ModelsServing(), config_with(health_refresh_interval_s=30)) as (service, health):
        call = health.Watch(WATCH)
        assert (await call.read()).status == SERVING
        service.start_draining()
        assert (await asyncio.wait_for(call.read(), timeout=2)).status == NOT_SERVING
        assert await asyncio.wait_for(call.read(), timeout=2) == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert service.in_flight() == 0


async def test_work_past_the_ingress_bound_is_resource_exhausted_while_health_still_answers() -> None:
    engine = ScriptedEngine(["Answer: 3"], max_model_len=512, delay_s=0.5)
    config = config_with(max_ongoing_requests=1, max_watch_streams=1)
    request = pb.CompleteRequest(problem="1+2", reference_answer="3", n=1)
    async with (
        InProcessService(engine, {config.weak.engine.name: engine}, config=config) as service,
        grpc.aio.insecure_channel(service.address) as channel,
    ):
        weak = pb_grpc.WeakModelStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(WATCH)
        assert (await watch.read()).status == SERVING
        first = asyncio.ensure_future(weak.Complete(request, timeout=30))
        await service.until_in_flight(1, "the first call")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await weak.Complete(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ingress.max_ongoing_requests" in (refused.value.details() or "")
        checked = time.monotonic()
        assert (await health.Check(WATCH, timeout=2)).status == SERVING  # the open Watch and the work leave it be
        assert time.monotonic() - checked < 1
        assert (await first).completions
        assert (await weak.Complete(request, timeout=30)).completions  # its slot is free again
        watch.cancel()


def test_serve_gives_the_ingress_slots_for_the_work_the_watch_streams_and_health_calls() -> None:
    ingress = IngressConfig(max_ongoing_requests=100, max_watch_streams=20)
    assert ingress.serve_options()["max_ongoing_requests"] == 100 + 20 + IngressConfig.HEALTH_CALL_SLOTS
    # Serve's own option, when given, is Serve's limit as written.
    assert IngressConfig(deployment_config={"max_ongoing_requests": 7}).serve_options()["max_ongoing_requests"] == 7


async def test_concurrent_scrapes_share_one_read_and_a_failed_read_is_not_reused() -> None:
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.05)
        if reads == 2:
            raise RuntimeError("a node did not answer")
        return reads

    shared = SharedRead(read, max_age_s=0.2)
    assert await asyncio.gather(*(shared() for _ in range(50))) == [1] * 50
    assert await shared() == 1  # reused within max_age_s
    await asyncio.sleep(0.25)
    with pytest.raises(RuntimeError):
        await shared()
    assert await shared() == 3
