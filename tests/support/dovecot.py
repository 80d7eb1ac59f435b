"""Run a real Dovecot on loopback ports, with its own configuration, for tests.

Each ``Dovecot`` owns a directory D: its configuration D/dovecot.conf, base
directory (sockets, master.pid), state directory and log file all live
there, so nothing touches /etc/dovecot, /run/dovecot or the machine's own
Dovecot. Its commands take the configuration file as an operator's second
instance would: ``doveconf -c D/dovecot.conf -n``,
``doveadm -c D/dovecot.conf reload``. Unless given, D is made under /tmp
with mode 0711 and removed on stop, because Dovecot's unprivileged processes
reach sockets under the base directory by absolute path and pytest's
temporary directories are 0700.

The master runs in the foreground (``dovecot -F``) as a child of the test
process, so the harness knows its PID for sure (and checks it against
base_dir/master.pid), and the kernel sends it SIGTERM should the test process
die. Processes are only ever signalled by PID.

Listeners: IMAP with STARTTLS, IMAPS (implicit TLS) and POP3 with STLS.
What is served is read with the standard library's own IMAP and POP3
clients, not with the probe under test.
"""

from __future__ import annotations

import atexit
import hashlib
import imaplib
import os
import poplib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.nginx import (
    _require_loopback,
    _set_parent_death_signal,
    _signal,
    free_port,
    served_chain_der,
)

DOVECOT_BINARY = "/usr/sbin/dovecot"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 60


class DovecotError(RuntimeError):
    """Dovecot did not start, stop or reload as the harness expected."""


def available() -> bool:
    """Whether Debian's dovecot packages are installed."""
    return all(os.access(p, os.X_OK) for p in (
        DOVECOT_BINARY, "/usr/bin/doveconf", "/usr/bin/doveadm"))


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _chain(tls: ssl.SSLSocket) -> list[bytes]:
    """DER of every certificate sent, leaf first (the leaf alone if unknown)."""
    leaf = tls.getpeercert(binary_form=True)
    getter = getattr(tls, "get_unverified_chain", None) or getattr(
        tls._sslobj, "get_unverified_chain", None)
    chain = getter() if getter else None
    if not chain:
        return [leaf]
    return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER)
            for c in chain]


def imap_starttls_chain_der(host: str, port: int, server_name: str | None,
                            timeout: float = 5.0) -> list[bytes]:
    """CAPABILITY, STARTTLS, handshake (imaplib sends its host as SNI)."""
    _require_loopback(host)
    client = imaplib.IMAP4(host, port, timeout=timeout)
    try:
        client.host = server_name or host
        client.starttls(ssl_context=_context())
        return _chain(client.sock)
    finally:
        client.shutdown()


def pop3_stls_chain_der(host: str, port: int, server_name: str | None,
                        timeout: float = 5.0) -> list[bytes]:
    """STLS, handshake (poplib sends its host as SNI)."""
    _require_loopback(host)
    client = poplib.POP3(host, port, timeout=timeout)
    try:
        client.host = server_name or host
        client.stls(context=_context())
        return _chain(client.sock)
    finally:
        client.close()


_RUNNING: set = set()


def stop_all() -> None:
    """Stop every Dovecot this process started and has not stopped yet."""
    failures = []
    for server in list(_RUNNING):
        try:
            server.stop()
        except DovecotError as error:
            failures.append(str(error))
    if failures:
        raise DovecotError("; ".join(failures))


atexit.register(stop_all)


