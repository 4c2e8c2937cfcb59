"""Waiting out a full model queue: retry with backoff until the deployment admits the call.

Serve refuses a call to a deployment whose queue is full (``max_queued_requests``) before any
work starts, so the call can be made again safely. Transfer.Run's own calls use this: an
experiment should slow down under load, not fail; callers of the single-shot RPCs get
RESOURCE_EXHAUSTED instead and retry themselves. Nothing here knows Ray: the refusal is given
as an exception type.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

INITIAL_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0


def backoff_s(attempt: int) -> float:
    """Exponential backoff with full jitter, so calls waiting on one full queue do not retry in step."""
    return random.uniform(0.0, min(MAX_BACKOFF_S, INITIAL_BACKOFF_S * 2**attempt))


async def call_when_admitted(
    call: Callable[[], Awaitable[T]],
    refused: type[BaseException],
    on_retry: Callable[[], None] = lambda: None,
    backoff: Callable[[int], float] = backoff_s,
) -> T:
    """Awaits ``call()``, making it again after a backoff for as long as it raises ``refused``."""
    attempt = 0
    while True:
        try:
            return await call()
        except refused:
            on_retry()
            await asyncio.sleep(backoff(attempt))
            attempt += 1


async def stream_when_admitted(
    open_stream: Callable[[], AsyncGenerator[T, None]],
    refused: type[BaseException],
    on_retry: Callable[[], None] = lambda: None,
    backoff: Callable[[int], float] = backoff_s,
) -> AsyncGenerator[T, None]:
    """Streams ``open_stream()``; a stream refused before its first item is opened again after a
    backoff. A refusal after the first item is an error like any other: work has been done."""
    for attempt in itertools.count():
        stream = open_stream()
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            return
        except refused:
            on_retry()
            await asyncio.sleep(backoff(attempt))
            continue
        async with contextlib.aclosing(stream):
            yield first
            async for item in stream:
                yield item
        return
