# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find the TLS servers on a host, their versions and the certificates they use.

For each server: find its binary, ask it its version, read its configuration
the way the server does (``confparse``), then read every certificate file it
names. Every failure is recorded where it happened (one server, one file) and
never stops the rest, so one broken configuration does not hide the others.

Certificate files are read for their certificate blocks only. A file that
also holds the private key (an HAProxy combined PEM, a Postfix chain file) is
read, but its key block is never parsed, kept or returned.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ansible_collections.certfleet.deploy.plugins.module_utils import (
    commands,
    confparse,
    material,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
    MaterialError,
)

MAX_CERT_FILE = 1024 * 1024
DEFAULT_APACHE_CONFIGS = ("/etc/apache2/apache2.conf", "/etc/httpd/conf/httpd.conf")
DEFAULT_HAPROXY_CONFIGS = ("/etc/haproxy/haproxy.cfg",)
DEFAULT_POSTFIX_DIR = "/etc/postfix"
DEFAULT_DOVECOT_CONFIG = "/etc/dovecot/dovecot.conf"
DEFAULT_TRAEFIK_CONFIGS = ("/etc/traefik",)
DEFAULT_ENVOY_CONFIGS = ("/etc/envoy/envoy.yaml",)


@dataclass(frozen=True)
class ServerSpec:
    """How to recognise one server and ask its version."""

    name: str
    binaries: tuple
    version_args: tuple
    version_pattern: str


SERVERS = (
    ServerSpec("nginx", ("nginx",), ("-v",), r"nginx/(\S+)"),
    ServerSpec("apache", ("apache2", "httpd"), ("-v",), r"Apache/(\S+)"),
    ServerSpec("haproxy", ("haproxy",), ("-v",), r"HA-?Proxy version (\S+)"),
    ServerSpec("postfix", ("postconf",), ("-d", "mail_version"),
               r"mail_version = (\S+)"),
    ServerSpec("dovecot", ("dovecot",), ("--version",), r"^(\d\S*)"),
    ServerSpec("traefik", ("traefik",), ("version",), r"Version:\s+v?(\S+)"),
    ServerSpec("envoy", ("envoy",), ("--version",), r"version: \w+/(\d[^/\s]*)"),
)
SERVER_NAMES = tuple(s.name for s in SERVERS)


def parse_version(spec: ServerSpec, output: str) -> str | None:
    """The version number in a server's version output, if it is there."""
    match = re.search(spec.version_pattern, output, re.M)
    return match.group(1) if match else None


def _certificates(blocks: list, path: str) -> list:
    certs = []
    for position, block in enumerate(blocks, start=1):
        try:
            certs.append(material.x509.load_pem_x509_certificate(block.text))
        except ValueError as exc:
            raise MaterialError(
                f"Certificate {position} in file {path} cannot be parsed: {exc}."
            ) from None
    return certs


def read_certificate(path: str) -> dict:
    """What a report shows of one certificate file: the leaf and its chain.

    Raises ``MaterialError`` naming the file and the cause when it cannot be
    used (``details["no_certificate"]`` when it holds PEM data but no
    certificate). The first certificate in the file is the leaf, as servers
    read it.
    """
    what = f"Certificate file {path}"
    if material.x509 is None:
        raise MaterialError(
            f"{what} cannot be parsed: the Python library cryptography is not "
            "installed on this host."
        )
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CERT_FILE + 1)
    except OSError as exc:
        raise MaterialError(f"{what} cannot be read: {exc.strerror}.") from None
    if len(data) > MAX_CERT_FILE:
        raise MaterialError(
            f"{what} is larger than {MAX_CERT_FILE} bytes: not a certificate file."
        )
    blocks = material.split_pem(material.PemInput(data, what))
    certs = _certificates([b for b in blocks if b.label == b"CERTIFICATE"], path)
    if not certs:
        kinds = ", ".join(sorted({b.label.decode("ascii") for b in blocks}))
        raise MaterialError(
            f"{what} holds no certificate, only PEM blocks of kind {kinds}.",
            no_certificate=True,
        )
    record = material.info(certs[0])
    record["certificates_in_file"] = len(certs)
    record["chain"] = [
        {"subject": material.describe(c),
         "not_after": material.not_after(c).isoformat(),
         "sha256": material.sha256(c)}
        for c in certs[1:]
    ]
    return record


def inspect(uses: list) -> list[dict]:
    """One record per certificate file, with every use of it, soonest first.

    Files that cannot be read carry ``error`` and come last. A file named only
    where keys may also be listed (Postfix ``*_chain_files``) and holding no
    certificate is a key file, and is left out.
    """
    by_path: dict[str, list] = {}
    for use in uses:
        by_path.setdefault(use.path, []).append(use)
    records = []
    for path, path_uses in by_path.items():
        record = {"path": path, "used_by": [u.as_dict() for u in path_uses]}
        try:
            record.update(read_certificate(path), error=None)
        except MaterialError as exc:
            if exc.details.get("no_certificate") and all(
                    u.optional for u in path_uses):
                continue
            record.update(_EMPTY_RECORD, error=exc.message)
        records.append(record)
    return sorted(records, key=sort_key)


_EMPTY_RECORD = {
    "subject": None, "sans": [], "issuer": None, "serial": None,
    "not_before": None, "not_after": None, "days_left": None, "sha256": None,
    "certificates_in_file": 0, "chain": [],
}


