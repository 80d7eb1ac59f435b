"""Run a real Apache httpd on a loopback port, with its own config, for tests.

Each ``Apache`` owns a directory D: its config, envvars file, pid file, error
log, mutexes and runtime files all live there, so nothing touches
/etc/apache2, /var/run/apache2 or the machine's own apache2 service.
Debian's binary has no MPM built in, so the config loads mpm_event and the
few modules TLS needs.

The parent runs in the foreground (``-DFOREGROUND``) as a child of the test
process, so the harness knows its PID for sure and the kernel stops it if
the test process dies; a thread reaps it the moment it exits, as init
would. ``apache2ctl`` finds the instance through
``APACHE_CONFDIR=D`` (it reads D/envvars and passes ``-d D``), so the
commands the module runs are Debian's real ``apache2ctl configtest`` and
``apache2ctl graceful``. A graceful restart of an Apache that is not running
starts a new, daemonised parent; the harness follows it through the pid file.

Processes are only ever signalled by PID, after checking that the PID is an
Apache started with this instance's directory.
"""

from __future__ import annotations

import atexit
import hashlib
import os
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

APACHE_BINARY = "/usr/sbin/apache2"
APACHECTL = "/usr/sbin/apache2ctl"
MODULES_DIR = "/usr/lib/apache2/modules"
MODULES = (
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("mime_module", "mod_mime.so"),
    ("socache_shmcb_module", "mod_socache_shmcb.so"),
    ("ssl_module", "mod_ssl.so"),
)
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


class ApacheError(RuntimeError):
    """Apache did not start or stop as the harness expected."""


_RUNNING: set[Apache] = set()


def stop_all() -> None:
    """Stop every Apache this process started and has not stopped yet."""
    failures = []
    for server in list(_RUNNING):
        try:
            server.stop()
        except ApacheError as error:
            failures.append(str(error))
    if failures:
        raise ApacheError("; ".join(failures))


atexit.register(stop_all)


