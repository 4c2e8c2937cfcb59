"""HTTP/2 keepalive of the client's channel: how a connection that died without a word is found.

A Run streams for as long as the experiment takes, so no deadline can tell a long healthy stream
from one whose connection went quiet (a NAT or load balancer dropped it, a node vanished): only
pings can. gRPC core needs three settings for that; without either of the last two, a Run behind
a proxy gone quiet hung (tests/unit/test_client_keepalive.py, grpcio 1.85):

* ``grpc.keepalive_time_ms``: how long the connection may be silent before a ping.
* ``grpc.http2.ping_timeout_ms`` beside ``grpc.keepalive_timeout_ms``: a ping already in flight
  (gRPC's own flow-control probe) is waited for with the ping timeout, 60 s by default, and the
  keepalive one with it; the keepalive timeout alone left the call hanging past 40 s.
* ``grpc.http2.max_pings_without_data`` 0: by default gRPC stops pinging after two pings on a
  connection where the client sends nothing, which is all of a server stream's life.

The server has the last word on how often it may be pinged: a gRPC server answers pings more
frequent than its ``grpc.http2.min_ping_interval_without_data_ms`` (5 minutes by default, which
Ray Serve's gRPC proxy keeps) with GOAWAY ``too_many_pings`` after two strikes, and that fails
every call on the connection. The default interval is that 5 minutes, which such a server takes
(a ping exactly at its minimum is no strike); a shorter one needs a server that allows it.
"""

from __future__ import annotations

from dataclasses import dataclass

# gRPC servers' default grpc.http2.min_ping_interval_without_data_ms, in seconds.
GRPC_SERVER_MIN_PING_INTERVAL_S = 300.0


@dataclass(frozen=True)
class Keepalive:
    """``time_s``: silence on the connection before a ping; ``timeout_s``: how long its answer may
    take before the connection is closed and its calls fail with UNAVAILABLE (retryable). A dead
    connection is found within about ``time_s + timeout_s``."""

    time_s: float = GRPC_SERVER_MIN_PING_INTERVAL_S
    timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if not (self.time_s > 0 and self.timeout_s > 0):
            raise ValueError(f"keepalive time and timeout must be above 0 s, not {self.time_s} and {self.timeout_s}")

    def channel_options(self) -> list[tuple[str, int]]:
        timeout_ms = round(self.timeout_s * 1000)
        return [
            ("grpc.keepalive_time_ms", round(self.time_s * 1000)),
            ("grpc.keepalive_timeout_ms", timeout_ms),
            ("grpc.http2.ping_timeout_ms", timeout_ms),
            ("grpc.http2.max_pings_without_data", 0),
            # Pings with no call open would count as strikes at a server that does not permit them
            # (2 hours between pings is its minimum then), and an idle channel needs no watching.
            ("grpc.keepalive_permit_without_calls", 0),
        ]
