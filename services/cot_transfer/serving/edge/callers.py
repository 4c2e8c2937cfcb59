"""Who is calling, and how many work calls each caller has in flight on this ingress replica.

A caller is the address its calls come from. The bearer token cannot tell callers apart: the
service accepts one token, which every client of a deployment holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from cot_transfer.domain.errors import OverloadedError


def caller_of(peer: str) -> str:
    """The caller behind gRPC's peer string (``ipv4:10.0.0.7:51234``, ``ipv6:[::1]:51234``,
    ``unix:/path``): its address without the port, so a client's connections count as one."""
    kind, _, address = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host, separator, port = address.rpartition(":")
        if separator and port.isdigit():
            return f"{kind}:{host}"
    return peer


class CallerLimit:
    """At most ``limit`` calls in flight per caller; one more is refused at once (RESOURCE_EXHAUSTED),
    so one caller cannot take every slot of the replica from the others. Only callers with calls in
    flight are kept."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._limit = limit
        self._in_flight: Counter[str] = Counter()

    @contextmanager
    def hold(self, caller: str) -> Iterator[None]:
        if self._in_flight[caller] >= self._limit:
            raise OverloadedError(
                f"caller {caller} has {self._in_flight[caller]} calls in flight on this ingress replica, its limit"
                " (limits.max_concurrent_calls_per_caller); retry with backoff"
            )
        self._in_flight[caller] += 1
        try:
            yield
        finally:
            self._in_flight[caller] -= 1
            if not self._in_flight[caller]:
                del self._in_flight[caller]

    def in_flight(self, caller: str) -> int:
        return self._in_flight[caller]
