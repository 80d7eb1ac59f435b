"""Run a real HAProxy on a loopback port, with its own config, for tests.

Each ``HAProxy`` owns a directory D: its config, pid file, master CLI socket
(``D/master.sock``), admin socket (``D/admin.sock``, the runtime API at
level admin) and output log all live there, so nothing touches /etc/haproxy
or the machine's own haproxy service.

HAProxy runs in master-worker mode (``-W``) in the foreground, as a child of
the test process, so the harness knows the master's PID for sure and the
kernel stops it if the test process dies; a thread reaps it the moment it
exits. A reload (``reload`` on the master CLI, or SIGUSR2 to the master)
keeps the master's PID and replaces the worker; a runtime API update
replaces nothing, which is how the tests tell the two apart.

Processes are only ever signalled by PID, after checking that the PID is a
haproxy run with this instance's config.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.support.nginx import (
    PROC_GONE,
    _alive,
    _children,
    _require_loopback,
    _set_parent_death_signal,
    _signal,
    free_port,
    served_chain_der,
)

HAPROXY_BINARY = "/usr/sbin/haproxy"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
_MASTER_LINE = re.compile(r"^\s*\d+\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]", re.M)


class HAProxyError(RuntimeError):
    """HAProxy did not start, stop or answer as the harness expected."""


_RUNNING: set[HAProxy] = set()


def stop_all() -> None:
    """Stop every HAProxy this process started and has not stopped yet."""
    failures = []
    for server in list(_RUNNING):
        try:
            server.stop()
        except HAProxyError as error:
            failures.append(str(error))
    if failures:
        raise HAProxyError("; ".join(failures))


atexit.register(stop_all)


def cli(path: Path, command: str, timeout: float = 5.0) -> str:
    """One command on an HAProxy CLI socket; the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class HAProxy:
    """One master-worker HAProxy with one TLS frontend on a loopback port.

    ``crt`` is what the bind line's ``crt`` names: a PEM file or a directory.
    ``env`` adds variables to HAProxy's environment (an OpenSSL config, say).
    """

    def __init__(
        self,
        base_dir: Path,
        crt: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        env: dict | None = None,
    ) -> None:
        _require_loopback(host)
        self.base_dir = Path(base_dir).resolve()
        self.crt = Path(crt).resolve()
        self.host = host
        self.env = dict(env or {})
        self._port_chosen_here = port is None
        self.port = free_port(host) if port is None else port
        self.conf_path = self.base_dir / "haproxy.cfg"
        self.pid_path = self.base_dir / "haproxy.pid"
        self.admin_socket = self.base_dir / "admin.sock"
        self.master_socket = self.base_dir / "master.sock"
        self.output_log = self.base_dir / "output.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"HAProxy({self.host}:{self.port}, base_dir={str(self.base_dir)!r})"

    # -- config and commands --------------------------------------------------

    def write_config(self) -> None:
        """Write haproxy.cfg: admin socket, one TLS frontend answering 200."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        listen = f"[{self.host}]" if ":" in self.host else self.host
        self.conf_path.write_text(
            "# Test-only config written by tests/support/haproxy.py.\n"
            "global\n"
            f"    stats socket {self.admin_socket} mode 600 level admin\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 5s\n"
            "    timeout client 5s\n"
            "    timeout server 5s\n"
            "frontend tls\n"
            f"    bind {listen}:{self.port} ssl crt {self.crt}\n"
            "    http-request return status 200 content-type text/plain "
            "string ok\n"
        )

    def argv(self) -> list[str]:
        """The master-worker command line (no -D: the master stays our child)."""
        return [HAPROXY_BINARY, "-W", "-S", f"{self.master_socket},mode,600",
                "-f", str(self.conf_path), "-p", str(self.pid_path)]

    @property
    def validate_command(self) -> list[str]:
        """``haproxy -c -f CFG``."""
        return [HAPROXY_BINARY, "-c", "-f", str(self.conf_path)]

    @property
    def reload_command(self) -> list[str]:
        """SIGUSR2 to the master, read from the pid file at run time."""
        return ["/bin/sh", "-c", f"kill -USR2 \"$(cat '{self.pid_path}')\""]

    def admin(self, command: str) -> str:
        """A command on the runtime API (admin socket)."""
        return cli(self.admin_socket, command)

    def reload_counts(self) -> tuple[int, int]:
        """(reloads, failed reloads) as the master's ``show proc`` counts them."""
        match = _MASTER_LINE.search(cli(self.master_socket, "show proc"))
        if match is None:
            raise HAProxyError(f"{self!r}: show proc has no master line")
        return int(match.group(1)), int(match.group(2))

    def open_transactions(self) -> list[str]:
        """Certificates with an uncommitted runtime API transaction."""
        shown = self.admin("show ssl cert")
        lines = shown.partition("# filename")[0].splitlines()
        return [line[1:] for line in lines if line.startswith("*")]

    # -- start and stop -------------------------------------------------------

    def start(self) -> None:
        """Start HAProxy and wait until it listens and its sockets answer."""
        if self.master_pid() is not None:
            raise HAProxyError(f"{self!r} is already running")
        if not self.conf_path.exists():
            self.write_config()
        for _attempt in range(3):
            offset = self._log_size()
            try:
                self._launch(offset)
                return
            except HAProxyError:
                taken = "Address already in use" in self.log_tail(offset)
                if not (self._port_chosen_here and taken):
                    raise
            self.port = free_port(self.host)
            self.write_config()
        raise HAProxyError(f"{self!r}: every port tried was taken")

    def _launch(self, offset: int) -> None:
        parent = os.getpid()
        with open(self.output_log, "ab") as output:
            self._process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, **self.env),
                start_new_session=True,
                preexec_fn=lambda: _set_parent_death_signal(parent),
            )
        threading.Thread(target=self._process.wait, daemon=True).start()
        _RUNNING.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            rc = self._process.poll()
            if rc is not None:
                self._forget()
                raise HAProxyError(
                    f"haproxy exited {rc} while starting {self!r}; output:\n"
                    f"{self.log_tail(offset)}"
                )
            if (self._read_pid() == self._process.pid and self.worker_pids()
                    and self.accepts() and self._answers()):
                return
            time.sleep(0.02)
        self.stop()
        raise HAProxyError(
            f"{self!r} did not accept connections within {START_TIMEOUT:.0f} s; "
            f"output:\n{self.log_tail(offset)}"
        )

    def _answers(self) -> bool:
        """Tell whether both CLI sockets take commands yet."""
        try:
            return bool(self.admin("show info")) and bool(
                _MASTER_LINE.search(cli(self.master_socket, "show proc")))
        except OSError:
            return False

    def accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the master with SIGTERM (SIGKILL after STOP_TIMEOUT).

        The master stops its workers; should it have to be killed, the workers
        it had are killed too. Safe to call twice.
        """
        master = self.master_pid()
        if master is None:
            self._forget()
            return
        workers = self.worker_pids()
        _signal(master, signal.SIGTERM)
        if self._wait_exit([master], STOP_TIMEOUT):
            _signal(master, signal.SIGKILL)
            for pid in workers:
                if _alive(pid):
                    _signal(pid, signal.SIGKILL)
            self._wait_exit([master], STOP_TIMEOUT)
        self._forget()
        leftovers = self._wait_exit(workers, STOP_TIMEOUT)
        if leftovers:
            raise HAProxyError(f"{self!r}: workers {leftovers} outlived the master")

    def _wait_exit(self, pids: list[int], timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        while True:
            running = [pid for pid in pids if self._running(pid)]
            if not running or time.monotonic() >= deadline:
                return running
            time.sleep(0.02)

    def _running(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        return _alive(pid)

    def _forget(self) -> None:
        if self._process is not None:
            self._process.poll()
        self._process = None
        _RUNNING.discard(self)

    # -- processes --------------------------------------------------------------

    def master_pid(self) -> int | None:
        """The master's PID (from the pid file, checked), or None."""
        pid = self._read_pid()
        if pid is not None and self._is_ours(pid):
            return pid
        if self._process is not None and self._process.poll() is None:
            return self._process.pid
        return None

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        if not _alive(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except PROC_GONE:
            return False
        return os.fsencode(str(self.conf_path)) in cmdline

    def worker_pids(self) -> list[int]:
        """PIDs of the master's children: the workers, old ones included."""
        master = self.master_pid()
        if master is None:
            return []
        return [pid for pid in _children(master) if _alive(pid)]

    # -- what is served ---------------------------------------------------------

    def served_sha256(self, server_name: str | None = "example.com",
                      timeout: float = 3.0) -> str:
        """SHA-256 of the leaf a new handshake gets (no SNI for None)."""
        chain = served_chain_der(self.host, self.port, server_name, timeout)
        return hashlib.sha256(chain[0]).hexdigest()

    def served_chain_sha256(self, server_name: str | None = "example.com",
                            timeout: float = 3.0) -> list[str]:
        chain = served_chain_der(self.host, self.port, server_name, timeout)
        return [hashlib.sha256(der).hexdigest() for der in chain]

    # -- logs -------------------------------------------------------------------

    def _log_size(self) -> int:
        try:
            return self.output_log.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, offset: int = 0, lines: int = 20) -> str:
        try:
            with open(self.output_log, "rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no output.log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"
