"""Loopback HTTP receivers that stand in for notification services in tests.

``Receiver`` is a threaded ``http.server`` on 127.0.0.1 that records every
request (method, path, query, headers, body) and answers from a script:
``Reply(429, headers={"Retry-After": "1"})`` then the default ``Reply()``
(200 ``ok``), say. ``SilentReceiver`` accepts TCP connections and never
answers, to prove a client gives up after its timeout instead of hanging.

Both refuse anything but a loopback address: the tests never send a
notification off this machine. They are mocks of the SaaS APIs, which cannot
run here; they check what each service documents about its requests.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit


def _require_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"Receiver host {host!r} is not a loopback address")


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: object, **headers: str) -> Reply:
        return cls(status, json.dumps(data).encode(),
                   dict(headers, **{"Content-Type": "application/json"}))


@dataclass
class Recorded:
    """One request as the receiver saw it."""

    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    at: float

    @property
    def json(self) -> object:
        return json.loads(self.body.decode())

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Receiver:
    """A recording HTTP server on a loopback address and a free port."""

    def __init__(self, host: str = "127.0.0.1", default: Reply | None = None) -> None:
        _require_loopback(host)
        self.host = host
        self.default = default or Reply()
        self.requests: list[Recorded] = []
        self._script: list[Reply] = []
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the receiver is not started"
        return self._server.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, then with the default."""
        with self._lock:
            self._script.extend(replies)

    def _record(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            return self._script.pop(0) if self._script else self.default

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Recorded]:
        """Wait until ``count`` requests arrived; return all seen so far."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            return list(self.requests)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                reply = receiver._record(Recorded(
                    method=self.command, path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body, at=time.monotonic(),
                ))
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, format: str, *args: object) -> None:
                """Keep the test output quiet."""

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"receiver-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()


class SilentReceiver:
    """Accepts TCP connections on loopback, reads nothing, answers nothing."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        _require_loopback(host)
        self.host = host
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name="silent-receiver")

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn = self._listener.accept()[0]
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections.append(conn)

    def start(self) -> SilentReceiver:
        self._listener.bind((self.host, 0))
        self._listener.listen(16)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for conn in self.connections:
            conn.close()
        self._listener.close()

    def __enter__(self) -> SilentReceiver:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()
