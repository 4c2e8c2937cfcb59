"""An engine that is wedged, not dead, fails its requests and its health check.

A dead engine raises (``EngineDeadError``) and Serve replaces the replica. A wedged one (a hung
collective, a stuck scheduler, a server that accepted the request and went quiet) raises nothing:
every request on it waits for ever, and so does the experiment. ``StallGuard`` wraps any engine
and watches its progress as a whole: while it has requests in flight and none of them has
produced output for ``stall_timeout_s``, the engine is stalled. Each waiting request is then
aborted and fails with UNAVAILABLE (the client runs it again, on a healthy replica), and
``check_health`` raises until output flows again, so Serve restarts the replica.

Progress is the engine's, not one request's: a request queued behind others produces nothing for
a long time on a busy, healthy engine, and must not count as a stall. Nor does a completion that
is sent whole at its end: an engine that reports its steps (``stats()["steps"]``, vLLM's after
each scheduler step) progresses with every step. The clock starts when the engine goes from idle
to busy, so an idle engine is never stalled either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from cot_transfer.domain.errors import UnavailableError
from cot_transfer.engine.base import Engine, GenerationOutput, GenerationRequest, PromptTokenizer


class StallGuard(Engine):
    def __init__(
        self,
        engine: Engine,
        stall_timeout_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float | None = None,
    ) -> None:
        if stall_timeout_s <= 0:
            raise ValueError(f"stall_timeout_s must be positive, got {stall_timeout_s}")
        self.engine = engine
        self.stall_timeout_s = stall_timeout_s
        self._clock = clock
        # How often a waiting request looks at the engine's progress: a fraction of the limit, so a
        # stall is noticed within about 1.25 times it.
        self._poll_s = poll_s if poll_s is not None else min(stall_timeout_s / 4, 5.0)
        self._in_flight = 0
        self._last_progress = clock()
        self._stalled = False
        self._steps: float | None = None

    def stalled_for(self) -> float:
        """Seconds the engine has been busy without progress; 0 while idle or progressing."""
        if self._in_flight == 0:
            return 0.0
        steps = self.engine.stats().get("steps")
        if steps is not None and steps != self._steps:
            self._steps = steps
            self._progress()
        return max(0.0, self._clock() - self._last_progress)

    def _progress(self) -> None:
        self._last_progress = self._clock()
        self._stalled = False

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncGenerator[GenerationOutput, None]:
        if self._in_flight == 0:
            # An idle engine owed nothing until now; a stall seen earlier stands until output flows.
            self._last_progress = self._clock()
        self._in_flight += 1
        outputs = aiter(self.engine.generate(request, request_id))
        try:
            while True:
                output = await self._next_or_stall(outputs, request_id)
                if output is None:
                    return
                self._progress()
                yield output
        finally:
            self._in_flight -= 1
            close = getattr(outputs, "aclose", None)
            if close is not None:
                await close()

    async def _next_or_stall(
        self, outputs: AsyncIterator[GenerationOutput], request_id: str
    ) -> GenerationOutput | None:
        pending = asyncio.ensure_future(anext(outputs))
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=self._poll_s)
                if done:
                    try:
                        return pending.result()
                    except StopAsyncIteration:
                        return None
                stalled = self.stalled_for()
                if stalled >= self.stall_timeout_s:
                    self._stalled = True
                    await self.engine.abort(request_id)
                    raise UnavailableError(
                        f"the engine produced no output for {stalled:.0f} s with requests in flight"
                        f" (limit {self.stall_timeout_s:g} s); the replica's health check now fails"
                    )
        finally:
            if not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    async def check_health(self) -> None:
        if self._stalled or self.stalled_for() >= self.stall_timeout_s:
            raise UnavailableError(f"the engine has produced no output for {self.stalled_for():.0f} s")
        await self.engine.check_health()

    async def start(self) -> None:
        await self.engine.start()

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    async def shutdown(self) -> None:
        await self.engine.shutdown()

    @property
    def tokenizer(self) -> PromptTokenizer:
        return self.engine.tokenizer

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    def stats(self) -> dict[str, float]:
        return self.engine.stats()

    def fingerprint(self) -> str:
        return self.engine.fingerprint()