def _quote(value: object) -> str:
    """Quote a path for the Apache config language."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


class Apache:
    """One Apache instance serving one certificate on a loopback port."""

    def __init__(
        self,
        base_dir: Path,
        cert_path: Path,
        key_path: Path,
        chain_path: Path | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        server_name: str = "example.com",
    ) -> None:
        _require_loopback(host)
        self.base_dir = Path(base_dir).resolve()
        self.cert_path = Path(cert_path).resolve()
        self.key_path = Path(key_path).resolve()
        self.chain_path = Path(chain_path).resolve() if chain_path else None
        self.host = host
        self.server_name = server_name
        self._port_chosen_here = port is None
        self.port = free_port(host) if port is None else port
        self.conf_path = self.base_dir / "apache2.conf"
        self.envvars_path = self.base_dir / "envvars"
        self.run_dir = self.base_dir / "run"
        self.pid_path = self.run_dir / "apache2.pid"
        self.error_log = self.base_dir / "error.log"
        self.output_log = self.base_dir / "output.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Apache({self.host}:{self.port}, base_dir={str(self.base_dir)!r})"

    # -- config ---------------------------------------------------------------

    def write_config(self) -> None:
        """Write apache2.conf and the envvars file apache2ctl reads."""
        base = self.base_dir
        for directory in (base, self.run_dir, base / "lock", base / "log"):
            directory.mkdir(parents=True, exist_ok=True)
        self.envvars_path.write_text(
            "# Test-only envvars written by tests/support/apache.py.\n"
            "export APACHE_RUN_USER=www-data\n"
            "export APACHE_RUN_GROUP=www-data\n"
            f"export APACHE_PID_FILE={self.pid_path}\n"
            f"export APACHE_RUN_DIR={self.run_dir}\n"
            f"export APACHE_LOCK_DIR={base / 'lock'}\n"
            f"export APACHE_LOG_DIR={base / 'log'}\n"
            "export LANG=C\n"
        )
        modules = "\n".join(
            f"LoadModule {name} {MODULES_DIR}/{so}" for name, so in MODULES
        )
        listen = f"[{self.host}]" if ":" in self.host else self.host
        chain = (
            f"    SSLCertificateChainFile {_quote(self.chain_path)}\n"
            if self.chain_path else ""
        )
        self.conf_path.write_text(
            "# Test-only config written by tests/support/apache.py.\n"
            f"ServerRoot {_quote(base)}\n"
            "ServerName localhost\n"
            f"PidFile {_quote(self.pid_path)}\n"
            f"DefaultRuntimeDir {_quote(self.run_dir)}\n"
            f"Mutex file:{base / 'lock'} default\n"
            f"ErrorLog {_quote(self.error_log)}\n"
            "LogLevel info\n"
            f"{modules}\n"
            "TypesConfig /etc/mime.types\n"
            "User www-data\n"
            "Group www-data\n"
            "StartServers 1\n"
            f"Listen {listen}:{self.port} https\n"
            f"<VirtualHost {listen}:{self.port}>\n"
            f"    ServerName {self.server_name}\n"
            "    SSLEngine on\n"
            f"    SSLCertificateFile {_quote(self.cert_path)}\n"
            f"    SSLCertificateKeyFile {_quote(self.key_path)}\n"
            f"{chain}"
            "</VirtualHost>\n"
        )

    @property
    def ctl(self) -> list[str]:
        """``apache2ctl`` pointed at this instance (envvars and ``-d``)."""
        return ["env", f"APACHE_CONFDIR={self.base_dir}", APACHECTL]

    @property
    def validate_command(self) -> list[str]:
        """``apache2ctl configtest`` for this instance."""
        return [*self.ctl, "configtest"]

    @property
    def reload_command(self) -> list[str]:
        """``apache2ctl graceful`` for this instance."""
        return [*self.ctl, "graceful"]

    def graceful(self) -> None:
        """Run the graceful restart; raise ApacheError if it exits non-zero."""
        result = subprocess.run(self.reload_command, capture_output=True,
                                timeout=60, check=False)
        if result.returncode != 0:
            raise ApacheError(
                f"apache2ctl graceful exited {result.returncode}: "
                f"{result.stdout.decode(errors='replace').strip()}"
            )

    # -- start and stop -------------------------------------------------------

    def start(self) -> None:
        """Start Apache and wait until it listens.

        When the harness picked the port and another process took it
        meanwhile, it picks a new one and tries again.
        """
        if self.master_pid() is not None:
            raise ApacheError(f"{self!r} is already running")
        if not self.conf_path.exists():
            self.write_config()
        for _attempt in range(3):
            offset = self._log_size()
            try:
                self._launch(offset)
                return
            except ApacheError:
                taken = "Address already in use" in self.log_tail(offset)
                if not (self._port_chosen_here and taken):
                    raise
            self.port = free_port(self.host)
            self.write_config()
        raise ApacheError(f"{self!r}: every port tried was taken")

    def _launch(self, offset: int) -> None:
        """Run the parent in the foreground; wait for its pid file and port."""
        parent = os.getpid()
        with open(self.output_log, "ab") as output:
            self._process = subprocess.Popen(
                [APACHE_BINARY, "-d", str(self.base_dir), "-f",
                 str(self.conf_path), "-DFOREGROUND"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: _set_parent_death_signal(parent),
            )
        # Reap the parent the moment it exits, as init would: a zombie still
        # owns its PID, and `apache2 -k graceful` would signal it instead of
        # starting a new parent (F06).
        threading.Thread(target=self._process.wait, daemon=True).start()
        _RUNNING.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            rc = self._process.poll()
            if rc is not None:
                self._forget()
                raise ApacheError(
                    f"apache2 exited {rc} while starting {self!r}; error.log:\n"
                    f"{self.log_tail(offset)}"
                )
            if self._read_pid() == self._process.pid and self.accepts():
                return
            time.sleep(0.02)
        self.stop()
        raise ApacheError(
            f"{self!r} did not accept connections within {START_TIMEOUT:.0f} s; "
            f"error.log:\n{self.log_tail(offset)}"
        )

    def accepts(self) -> bool:
        """Tell whether a TCP connection to the port succeeds."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the parent with SIGTERM (SIGKILL after STOP_TIMEOUT).

        The parent stops its children; should it have to be killed, the
        children it had are killed too. Safe to call twice.
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
            raise ApacheError(f"{self!r}: children {leftovers} outlived their parent")

    def _wait_exit(self, pids: list[int], timeout: float) -> list[int]:
        """Wait up to ``timeout`` s for ``pids`` to exit; return those still up."""
        deadline = time.monotonic() + timeout
        while True:
            running = [pid for pid in pids if self._running(pid)]
            if not running or time.monotonic() >= deadline:
                return running
            time.sleep(0.02)

    def _running(self, pid: int) -> bool:
        """Tell whether ``pid`` still runs, reaping it if it is our child."""
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        return _alive(pid)

    def _forget(self) -> None:
        """Drop the bookkeeping once no parent of ours runs."""
        if self._process is not None:
            self._process.poll()
        self._process = None
        _RUNNING.discard(self)

    # -- processes --------------------------------------------------------------

    def master_pid(self) -> int | None:
        """The PID of the running parent, or None when Apache is not running.

        Taken from the pid file and trusted only if that process is an
        Apache started with this instance's directory (ours, or the one a
        graceful restart started after the parent had exited).
        """
        if self._process is not None:
            self._process.poll()
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
        """Tell whether live ``pid`` is apache2 run with ``-d`` our directory."""
        if not _alive(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except PROC_GONE:
            return False
        return os.fsencode(str(self.base_dir)) in cmdline

    def worker_pids(self) -> list[int]:
        """PIDs of the parent's children; a graceful restart replaces them."""
        master = self.master_pid()
        if master is None:
            return []
        return [pid for pid in _children(master) if _alive(pid)]

    def generations(self) -> int:
        """How many times Apache has loaded its configuration and resumed.

        Each start and each graceful restart logs AH00489 once. Children are
        no proof of a restart: the event MPM starts more under load.
        """
        try:
            return self.error_log.read_text(errors="replace").count("AH00489")
        except FileNotFoundError:
            return 0

    # -- what is served ---------------------------------------------------------

    def served_sha256(self, server_name: str = "example.com",
                      timeout: float = 3.0) -> str:
        """SHA-256 (lowercase hex) of the leaf a new TLS handshake gets."""
        chain = served_chain_der(self.host, self.port, server_name, timeout)
        return hashlib.sha256(chain[0]).hexdigest()

    def served_chain_sha256(self, server_name: str = "example.com",
                            timeout: float = 3.0) -> list[str]:
        """SHA-256 of every certificate served, leaf first."""
        chain = served_chain_der(self.host, self.port, server_name, timeout)
        return [hashlib.sha256(der).hexdigest() for der in chain]

    def wait_until_served(self, sha256: str, timeout: float = 5.0) -> str:
        """Poll new handshakes until the leaf has ``sha256`` or time runs out.

        Returns the last fingerprint seen ("" while nothing answers).
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                served = self.served_sha256()
            except OSError:
                served = ""
            if served == sha256 or time.monotonic() >= deadline:
                return served
            time.sleep(0.05)

    # -- logs -------------------------------------------------------------------

    def _log_size(self) -> int:
        try:
            return self.error_log.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, offset: int = 0, lines: int = 20) -> str:
        """The last ``lines`` lines of the error log written after ``offset``."""
        try:
            with open(self.error_log, "rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no error.log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"