class Dovecot:
    """One Dovecot instance serving IMAP, IMAPS and POP3 on loopback ports."""

    def __init__(
        self,
        base_dir: Path | None,
        cert_path: Path,
        key_path: Path,
        host: str = "127.0.0.1",
        ssl_settings: str | None = None,
    ) -> None:
        _require_loopback(host)
        self._own_base_dir = base_dir is None
        if base_dir is None:
            base_dir = Path(tempfile.mkdtemp(prefix="certfleet-dovecot-"))
            base_dir.chmod(0o711)
        self.base_dir = Path(base_dir).resolve()
        self.cert_path = Path(cert_path).resolve()
        self.key_path = Path(key_path).resolve()
        self.host = host
        self.ssl_settings = ssl_settings
        self.imap_port = free_port(host)
        self.imaps_port = free_port(host)
        self.pop3_port = free_port(host)
        self.conf_path = self.base_dir / "dovecot.conf"
        self.run_dir = self.base_dir / "run"
        self.log_path = self.base_dir / "dovecot.log"
        self.output_log = self.base_dir / "output.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return (f"Dovecot({self.host}:{self.imap_port}+{self.imaps_port}"
                f"+{self.pop3_port}, base_dir={str(self.base_dir)!r})")

    # -- configuration --------------------------------------------------------

    def write_config(self) -> None:
        """Write dovecot.conf; ``ssl_settings`` replaces the two 2.3 lines.

        Every block opens and closes on lines of its own, as Dovecot needs.
        """
        base, host = self.base_dir, self.host
        tls = self.ssl_settings if self.ssl_settings is not None else (
            f"ssl_cert = <{self.cert_path}\nssl_key = <{self.key_path}\n")
        self.conf_path.write_text(
            "# Test-only config written by tests/support/dovecot.py.\n"
            f"base_dir = {self.run_dir}\n"
            f"state_dir = {base / 'state'}\n"
            f"log_path = {self.log_path}\n"
            f"info_log_path = {self.log_path}\n"
            f"instance_name = certfleet-{base.name}\n"
            f"listen = {host}\n"
            "protocols = imap pop3\n"
            "ssl = yes\n"
            f"{tls}"
            "default_login_user = dovenull\n"
            "default_internal_user = dovecot\n"
            f"mail_location = maildir:{base / 'mail'}/%u\n"
            "passdb {\n  driver = static\n  args = password=unused\n}\n"
            "userdb {\n  driver = static\n"
            f"  args = uid=nobody gid=nogroup home={base / 'home'}/%u\n}}\n"
            "service imap-login {\n"
            "  inet_listener imap {\n"
            f"    address = {host}\n    port = {self.imap_port}\n  }}\n"
            "  inet_listener imaps {\n"
            f"    address = {host}\n    port = {self.imaps_port}\n"
            "    ssl = yes\n  }\n"
            "}\n"
            "service pop3-login {\n"
            "  inet_listener pop3 {\n"
            f"    address = {host}\n    port = {self.pop3_port}\n  }}\n"
            "  inet_listener pop3s {\n    port = 0\n  }\n"
            "}\n"
        )

    def argv(self, program: str, *command: str) -> list[str]:
        """``PROGRAM -c D/dovecot.conf COMMAND...`` for this instance."""
        return [program, "-c", str(self.conf_path), *command]

    @property
    def validate_command(self) -> list[str]:
        return self.argv("doveconf", "-n")

    @property
    def reload_command(self) -> list[str]:
        return self.argv("doveadm", "reload")

    @property
    def endpoints(self) -> list[str]:
        """The three listeners, each naming the protocol it speaks."""
        return [f"tls://{self.host}:{self.imaps_port}",
                f"imap://{self.host}:{self.imap_port}",
                f"pop3://{self.host}:{self.pop3_port}"]

    def reload(self) -> None:
        self._run(self.reload_command)

    def _run(self, argv: list[str]) -> str:
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT, check=False)
        if result.returncode != 0:
            raise DovecotError(
                f"{' '.join(argv)} exited {result.returncode}: "
                f"{result.stderr.strip()}")
        return result.stdout

    # -- start and stop -------------------------------------------------------

    def start(self) -> None:
        """Start the master in the foreground and wait until IMAP answers.

        When another process took a port the harness chose, pick new ports
        and try again.
        """
        if self._process is not None and self._process.poll() is None:
            raise DovecotError(f"{self!r} is already running")
        if not self.conf_path.exists():
            self.write_config()
        for _attempt in range(3):
            offset = self._log_size()
            try:
                self._launch(offset)
                return
            except DovecotError as error:
                if "Address already in use" not in str(error):
                    raise
            self.imap_port = free_port(self.host)
            self.imaps_port = free_port(self.host)
            self.pop3_port = free_port(self.host)
            self.write_config()
        raise DovecotError(f"{self!r}: every port tried was taken")

    def _launch(self, offset: int) -> None:
        parent = os.getpid()
        with open(self.output_log, "ab") as output:
            self._process = subprocess.Popen(
                [DOVECOT_BINARY, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: _set_parent_death_signal(parent),
            )
        _RUNNING.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            rc = self._process.poll()
            if rc is not None:
                self._forget()
                raise DovecotError(
                    f"dovecot exited {rc} while starting {self!r}:\n"
                    f"{self.log_tail(offset)}\n{self._output()}")
            if self._read_pid() == self._process.pid and self._greets():
                return
            time.sleep(0.05)
        message = (f"{self!r} did not greet within {START_TIMEOUT:.0f} s:\n"
                   f"{self.log_tail(offset)}")
        self.stop()
        raise DovecotError(message)

    def _greets(self) -> bool:
        try:
            with socket.create_connection((self.host, self.imap_port),
                                          timeout=2) as conn:
                return conn.recv(4).startswith(b"* OK")
        except OSError:
            return False

    def _read_pid(self) -> int | None:
        try:
            return int((self.run_dir / "master.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def master_pid(self) -> int | None:
        """Our child, trusted only while master.pid names it too."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def stop(self) -> None:
        """SIGTERM to the master (it stops its children); SIGKILL if it hangs.

        Safe to call twice.
        """
        master = self.master_pid()
        if master is not None:
            _signal(master, signal.SIGTERM)
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _signal(master, signal.SIGKILL)
                self._process.wait(STOP_TIMEOUT)
        self._forget()
        if self._own_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _forget(self) -> None:
        if self._process is not None:
            self._process.poll()
        self._process = None
        _RUNNING.discard(self)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()

    # -- what it serves and does ---------------------------------------------

    def served_chain_sha256(self, protocol: str = "tls",
                            server_name: str | None = "example.com") -> list[str]:
        """SHA-256 of each certificate a new client gets, leaf first.

        ``protocol``: ``tls`` (IMAPS), ``imap`` (STARTTLS) or ``pop3`` (STLS).
        """
        if protocol == "imap":
            chain = imap_starttls_chain_der(self.host, self.imap_port, server_name)
        elif protocol == "pop3":
            chain = pop3_stls_chain_der(self.host, self.pop3_port, server_name)
        else:
            chain = served_chain_der(self.host, self.imaps_port, server_name, 5.0)
        return [hashlib.sha256(der).hexdigest() for der in chain]

    def served_sha256(self, protocol: str = "tls",
                      server_name: str | None = "example.com") -> str:
        return self.served_chain_sha256(protocol, server_name)[0]

    def reloads(self) -> int:
        """How often the master was reloaded, from its log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return text.count("SIGHUP received - reloading configuration")

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _output(self) -> str:
        try:
            return self.output_log.read_text(errors="replace").strip()
        except FileNotFoundError:
            return ""

    def log_tail(self, offset: int = 0, lines: int = 20) -> str:
        """The last ``lines`` lines of the log written after ``offset``."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def require_dovecot() -> None:
    """Skip the current test when Dovecot is not installed; fail under CI."""
    if available():
        return
    message = (f"{DOVECOT_BINARY} is missing: mail tests need Debian's "
               "dovecot-imapd and dovecot-pop3d (scripts/bootstrap.sh installs "
               "them)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
