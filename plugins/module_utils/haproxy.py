# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy: its certificate files, its runtime API and its checked reload.

HAProxy reads a ``crt`` file that holds the leaf, the chain and the key, or a
certificate file with the key in a ``.key`` sibling. ``crt`` may also name a
directory, whose every regular file is loaded except hidden ones and the
``.key``/``.ocsp``/``.issuer``/``.sctl`` extras: the engine's staged files
are hidden and live only for the swap, and the state directory may not be
in such a directory at all (``Server.loads_directories``).

Applying comes after the files are swapped and the config test has passed:

1. With ``runtime_socket``, through the runtime API: ``set ssl cert`` with the
   new PEM, ``commit ssl cert``, and ``show ssl cert`` to confirm that the
   committed leaf is the new one. Every answer is read, because HAProxy
   reports refusals in text, not in a status. After a failed step the
   transaction is aborted. No process restarts: the worker keeps its PID.
2. Otherwise, or when that fails, a reload: the operator's
   ``reload_command``, or ``reload`` on the master CLI (``master_socket``).
   With a master socket, ``show proc`` then says when the reload is over and
   whether the new workers started: a reload asked for while another runs
   can be lost (a deploy's reload and its rollback's come close together).

The engine's probe then proves the new leaf is served, per name.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import time

from ansible_collections.certfleet.deploy.plugins.module_utils import (
    material as mat,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    CommandError,
    DeployError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    Deploy,
)

KEY_SUFFIX = ".key"
RUNTIME_API = "runtime_api"
RELOAD = "reload"
_REPLY_LIMIT = 600
_POLL = 0.05
# How long a reload command that failed may still be reloading HAProxy.
FAILED_COMMAND_GRACE = 3.0
# `show proc` on the master CLI: "<pid> master <reloads> [failed: <n>] ..."
_MASTER_LINE = re.compile(r"^\s*\d+\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]", re.M)
_SHA1_LINE = re.compile(r"^SHA1 FingerPrint:\s*([0-9A-Fa-f]+)\s*$", re.M)
_STARTED = ("Transaction created", "Transaction updated")


def _short(reply: str) -> str:
    """An answer fit for a message: one line, bounded, never key material."""
    if "PRIVATE KEY" in reply:
        return "(answer withheld: it quotes key material)"
    text = " ".join(reply.split())
    return text if len(text) <= _REPLY_LIMIT else text[:_REPLY_LIMIT] + "..."


def cli(path: str, command: str, timeout: float, payload: str = "") -> str:
    """Send one command (and its payload) to an HAProxy CLI socket; read all.

    HAProxy answers one command per connection and closes it, so the whole
    answer is what arrives before the close. Only the command line appears
    in errors, never the payload.
    """
    data = command + "\n" + (payload + "\n\n" if payload else "")
    chunks = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(data.encode("ascii"))
            sock.shutdown(socket.SHUT_WR)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as exc:
        raise CommandError(
            f"HAProxy's socket {path} did not answer `{command.split(' <<')[0]}`: "
            f"{exc.strerror or exc}.", socket=path,
        ) from None
    return b"".join(chunks).decode("utf-8", errors="replace")


