"""Run a real Postfix on loopback ports, with its own configuration, for tests.

Each ``Postfix`` owns a directory D: its configuration directory D/etc
(``main.cf``, ``master.cf``), queue directory, data directory (owned by
postfix) and log file D/maillog all live there, so nothing touches
/etc/postfix, /var/spool/postfix or the machine's own mail system. The
instance is driven as an operator drives a second instance:
``postfix -c D/etc check|reload``. Unless given, D is made under /tmp with
mode 0711 and removed on stop: Postfix daemons open the data directory by
its absolute path as the postfix user, which pytest's 0700 temporary
directories would refuse. The certificate files may live anywhere; smtpd
reads them as root.

The master runs in the foreground (``master -c D/etc -d``) as a child of the
test process, which lets the harness know its PID for sure and gives it
SIGTERM from the kernel should the test process die; the master's own
children go with it. ``postfix -c D/etc reload`` works on it exactly as on a
daemonised one. Processes are only ever signalled by PID.

Two smtpd listeners: one plain, where clients say STARTTLS, and one with
``smtpd_tls_wrappermode=yes`` (implicit TLS, as on 465). Each allows one
smtpd process, so an idle smtpd that loaded the previous certificate is
certain to answer the next client; that makes "files replaced, no reload"
(F05) show the same way on every run instead of depending on whether a
fresh smtpd happens to be spawned.

What is served is read with the standard library's own SMTP client, not
with the probe under test.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import pwd
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest

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

POSTFIX_BINARY = "/usr/sbin/postfix"
MASTER_BINARY = "/usr/lib/postfix/sbin/master"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 60

# The services master.cf needs besides the listeners, none chrooted.
UNIX_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """Postfix did not start, stop or reload as the harness expected."""


def available() -> bool:
    """Whether Debian's postfix package is installed."""
    return os.access(POSTFIX_BINARY, os.X_OK) and os.access(MASTER_BINARY, os.X_OK)


def starttls_chain_der(
    host: str, port: int, server_name: str | None = "example.com",
    timeout: float = 5.0,
) -> list[bytes]:
    """EHLO, STARTTLS, handshake: the certificates sent, DER, leaf first.

    smtplib sends as SNI the host it connected to; the harness points that at
    ``server_name`` so SNI tables can be tested. Nothing is verified.
    """
    _require_loopback(host)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(host, port, timeout=timeout) as client:
        client._host = server_name or host  # the name smtplib sends as SNI
        client.starttls(context=context)
        tls = client.sock
        leaf = tls.getpeercert(binary_form=True)
        getter = getattr(tls, "get_unverified_chain", None) or getattr(
            tls._sslobj, "get_unverified_chain", None)
        chain = getter() if getter else None
    if not chain:
        return [leaf]
    return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER)
            for c in chain]


_RUNNING: set = set()
_QUEUE_TEMPLATE: list = []


def queue_template() -> Path:
    """A queue directory made once per test process, for instances to copy.

    ``postfix check`` takes seconds to create the queue's sixteen
    directories with their owners and modes the first time, and well under
    one after that; ``cp -a`` of a ready queue keeps owners and modes.
    """
    if not _QUEUE_TEMPLATE:
        builder = Postfix(None, Path("/none.pem"), Path("/none.key"))
        atexit.register(shutil.rmtree, builder.base_dir, True)
        builder.write_config()
        builder.prepare_directories()
        builder._run(builder.validate_command)
        _QUEUE_TEMPLATE.append(builder.queue_dir)
    return _QUEUE_TEMPLATE[0]


def stop_all() -> None:
    """Stop every Postfix this process started and has not stopped yet."""
    failures = []
    for server in list(_RUNNING):
        try:
            server.stop()
        except PostfixError as error:
            failures.append(str(error))
    if failures:
        raise PostfixError("; ".join(failures))


atexit.register(stop_all)


