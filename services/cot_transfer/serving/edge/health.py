"""The service's health as grpc.health.v1.Health answers it, from one cached reading.

One background task reads whether the model deployments have a replica serving, at most once per
refresh interval, and only while someone asks (probes, open Watch streams): Check, List and Watch
answer from that reading, so a flood of probes costs a lookup each, never a call to Serve. Watch
streams need no token, so they are bounded in number (more are refused with RESOURCE_EXHAUSTED)
and in lifetime (the stream ends with OK and the client opens a new one); they send only changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from grpc_health.v1 import health_pb2

from cot_transfer.domain.errors import OverloadedError

logger = logging.getLogger(__name__)

# Whether the model deployments have a replica serving (the health probe's answer).
ModelsServing = Callable[[], Awaitable[bool]]

HEALTH_SERVICES = frozenset(
    {"", "cot_transfer.v1.StrongModel", "cot_transfer.v1.WeakModel", "cot_transfer.v1.Transfer"}
)
HEALTH_PROBE_TIMEOUT_S = 5.0
# Probes come every few seconds: a replica no one has asked for this long stops reading Serve, and
# the next question waits for a fresh reading rather than get an old one.
IDLE_STOP_S = 60.0

SERVING = int(health_pb2.HealthCheckResponse.SERVING)
NOT_SERVING = int(health_pb2.HealthCheckResponse.NOT_SERVING)
SERVICE_UNKNOWN = int(health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)


class HealthState:
    """What the health service answers: draining, or the last reading of the model deployments."""

    def __init__(
        self,
        models_serving: ModelsServing,
        *,
        refresh_interval_s: float,
        max_watch_streams: int,
        watch_max_lifetime_s: float,
    ) -> None:
        self._models_serving = models_serving
        self._refresh_interval_s = refresh_interval_s
        self._max_watch_streams = max_watch_streams
        self._watch_max_lifetime_s = watch_max_lifetime_s
        self._draining = False
        # None until the reader has read once since it (re)started.
        self._serving: bool | None = None
        self._asked_at = -math.inf
        self._reader: asyncio.Task[None] | None = None
        self._first_reading = asyncio.Event()
        # Set (and replaced) at each change; a Watch waits on the one it took before reading.
        self._changed = asyncio.Event()
        self._watches = 0

    def start_draining(self) -> None:
        self._draining = True
        self._notify()

    def watch_streams(self) -> int:
        return self._watches

    async def status(self, service: str) -> int:
        if service not in HEALTH_SERVICES:
            return SERVICE_UNKNOWN
        if self._draining:
            return NOT_SERVING
        return SERVING if await self._serving_now() else NOT_SERVING

    async def watch(self, service: str) -> AsyncIterator[int]:
        """The status now and at each change, until the stream's lifetime is up or the service drains.

        Raises ``OverloadedError`` when this replica already holds its limit of streams."""
        if self._watches >= self._max_watch_streams:
            raise OverloadedError(
                f"this replica already holds its {self._max_watch_streams} health Watch streams"
                " (ingress.max_watch_streams); use Check, or retry later"
            )
        self._watches += 1
        try:
            ends_at = time.monotonic() + self._watch_max_lifetime_s
            last: int | None = None
            while True:
                changed = self._changed
                status = await self.status(service)
                if status != last:
                    yield status
                    last = status
                left = ends_at - time.monotonic()
                if self._draining or left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await changed.wait()
        finally:
            self._watches -= 1

    async def _serving_now(self) -> bool:
        self._asked_at = time.monotonic()
        if self._reader is None or self._reader.done():
            self._serving = None
            self._first_reading = asyncio.Event()
            self._reader = asyncio.create_task(self._read_while_asked())
        if self._serving is None:
            # Bounded: the reader sets it after one reading, which has its own timeout.
            await self._first_reading.wait()
        return bool(self._serving)

    async def _read_while_asked(self) -> None:
        while self._watches > 0 or time.monotonic() - self._asked_at < IDLE_STOP_S:
            serving = await self._read()
            if serving != self._serving:
                self._serving = serving
                self._notify()
            self._first_reading.set()
            await asyncio.sleep(self._refresh_interval_s)

    async def _read(self) -> bool:
        try:
            async with asyncio.timeout(HEALTH_PROBE_TIMEOUT_S):
                return await self._models_serving()
        except Exception:
            logger.warning("health: the model deployments' state could not be read", exc_info=True)
            return False

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