def pem_payload(data: bytes) -> str:
    """PEM text for ``set ssl cert``: an empty line would end it early."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise CommandError(
            "The certificate file is not plain PEM text; it cannot be sent over "
            "the runtime API."
        ) from None
    return "\n".join(line for line in text.splitlines() if line.strip())


@dataclasses.dataclass
class RuntimeApi:
    """HAProxy's stats socket at level admin, for one certificate."""

    socket_path: str
    name: str
    timeout: float

    def ask(self, command: str, payload: str = "") -> str:
        return cli(self.socket_path, command, self.timeout, payload)

    def update(self, payload: str, leaf_sha1: str) -> None:
        """Set, commit and confirm the certificate; abort after any failure."""
        if not self.name or any(c.isspace() for c in self.name):
            raise CommandError(
                f"The certificate name {self.name!r} cannot be given on HAProxy's "
                "command line (it is empty or holds white space)."
            )
        try:
            self.set_commit_confirm(payload, leaf_sha1)
        except CommandError as exc:
            exc.details["abort"] = self.abort()
            raise

    def set_commit_confirm(self, payload: str, leaf_sha1: str) -> None:
        """Each step's answer is read: HAProxy reports refusals in text only."""
        reply = self.ask(f"set ssl cert {self.name} <<", payload)
        if not any(word in reply for word in _STARTED):
            raise CommandError(
                f"HAProxy refused `set ssl cert {self.name}`: {_short(reply)}",
                socket=self.socket_path)
        reply = self.ask(f"commit ssl cert {self.name}")
        if "Success!" not in reply:
            raise CommandError(
                f"HAProxy refused `commit ssl cert {self.name}`: {_short(reply)}",
                socket=self.socket_path)
        shown = _SHA1_LINE.search(self.ask(f"show ssl cert {self.name}"))
        if not shown or shown.group(1).upper() != leaf_sha1.upper():
            found = shown.group(1) if shown else "no fingerprint"
            raise CommandError(
                f"After the commit, `show ssl cert {self.name}` reports {found}, "
                f"not the new leaf (SHA-1 {leaf_sha1}).", socket=self.socket_path)

    def abort(self) -> str:
        """Abort this certificate's transaction; say what HAProxy answered.

        After a refused commit HAProxy has usually dropped the transaction
        already and answers that there is none; another client's transaction
        on a different certificate is left alone (HAProxy checks the name).
        """
        try:
            return _short(self.ask(f"abort ssl cert {self.name}"))
        except CommandError as exc:
            return exc.message


def reload_counts(path: str, timeout: float) -> tuple:
    """(reloads, failed reloads) from ``show proc`` on the master CLI."""
    match = _MASTER_LINE.search(cli(path, "show proc", timeout))
    if match is None:
        raise CommandError(
            f"HAProxy's master socket {path} did not answer `show proc` with a "
            "master line; is it the master CLI (-S) and not a stats socket?",
            socket=path)
    return int(match.group(1)), int(match.group(2))


