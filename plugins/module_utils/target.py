# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one deploy flow every server module shares.

A server module describes its server with a ``Server`` (files, layouts,
commands, modes, users, probe defaults) and calls ``main(server)``. Everything
else happens here: material, layout, transaction, config test, apply, verify,
roll back, result.
"""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.certfleet.deploy.plugins.module_utils import (
    commands,
    material as mat,
    ownership,
    probe,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    CommandError,
    DeployError,
    ProbeError,
    TransactionError,
    VerifyError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.transaction import (
    FileSpec,
    Transaction,
    digest,
    read_bytes,
)


@dataclass(frozen=True)
class FileRole:
    """One file a server reads: its option, layout and default mode."""

    option: str
    layout: str
    mode_option: str
    default_mode: int
    secret: bool = False
    required: bool = True


@dataclass(frozen=True)
class Server:
    """All a server module has to say about its server."""

    name: str
    files: tuple
    validate_command: tuple = ()
    reload_command: tuple = ()
    port: int = 443
    users: tuple = ("root",)
    groups: tuple = ("root",)
    settle: float = 0.0
    confirm: int = 3
    confirm_interval: float = 0.02
    extra_options: dict = field(default_factory=dict)
    # Option groups for AnsibleModule, for servers whose files are alternatives.
    required_one_of: tuple = ()
    required_together: tuple = ()
    # The server loads every file of a directory it is pointed at (HAProxy's
    # ``crt DIR``): the state directory may not even be inside one.
    loads_directories: bool = False

    @property
    def state_dir(self) -> str:
        return f"/var/lib/certfleet/{self.name}"


def argument_spec(server: Server) -> dict:
    """The options every server module takes (documented in doc fragments)."""
    spec = dict(
        cert_content=dict(type="str", no_log=True),
        cert_src=dict(type="path"),
        chain_content=dict(type="str", no_log=True),
        chain_src=dict(type="path"),
        key_content=dict(type="str", no_log=True),
        key_src=dict(type="path"),
        key_passphrase=dict(type="str", no_log=True),
        owner=dict(type="str"),
        group=dict(type="str"),
        cert_mode=dict(type="raw"),
        key_mode=dict(type="raw", no_log=False),
        follow_symlinks=dict(type="bool", default=True),
        expected_names=dict(type="list", elements="str", default=[]),
        min_days_valid=dict(type="int", default=0),
        allow_expired=dict(type="bool", default=False),
        require_chain=dict(type="bool", default=False),
        ca_src=dict(type="path"),
        validate_command=dict(type="raw"),
        reload_command=dict(type="raw"),
        command_timeout=dict(type="int", default=60),
        backup_dir=dict(type="path"),
        backup_retention=dict(type="int", default=5),
        lock_timeout=dict(type="int", default=60),
        verify=dict(type="bool", default=True),
        verify_endpoint=dict(type="list", elements="str"),
        verify_server_name=dict(type="str"),
        verify_protocol=dict(type="str", default="auto",
                             choices=list(probe.PROTOCOLS)),
        verify_attempts=dict(type="int", default=3),
        verify_backoff=dict(type="float", default=1.0),
        verify_max_backoff=dict(type="float", default=16.0),
        verify_jitter=dict(type="float", default=0.0),
        verify_timeout=dict(type="float", default=5.0),
        verify_deadline=dict(type="float", default=0.0),
        verify_settle=dict(type="float"),
        verify_confirm=dict(type="int"),
    )
    for role in server.files:
        spec[role.option] = dict(type="path", required=role.required)
    spec.update(server.extra_options)
    return spec


MUTUALLY_EXCLUSIVE = [
    ("cert_content", "cert_src"),
    ("chain_content", "chain_src"),
    ("key_content", "key_src"),
]


def check_destination(option: str, path: str) -> None:
    """Refuse an empty or relative destination before anything is touched.

    An empty template variable gives an empty path (F11); a relative one would
    be resolved against wherever the module happens to run, never what the
    server reads.
    """
    if not path.strip():
        raise DeployError(
            f"{option} is empty: give the absolute path of the file the server "
            "reads (an empty template variable?).")
    if not os.path.isabs(path):
        raise DeployError(
            f"{option} {path!r} is a relative path: give the absolute path of "
            "the file the server reads.")


def key_fingerprint(data: bytes | None) -> str:
    """A short SHA-256 of the public half of a key found in ``data``.

    Lets a diff show that a key changes without showing anything secret;
    empty when no unencrypted key can be read.
    """
    for block in mat.split_pem(mat.PemInput(data, "file")) if data else []:
        if block.label.endswith(b"PRIVATE KEY"):
            try:
                key = mat.serialization.load_pem_private_key(block.text, None)
            except (ValueError, TypeError):
                return ""
            public = key.public_key().public_bytes(
                mat.serialization.Encoding.DER,
                mat.serialization.PublicFormat.SubjectPublicKeyInfo)
            return f" with public key sha256 {hashlib.sha256(public).hexdigest()[:16]}"
    return ""


class Timings:
    """Milliseconds per step, for the result."""

    def __init__(self) -> None:
        self.steps: dict = {}

    @contextmanager
    def step(self, name: str):
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = int((time.monotonic() - started) * 1000)
            self.steps[name] = self.steps.get(name, 0) + elapsed


def _read_input(params: dict, name: str) -> mat.PemInput | None:
    """A PEM input from ``NAME_content`` or the file ``NAME_src``."""
    content, src = params.get(f"{name}_content"), params.get(f"{name}_src")
    if content is not None:
        return mat.PemInput(content.encode("utf-8"), f"{name}_content")
    if src is None:
        return None
    try:
        with open(src, "rb") as handle:
            return mat.PemInput(handle.read(), f"{name}_src {src}")
    except OSError as exc:
        raise DeployError(
            f"{name}_src {src} cannot be read: {exc.strerror}."
        ) from None


def load_material(params: dict) -> mat.Material:
    """Read and check the inputs; nothing on the host is changed by this."""
    cert = _read_input(params, "cert")
    if cert is None:
        raise DeployError("One of cert_content or cert_src is required.")
    passphrase = params.get("key_passphrase")
    material = mat.load(
        cert,
        _read_input(params, "key"),
        _read_input(params, "chain"),
        passphrase.encode("utf-8") if passphrase else None,
    )
    checks = mat.Checks(
        expected_names=params.get("expected_names") or [],
        min_days_valid=params.get("min_days_valid") or 0,
        allow_expired=bool(params.get("allow_expired")),
        require_chain=bool(params.get("require_chain")),
        trust_roots=_read_input(params, "ca"),
    )
    return mat.check(material, checks)


class Deploy:
    """One run of one server module: holds the result as it is built."""

    def __init__(self, module: AnsibleModule, server: Server) -> None:
        self.module = module
        self.server = server
        self.params = module.params
        self.timings = Timings()
        self.result: dict = {
            "changed": False,
            "deployment_id": None,
            "files": [],
            "certificate": {},
            "served": {},
            "rolled_back": False,
            "rollback_failed": False,
            "timings": self.timings.steps,
        }

    # -- preparation --------------------------------------------------------

    def roles(self) -> tuple:
        """The server's file roles for this run.

        A server whose files depend on the options (a certificate that holds
        the key unless a key file is given, say) overrides this.
        """
        return self.server.files

    def specs(self, material: mat.Material) -> list:
        """The files this server needs, with their final owner and mode."""
        p, specs = self.params, []
        for role in self.roles():
            path = p.get(role.option)
            if path is None:
                continue
            check_destination(role.option, path)
            mode = ownership.parse_mode(p.get(role.mode_option), role.mode_option)
            owner = ownership.resolve(
                path,
                ownership.Defaults(role.default_mode, self.server.users,
                                   self.server.groups),
                owner=p.get("owner"), group=p.get("group"), mode=mode,
            )
            layout = self.layout_for(role)
            secret = role.secret or layout in ("key", "combined", "key_first")
            if secret and mode is not None and mode & 0o007:
                raise DeployError(
                    f"{role.mode_option} {ownership.describe_mode(mode)} would let "
                    f"every user on the host read or change the private key in "
                    f"{path}; use a mode without permissions for others, such "
                    "as '0600' or '0640'.")
            content = material.layout(layout)
            if not content:
                raise DeployError(
                    f"{role.option} {path} would be empty: the {layout} layout "
                    "needs chain certificates and none were given."
                )
            specs.append(FileSpec(
                path=path, content=content, owner=owner,
                secret=secret,
                follow_symlinks=p["follow_symlinks"], label=role.option,
            ))
        return specs

    def layout_for(self, role: FileRole) -> str:
        return self.params.get(f"{role.option[:-5]}_layout") or role.layout

    def command(self, option: str, what: str) -> commands.Command | None:
        """The operator's command, else the server's default.

        A default's program may be a tuple of names that distributions use for
        the same tool; the first found on PATH is run.
        """
        value = self.params.get(option)
        if value is None:
            value = list(getattr(self.server, option))
            if value and isinstance(value[0], tuple):
                value[0] = commands.first_found(self.module, value[0])
        return commands.make(value, what, self.server.name)

    def endpoints(self) -> list:
        given = self.params.get("verify_endpoint") or [
            f"127.0.0.1:{self.server.port}"
        ]
        return [probe.parse_endpoint(e, self.server.port) for e in given]

    def probe_targets(self) -> list:
        """Every (endpoint, server name) pair that must serve the new leaf.

        A server whose clients reach it under several names, or without SNI,
        overrides this to probe each of them.
        """
        return [(endpoint, self.sni) for endpoint in self.endpoints()]

    def server_name(self, material: mat.Material) -> str | None:
        if self.params.get("verify_server_name"):
            return self.params["verify_server_name"]
        names = mat.dns_names(material.leaf)
        name = names[0] if names else mat.common_name(material.leaf)
        return name[2:] if name and name.startswith("*.") else name

    # -- the flow -------------------------------------------------------------

    def check_options(self) -> None:
        """Refuse option values that would only fail after the swap."""
        p = self.params
        floors = {
            "command_timeout": (1, "a whole number of seconds, 1 or more"),
            "verify_timeout": (0.001, "a positive number of seconds"),
            "verify_attempts": (1, "1 or more"),
            "verify_backoff": (0, "0 or more seconds"),
            "verify_max_backoff": (0, "0 or more seconds"),
            "verify_jitter": (0, "a fraction from 0 to 1"),
            "verify_deadline": (0, "0 (no deadline) or more seconds"),
            "backup_retention": (0, "0 or more"),
            "lock_timeout": (0, "0 or more seconds"),
            "verify_settle": (0, "0 or more seconds"),
            "verify_confirm": (1, "1 or more"),
        }
        for option, (floor, wanted) in floors.items():
            value = p.get(option)
            if value is not None and value < floor:
                raise DeployError(f"Option {option} must be {wanted}, not {value}.")
        if p.get("verify_jitter") is not None and p["verify_jitter"] > 1:
            raise DeployError("Option verify_jitter must be a fraction from 0 to "
                              f"1, not {p['verify_jitter']}.")
        backup_dir = p.get("backup_dir")
        if backup_dir is not None and not os.path.isabs(backup_dir):
            raise DeployError(f"backup_dir must be an absolute path, not "
                              f"{backup_dir!r}.")
        if p["verify"]:
            self.endpoints()

    def run(self) -> dict:
        p = self.params
        self.check_options()
        with self.timings.step("material"):
            material = self.material = load_material(p)
            specs = self.specs(material)
        for warning in material.warnings:
            self.module.warn(warning)
        self.result["certificate"] = material.summary()
        self.validate = self.command("validate_command", "config test")
        self.reload = self.command("reload_command", "reload")
        for command in (self.validate, self.reload):
            commands.check_available(self.module, command)
            commands.pin_program(self.module, command)
        self.expected = material.sha256
        self.expected_chain = [material.sha256] + [
            mat.sha256(c) for c in material.chain
        ] if self.serves_chain() else [material.sha256]
        self.sni = self.server_name(material)
        state_dir = p.get("backup_dir") or self.server.state_dir
        self.check_state_dir(state_dir, specs)
        with Transaction(state_dir, p["lock_timeout"], p["backup_retention"],
                         read_only=self.module.check_mode) as txn:
            self.timings.steps["lock"] = txn.lock_wait_ms
            self.transact(txn, specs)
        return self.result

    def check_state_dir(self, state_dir: str, specs: list) -> None:
        """Refuse a state directory among the files the server reads.

        Lock, journal and backups (old keys among them) beside the live files
        could be loaded by the server as certificates, or read by anyone who
        may read the live directory.
        """
        state = os.path.realpath(state_dir)
        for spec in specs:
            for live in sorted({os.path.dirname(os.path.realpath(spec.path)),
                                os.path.realpath(os.path.dirname(spec.path))}):
                inside = (self.server.loads_directories
                          and state.startswith(live.rstrip(os.sep) + os.sep))
                if state == live or inside:
                    where = "is" if state == live else "is inside"
                    raise DeployError(
                        f"backup_dir {state_dir} {where} {live}, the directory "
                        f"of {spec.label} {spec.path}: {self.server.name} could "
                        "read its lock, journal and backups. Choose a directory "
                        "outside the server's certificate directories."
                    )

    def serves_chain(self) -> bool:
        layouts = {self.layout_for(r) for r in self.roles()
                   if self.params.get(r.option)}
        return bool(layouts & {"fullchain", "combined", "key_first"})

    def transact(self, txn: Transaction, specs: list) -> None:
        with self.timings.step("recover"):
            own = {s.path for s in specs} | {
                os.path.realpath(s.path) for s in specs}
            recovered = (txn.pending() if self.module.check_mode
                         else txn.recover(own_paths=own))
        if recovered:
            self.result["recovered"] = recovered
        with self.timings.step("compare"):
            changes = txn.plan(specs)
        self.result["deployment_id"] = txn.deployment_id
        self.result["files"] = [self.file_entry(s, changes) for s in specs]
        self.result["diff"] = self.diff(specs, changes)
        if not changes:
            forced = bool(recovered) and recovered["phase"] != "verified"
            self.converge(forced)
            return
        self.result["changed"] = True
        if self.module.check_mode:
            return
        with self.timings.step("swap"):
            txn.apply(before_swap=self.before_swap)
        self.result["files"] = [self.file_entry(s, changes) for s in specs]
        try:
            if self.validate:
                with self.timings.step("validate"):
                    commands.run(self.module, self.validate,
                                 self.params["command_timeout"])
        except CommandError as exc:
            with self.timings.step("rollback"):
                self.restore_files(txn, exc)
            self.result["rolled_back"] = True
            raise DeployError(
                f"{exc.message} The previous files were restored; the server "
                "was not reloaded.", **exc.details) from None
        try:
            self.apply_and_verify()
        except DeployError as exc:
            self.roll_back(txn, changes, exc)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # A bug or an unforeseen error after the swap must not leave new,
            # unproven files live: undo first, then report what happened.
            self.roll_back(txn, changes, DeployError(
                f"Unexpected error after the files were replaced: "
                f"{type(exc).__name__}: {exc}."))
        txn.mark_verified()
        with self.timings.step("prune"):
            for warning in txn.commit():
                self.module.warn(warning)
            self.after_commit(txn)

    def after_commit(self, txn: Transaction) -> None:
        """Work left once the new files are proven served (none by default)."""

    def before_swap(self, txn: Transaction) -> None:
        """Checks on the staged files before the first rename (none by default).

        Servers that pick up a rename by themselves override this: for them a
        config test after the swap would come after the server saw the files.
        """

    def settles(self) -> bool:
        """Whether the apply step leaves a window with old and new served.

        A reload does (old workers keep accepting for a while); servers that
        switch on their own override this when they need the same care.
        """
        return bool(self.reload)

    def file_entry(self, spec: FileSpec, changes: list) -> dict:
        change = next((c for c in changes if c.given == spec.path), None)
        entry = {
            "path": spec.path,
            "sha256": digest(spec.content),
            "mode": ownership.describe_mode(spec.owner.mode),
            "changed": change is not None,
            "backup": change.backup if change else None,
        }
        if change and change.path != spec.path:
            entry["target"] = change.path
        return entry

    def diff(self, specs: list, changes: list) -> dict:
        """Before and after, as metadata only: subjects, dates, fingerprints."""
        changed = {c.given: c for c in changes}
        before, after = [], []
        for spec in specs:
            change = changed.get(spec.path)
            if change is None:
                continue
            if not change.existed:
                old = "absent"
            elif spec.secret:
                old = self.describe_secret(read_bytes(change.path),
                                           change.old_mode)
            else:
                old = self.describe_bytes(read_bytes(change.path))
            if spec.secret:
                new = self.describe_secret(spec.content, spec.owner.mode)
            else:
                new = self.describe_bytes(spec.content)
            before.append(f"{spec.path}: {old}")
            after.append(f"{spec.path}: {new}")
        return {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n",
                "before_header": "deployed", "after_header": "to deploy"}

    # -- apply, verify, roll back --------------------------------------------

    def apply(self) -> float:
        """Reload (or the server's equivalent); return when it was told.

        Servers that apply differently (a runtime API, a watched file)
        override this; it runs again, on the restored files, in a rollback.
        """
        told = time.monotonic()
        if self.reload:
            with self.timings.step("reload"):
                commands.run(self.module, self.reload,
                             self.params["command_timeout"])
        return told

    def prober(self) -> probe.Prober:
        return probe.Prober(protocol=self.params["verify_protocol"])

    def verify(self, expected: str, since: float | None, settle: bool) -> dict:
        """Probe every endpoint until each serves ``expected`` to every client."""
        p = self.params
        backoff = probe.Backoff(
            attempts=p["verify_attempts"], initial=p["verify_backoff"],
            cap=p["verify_max_backoff"], jitter=p["verify_jitter"],
            deadline=p["verify_deadline"],
        )
        confirm = probe.Confirm(
            settle=(p["verify_settle"] if p["verify_settle"] is not None
                    else self.server.settle) if settle else 0.0,
            handshakes=(p["verify_confirm"] or self.server.confirm) if settle else 1,
            interval=self.server.confirm_interval,
            watch=self.server.confirm_interval if settle else 0.0,
        )
        served = {"endpoints": [], "attempts": 0, "handshakes": 0}
        for endpoint, server_name in self.probe_targets():
            verdict = self.prober().wait_for(
                endpoint, server_name, expected, backoff, confirm,
                p["verify_timeout"], since=since)
            served["attempts"] += verdict.attempts
            served["handshakes"] += verdict.handshakes
            probe.require(verdict, endpoint, expected)
            served["endpoints"].append(verdict.last.as_dict())
        first = served["endpoints"][0]
        served.update(sha256=first["sha256"], protocol=first["protocol"],
                      chain_sha256=first["chain_sha256"], server_name=self.sni)
        if since is not None:
            served["verified_after_ms"] = int((time.monotonic() - since) * 1000)
        return served

    def check_chain(self, served: dict) -> None:
        chain = served["chain_sha256"]
        if probe.chain_visible() or len(chain) > 1:
            if chain != self.expected_chain:
                raise VerifyError(
                    f"The served chain differs from the deployed one: "
                    f"{len(chain)} certificate(s) served, "
                    f"{len(self.expected_chain)} deployed."
                )

    def apply_and_verify(self) -> None:
        since = self.apply()
        if not self.params["verify"]:
            return
        with self.timings.step("verify"):
            served = self.verify(self.expected, since, settle=self.settles())
        self.check_chain(served)
        self.result["served"] = served

    def converge(self, forced: bool) -> None:
        """Files already in place: still make sure the server serves them (F05)."""
        if self.params["verify"] and not forced:
            try:
                with self.timings.step("verify"):
                    served = self.verify(self.expected, None, settle=False)
                self.check_chain(served)
                self.result["served"] = served
                return
            except (ProbeError, VerifyError) as exc:
                self.result["reason"] = (
                    f"The files were already in place but the server did not "
                    f"serve them ({exc.message}); it was reloaded."
                )
        elif not forced:
            return
        self.result["changed"] = True
        if self.module.check_mode:
            return
        if self.validate:
            with self.timings.step("validate"):
                commands.run(self.module, self.validate,
                             self.params["command_timeout"])
        self.apply_and_verify()

    def restore_files(self, txn: Transaction, cause: DeployError,
                      keep_backups: bool = False) -> None:
        try:
            txn.rollback(keep_backups=keep_backups)
        except TransactionError as exc:
            self.fail_rollback(txn, cause, exc)
        self.result["files"] = [self.restored_entry(e) for e in self.result["files"]]

    @staticmethod
    def restored_entry(entry: dict) -> dict:
        """A file's result entry after a rollback: what is on disk now."""
        path = entry.get("target", entry["path"])
        if not os.path.isfile(path):
            return dict(entry, changed=False, backup=None)
        return dict(entry, changed=False, backup=None,
                    sha256=digest(read_bytes(path) or b""))

    def roll_back(self, txn: Transaction, changes: list, cause: DeployError):
        """Restore the files, apply again, and prove the old leaf is served."""
        old_leaf = self.old_leaf(changes)
        with self.timings.step("rollback"):
            self.restore_files(txn, cause, keep_backups=True)
            try:
                since = self.apply()
                if self.params["verify"] and old_leaf:
                    self.verify(old_leaf, since, settle=self.settles())
            except (CommandError, ProbeError, VerifyError) as exc:
                self.fail_rollback(txn, cause, exc)
            txn.discard_backups()
        self.result["rolled_back"] = True
        raise DeployError(
            f"{cause.message} The previous files were restored and "
            f"{'are served again' if old_leaf and self.params['verify'] else 'reloaded'}.",
            **cause.details) from None

    def fail_rollback(self, txn, cause: DeployError, exc: DeployError):
        self.result["rollback_failed"] = True
        backups = txn.backups()
        manual = txn.restore_commands() + self.manual_commands()
        self.result["backups"] = backups
        self.result["manual_steps"] = manual
        raise DeployError(
            f"{cause.message} Rolling back also failed: "
            f"{exc.message.rstrip('.')}. Restore the backups by hand with the commands in manual_steps.",
            **cause.details) from None

    def manual_commands(self) -> list:
        """What to run by hand after restoring the backups, in order."""
        return [c.text for c in (self.validate, self.reload) if c]

    def old_leaf(self, changes: list) -> str | None:
        """The leaf fingerprint the server held before, from its backup.

        Certificate files first; a file that also holds the key (a key-first
        or combined bundle) is read only when no other file has the leaf, and
        nothing but its certificate is kept.
        """
        for change in sorted(changes, key=lambda c: c.secret):
            if not change.backup:
                continue
            with open(change.backup, "rb") as handle:
                data = handle.read()
            leaf = self.leaf_of(data)
            if leaf is not None:
                return mat.sha256(leaf)
        return None

    @staticmethod
    def leaf_of(data: bytes):
        """The first certificate of a file's bytes; None if there is none.

        An existing file may hold anything (a broken certificate is a reason
        to deploy over it), so what cannot be parsed counts as none.
        """
        try:
            blocks = mat.split_pem(mat.PemInput(data, "file"))
        except DeployError:
            return None
        for block in blocks:
            if block.label == b"CERTIFICATE":
                try:
                    return mat.x509.load_pem_x509_certificate(block.text)
                except ValueError:
                    return None
        return None

    def describe_secret(self, data: bytes | None, mode: int) -> str:
        """One line about a file that holds a key: its certificate, never the key.

        A combined or key-first file also holds a certificate, which the diff
        describes like any other.
        """
        key = (f"private key (mode {ownership.describe_mode(mode)})"
               f"{key_fingerprint(data)}")
        if data and self.leaf_of(data) is not None:
            return f"{self.describe_bytes(data)} with its {key}"
        return key

    def describe_bytes(self, data: bytes | None) -> str:
        """One line about a certificate file: never its bytes."""
        leaf = self.leaf_of(data) if data else None
        if leaf is None:
            return "no certificate"
        info = mat.info(leaf)
        return (f"subject={info['subject']} sans={','.join(info['sans'])} "
                f"not_after={info['not_after']} sha256={info['sha256']}")


def main(server: Server, deploy_class: type = Deploy) -> None:
    """The whole ``main()`` of a server module."""
    module = AnsibleModule(
        argument_spec=argument_spec(server),
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        required_one_of=[("cert_content", "cert_src"), *server.required_one_of],
        required_together=list(server.required_together),
        supports_check_mode=True,
    )
    if mat.x509 is None:
        module.fail_json(msg=missing_required_lib("cryptography"))
    deploy = deploy_class(module, server)
    try:
        result = deploy.run()
    except DeployError as exc:
        result = dict(deploy.result)
        result.update(exc.details)
        if not module._diff:
            result.pop("diff", None)
        module.fail_json(msg=exc.message, **result)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)
