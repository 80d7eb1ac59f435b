"""The primary address: routing tables and interfaces, read without traffic.

The parsers get kernel tables as text (copied from real hosts), and
``choose_primary`` gets fake interfaces, so every rule is tested on any
machine; one test reads this machine's own tables.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import network
from ansible_collections.certfleet.deploy.plugins.module_utils.network import (
    Interface,
)

IPV4_TABLE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
garbage line
"""
NO_DEFAULT_IPV4 = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""
IPV6_TABLE = """\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 \
00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
"""
IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
fd0000000000000000000000000000aa 04 40 00 81     eth0
fd0000000000000000000000000000bb 04 40 00 c0     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
zz 04 40 00 80 eth0
"""


def lo() -> Interface:
    return Interface("lo", 1, up=True, loopback=True, ipv4=["127.0.0.1"],
                     ipv6=["::1"])


def eth(name="eth0", index=2, up=True, ipv4=("192.0.2.2",), ipv6=()) -> Interface:
    return Interface(name, index, up=up, loopback=False, ipv4=list(ipv4),
                     ipv6=list(ipv6))


def test_ipv4_table_is_parsed_in_host_byte_order() -> None:
    routes = network.parse_ipv4_routes(IPV4_TABLE)
    assert [(r.interface, str(r.destination), r.metric) for r in routes] == [
        ("wlan0", "0.0.0.0/0", 600),
        ("eth0", "0.0.0.0/0", 100),
        ("eth0", "192.0.2.0/24", 100),
    ]
    assert [r.is_default for r in routes] == [True, True, False]


def test_ipv6_table_keeps_rejects_but_marks_them_unusable() -> None:
    routes = network.parse_ipv6_routes(IPV6_TABLE + "short line\n")
    assert [(r.interface, str(r.destination)) for r in routes] == [
        ("eth0", "fd00::/64"), ("eth0", "::/0"), ("lo", "::/0"),
    ]
    assert [r.usable for r in routes] == [True, True, False]
    assert routes[1].metric == 0x400


def test_if_inet6_keeps_usable_global_addresses_stable_first() -> None:
    # aa is temporary (flag 0x01): after the stable one. bb is tentative and
    # deprecated: left out. Link-local and host scope are left out too.
    assert network.parse_ipv6_addresses(IF_INET6) == {
        "eth0": ["fd00::2", "fd00::aa"],
    }


def test_default_route_with_the_lowest_metric_wins() -> None:
    routes = network.parse_ipv4_routes(IPV4_TABLE)
    interfaces = [lo(), eth("wlan0", 2, ipv4=["192.168.2.7"]), eth("eth0", 3)]
    assert network.choose_primary(routes, [], interfaces) == {
        "address": "192.0.2.2", "interface": "eth0", "family": "ipv4",
        "source": "default route",
    }


def test_ipv6_default_route_when_there_is_no_ipv4_one() -> None:
    interfaces = [lo(), eth(ipv4=(), ipv6=["fd00::2"])]
    chosen = network.choose_primary(
        network.parse_ipv4_routes(NO_DEFAULT_IPV4),
        network.parse_ipv6_routes(IPV6_TABLE), interfaces,
    )
    assert chosen == {"address": "fd00::2", "interface": "eth0", "family": "ipv6",
                      "source": "default route"}


def test_default_route_on_an_interface_without_address_falls_through() -> None:
    interfaces = [lo(), eth("eth0", 2, ipv4=()), eth("eth1", 3, ipv4=["10.0.0.5"])]
    chosen = network.choose_primary(network.parse_ipv4_routes(IPV4_TABLE), [],
                                    interfaces)
    assert chosen["address"] == "10.0.0.5"
    assert chosen["source"] == "first interface up"


def test_no_default_route_takes_the_first_interface_that_is_up() -> None:
    interfaces = [lo(), eth("eth0", 2, up=False, ipv4=["198.51.100.1"]),
                  eth("eth1", 3, ipv4=()), eth("eth2", 4, ipv4=["203.0.113.9"]),
                  eth("eth3", 5, ipv4=["203.0.113.10"])]
    assert network.choose_primary([], [], interfaces) == {
        "address": "203.0.113.9", "interface": "eth2", "family": "ipv4",
        "source": "first interface up",
    }


def test_only_loopback_left_gives_the_loopback_address() -> None:
    assert network.choose_primary([], [], [lo(), eth(up=False)]) == {
        "address": "127.0.0.1", "interface": "lo", "family": "ipv4",
        "source": "loopback",
    }
    assert network.choose_primary([], [], [])["address"] == "127.0.0.1"


def test_missing_tables_read_as_no_routes(tmp_path) -> None:
    chosen = network.primary_address(str(tmp_path / "none"), str(tmp_path / "none6"),
                                     str(tmp_path / "none-if6"))
    assert chosen["source"] in ("first interface up", "loopback")


def _ip_addresses() -> dict:
    """This host's interfaces as iproute2 sees them (a second opinion)."""
    proc = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True,
                          text=True, check=True)
    return {i["ifname"]: i for i in json.loads(proc.stdout)}


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed")
def test_interfaces_of_this_host_match_iproute2() -> None:
    seen = _ip_addresses()
    found = network.read_interfaces(
        network.parse_ipv6_addresses(open(network.IPV6_ADDRESSES).read())
    )
    assert [i.index for i in found] == sorted(i.index for i in found)
    for interface in found:
        theirs = seen[interface.name]
        assert interface.up == ("UP" in theirs["flags"])
        assert interface.loopback == ("LOOPBACK" in theirs["flags"])
        ipv4 = [a["local"] for a in theirs["addr_info"] if a["family"] == "inet"]
        assert interface.ipv4 == ipv4[:1]
        ipv6 = [a["local"] for a in theirs["addr_info"] if a["family"] == "inet6"]
        assert set(interface.ipv6) <= set(ipv6)
