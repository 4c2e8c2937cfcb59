"""Waiting out a full model queue: retry with backoff until the deployment admits the call.

Serve refuses a call to a deployment whose queue is full (``max_queued_requests``) before any
work starts, so the call can be made again safely. Transfer.Run's own calls use this: an
experiment should slow down under load, not fail; callers of the single-shot RPCs get
RESOURCE_EXHAUSTED instead and retry themselves. The wait is bounded (``max_wait_s``): a
deployment that stays full that long fails the call with ``OverloadedError``, which a run turns
into a per-problem error, so a stuck deployment cannot hang an experiment forever. Nothing here
knows Ray: the refusal is given as an exception type.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

from cot_transfer.domain.errors import OverloadedError

T = TypeVar("T")

INITIAL_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0


def backoff_s(attempt: int) -> float:
    """Exponential backoff with full jitter, so calls waiting on one full queue do not retry in step."""
    return random.uniform(0.0, min(MAX_BACKOFF_S, INITIAL_BACKOFF_S * 2**attempt))


class _WaitBudget:
    """The time left to wait for admission; ``None`` waits without end."""

    def __init__(self, max_wait_s: float | None, what: str) -> None:
        self._deadline = None if max_wait_s is None else time.monotonic() + max_wait_s
        self._max_wait_s = max_wait_s
        self._what = what

    async def sleep(self, seconds: float) -> None:
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise OverloadedError(
                    f"{self._what} stayed at capacity for {self._max_wait_s:g} s; retry later with backoff"
                )
            seconds = min(seconds, left)
        await asyncio.sleep(seconds)


async def call_when_admitted(
    call: Callable[[], Awaitable[T]],
    refused: type[BaseException],
    on_retry: Callable[[], None] = lambda: None,
    backoff: Callable[[int], float] = backoff_s,
    max_wait_s: float | None = None,
    what: str = "the model deployment",
) -> T:
    """Awaits ``call()``, making it again after a backoff while it raises ``refused``, for at most
    ``max_wait_s`` seconds of waiting (then ``OverloadedError``)."""
    budget = _WaitBudget(max_wait_s, what)
    attempt = 0
    while True:
        try:
            return await call()
        except refused:
            on_retry()
            await budget.sleep(backoff(attempt))
            attempt += 1


async def stream_when_admitted(
    open_stream: Callable[[], AsyncGenerator[T, None]],
    refused: type[BaseException],
    on_retry: Callable[[], None] = lambda: None,
    backoff: Callable[[int], float] = backoff_s,
    max_wait_s: float | None = None,
    what: str = "the model deployment",
) -> AsyncGenerator[T, None]:
    """Streams ``open_stream()``; a stream refused before its first item is opened again after a
    backoff, for at most ``max_wait_s`` seconds of waiting (then ``OverloadedError``). A refusal
    after the first item is an error like any other: work has been done."""
    budget = _WaitBudget(max_wait_s, what)
    for attempt in itertools.count():
        stream = open_stream()
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            return
        except refused:
            on_retry()
            await budget.sleep(backoff(attempt))
            continue
        async with contextlib.aclosing(stream):
            yield first
            async for item in stream:
                yield item
        return