def wait_for_reload(path: str, before: tuple, timeout: float) -> bool:
    """Wait until the master has counted a reload since ``before``.

    The master re-executes itself on a reload and refuses connections
    meanwhile; once it answers with a higher count the reload is over, and
    the failed ones are counted apart (the previous workers then keep
    serving). A reload asked for while one runs can be lost, so the next one
    waits for this. False when none was counted within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            after = reload_counts(path, timeout)
        except CommandError:
            after = None
        if after is not None and after[0] > before[0]:
            break
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    if after[1] > before[1]:
        raise CommandError(
            f"HAProxy's master ({path}) reports the reload failed (failed reloads: "
            f"{after[1]}); the previous workers keep serving. HAProxy's log says "
            "why.", socket=path)
    return True


class HaproxyDeploy(Deploy):
    """The deploy flow with HAProxy's file layouts, runtime API and reload."""

    applied_by: str | None = None

    # -- files ----------------------------------------------------------------

    def roles(self) -> tuple:
        """A combined PEM, or the certificates alone when a key file is given."""
        if not self.params.get("key_path"):
            return self.server.files
        return tuple(
            dataclasses.replace(role, layout="fullchain", mode_option="cert_mode",
                                default_mode=0o644, secret=False)
            if role.option == "cert_path" else role
            for role in self.server.files
        )

    def specs(self, material: mat.Material) -> list:
        """Refuse a key file where HAProxy would never look for it."""
        key_path = self.params.get("key_path")
        if key_path:
            cert_path = self.params["cert_path"]
            readable = (cert_path + KEY_SUFFIX,
                        os.path.splitext(cert_path)[0] + KEY_SUFFIX)
            if key_path not in readable:
                raise DeployError(
                    f"key_path {key_path} is not where HAProxy reads the key of "
                    f"{cert_path}: it loads {readable[0]} (or {readable[1]} with "
                    "ssl-load-extra-del-ext). Leave out key_path to write one "
                    "combined PEM."
                )
        return super().specs(material)

    # -- apply ------------------------------------------------------------------

    def command(self, option: str, what: str):
        """No default reload command when the master CLI does the reload."""
        if (option == "reload_command" and self.params.get("master_socket")
                and self.params.get("reload_command") is None):
            return None
        return super().command(option, what)

    def apply(self) -> float:
        """Runtime API when a socket is given, else (or when it fails) reload."""
        told = time.monotonic()
        runtime_error = None
        if self.params.get("runtime_socket"):
            try:
                with self.timings.step("runtime_api"):
                    self.runtime_update()
                self.note_applied(RUNTIME_API)
                return told
            except CommandError as exc:
                runtime_error = exc
                self.note_applied(RUNTIME_API, exc)
                self.module.warn(f"{exc.message} HAProxy is reloaded instead.")
        told = time.monotonic()
        try:
            self.reload_haproxy()
        except CommandError as exc:
            self.note_applied(RELOAD, exc)
            if runtime_error is None:
                raise
            raise CommandError(
                f"{runtime_error.message} The reload that followed failed too: "
                f"{exc.message}", **exc.details) from None
        self.note_applied(RELOAD)
        return told

    def note_applied(self, method: str, error: CommandError | None = None) -> None:
        """Record how HAProxy was told, in order (a rollback adds its own)."""
        if error is None:
            self.applied_by = method
        entry = {"method": method, "ok": error is None}
        if error is not None:
            entry["error"] = error.message
            if "abort" in error.details:
                entry["abort"] = error.details["abort"]
        self.result.setdefault("applied", []).append(entry)
        self.result["applied_by"] = self.applied_by

    def runtime_update(self) -> None:
        """Send the files as they are on disk now (new, or restored)."""
        p = self.params
        paths = [p["cert_path"]] + ([p["key_path"]] if p.get("key_path") else [])
        try:
            data = b"".join(_read(path) for path in paths)
        except OSError as exc:
            raise CommandError(
                f"{exc.filename} cannot be read for the runtime API: "
                f"{exc.strerror}.") from None
        leaf = self.leaf_of(data)
        if leaf is None:
            raise CommandError(f"{p['cert_path']} holds no certificate to send.")
        api = RuntimeApi(p["runtime_socket"],
                         p.get("runtime_cert_name") or p["cert_path"],
                         p["command_timeout"])
        api.update(pem_payload(data), leaf.fingerprint(mat.hashes.SHA1()).hex())

    def reload_haproxy(self) -> None:
        """Reload with the command, or ``reload`` on the master CLI.

        With a master socket, whichever way it was asked for, the reload is
        only done when the master has counted it, and a failed one fails.
        """
        master = self.params.get("master_socket")
        timeout = self.params["command_timeout"]
        if self.reload is None and not master:
            raise CommandError(
                "HAProxy cannot be reloaded: reload_command is empty and no "
                "master_socket is given.")
        before = reload_counts(master, timeout) if master else None
        try:
            if self.reload is not None:
                super().apply()
            else:
                with self.timings.step("reload"):
                    cli(master, "reload", timeout)
        except CommandError as exc:
            if before is not None:
                try:
                    wait_for_reload(master, before, FAILED_COMMAND_GRACE)
                except CommandError as failed:
                    exc.details["master"] = failed.message
            raise
        if before is None:
            return
        with self.timings.step("reload_check"):
            if not wait_for_reload(master, before, timeout):
                raise CommandError(
                    f"HAProxy's master ({master}) counted no reload within "
                    f"{timeout} s of asking for one.", socket=master)

    # -- verify ---------------------------------------------------------------

    def verify(self, expected: str, since: float | None, settle: bool) -> dict:
        """Wait for old workers only after a reload; the runtime API has none."""
        if self.applied_by is not None:
            settle = self.applied_by == RELOAD
        return super().verify(expected, since, settle)

    def probe_targets(self) -> list:
        """Each name of the certificate as SNI, and no SNI when asked.

        HAProxy picks the certificate by SNI among all those of a bind; a
        client without SNI gets the bind's default (its first) certificate.
        """
        names = ([self.params["verify_server_name"]]
                 if self.params.get("verify_server_name") else
                 [n for n in mat.dns_names(self.material.leaf)
                  if not n.startswith("*.")]) or [self.sni]
        targets = [(e, n) for e in self.endpoints() for n in names]
        if self.params.get("verify_without_sni"):
            targets += [(e, None) for e in self.endpoints()]
        return targets

    def manual_commands(self) -> list:
        """The reload by hand goes to the master CLI when that is how it is done."""
        commands = super().manual_commands()
        master = self.params.get("master_socket")
        if self.reload is None and master:
            commands.append(f"echo reload | socat {master} -")
        return commands


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
