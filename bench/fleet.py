"""A local fleet for the benchmark: N nginx instances on 127.0.0.x.

Every host of the inventory is one nginx started by the test harness
(tests/support/nginx.py) on its own loopback address and port, with its
config, logs, live certificate files and deploy state under one work
directory. Hosts use ``ansible_connection=local`` and an explicit
``ansible_python_interpreter``, so Ansible talks to no network at all.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.nginx import Nginx
from tests.support.pki import Leaf

FIRST_ADDRESS = ipaddress.ip_address("127.0.0.2")
MAX_HOSTS = 250


@dataclass
class Host:
    """One inventory host: its nginx and where its files live."""

    name: str
    server: Nginx
    live_dir: Path
    state_dir: Path

    @property
    def endpoint(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    def inventory_vars(self) -> dict:
        return {
            "ansible_host": self.server.host,
            "nginx_port": self.server.port,
            "live_dir": str(self.live_dir),
            "state_dir": str(self.state_dir),
            "nginx_test_cmd": self.server.validate_command,
            "nginx_reload_cmd": self.server.reload_command,
        }


class Fleet:
    """Start, describe and stop the nginx instances of one benchmark run."""

    def __init__(self, root: Path, size: int, leaf: Leaf) -> None:
        if not 1 <= size <= MAX_HOSTS:
            raise ValueError(f"A fleet has 1 to {MAX_HOSTS} hosts, not {size}.")
        self.root = root
        self.hosts: list[Host] = []
        for number in range(size):
            name = f"web{number + 1:03d}"
            base = root / "hosts" / name
            paths = leaf.write(base / "live")
            server = Nginx(base / "nginx", paths["fullchain"], paths["privkey"],
                           host=str(FIRST_ADDRESS + number))
            for unused in ("cert", "chain"):
                paths[unused].unlink()
            self.hosts.append(Host(name, server, base / "live", base / "state"))

    def start(self) -> None:
        for host in self.hosts:
            host.server.start()

    def stop(self) -> None:
        for host in self.hosts:
            host.server.stop()

    def write_inventory(self, path: Path, python: str = sys.executable) -> Path:
        """An inventory (JSON is valid YAML) of every host in group ``fleet``."""
        inventory = {
            "fleet": {
                "hosts": {h.name: h.inventory_vars() for h in self.hosts},
                "vars": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": python,
                },
            }
        }
        path.write_text(json.dumps(inventory, indent=1))
        return path

    def served(self) -> dict:
        """What each host serves now: its leaf's SHA-256, or the error."""
        seen = {}
        for host in self.hosts:
            try:
                seen[host.name] = host.server.served_sha256()
            except OSError as exc:
                seen[host.name] = f"error: {exc}"
        return seen
