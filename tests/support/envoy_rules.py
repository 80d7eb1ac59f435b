"""A loopback TLS server that follows Envoy's documented rules for SDS files.

Envoy's binary cannot be installed on the machines this collection is built
on, so the Envoy tests run against this stand-in unless an ``envoy`` binary is
on PATH. It implements, from Envoy's documentation of file-based SDS and key
rotation, only the behaviour a deploy depends on:

- The SDS resource file names one ``tls_certificate`` secret: its certificate
  chain file, private key file and ``watched_directory`` (by default the
  directories of the two files).
- A *move* of anything into the watched directory makes the server read the
  certificate chain and the key again, together: both are read, then read
  once more, and the pair is used only when nothing changed in between and
  the key belongs to the certificate. Otherwise the previous pair stays in
  use and the failure is counted (Envoy's ``key_rotation_failed``).
- A move of the SDS resource file within its directory makes the server read
  the resource again, and then the pair.
- Nothing else triggers a reload: files written or edited in place, files
  created or deleted, a link removed and created again, or
  moves in any other directory (a link flipped above the watched level).
  Such events are recorded as seen and ignored, so tests can show they came.
- New connections get the pair in use at that moment.

It watches with Linux inotify (through ctypes), serves on 127.0.0.1 only, and
runs in threads of the test process, stopped by ``stop()``.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import select
import socket
import ssl
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.support.nginx import free_port, served_chain_der

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
WATCH_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE
_EVENT = struct.Struct("iIII")
_LIBC = ctypes.CDLL(None, use_errno=True)


class RulesError(RuntimeError):
    """The stand-in could not start: no readable secret in the SDS file."""


@dataclass
class Secret:
    """What the SDS resource says about one TLS certificate secret."""

    cert: str
    key: str
    watched: str


@dataclass
class Event:
    directory: str
    name: str
    mask: int

    @property
    def moved(self) -> bool:
        return bool(self.mask & IN_MOVED_TO)


@dataclass
class Counters:
    reloads: int = 0              # pair reloads that took effect
    rotation_failures: int = 0    # reloads that kept the old pair
    resource_reloads: int = 0     # SDS resource file re-read after a move
    events: list = field(default_factory=list)
    last_error: str = ""


def read_secret(sds_path: Path, name: str) -> Secret:
    """The named secret of an SDS resource file (YAML or JSON)."""
    text = Path(sds_path).read_text()
    document = json.loads(text) if str(sds_path).endswith(".json") \
        else yaml.safe_load(text)
    for resource in document.get("resources", []):
        if resource.get("name") != name:
            continue
        tls = resource["tls_certificate"]
        cert = tls["certificate_chain"]["filename"]
        key = tls["private_key"]["filename"]
        watched = tls.get("watched_directory", {}).get("path") or \
            os.path.dirname(cert)
        return Secret(cert, key, watched)
    raise RulesError(f"{sds_path} has no secret named {name!r}")


class _Inotify:
    """The few inotify calls the watcher needs."""

    def __init__(self) -> None:
        self.fd = _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.dirs: dict = {}

    def watch(self, directory: str) -> None:
        wd = _LIBC.inotify_add_watch(self.fd, os.fsencode(directory), WATCH_MASK)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"cannot watch {directory}")
        self.dirs[wd] = directory

    def unwatch_all(self) -> None:
        for wd in list(self.dirs):
            _LIBC.inotify_rm_watch(self.fd, wd)
        self.dirs.clear()

    def read(self) -> list:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        events, offset = [], 0
        while offset < len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            name = data[offset:offset + length].rstrip(b"\0").decode()
            offset += length
            if wd in self.dirs:
                events.append(Event(self.dirs[wd], name, mask))
        return events

    def close(self) -> None:
        os.close(self.fd)


class EnvoyRules:
    """One stand-in listener serving the secret an SDS resource file names."""

    kind = "rules"

    def __init__(self, sds_path: Path, secret_name: str,
                 host: str = "127.0.0.1") -> None:
        self.sds_path = Path(sds_path)
        self.secret_name = secret_name
        self.host = host
        self.port = free_port(host)
        self.counters = Counters()
        self._private = Path(tempfile.mkdtemp(prefix="envoy-rules-"))
        self._context: ssl.SSLContext | None = None
        self._generation = 0
        self._stop_r, self._stop_w = os.pipe()
        self._threads: list = []
        self._listener: socket.socket | None = None
        self._inotify: _Inotify | None = None
        self.secret: Secret | None = None

    # -- reading the secret, the way the rules say -------------------------

    def _load_resource(self) -> None:
        self.secret = read_secret(self.sds_path, self.secret_name)
        self._inotify.unwatch_all()
        self._inotify.watch(str(self.sds_path.parent))
        if os.path.realpath(self.secret.watched) != os.path.realpath(
                self.sds_path.parent):
            self._inotify.watch(self.secret.watched)

    def _read_pair(self) -> tuple:
        """Certificate and key, read together and checked for a stable read."""
        first = (Path(self.secret.cert).read_bytes(),
                 Path(self.secret.key).read_bytes())
        again = (Path(self.secret.cert).read_bytes(),
                 Path(self.secret.key).read_bytes())
        if [hashlib.sha256(d).digest() for d in first] != \
                [hashlib.sha256(d).digest() for d in again]:
            raise RulesError("the pair changed while it was read")
        return first

    def _reload_pair(self) -> None:
        """Use the pair the secret names now, or keep the old one on failure."""
        try:
            cert, key = self._read_pair()
            self._generation += 1
            directory = self._private / str(self._generation)
            directory.mkdir(mode=0o700)
            (directory / "cert.pem").write_bytes(cert)
            (directory / "key.pem").write_bytes(key)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
        except (OSError, ssl.SSLError, RulesError) as exc:
            self.counters.rotation_failures += 1
            self.counters.last_error = str(exc)
            if self._context is None:
                raise
            return
        self._context = context
        self.counters.reloads += 1

    def _on_event(self, event: Event) -> None:
        self.counters.events.append(event)
        if not event.moved:
            return  # edits, creations and deletions are not what Envoy watches
        if (event.directory == str(self.sds_path.parent)
                and event.name == self.sds_path.name):
            self.counters.resource_reloads += 1
            try:
                self._load_resource()
            except (OSError, RulesError, KeyError, ValueError) as exc:
                self.counters.rotation_failures += 1
                self.counters.last_error = str(exc)
                return
            self._reload_pair()
        elif os.path.realpath(event.directory) == os.path.realpath(
                self.secret.watched):
            self._reload_pair()

    # -- threads ---------------------------------------------------------------

    def _watch_loop(self) -> None:
        while True:
            ready = select.select([self._inotify.fd, self._stop_r], [], [])[0]
            if self._stop_r in ready:
                return
            for event in self._inotify.read():
                self._on_event(event)

    def _accept_loop(self) -> None:
        while True:
            ready = select.select([self._listener, self._stop_r], [], [])[0]
            if self._stop_r in ready:
                return
            try:
                conn, _addr = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn, self._context),
                             daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket, context: ssl.SSLContext) -> None:
        conn.settimeout(5)
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"certfleet envoy rules\n")
        except (OSError, ssl.SSLError):
            conn.close()

    # -- the harness interface shared with the real Envoy --------------------------

    def start(self) -> None:
        self._inotify = _Inotify()
        self._load_resource()
        self._reload_pair()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, self.port))
        self._listener.listen(64)
        for loop in (self._watch_loop, self._accept_loop):
            thread = threading.Thread(target=loop, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        if not self._threads:
            return
        os.write(self._stop_w, b"x")
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
        self._listener.close()
        self._inotify.close()
        os.close(self._stop_r)
        os.close(self._stop_w)

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
        """Give the watcher time to see (and maybe ignore) recent events."""
        time.sleep(seconds)
