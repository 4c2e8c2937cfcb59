"""Time limits on the ingress's calls to the model replicas.

A replica that stops answering (a lost connection nobody reset, an event loop blocked, a call
lost between processes) would otherwise hold a call, and the run waiting on it, until the
client's deadline, and a run has none by default. Past the limit the replica call is cancelled
and the caller sees UNAVAILABLE, which clients retry and a run turns into that problem's
transient error. It is not DEADLINE_EXCEEDED: that is the caller's own deadline, which no one
retries. Nothing here knows Ray: the call is an awaitable and its cancel function.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from cot_transfer.domain.errors import UnavailableError

T = TypeVar("T")


def _too_slow(what: str, timeout_s: float, waited_for: str) -> UnavailableError:
    return UnavailableError(
        f"{what} did not {waited_for} within {timeout_s:g} s (ingress.replica_call_timeout_s); retry with backoff"
    )


async def answer_within(response: Awaitable[T], cancel: Callable[[], None], timeout_s: float, what: str) -> T:
    """``response``'s result; past ``timeout_s`` the call is cancelled with ``cancel`` and fails UNAVAILABLE."""
    try:
        async with asyncio.timeout(timeout_s):
            return await response
    except TimeoutError:
        cancel()
        raise _too_slow(what, timeout_s, "answer") from None


async def events_within(events: AsyncIterator[T], timeout_s: float, what: str) -> AsyncIterator[T]:
    """``events``, each within ``timeout_s`` of the one before (of the start, for the first): a stream
    is bounded by its silences, since a long CoT may stream for longer than any one wait. Past the
    limit it fails UNAVAILABLE; the caller cancels the stream on leaving it early."""
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                event = await anext(events)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _too_slow(what, timeout_s, "send its next event") from None
        yield event
