# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's primary IP address, read from the kernel without sending traffic.

The usual trick, ``connect()`` on a UDP socket to a public address, sends no
packet but still names an outside host; here the answer comes from the routing
tables instead (``/proc/net/route``, ``/proc/net/ipv6_route``) and from the
interfaces' own addresses (``ioctl`` on an unconnected socket for IPv4,
``/proc/net/if_inet6`` for IPv6). The primary address is the one on the
interface of the default route with the lowest metric, IPv4 before IPv6. A
host without a default route gets the address of the first interface that is
up and not loopback, in interface index order, else its loopback address.

The parsers are pure functions of file text, so tests feed them any table.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass, field

IPV4_ROUTES = "/proc/net/route"
IPV6_ROUTES = "/proc/net/ipv6_route"
IPV6_ADDRESSES = "/proc/net/if_inet6"

RTF_UP = 0x0001
RTF_REJECT = 0x0200
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
SIOCGIFFLAGS = 0x8913
SIOCGIFADDR = 0x8915
# if_inet6 flags of addresses that cannot be used as a source yet or any more:
# tentative, failed duplicate address detection, deprecated.
_IFA_UNUSABLE = 0x40 | 0x08 | 0x20
_IFA_TEMPORARY = 0x01
_SCOPE_GLOBAL = 0x00


@dataclass(frozen=True)
class Route:
    """One routing table entry that matters here."""

    interface: str
    destination: ipaddress.IPv4Network | ipaddress.IPv6Network
    metric: int
    flags: int

    @property
    def is_default(self) -> bool:
        return self.destination.prefixlen == 0

    @property
    def usable(self) -> bool:
        return bool(self.flags & RTF_UP) and not self.flags & RTF_REJECT


@dataclass
class Interface:
    """A network interface, its state and its usable addresses."""

    name: str
    index: int
    up: bool
    loopback: bool
    ipv4: list[str] = field(default_factory=list)
    ipv6: list[str] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return self.ipv4 + self.ipv6


def _hex_ipv4(text: str) -> ipaddress.IPv4Address:
    """A /proc/net/route field: 32 bits in host (little-endian) byte order."""
    return ipaddress.IPv4Address(struct.pack("<I", int(text, 16)))


def parse_ipv4_routes(text: str) -> list[Route]:
    """Parse /proc/net/route; a line that does not parse is skipped."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            network = ipaddress.IPv4Network(
                (_hex_ipv4(fields[1]), str(_hex_ipv4(fields[7]))), strict=False
            )
            routes.append(
                Route(fields[0], network, int(fields[6]), int(fields[3], 16))
            )
        except ValueError:
            continue
    return routes


def parse_ipv6_routes(text: str) -> list[Route]:
    """Parse /proc/net/ipv6_route; a line that does not parse is skipped."""
    routes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            network = ipaddress.IPv6Network(
                (address, int(fields[1], 16)), strict=False
            )
            routes.append(
                Route(fields[9], network, int(fields[5], 16), int(fields[8], 16))
            )
        except ValueError:
            continue
    return routes


def parse_ipv6_addresses(text: str) -> dict[str, list[str]]:
    """Global IPv6 addresses per interface from /proc/net/if_inet6.

    Tentative, deprecated and duplicate addresses are left out; stable
    addresses come before temporary (privacy) ones.
    """
    found: dict[str, list[tuple[bool, str]]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        try:
            address = str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
            scope, flags = int(fields[3], 16), int(fields[4], 16)
        except ValueError:
            continue
        if scope != _SCOPE_GLOBAL or flags & _IFA_UNUSABLE:
            continue
        found.setdefault(fields[5], []).append((bool(flags & _IFA_TEMPORARY), address))
    return {name: [pair[1] for pair in sorted(pairs)] for name, pairs in found.items()}


def _ioctl(sock: socket.socket, request: int, name: str) -> bytes | None:
    """One interface ioctl; ``None`` when the interface has no such value."""
    try:
        request_buffer = struct.pack("256s", name.encode()[:15])
        return fcntl.ioctl(sock.fileno(), request, request_buffer)
    except OSError:
        return None


def read_interfaces(ipv6_addresses: dict[str, list[str]]) -> list[Interface]:
    """Every interface with its flags and primary IPv4 address, by index.

    The socket is never bound or connected: it only carries the ioctls.
    """
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for index, name in sorted(socket.if_nameindex()):
            raw_flags = _ioctl(sock, SIOCGIFFLAGS, name)
            flags = struct.unpack("H", raw_flags[16:18])[0] if raw_flags else 0
            raw_address = _ioctl(sock, SIOCGIFADDR, name)
            ipv4 = [socket.inet_ntoa(raw_address[20:24])] if raw_address else []
            found.append(Interface(
                name=name, index=index, up=bool(flags & IFF_UP),
                loopback=bool(flags & IFF_LOOPBACK), ipv4=ipv4,
                ipv6=ipv6_addresses.get(name, []),
            ))
    return found


def _default_route(routes: list[Route]) -> Route | None:
    candidates = [r for r in routes if r.is_default and r.usable]
    return min(candidates, key=lambda r: r.metric) if candidates else None


def choose_primary(
    ipv4_routes: list[Route], ipv6_routes: list[Route], interfaces: list[Interface]
) -> dict:
    """Pick the primary address; the result says which rule chose it.

    1. The default route with the lowest metric, IPv4 first: the address of
       its interface in that family.
    2. No usable default route: the first interface (by index) that is up,
       not loopback and has an address, IPv4 before IPv6.
    3. Else the loopback address.
    """
    by_name = {i.name: i for i in interfaces}
    for family, routes in (("ipv4", ipv4_routes), ("ipv6", ipv6_routes)):
        route = _default_route(routes)
        interface = by_name.get(route.interface) if route else None
        addresses = getattr(interface, family, []) if interface else []
        if addresses:
            return _primary(addresses[0], interface, "default route")
    for interface in interfaces:
        if interface.up and not interface.loopback and interface.addresses:
            return _primary(interface.addresses[0], interface, "first interface up")
    for interface in interfaces:
        if interface.loopback and interface.addresses:
            return _primary(interface.addresses[0], interface, "loopback")
    return {"address": "127.0.0.1", "interface": None, "family": "ipv4",
            "source": "loopback"}


def _primary(address: str, interface: Interface, source: str) -> dict:
    family = "ipv6" if ":" in address else "ipv4"
    return {"address": address, "interface": interface.name, "family": family,
            "source": source}


def _read_text(path: str) -> str:
    """A kernel table's text; a missing table (no IPv6, say) reads as empty."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def primary_address(
    ipv4_routes_path: str = IPV4_ROUTES,
    ipv6_routes_path: str = IPV6_ROUTES,
    ipv6_addresses_path: str = IPV6_ADDRESSES,
) -> dict:
    """The host's primary address from its routing tables and interfaces."""
    interfaces = read_interfaces(parse_ipv6_addresses(_read_text(ipv6_addresses_path)))
    return choose_primary(
        parse_ipv4_routes(_read_text(ipv4_routes_path)),
        parse_ipv6_routes(_read_text(ipv6_routes_path)),
        interfaces,
    )
