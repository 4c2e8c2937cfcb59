"""Who is calling, and how many work calls each caller has in flight on this ingress replica.

A caller is the address its calls come from. The bearer token cannot tell callers apart: the
service accepts one token, which every client of a deployment holds. Behind a proxy (the TLS
gateway) every call comes from the proxy's address; a proxy listed in ``limits.trusted_proxies``
is believed about the client's address it forwards in ``x-forwarded-for`` (the gateway overwrites
whatever the client sent there), as uvicorn's ``--forwarded-allow-ips`` and nginx's ``real_ip``
module do. From any other peer the header is ignored: a client could name itself anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from ipaddress import IPv4Network, IPv6Network, ip_address

from cot_transfer.domain.errors import OverloadedError

FORWARDED_FOR = "x-forwarded-for"


def caller_of(
    peer: str, metadata: Iterable[tuple[str, str | bytes]] = (), trusted: Sequence[IPv4Network | IPv6Network] = ()
) -> str:
    """The caller behind gRPC's peer string (``ipv4:10.0.0.7:51234``, ``ipv6:[::1]:51234``,
    ``unix:/path``): its address without the port, so a client's connections count as one; or,
    when the peer is a ``trusted`` proxy, the client address it forwards (the last one it added)."""
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    host, separator, port = address.rpartition(":")
    if not (separator and port.isdigit()):
        return peer
    if trusted and _address_in(host.strip("[]"), trusted):
        forwarded = [value for key, value in metadata if key.lower() == FORWARDED_FOR]
        client = str(forwarded[-1]).split(",")[-1].strip() if forwarded else ""
        if client:
            return f"forwarded:{client}"
    return f"{kind}:{host}"


def _address_in(host: str, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        address = ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


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
