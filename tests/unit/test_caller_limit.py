"""The per-caller limit on work calls: a caller at its limit is refused, the others are served."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_network

import grpc
import pytest
from pydantic import ValidationError

from cot_transfer.domain.errors import OverloadedError
from cot_transfer.serving.common.serving_config import LimitsConfig
from cot_transfer.serving.edge.callers import CallerLimit, caller_of
from cot_transfer.serving.edge.status import status_for
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from tests.conftest import LOCAL_CONFIG, InProcessService
from tests.fakes import ScriptedEngine

COMPLETE = pb.CompleteRequest(problem="1+2", reference_answer="3", n=1)


@pytest.mark.parametrize(
    ("peer", "caller"),
    [
        ("ipv4:10.0.0.7:51234", "ipv4:10.0.0.7"),
        ("ipv6:[::1]:51234", "ipv6:[::1]"),
        ("ipv6:[2001:db8::5]:443", "ipv6:[2001:db8::5]"),
        ("unix:/run/cot.sock", "unix:/run/cot.sock"),
    ],
)
def test_a_caller_is_its_address_without_the_port(peer: str, caller: str) -> None:
    assert caller_of(peer) == caller


def test_a_caller_at_its_limit_is_refused_with_a_retry_hint_and_others_are_not() -> None:
    limit = CallerLimit(2)
    with limit.hold("a"), limit.hold("a"):
        with pytest.raises(OverloadedError) as refused, limit.hold("a"):
            pass
        code, details = status_for(refused.value)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limits.max_concurrent_calls_per_caller" in details and "retry with backoff" in details
        with limit.hold("b"):
            assert (limit.in_flight("a"), limit.in_flight("b")) == (2, 1)
    with limit.hold("a"):  # a call that ended gave its place back
        assert limit.in_flight("a") == 1
    assert limit.in_flight("a") == 0


@asynccontextmanager
async def served_on_ipv4_and_ipv6(service: InProcessService) -> AsyncIterator[tuple[str, str]]:
    """The service's own servicer on 127.0.0.1 and on [::1]: two callers on one machine."""
    server = grpc.aio.server()
    pb_grpc.add_WeakModelServicer_to_server(service.servicer, server)
    pb_grpc.add_TransferServicer_to_server(service.servicer, server)
    ipv4 = server.add_insecure_port("127.0.0.1:0")
    ipv6 = server.add_insecure_port("[::1]:0")
    await server.start()
    try:
        yield f"127.0.0.1:{ipv4}", f"[::1]:{ipv6}"
    finally:
        await server.stop(None)


async def test_a_caller_at_its_limit_is_refused_while_another_caller_is_served() -> None:
    engine = ScriptedEngine(["Answer: 3"], max_model_len=512, delay_s=0.5)
    limits = LOCAL_CONFIG.limits.model_copy(update={"max_concurrent_calls_per_caller": 1})
    config = LOCAL_CONFIG.model_copy(update={"limits": limits})
    service = InProcessService(engine, {config.weak.engine.name: engine}, config=config)
    async with (
        served_on_ipv4_and_ipv6(service) as (address_a, address_b),
        grpc.aio.insecure_channel(address_a) as channel_a,
        grpc.aio.insecure_channel(address_b) as channel_b,
    ):
        weak_a, weak_b = pb_grpc.WeakModelStub(channel_a), pb_grpc.WeakModelStub(channel_b)
        first = asyncio.ensure_future(weak_a.Complete(COMPLETE, timeout=30))
        await service.until_in_flight(1, "caller A's first call")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await weak_a.Complete(COMPLETE, timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limits.max_concurrent_calls_per_caller" in (refused.value.details() or "")
        run = pb_grpc.TransferStub(channel_a).Run(
            pb.RunRequest(problems=[pb.Problem(id="p", problem="1+2", answer="3")], fractions=[0.0], n=1), timeout=30
        )
        with pytest.raises(grpc.aio.AioRpcError) as run_refused:
            await run.read()
        assert run_refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert not first.done()
        assert (await weak_b.Complete(COMPLETE, timeout=30)).completions  # caller B is served meanwhile
        assert (await first).completions
        assert (await weak_a.Complete(COMPLETE, timeout=30)).completions  # A's place is free again


PROXY = [ip_network("10.0.0.0/24")]


@pytest.mark.parametrize(
    ("peer", "metadata", "caller"),
    [
        # From the trusted proxy: the client it names (the last address it added).
        ("ipv4:10.0.0.7:51234", [("x-forwarded-for", "203.0.113.9")], "forwarded:203.0.113.9"),
        ("ipv4:10.0.0.7:51234", [("X-Forwarded-For", "198.51.100.1, 203.0.113.9")], "forwarded:203.0.113.9"),
        # From the trusted proxy without the header: the proxy itself.
        ("ipv4:10.0.0.7:51234", [], "ipv4:10.0.0.7"),
        # From anyone else the header is ignored: a client cannot name itself.
        ("ipv4:192.0.2.4:51234", [("x-forwarded-for", "203.0.113.9")], "ipv4:192.0.2.4"),
        ("ipv6:[::1]:51234", [("x-forwarded-for", "203.0.113.9")], "ipv6:[::1]"),
    ],
)
def test_only_a_trusted_proxy_names_the_caller(peer: str, metadata: list[tuple[str, str]], caller: str) -> None:
    assert caller_of(peer, metadata, PROXY) == caller
    assert caller_of(peer, metadata) == caller_of(peer)  # no trusted proxy: always the peer


def test_trusted_proxies_are_networks_and_a_wrong_one_is_refused_by_name() -> None:
    limits = LimitsConfig.model_validate({"trusted_proxies": ["10.0.0.0/24", "fd00::/8"]})
    assert [str(network) for network in limits.trusted_proxies] == ["10.0.0.0/24", "fd00::/8"]
    with pytest.raises(ValidationError, match="trusted_proxies"):
        LimitsConfig.model_validate({"trusted_proxies": ["the gateway"]})


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() -> None:
    engine = ScriptedEngine(["Answer: 3"], max_model_len=512, delay_s=0.5)
    limits = LOCAL_CONFIG.limits.model_copy(
        update={"max_concurrent_calls_per_caller": 1, "trusted_proxies": [ip_network("127.0.0.1/32")]}
    )
    config = LOCAL_CONFIG.model_copy(update={"limits": limits})
    service = InProcessService(engine, {config.weak.engine.name: engine}, config=config)
    async with served_on_ipv4_and_ipv6(service) as (gateway, _), grpc.aio.insecure_channel(gateway) as channel:
        weak = pb_grpc.WeakModelStub(channel)

        def as_client(address: str) -> list[tuple[str, str]]:
            return [("x-forwarded-for", address)]

        first = asyncio.ensure_future(weak.Complete(COMPLETE, timeout=30, metadata=as_client("203.0.113.1")))
        await service.until_in_flight(1, "the first client's call")
        # The same client again through the proxy is at its limit; another client is not.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await weak.Complete(COMPLETE, timeout=30, metadata=as_client("203.0.113.1"))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await weak.Complete(COMPLETE, timeout=30, metadata=as_client("203.0.113.2"))).completions
        assert (await first).completions
