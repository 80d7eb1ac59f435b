"""What the fault suite needs to know about each server it runs.

The suite is written against ``Adapter``: start a real server serving a
certificate from a live directory, build the module's arguments to deploy
another one, and ask the server (with a handshake) what it serves. A server
module joins the suite by adding an adapter to ``ADAPTERS``; its harness in
tests/support does the real work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.support import apache as apache_support
from tests.support import nginx as nginx_support
from tests.support.pki import Leaf


@dataclass
class Site:
    """A running server and the files it serves."""

    server: object
    cert_path: Path
    key_path: Path
    logs: tuple
    leaf: Leaf

    @property
    def live_dir(self) -> Path:
        return self.cert_path.parent


@dataclass(frozen=True)
class Adapter:
    """One server module under fault injection."""

    name: str
    module: str
    binary: str
    package: str
    # start(base_dir, live_dir, leaf) -> Site, serving ``leaf`` from live_dir
    start: Callable
    # extra module options, e.g. commands pointed at the test instance
    options: Callable
    # Whether the engine's own matrix (every file-system call, disk faults)
    # runs through this server. That code is the same under every server
    # module, so one server carries it; every server gets its own apply,
    # verify and rollback faults.
    engine: bool = False

    def require(self) -> None:
        """Skip when the server cannot run here; under CI that is a failure."""
        if os.access(self.binary, os.X_OK):
            return
        reason = f"{self.binary} is missing (Debian package {self.package})"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)

    def args(self, site: Site, leaf: Leaf, material: Path, state: Path,
             **extra) -> dict:
        """Arguments that deploy ``leaf`` to ``site`` with its state in ``state``."""
        src = leaf.write(material / leaf.sha256[:12])
        args = {
            "cert_src": str(src["cert"]),
            "chain_src": str(src["chain"]),
            "key_src": str(src["privkey"]),
            "cert_path": str(site.cert_path),
            "key_path": str(site.key_path),
            "backup_dir": str(state),
            "verify_endpoint": [f"{site.server.host}:{site.server.port}"],
            "verify_backoff": 0.2,
            "verify_max_backoff": 0.5,
            "verify_attempts": 4,
            **self.options(site),
        }
        args.update(extra)
        return args

    @staticmethod
    def served(site: Site) -> list:
        """SHA-256 of each certificate a new handshake gets, leaf first."""
        return site.server.served_chain_sha256()


def _start_nginx(base: Path, live: Path, leaf: Leaf) -> Site:
    paths = leaf.write(live)
    for unused in ("cert", "chain"):
        paths[unused].unlink()
    server = nginx_support.Nginx(base, paths["fullchain"], paths["privkey"])
    server.start()
    return Site(server, paths["fullchain"], paths["privkey"],
                (server.error_log, server.output_log), leaf)


def _harness_commands(site: Site) -> dict:
    """The config test and reload of the harness's own instance."""
    return {"validate_command": site.server.validate_command,
            "reload_command": site.server.reload_command}


def _start_apache(base: Path, live: Path, leaf: Leaf) -> Site:
    paths = leaf.write(live)
    for unused in ("cert", "chain"):
        paths[unused].unlink()
    server = apache_support.Apache(base, paths["fullchain"], paths["privkey"])
    server.start()
    return Site(server, paths["fullchain"], paths["privkey"],
                (server.error_log, server.output_log), leaf)


NGINX = Adapter("nginx", "nginx_certificate", nginx_support.NGINX_BINARY, "nginx",
                _start_nginx, _harness_commands, engine=True)
APACHE = Adapter("apache", "apache_certificate", apache_support.APACHE_BINARY,
                 "apache2", _start_apache, _harness_commands)

ADAPTERS = (NGINX, APACHE)


def params(engine: bool = False) -> list:
    """``adapter`` parameters: every server, or those carrying the engine matrix."""
    return [pytest.param(a, id=a.name) for a in ADAPTERS if a.engine or not engine]
