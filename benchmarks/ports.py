"""Free loopback ports for the stacks and clusters the benchmarks and tests start.

Not from the kernel's bind(0): that hands out ports of its ephemeral range, the range Ray's own
processes take theirs from (an agent, a worker's gRPC server) between our check and Serve's proxy
start; a CI run lost its shared stack to such a port. These come from below the ephemeral range
and above Ray's worker ports (10002-19999), and are checked on ``::`` too, where Serve's gRPC
proxy binds.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from cot_transfer.serving.wiring.local import bind_failure

PORT_FLOOR = 20000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_floor() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free on 127.0.0.1 and on ``::``, outside the ranges the kernel and Ray pick from."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports, each free on 127.0.0.1 and on ``::`` when asked."""
    ceiling = _ephemeral_floor()
    rng = random.SystemRandom()
    found: list[int] = []
    for _ in range(200 * count):
        if len(found) == count:
            return found
        # A machine whose ephemeral range starts low leaves no room below it: the kernel's choice then.
        port = rng.randrange(PORT_FLOOR, ceiling) if ceiling > PORT_FLOOR + 1000 else 0
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))
                port = int(sock.getsockname()[1])
        except OSError:
            continue
        if port not in found and bind_failure("::", port) is None:
            found.append(port)
    if len(found) == count:
        return found
    raise RuntimeError(f"no {count} free ports found between {PORT_FLOOR} and {ceiling}")