class Postfix:
    """One Postfix instance with a STARTTLS and an implicit-TLS listener."""

    def __init__(
        self,
        base_dir: Path | None = None,
        cert_path: Path | None = None,
        key_path: Path | None = None,
        chain_files: Path | None = None,
        host: str = "127.0.0.1",
        extra_main: str = "",
    ) -> None:
        _require_loopback(host)
        self._own_base_dir = base_dir is None
        if base_dir is None:
            base_dir = Path(tempfile.mkdtemp(prefix="certfleet-postfix-"))
            base_dir.chmod(0o711)
        self.base_dir = Path(base_dir).resolve()
        self.cert_path = Path(cert_path).resolve() if cert_path else None
        self.key_path = Path(key_path).resolve() if key_path else None
        self.chain_files = Path(chain_files).resolve() if chain_files else None
        self.host = host
        self.extra_main = extra_main
        self._ports_chosen_here = True
        self.smtp_port = free_port(host)
        self.smtps_port = free_port(host)
        self.config_dir = self.base_dir / "etc"
        self.queue_dir = self.base_dir / "queue"
        self.data_dir = self.base_dir / "data"
        self.maillog = self.base_dir / "maillog"
        self.output_log = self.base_dir / "master.out"
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return (f"Postfix({self.host}:{self.smtp_port}+{self.smtps_port}, "
                f"base_dir={str(self.base_dir)!r})")

    # -- configuration --------------------------------------------------------

    def tls_settings(self) -> str:
        """main.cf lines naming the TLS files."""
        if self.chain_files is not None:
            return f"smtpd_tls_chain_files = {self.chain_files}\n"
        return (f"smtpd_tls_cert_file = {self.cert_path}\n"
                f"smtpd_tls_key_file = {self.key_path}\n")

    def write_config(self) -> None:
        """Write main.cf and master.cf for this instance."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        base = self.base_dir
        (self.config_dir / "main.cf").write_text(
            "# Test-only config written by tests/support/postfix.py.\n"
            "compatibility_level = 3.6\n"
            f"queue_directory = {self.queue_dir}\n"
            f"data_directory = {self.data_dir}\n"
            "mail_owner = postfix\n"
            "setgid_group = postdrop\n"
            f"inet_interfaces = {self.host}\n"
            f"inet_protocols = {'ipv6' if ':' in self.host else 'ipv4'}\n"
            "myhostname = mail.example.com\n"
            "mydestination =\n"
            "alias_maps =\n"
            "alias_database =\n"
            "local_recipient_maps =\n"
            f"maillog_file = {self.maillog}\n"
            f"maillog_file_prefixes = {base}\n"
            "smtpd_tls_security_level = may\n"
            f"{self.tls_settings()}"
            f"{self.extra_main}"
        )
        listen = f"[{self.host}]" if ":" in self.host else self.host
        (self.config_dir / "master.cf").write_text(
            "# Test-only config written by tests/support/postfix.py.\n"
            f"{listen}:{self.smtp_port} inet n - n - 1 smtpd\n"
            f"{listen}:{self.smtps_port} inet n - n - 1 smtpd\n"
            "  -o smtpd_tls_wrappermode=yes\n"
            f"{UNIX_SERVICES}"
        )

    def prepare_directories(self) -> None:
        """The queue directory, and the data directory owned by postfix."""
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(self.data_dir, postfix_user.pw_uid, postfix_user.pw_gid)

    def postconf(self, **settings: str) -> None:
        """Change main.cf settings with ``postconf -e`` (no reload)."""
        pairs = [f"{name}={value}" for name, value in settings.items()]
        self._run(["/usr/sbin/postconf", "-c", str(self.config_dir), "-e", *pairs])

    def argv(self, *command: str) -> list[str]:
        """``postfix -c D/etc COMMAND...`` for this instance."""
        return [POSTFIX_BINARY, "-c", str(self.config_dir), *command]

    @property
    def validate_command(self) -> list[str]:
        return self.argv("check")

    @property
    def reload_command(self) -> list[str]:
        return self.argv("reload")

    @property
    def endpoints(self) -> list[str]:
        """Both listeners, each naming the protocol it speaks."""
        return [f"smtp://{self.host}:{self.smtp_port}",
                f"tls://{self.host}:{self.smtps_port}"]

    def reload(self) -> None:
        self._run(self.reload_command)

    def _run(self, argv: list[str]) -> str:
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT, check=False)
        if result.returncode != 0:
            # Postfix reports most problems to its log, not to stderr.
            raise PostfixError(
                f"{' '.join(argv)} exited {result.returncode}: "
                f"{result.stderr.strip()}\nmaillog:\n{self.log_tail(lines=5)}")
        return result.stdout

    # -- start and stop -------------------------------------------------------

    def start(self) -> None:
        """Check the instance (which creates its queue), start the master.

        When another process took a port the harness chose, pick new ports
        and try again.
        """
        if self._process is not None and self._process.poll() is None:
            raise PostfixError(f"{self!r} is already running")
        if not (self.config_dir / "main.cf").exists():
            self.write_config()
        if not self.queue_dir.exists():
            self._run(["cp", "-a", str(queue_template()), str(self.queue_dir)])
        self.prepare_directories()
        self._run(self.validate_command)
        for _attempt in range(3):
            offset = self._log_size()
            try:
                self._launch(offset)
                return
            except PostfixError:
                taken = "Address already in use" in self.log_tail(offset)
                if not (self._ports_chosen_here and taken):
                    raise
            self.smtp_port, self.smtps_port = free_port(self.host), free_port(self.host)
            self.write_config()
        raise PostfixError(f"{self!r}: every port tried was taken")

    def _launch(self, offset: int) -> None:
        parent = os.getpid()
        with open(self.output_log, "ab") as output:
            self._process = subprocess.Popen(
                [MASTER_BINARY, "-c", str(self.config_dir), "-d"],
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
                raise PostfixError(
                    f"master exited {rc} while starting {self!r}; maillog:\n"
                    f"{self.log_tail(offset)}")
            if self._read_pid() == self._process.pid and self._greets():
                return
            time.sleep(0.05)
        message = (f"{self!r} did not greet within {START_TIMEOUT:.0f} s; "
                   f"maillog:\n{self.log_tail(offset)}")
        self.stop()
        raise PostfixError(message)

    def _greets(self) -> bool:
        """Whether the STARTTLS listener answers with an SMTP greeting."""
        try:
            with socket.create_connection((self.host, self.smtp_port),
                                          timeout=2) as conn:
                return conn.recv(4).startswith(b"220")
        except OSError:
            return False

    def _read_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def master_pid(self) -> int | None:
        if self._process is not None and self._process.poll() is None:
            return self._process.pid
        return None

    def stop(self) -> None:
        """SIGTERM to the master, which stops its children; SIGKILL if it hangs.

        Safe to call twice.
        """
        master = self.master_pid()
        if master is None:
            self._forget()
            self.remove_base_dir()
            return
        children = _children(master)
        _signal(master, signal.SIGTERM)
        try:
            self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal(master, signal.SIGKILL)
            self._process.wait(STOP_TIMEOUT)
            for pid in children:
                if self._is_our_child(pid):
                    _signal(pid, signal.SIGKILL)
        self._forget()
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_alive(pid) for pid in children):
            if time.monotonic() > deadline:
                raise PostfixError(f"{self!r}: processes {children} outlived the master")
            time.sleep(0.05)
        self.remove_base_dir()

    def remove_base_dir(self) -> None:
        """Remove the directory the harness made for this instance, if any."""
        if self._own_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _is_our_child(self, pid: int) -> bool:
        """Whether ``pid`` still runs under this instance's configuration."""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except PROC_GONE:
            return False
        return os.fsencode(str(self.config_dir)) in environ

    def _forget(self) -> None:
        if self._process is not None:
            self._process.poll()
        self._process = None
        _RUNNING.discard(self)

    def __enter__(self) -> Postfix:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()

    # -- what it serves and does ---------------------------------------------

    def served_sha256(self, implicit: bool = False,
                      server_name: str | None = "example.com") -> str:
        """SHA-256 of the leaf a new client gets, with STARTTLS or implicit TLS."""
        return self.served_chain_sha256(implicit, server_name)[0]

    def served_chain_sha256(self, implicit: bool = False,
                            server_name: str | None = "example.com") -> list[str]:
        if implicit:
            chain = served_chain_der(self.host, self.smtps_port, server_name, 5.0)
        else:
            chain = starttls_chain_der(self.host, self.smtp_port, server_name)
        return [hashlib.sha256(der).hexdigest() for der in chain]

    def reloads(self) -> int:
        """How often the master was reloaded, from its log."""
        try:
            text = self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return text.count(" reload -- version ")

    def _log_size(self) -> int:
        try:
            return self.maillog.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, offset: int = 0, lines: int = 20) -> str:
        """The last ``lines`` lines of the maillog written after ``offset``."""
        try:
            with open(self.maillog, "rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no maillog)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def require_postfix() -> None:
    """Skip the current test when Postfix is not installed; fail under CI."""
    if available():
        return
    message = (f"{POSTFIX_BINARY} is missing: mail tests need Debian's postfix "
               "(scripts/bootstrap.sh installs it)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
