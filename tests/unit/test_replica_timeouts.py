"""Time limits on the ingress's calls to the model replicas: a silent replica fails UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from cot_transfer.domain import requests as rq
from cot_transfer.domain.errors import UnavailableError
from cot_transfer.serving.common.serving_config import IngressConfig
from cot_transfer.serving.edge.status import status_for
from cot_transfer.serving.wiring.deployments import TransferIngress
from cot_transfer.serving.wiring.replica_timeouts import answer_within, events_within
from tests.fakes import SAMPLING

LIMIT_S = 0.05


class SlowCall:
    """A replica call (an awaitable with ``cancel``) that answers after ``delay_s``."""

    def __init__(self, delay_s: float, result: object = "answer") -> None:
        self.cancelled = False
        self._task = asyncio.ensure_future(self._answer(delay_s, result))

    async def _answer(self, delay_s: float, result: object) -> object:
        await asyncio.sleep(delay_s)
        return result

    def __await__(self) -> Generator[Any, None, object]:
        return asyncio.shield(self._task).__await__()

    def cancel(self) -> None:
        self.cancelled = True
        self._task.cancel()


class SlowStream(SlowCall):
    """A replica stream (async iterator with ``cancel``) whose events come ``gaps_s`` apart."""

    def __init__(self, gaps_s: list[float]) -> None:
        super().__init__(0.0)
        self._gaps_s = list(gaps_s)

    def __aiter__(self) -> SlowStream:
        return self

    async def __anext__(self) -> float:
        if not self._gaps_s:
            raise StopAsyncIteration
        gap = self._gaps_s.pop(0)
        await asyncio.sleep(gap)
        return gap


def assert_retryable(error: UnavailableError) -> None:
    code, details = status_for(error)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "ingress.replica_call_timeout_s" in details and "retry" in details


async def test_a_call_past_the_limit_is_cancelled_and_unavailable() -> None:
    call = SlowCall(delay_s=60)
    with pytest.raises(UnavailableError) as failed:
        await asyncio.wait_for(answer_within(call, call.cancel, LIMIT_S, "the Weak replica"), timeout=5)
    assert call.cancelled
    assert_retryable(failed.value)
    assert "the Weak replica did not answer within 0.05 s" in str(failed.value)


async def test_a_call_within_the_limit_answers() -> None:
    call = SlowCall(delay_s=0.0, result=42)
    assert await answer_within(call, call.cancel, LIMIT_S, "the Weak replica") == 42
    assert not call.cancelled


async def test_a_stream_is_bounded_by_its_silences_not_its_length() -> None:
    gaps = [LIMIT_S / 2] * 6  # three times the limit in all, each gap within it
    assert [gap async for gap in events_within(SlowStream(gaps), LIMIT_S, "the Strong replica")] == gaps


async def test_a_stream_that_goes_silent_is_unavailable() -> None:
    stream = SlowStream([0.0, 0.0, 60.0])
    received = []
    with pytest.raises(UnavailableError) as failed:
        async for event in events_within(stream, LIMIT_S, "the Strong replica"):
            received.append(event)
    assert received == [0.0, 0.0]
    assert_retryable(failed.value)


def ingress_over(handle: SimpleNamespace) -> SimpleNamespace:
    """What ``TransferIngress``'s replica calls read of the ingress, with ``handle`` for every model."""
    return SimpleNamespace(_receivers={}, _weak=handle, _strong=handle, _replica_call_timeout_s=LIMIT_S)


async def test_the_ingress_gives_up_on_a_silent_weak_replica_and_cancels_its_call() -> None:
    calls: list[SlowCall] = []

    def remote(request: rq.CompletionRequest) -> SlowCall:
        calls.append(SlowCall(delay_s=60))
        return calls[-1]

    handle = SimpleNamespace(deployment_name="WeakModel", complete=SimpleNamespace(remote=remote))
    request = rq.CompletionRequest(
        problem="1+2", prefix="", reference_answer="3", n=1, sampling=SAMPLING, grader="exact"
    )
    complete = TransferIngress.func_or_class._complete  # type: ignore[attr-defined]
    with pytest.raises(UnavailableError) as failed:
        await asyncio.wait_for(complete(ingress_over(handle), request), timeout=5)
    assert "the WeakModel replica" in str(failed.value)
    assert calls[0].cancelled


async def test_the_ingress_gives_up_on_a_silent_strong_stream_and_cancels_it() -> None:
    stream = SlowStream([0.0, 60.0])
    remote = SimpleNamespace(remote=lambda request: stream)
    handle = SimpleNamespace(stream_prefixes=SimpleNamespace(options=lambda stream: remote))
    events = TransferIngress.func_or_class._strong_events(ingress_over(handle), object())  # type: ignore[attr-defined]

    async def drain() -> list[object]:
        return [event async for event in events]

    with pytest.raises(UnavailableError):
        await asyncio.wait_for(drain(), timeout=5)
    assert stream.cancelled


def test_the_default_limit_outlasts_a_long_generation() -> None:
    assert IngressConfig().replica_call_timeout_s >= 1800