def sort_key(record: dict) -> tuple:
    """Soonest expiry first; files without a date (errors) last, by path."""
    return (record.get("not_after") is None, record.get("not_after") or "",
            record.get("path") or "")


class Discovery:
    """One look at the host's servers, for ``certificate_facts``."""

    def __init__(self, module, params: dict) -> None:
        self.module = module
        self.params = params
        self.timeout = params.get("command_timeout") or 30

    def run(self) -> dict:
        servers, uses = [], []
        for spec in SERVERS:
            if spec.name not in self.params["servers"]:
                continue
            entry, findings = self.server(spec)
            servers.append(entry)
            uses.extend(findings.uses)
            entry["certificates"] = len(findings.uses)
            entry["problems"].extend(findings.problems)
        return {"servers": servers, "certificates": inspect(uses)}

    def _bin(self, *names: str) -> str | None:
        for name in names:
            path = self.module.get_bin_path(name)
            if path:
                return path
        return None

    def server(self, spec: ServerSpec) -> tuple[dict, confparse.Findings]:
        binary = self._bin(*spec.binaries)
        entry = {"name": spec.name, "installed": binary is not None,
                 "binary": binary, "version": None, "config": None, "problems": []}
        if binary:
            entry["version"] = self._version(spec, binary, entry["problems"])
        reader = getattr(self, f"_read_{spec.name}")
        try:
            config, findings = reader(binary)
        except DeployError as exc:
            entry["problems"].append(exc.message)
            return entry, confparse.Findings()
        entry["config"] = config
        return entry, findings

    def _version(self, spec: ServerSpec, binary: str, problems: list) -> str | None:
        command = commands.Command([binary, *spec.version_args], "version query",
                                   spec.name)
        try:
            outcome = commands.run(self.module, command, self.timeout)
        except DeployError as exc:
            problems.append(exc.message)
            return None
        version = parse_version(spec, outcome.stdout + "\n" + outcome.stderr)
        if version is None:
            problems.append(
                f"The version of {spec.name} is unknown: `{command.text}` printed "
                "no version number."
            )
        return version

    def _run(self, argv: list, what: str, server: str) -> str:
        command = commands.make(argv, what, server)
        commands.check_available(self.module, command)
        return commands.run(self.module, command, self.timeout).stdout

    @staticmethod
    def _existing(paths) -> list[str]:
        return [p for p in paths if os.path.exists(p)]

    # Each reader returns (what was read, Findings), or (None, empty Findings)
    # when the server has no configuration here. Options given are always
    # read; default locations only when the server is installed.

    def _read_nginx(self, binary):
        argv = self.params.get("nginx_command")
        if not argv and not binary:
            return None, confparse.Findings()
        argv = argv or [binary, "-T"]
        dump = self._run(argv, "configuration dump", "nginx")
        return commands.make(argv, "", "nginx").text, confparse.nginx_uses(dump)

    def _read_apache(self, binary):
        config = self.params.get("apache_config")
        if not config:
            found = self._existing(DEFAULT_APACHE_CONFIGS) if binary else []
            if not found:
                return None, confparse.Findings()
            config = found[0]
        root = self.params.get("apache_server_root")
        return config, confparse.apache_uses(config, root)

    def _read_haproxy(self, binary):
        paths = self.params.get("haproxy_config") or \
            (self._existing(DEFAULT_HAPROXY_CONFIGS) if binary else [])
        if not paths:
            return None, confparse.Findings()
        return ", ".join(paths), confparse.haproxy_uses(paths)

    def _read_postfix(self, binary):
        directory = self.params.get("postfix_config_dir")
        if not directory:
            if not (binary and os.path.exists(f"{DEFAULT_POSTFIX_DIR}/main.cf")):
                return None, confparse.Findings()
            directory = DEFAULT_POSTFIX_DIR
        postconf = binary or "postconf"
        main = self._run([postconf, "-c", directory, "-n", "-x"],
                         "configuration query", "postfix")
        master = self._run([postconf, "-c", directory, "-P", "-x"],
                           "configuration query", "postfix")
        return directory, confparse.postfix_uses(main, master, directory)

    def _read_dovecot(self, binary):
        config = self.params.get("dovecot_config")
        if not config:
            if not (binary and os.path.exists(DEFAULT_DOVECOT_CONFIG)):
                return None, confparse.Findings()
            config = DEFAULT_DOVECOT_CONFIG
        doveconf = self._bin("doveconf") or "doveconf"
        text = self._run([doveconf, "-c", config, "-n"], "configuration query",
                         "dovecot")
        return config, confparse.dovecot_uses(text, config)

    def _read_traefik(self, binary):
        paths = self.params.get("traefik_config") or \
            (self._existing(DEFAULT_TRAEFIK_CONFIGS) if binary else [])
        if not paths:
            return None, confparse.Findings()
        return ", ".join(paths), confparse.traefik_uses(paths)

    def _read_envoy(self, binary):
        paths = self.params.get("envoy_config") or \
            (self._existing(DEFAULT_ENVOY_CONFIGS) if binary else [])
        if not paths:
            return None, confparse.Findings()
        return ", ".join(paths), confparse.envoy_uses(paths)
