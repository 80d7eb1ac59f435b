"""Run a real Envoy on a loopback port, reading one secret from an SDS file.

Only used when an ``envoy`` binary is on PATH; these machines have none, so
on them the tests use ``tests.support.envoy_rules`` instead. The bootstrap
(written as JSON, checked against Envoy's API definitions by the unit tests)
has one listener on 127.0.0.1 whose TLS context asks for the secret through a
file-based SDS config source, and an admin interface on 127.0.0.1 for
statistics. Envoy is started without hot restart, as a child of the test
process, and stopped by its PID only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.nginx import (
    _set_parent_death_signal,
    free_port,
    served_chain_der,
)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
TLS_CONTEXT = ("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
               "DownstreamTlsContext")
DIRECT_RESPONSE = ("type.googleapis.com/envoy.extensions.filters.network."
                   "direct_response.v3.Config")


def binary() -> str | None:
    return shutil.which("envoy")


def bootstrap(sds_path: Path, secret_name: str, port: int, admin_port: int) -> dict:
    """One TLS listener whose certificate comes from the SDS resource file."""
    return {
        "admin": {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": [{
            "name": "certfleet_test",
            "address": {"socket_address": {"address": "127.0.0.1",
                                           "port_value": port}},
            "filter_chains": [{
                "filters": [{
                    "name": "envoy.filters.network.direct_response",
                    "typed_config": {"@type": DIRECT_RESPONSE},
                }],
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": TLS_CONTEXT,
                        "common_tls_context": {
                            "tls_certificate_sds_secret_configs": [{
                                "name": secret_name,
                                "sds_config": {
                                    "path_config_source": {
                                        "path": str(sds_path),
                                        "watched_directory": {
                                            "path": str(Path(sds_path).parent)},
                                    },
                                    "resource_api_version": "V3",
                                },
                            }],
                        },
                    },
                },
            }],
        }]},
    }


class Envoy:
    """A real Envoy with the same interface as ``envoy_rules.EnvoyRules``."""

    kind = "envoy"

    def __init__(self, sds_path: Path, secret_name: str, base_dir: Path) -> None:
        self.sds_path = Path(sds_path)
        self.secret_name = secret_name
        self.base_dir = Path(base_dir)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.admin_port = free_port()
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config = self.base_dir / "envoy.json"
        config.write_text(json.dumps(bootstrap(self.sds_path, self.secret_name,
                                               self.port, self.admin_port)))
        parent = os.getpid()
        with open(self.base_dir / "output.log", "ab") as output:
            self._process = subprocess.Popen(
                [binary(), "-c", str(config), "--disable-hot-restart",
                 "--log-path", str(self.base_dir / "envoy.log")],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: _set_parent_death_signal(parent))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"envoy exited {self._process.returncode}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"envoy did not listen within {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def stats(self) -> dict:
        """Counters of the admin interface (loopback only)."""
        url = f"http://127.0.0.1:{self.admin_port}/stats?format=json"
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310
            data = json.load(answer)
        return {s["name"]: s.get("value") for s in data.get("stats", [])
                if "name" in s}

    def served_sha256(self, server_name: str = "example.com") -> str:
        chain = served_chain_der(self.host, self.port, server_name)
        return hashlib.sha256(chain[0]).hexdigest()

    def wait_until_served(self, sha256: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            served = self.served_sha256()
            if served == sha256 or time.monotonic() >= deadline:
                return served
            time.sleep(0.02)

    def settle(self, seconds: float = 0.3) -> None:
        time.sleep(seconds)
