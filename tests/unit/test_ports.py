"""Ports for the stacks tests and benchmarks start: never from the ranges the kernel and Ray hand
out themselves, and free on both address families."""

from __future__ import annotations

import socket

import pytest

from benchmarks import ports


def test_ports_come_from_below_the_ephemeral_range_and_above_rays_worker_ports() -> None:
    floor = ports._ephemeral_floor()
    picked = ports.free_ports(50)
    assert len(set(picked)) == 50
    assert all(ports.PORT_FLOOR <= port < floor for port in picked)


def test_a_port_held_on_ipv6_only_is_not_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    held = socket.socket(socket.AF_INET6)
    held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    held.bind(("::", 0))
    port = held.getsockname()[1]
    candidates = iter([port, port, 0])
    monkeypatch.setattr(ports.random.SystemRandom, "randrange", lambda self, low, high: next(candidates))
    monkeypatch.setattr(ports, "PORT_FLOOR", 1)
    with held:
        assert ports.free_port() != port
