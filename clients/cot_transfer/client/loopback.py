"""Whether a gRPC target is this machine: a bearer token sent there in plaintext crosses no network.

Targets as gRPC takes them: ``host:port``, ``[v6]:port``, ``dns:[//authority/]host:port``,
``ipv4:a:port,b:port``, ``ipv6:[a]:port``, ``unix:path``. A host name other than ``localhost`` is
not loopback, whatever it resolves to now: the resolver may answer otherwise the next time.
"""

from __future__ import annotations

import ipaddress

LOCAL_SCHEMES = ("unix:", "unix-abstract:")
ADDRESS_LIST_SCHEMES = ("ipv4:", "ipv6:")


def is_loopback(target: str) -> bool:
    """True for 127.0.0.0/8, ::1 (IPv4-mapped too), ``localhost`` and local sockets."""
    if target.startswith(LOCAL_SCHEMES):
        return True
    for scheme in ADDRESS_LIST_SCHEMES:
        if target.startswith(scheme):
            return all(_is_loopback_host(_host(address)) for address in target[len(scheme) :].split(","))
    if target.startswith("dns:"):
        # dns:host:port, dns:///host:port, dns://authority/host:port (the authority is the DNS server)
        target = target[len("dns:") :]
        if target.startswith("//"):
            target = target[2:].partition("/")[2]
    return _is_loopback_host(_host(target))


def _host(address: str) -> str:
    if address.startswith("["):
        return address[1:].partition("]")[0]
    if address.count(":") > 1:  # a bare IPv6 address, no port
        return address
    return address.partition(":")[0]


def _is_loopback_host(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.partition("%")[0])  # drop an IPv6 zone
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
