"""Run a real nginx on a loopback port, with its own config, for tests.

Each ``Nginx`` owns a directory: its config, pid file, error log and temp
paths all live there, so nothing touches /etc/nginx, /var/log/nginx or the
machine's own nginx service. The master runs in the foreground
(``daemon off;``) as a child of the test process, which lets the harness
reap it and know its PID for sure; ``nginx -s reload`` and ``nginx -t``
work on it exactly as on a daemonised one.

Processes are only ever signalled by PID, after checking that the PID is
still the nginx this harness started. Anything left running when the
interpreter exits is stopped by an ``atexit`` hook, and the master gets
SIGTERM from the kernel if the test process dies without running it.
"""

from __future__ import annotations

import _ssl
import atexit
import contextlib
import ctypes
import hashlib
import ipaddress
import os
import random
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType

NGINX_BINARY = "/usr/sbin/nginx"
PORT_RANGE = (20000, 45000)
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
PR_SET_PDEATHSIG = 1
# What reading /proc/PID/... raises once the process has gone.
PROC_GONE = (FileNotFoundError, ProcessLookupError)


class NginxError(RuntimeError):
    """nginx did not start, stop or reload as the harness expected."""


def _require_loopback(host: str) -> None:
    """Refuse any address that is not a loopback IP literal.

    The tests must never send traffic off the machine, and a host name could
    resolve anywhere.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"Host {host!r} is not an IP address") from None
    if not address.is_loopback:
        raise ValueError(f"Host {host!r} is not a loopback address")


def _family(host: str) -> socket.AddressFamily:
    """Return the socket family of an IP literal."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """Pick a random port in PORT_RANGE that can be bound on ``host`` now.

    Another process may still take it before nginx binds; ``Nginx.start``
    retries with a new port when it chose the port itself.
    """
    _require_loopback(host)
    for _attempt in range(200):
        port = random.randint(*PORT_RANGE)
        with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    raise NginxError(f"No free port on {host} in {PORT_RANGE} after 200 tries")


def served_chain_der(
    host: str, port: int, server_name: str | None = "example.com", timeout: float = 3.0
) -> list[bytes]:
    """Do one TLS handshake and return the certificates the server sent.

    The list is DER, leaf first. Nothing is verified (the caller compares
    fingerprints). The full chain needs ``get_unverified_chain``: public on
    Python 3.13, on the internal ``_sslobj`` for 3.10 to 3.12; without it
    the list holds the leaf alone.
    """
    _require_loopback(host)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sni = server_name or None
    if sni is not None and _is_ip(sni):
        sni = None
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            leaf = tls.getpeercert(binary_form=True)
            chain = _unverified_chain(tls)
    if not chain:
        return [leaf] if leaf else []
    return chain


def _is_ip(text: str) -> bool:
    """Tell whether ``text`` is an IP literal (SNI must not carry one)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """Return the peer's chain as DER, or [] if this Python cannot tell."""
    getter = getattr(tls, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(tls._sslobj, "get_unverified_chain", None)
    if getter is None:
        return []
    chain = getter() or []
    # 3.13 returns DER bytes; 3.10-3.12 return _ssl.Certificate objects.
    return [
        item if isinstance(item, bytes) else item.public_bytes(_ssl.ENCODING_DER)
        for item in chain
    ]


def _proc_stat(pid: int) -> tuple[str, str, int] | None:
    """Return (comm, state, ppid) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except PROC_GONE:
        return None
    # comm sits in parentheses and may itself hold spaces or parentheses.
    head, tail = text.rsplit(")", 1)
    fields = tail.split()
    return head.partition("(")[2], fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    """Tell whether ``pid`` runs (a zombie has already exited)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[1] != "Z"


def _children(pid: int) -> list[int]:
    """List the child PIDs of ``pid``.

    Reads /proc/PID/task/*/children when the kernel provides it (it needs
    CONFIG_PROC_CHILDREN), else falls back to ``_children_by_scan``.
    """
    try:
        files = [task / "children" for task in Path(f"/proc/{pid}/task").iterdir()]
    except PROC_GONE:
        return []
    if not all(f.exists() for f in files):
        return _children_by_scan(pid)
    found: list[int] = []
    for children_file in files:
        try:
            found += [int(child) for child in children_file.read_text().split()]
        except PROC_GONE:
            continue
    return sorted(found)


def _children_by_scan(pid: int) -> list[int]:
    """List the child PIDs of ``pid`` by reading every /proc/*/stat."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[2] == pid:
                found.append(int(entry.name))
    return sorted(found)


def _is_nginx(pid: int) -> bool:
    """Tell whether ``pid`` is a live process of the nginx binary."""
    stat = _proc_stat(pid)
    return stat is not None and stat[1] != "Z" and stat[0] == "nginx"


# Loaded here, not in the forked child, where only async-signal-safe work
# should happen before exec.
_LIBC = ctypes.CDLL(None, use_errno=True)


def _set_parent_death_signal(parent: int) -> None:
    """In the forked child: get SIGTERM if the test process dies.

    The kernel sends it when the thread that forked exits, so start nginx
    from a thread that lives as long as the test run (pytest's main thread).
    """
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def _signal(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid``; a process that already exited is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _quote(value: object) -> str:
    """Quote a value for the nginx config language."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


_RUNNING: set[Nginx] = set()


def stop_all() -> None:
    """Stop every nginx this process started and has not stopped yet.

    Tries them all before reporting the ones that would not stop.
    """
    failures = []
    for server in list(_RUNNING):
        try:
            server.stop()
        except NginxError as error:
            failures.append(str(error))
    if failures:
        raise NginxError("; ".join(failures))


atexit.register(stop_all)


class Nginx:
    """One nginx instance serving one certificate on a loopback port."""

    def __init__(
        self,
        base_dir: Path,
        cert_path: Path,
        key_path: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        server_name: str = "example.com",
    ) -> None:
        _require_loopback(host)
        self.base_dir = Path(base_dir).resolve()
        self.cert_path = Path(cert_path).resolve()
        self.key_path = Path(key_path).resolve()
        self.host = host
        self.server_name = server_name
        self._port_chosen_here = port is None
        self.port = free_port(host) if port is None else port
        self.conf_path = self.base_dir / "nginx.conf"
        self.pid_path = self.base_dir / "nginx.pid"
        self.error_log = self.base_dir / "error.log"
        self.output_log = self.base_dir / "output.log"
        self._extra_server = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Nginx({self.host}:{self.port}, base_dir={str(self.base_dir)!r})"

    def write_config(self, extra_server: str = "") -> None:
        """Write the test config; ``extra_server`` goes into the server block.

        TLS 1.3 is enabled explicitly: nginx 1.22 leaves it off by default,
        while Debian's packaged nginx.conf turns it on.
        """
        self._extra_server = extra_server
        self.base_dir.mkdir(parents=True, exist_ok=True)
        base = self.base_dir
        temp_lines = "\n".join(
            f"    {name}_temp_path {_quote(base / f'{name}_temp')};"
            for name in TEMP_PATHS
        )
        listen = f"[{self.host}]" if ":" in self.host else self.host
        extra = "\n".join(f"        {line}" for line in extra_server.splitlines())
        self.conf_path.write_text(
            f"# Test-only config written by tests/support/nginx.py.\n"
            f"daemon off;\n"
            f"worker_processes 1;\n"
            f"pid {_quote(self.pid_path)};\n"
            f"error_log {_quote(self.error_log)} notice;\n"
            f"events {{\n    worker_connections 256;\n}}\n"
            f"http {{\n"
            f"    access_log off;\n"
            f"{temp_lines}\n"
            f"    ssl_protocols TLSv1.2 TLSv1.3;\n"
            f"    server {{\n"
            f"        listen {listen}:{self.port} ssl default_server;\n"
            f"        server_name {self.server_name};\n"
            f"        ssl_certificate {_quote(self.cert_path)};\n"
            f"        ssl_certificate_key {_quote(self.key_path)};\n"
            f"{extra}\n"
            f'        return 200 "ok\\n";\n'
            f"    }}\n"
            f"}}\n"
        )

    def argv(self, *extra: str) -> list[str]:
        """The nginx command line for this instance, plus ``extra`` flags."""
        return [
            NGINX_BINARY,
            "-p",
            str(self.base_dir),
            "-e",
            str(self.error_log),
            "-c",
            str(self.conf_path),
            *extra,
        ]

    @property
    def validate_command(self) -> list[str]:
        """``nginx -t`` for this instance's config."""
        return self.argv("-t")

    @property
    def reload_command(self) -> list[str]:
        """``nginx -s reload`` for this instance."""
        return self.argv("-s", "reload")

    def reload(self) -> None:
        """Run the reload command; raise NginxError if it exits non-zero."""
        result = subprocess.run(
            self.reload_command, capture_output=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise NginxError(
                f"nginx -s reload exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )

    def start(self) -> None:
        """Start nginx and wait until it listens.

        Writes the default config first if none exists. When the harness
        picked the port and another process took it meanwhile, it picks a
        new one and tries again.
        """
        if self._process is not None and self._process.poll() is None:
            raise NginxError(f"{self!r} is already running")
        if not self.conf_path.exists():
            self.write_config()
        for _attempt in range(3):
            offset = self._log_size()
            try:
                self._launch(offset)
                return
            except NginxError:
                taken = "Address already in use" in self._log_tail(offset)
                if not (self._port_chosen_here and taken):
                    raise
            self.port = free_port(self.host)
            self.write_config(self._extra_server)
        raise NginxError(f"{self!r}: every port tried was taken")

    def _launch(self, offset: int) -> None:
        """Run the master and wait for its pid file and listening port.

        ``offset`` is where this start's lines begin in the error log.
        """
        parent = os.getpid()
        with open(self.output_log, "ab") as output:
            self._process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: _set_parent_death_signal(parent),
            )
        _RUNNING.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            rc = self._process.poll()
            if rc is not None:
                self._forget()
                raise NginxError(
                    f"nginx exited {rc} while starting {self!r}; error.log:\n"
                    f"{self._log_tail(offset)}"
                )
            if self._read_pid() == self._process.pid and self._accepts():
                return
            time.sleep(0.01)
        self.stop()
        raise NginxError(
            f"{self!r} did not accept connections within {START_TIMEOUT:.0f} s; "
            f"error.log:\n{self._log_tail(offset)}"
        )

    def _accepts(self) -> bool:
        """Tell whether a TCP connection to the port succeeds."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the master with SIGTERM (SIGKILL after STOP_TIMEOUT).

        Workers are stopped by their master; should the master have to be
        killed, the workers it had are killed too. Safe to call twice.
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
                if _is_nginx(pid):
                    _signal(pid, signal.SIGKILL)
            self._wait_exit([master], STOP_TIMEOUT)
        self._forget()
        leftovers = self._wait_exit(workers, STOP_TIMEOUT)
        if leftovers:
            raise NginxError(f"{self!r}: workers {leftovers} outlived their master")

    def _wait_exit(self, pids: list[int], timeout: float) -> list[int]:
        """Wait up to ``timeout`` s for ``pids`` to exit; return those still up.

        Our own child is reaped as it exits, so its PID does not linger as a
        zombie.
        """
        deadline = time.monotonic() + timeout
        while True:
            running = [pid for pid in pids if self._running(pid)]
            if not running or time.monotonic() >= deadline:
                return running
            time.sleep(0.01)

    def _running(self, pid: int) -> bool:
        """Tell whether ``pid`` still runs, reaping it if it is our child."""
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        return _alive(pid)

    def _forget(self) -> None:
        """Drop the bookkeeping for a master that has exited."""
        if self._process is not None:
            self._process.poll()
        self._process = None
        _RUNNING.discard(self)

    def master_pid(self) -> int | None:
        """The PID of the running master, or None when nginx is not running.

        Taken from the pid file, and trusted only if that process is ours:
        our child, or a live process whose command line names our config.
        """
        pid = self._read_pid()
        if pid is not None and self._names_our_config(pid):
            return pid
        if self._process is not None and self._process.poll() is None:
            return self._process.pid
        return None

    def _read_pid(self) -> int | None:
        """Read the pid file; None if it is missing, empty or garbled."""
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _names_our_config(self, pid: int) -> bool:
        """Tell whether live ``pid`` runs with our config file."""
        if not _alive(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except PROC_GONE:
            return False
        return os.fsencode(self.conf_path) in cmdline

    def worker_pids(self) -> list[int]:
        """PIDs of the master's children: the workers, old ones included."""
        master = self.master_pid()
        if master is None:
            return []
        return [pid for pid in _children(master) if _alive(pid)]

    def served_sha256(
        self, server_name: str = "example.com", timeout: float = 3.0
    ) -> str:
        """SHA-256 (lowercase hex) of the leaf a new TLS handshake gets."""
        chain = served_chain_der(self.host, self.port, server_name, timeout)
        return hashlib.sha256(chain[0]).hexdigest()

    def served_chain_sha256(
        self, server_name: str = "example.com", timeout: float = 3.0
    ) -> list[str]:
        """SHA-256 of every certificate served, leaf first (see served_chain_der)."""
        chain = served_chain_der(self.host, self.port, server_name, timeout)
        return [hashlib.sha256(der).hexdigest() for der in chain]

    def wait_until_served(
        self, sha256: str, timeout: float = 2.0, server_name: str = "example.com"
    ) -> str:
        """Poll new handshakes until the leaf has ``sha256`` or time runs out.

        Returns the last fingerprint seen, so a caller can assert on it and
        show what was served instead.
        """
        deadline = time.monotonic() + timeout
        while True:
            served = self.served_sha256(server_name)
            if served == sha256 or time.monotonic() >= deadline:
                return served
            time.sleep(0.02)

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _log_size(self) -> int:
        """Current size of the error log (0 if it does not exist yet)."""
        try:
            return self.error_log.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_tail(self, offset: int = 0, lines: int = 20) -> str:
        """The last ``lines`` lines of the error log written after ``offset``."""
        try:
            with open(self.error_log, "rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no error.log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"
