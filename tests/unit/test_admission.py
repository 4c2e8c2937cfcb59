"""Transfer.Run's calls wait out a full model queue instead of failing the experiment."""

from collections.abc import AsyncGenerator, Sequence

import pytest

from cot_transfer.domain.errors import OverloadedError
from cot_transfer.serving.dataplane.admission import backoff_s, call_when_admitted, stream_when_admitted


class QueueFullError(Exception):
    pass


def no_backoff(attempt: int) -> float:
    return 0.0


async def test_a_refused_call_is_made_again_until_admitted() -> None:
    attempts: list[int] = []
    retries: list[int] = []

    async def call() -> str:
        attempts.append(len(attempts))
        if len(attempts) <= 3:
            raise QueueFullError
        return "done"

    result = await call_when_admitted(call, QueueFullError, on_retry=lambda: retries.append(1), backoff=no_backoff)
    assert result == "done"
    assert len(attempts) == 4 and len(retries) == 3


async def test_other_errors_are_not_retried() -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise ValueError("bad request")

    with pytest.raises(ValueError, match="bad request"):
        await call_when_admitted(call, QueueFullError, backoff=no_backoff)
    assert calls == 1


class CountedStream:
    """A model stream that counts its openings: the first ``refused_openings`` are refused before
    any item; the others yield ``items``, then are refused if ``refused_after``."""

    def __init__(self, items: Sequence[int], refused_openings: int = 0, refused_after: bool = False) -> None:
        self.items, self.refused_openings, self.refused_after = items, refused_openings, refused_after
        self.opened = 0

    async def __call__(self) -> AsyncGenerator[int, None]:
        self.opened += 1
        if self.opened <= self.refused_openings:
            raise QueueFullError
        for item in self.items:
            yield item
        if self.refused_after:
            raise QueueFullError


async def test_a_stream_refused_before_its_first_item_is_opened_again() -> None:
    stream = CountedStream(range(4), refused_openings=2)
    items = [item async for item in stream_when_admitted(stream, QueueFullError, backoff=no_backoff)]
    assert items == [0, 1, 2, 3]
    assert stream.opened == 3


async def test_a_refusal_after_the_first_item_is_an_error_not_a_retry() -> None:
    stream = CountedStream([1], refused_after=True)
    received: list[int] = []
    with pytest.raises(QueueFullError):
        async for item in stream_when_admitted(stream, QueueFullError, backoff=no_backoff):
            received.append(item)
    assert received == [1] and stream.opened == 1


async def test_an_empty_stream_ends_without_retrying() -> None:
    async def stream() -> AsyncGenerator[int, None]:
        return
        yield  # pragma: no cover - makes this an async generator

    assert [item async for item in stream_when_admitted(stream, QueueFullError, backoff=no_backoff)] == []


async def test_closing_early_closes_the_underlying_stream() -> None:
    closed = False

    async def stream() -> AsyncGenerator[int, None]:
        nonlocal closed
        try:
            for item in range(100):
                yield item
        finally:
            closed = True

    admitted = stream_when_admitted(stream, QueueFullError, backoff=no_backoff)
    assert [await anext(admitted), await anext(admitted)] == [0, 1]
    await admitted.aclose()
    assert closed


def test_backoff_grows_to_a_cap_with_jitter() -> None:
    assert all(0.0 <= backoff_s(0) <= 0.05 for _ in range(100))
    assert all(0.0 <= backoff_s(10) <= 2.0 for _ in range(100))
    assert max(backoff_s(10) for _ in range(200)) > 1.0


async def test_a_call_refused_past_the_wait_limit_fails_as_overloaded() -> None:
    attempts = 0

    async def call() -> str:
        nonlocal attempts
        attempts += 1
        raise QueueFullError

    with pytest.raises(OverloadedError, match=r"WeakModel stayed at capacity for 0\.05 s"):
        await call_when_admitted(call, QueueFullError, backoff=lambda attempt: 0.01, max_wait_s=0.05, what="WeakModel")
    assert attempts >= 2  # it did wait and retry before giving up


async def test_a_stream_refused_past_the_wait_limit_fails_as_overloaded() -> None:
    async def refused() -> AsyncGenerator[int, None]:
        raise QueueFullError
        yield 0

    with pytest.raises(OverloadedError, match="capacity"):
        [
            item
            async for item in stream_when_admitted(
                refused, QueueFullError, backoff=lambda attempt: 0.01, max_wait_s=0.03
            )
        ]
