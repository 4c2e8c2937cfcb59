"""A wedged engine (no output, no error) fails its requests within the limit and its health
check, while a busy engine whose queued requests wait a long time is left alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from cot_transfer.domain.errors import UnavailableError
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.engine.base import GenerationOutput, GenerationRequest, SampleOutput
from cot_transfer.engine.stall_guard import StallGuard
from tests.fakes import CharTokenizer, RecordingEngine

REQUEST = GenerationRequest(
    prompt_token_ids=[1, 2], n=1, sampling=SamplingParams(temperature=0.6, top_p=0.95, max_tokens=4)
)


class ControlledEngine(RecordingEngine):
    """Emits one output per ``step.set()``; ``wedged`` makes it hang for ever, healthy as it looks."""

    def __init__(self) -> None:
        super().__init__(CharTokenizer(), 64)
        self.aborted: list[str] = []
        self.gate: asyncio.Queue[str] = asyncio.Queue()
        self.steps: float | None = None  # None: the engine reports no steps

    def stats(self) -> dict[str, float]:
        return {} if self.steps is None else {"steps": self.steps}

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        while True:
            token = await self.gate.get()
            done = token == "."
            yield GenerationOutput(request_id, [SampleOutput(0, token, [ord(token)], "stop" if done else None)], done)
            if done:
                return

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


async def collect(engine: StallGuard, request_id: str) -> list[str]:
    return [output.samples[0].text async for output in engine.generate(REQUEST, request_id)]


async def test_a_wedged_engine_fails_its_request_within_the_limit_and_its_health_check() -> None:
    inner = ControlledEngine()
    guard = StallGuard(inner, stall_timeout_s=0.4, poll_s=0.05)
    await guard.check_health()
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="no output for"):
        await collect(guard, "r1")
    waited = time.monotonic() - started
    assert 0.4 <= waited < 1.5
    assert inner.aborted == ["r1"]  # the engine's work is let go, not left running
    with pytest.raises(UnavailableError):
        await guard.check_health()  # Serve restarts the replica
    # It stays unhealthy while idle, and a new request does not clear it: only output does.
    task = asyncio.ensure_future(collect(guard, "r2"))
    await asyncio.sleep(0.1)
    with pytest.raises(UnavailableError):
        await guard.check_health()
    inner.gate.put_nowait(".")
    assert await task == ["."]
    await guard.check_health()


async def test_a_queued_request_on_a_busy_engine_is_not_a_stall() -> None:
    """One request waits 1 s (2.5x the limit) for its first output while another streams."""
    inner = ControlledEngine()
    guard = StallGuard(inner, stall_timeout_s=0.4, poll_s=0.05)
    streaming = asyncio.ensure_future(collect(guard, "busy"))
    queued = asyncio.ensure_future(collect(guard, "queued"))
    for _ in range(10):
        await asyncio.sleep(0.1)
        inner.gate.put_nowait("a")  # each output goes to whichever request waits first
    inner.gate.put_nowait(".")
    inner.gate.put_nowait(".")
    results = await asyncio.gather(streaming, queued)
    assert sum(len(texts) for texts in results) == 12
    assert inner.aborted == []
    await guard.check_health()


async def test_an_engine_that_steps_without_output_is_not_stalled_until_its_steps_stop() -> None:
    """A completion is sent whole at its end: minutes without output on a healthy engine."""
    inner = ControlledEngine()
    inner.steps = 0
    guard = StallGuard(inner, stall_timeout_s=0.4, poll_s=0.05)
    task = asyncio.ensure_future(collect(guard, "long"))
    for _ in range(10):  # 1 s, 2.5x the limit, of steps and no output
        await asyncio.sleep(0.1)
        inner.steps += 1
    assert not task.done()
    await guard.check_health()
    started = time.monotonic()
    with pytest.raises(UnavailableError):  # then the steps stop: a stall
        await task
    assert time.monotonic() - started < 1.5
    assert inner.aborted == ["long"]


async def test_an_idle_engine_is_never_stalled() -> None:
    inner = ControlledEngine()
    guard = StallGuard(inner, stall_timeout_s=0.2, poll_s=0.05)
    await asyncio.sleep(0.5)
    await guard.check_health()
    task = asyncio.ensure_future(collect(guard, "r1"))
    await asyncio.sleep(0.05)
    inner.gate.put_nowait(".")
    assert await task == ["."]  # the idle time before it does not count against it


async def test_closing_the_stream_closes_the_engine_stream() -> None:
    inner = ControlledEngine()
    guard = StallGuard(inner, stall_timeout_s=5)
    stream = guard.generate(REQUEST, "r1")
    inner.gate.put_nowait("a")
    assert (await anext(stream)).samples[0].text == "a"
    await stream.aclose()
    assert guard.stalled_for() == 0.0  # nothing in flight any more


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall_timeout_s"):
        StallGuard(ControlledEngine(), stall_timeout_s=0)
