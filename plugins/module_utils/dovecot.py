# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Dovecot needs beyond the shared flow: its settings, by version.

Dovecot 2.3 reads a certificate with ``ssl_cert = </path``; without the
``<`` it takes the path itself as PEM, still starts, and every handshake
fails. Dovecot 2.4 renamed the settings to ``ssl_server_cert_file`` and
``ssl_server_key_file`` and takes a plain path. Before anything is touched,
the installed version is asked for (``dovecot --version``) and the
configuration as Dovecot reads it (``doveconf -n``) must name the deployed
files with that version's syntax (F11).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ansible_collections.certfleet.deploy.plugins.module_utils import (
    commands,
    material as mat,
    target,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    CommandError,
    DeployError,
)

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.\d+)*")
_SETTING = re.compile(r"^\s*([a-z_]+)\s*=\s?(.*)$")


@dataclass(frozen=True)
class Syntax:
    """How one Dovecot generation names and reads its TLS files."""

    cert: str
    key: str
    reads_file_with_lt: bool


SYNTAX_23 = Syntax("ssl_cert", "ssl_key", reads_file_with_lt=True)
SYNTAX_24 = Syntax("ssl_server_cert_file", "ssl_server_key_file",
                   reads_file_with_lt=False)


def parse_version(text: str) -> tuple:
    """``2.3.19.1 (9b53102964)`` to ``(2, 3)``."""
    match = _VERSION.match(text or "")
    if not match:
        raise DeployError(
            f"The Dovecot version could not be read from {text.strip()!r}.")
    return int(match.group(1)), int(match.group(2))


def syntax_for(version: tuple) -> Syntax:
    """2.4 and later take plain paths; earlier versions need ``<``."""
    return SYNTAX_24 if version >= (2, 4) else SYNTAX_23


def settings(output: str, names: tuple) -> list:
    """``(name, value)`` of every line of ``doveconf -n`` setting one of
    ``names``, at any depth (``local_name`` blocks included)."""
    found = []
    for line in output.splitlines():
        match = _SETTING.match(line)
        if match and match.group(1) in names:
            found.append((match.group(1), match.group(2).strip()))
    return found


def setting_path(name: str, value: str, syntax: Syntax) -> str | None:
    """The file a setting makes Dovecot read, or None for inline PEM or unset.

    Raises on the F11 faults, naming the setting: an empty or relative path,
    a 2.3 path without ``<``, a 2.4 path with it. Never quotes a value that
    is not a path (it might be key material).
    """
    if not value or value.startswith("-----BEGIN"):
        return None
    if value.startswith("<"):
        path = value[1:].strip()
        if not syntax.reads_file_with_lt:
            raise DeployError(
                f"Dovecot 2.4 reads {name} as a plain path, but the "
                f"configuration has {name} = {value}: remove the '<'.")
        if not path:
            raise DeployError(
                f"The Dovecot configuration has {name} = < with no file after "
                "it (an empty template variable?): no certificate can load.")
    else:
        path = value
        if syntax.reads_file_with_lt and path.startswith(("/", ".")):
            raise DeployError(
                f"The Dovecot configuration has {name} = {value} without the "
                f"'<' Dovecot 2.3 needs to read a file: it takes the path "
                f"itself as PEM and every handshake fails. Write {name} = "
                f"<{value}.")
    if not os.path.isabs(path):
        raise DeployError(
            f"The Dovecot configuration has {name} = {value}, a relative path: "
            "Dovecot needs the absolute path of the file.")
    return path


def same_file(one: str, other: str) -> bool:
    """Whether two paths name one file, as given or through symbolic links."""
    return one == other or os.path.realpath(one) == os.path.realpath(other)


def check_names(output: str, syntax: Syntax, wanted: dict) -> dict:
    """Make sure the configuration reads each wanted file; say how it does.

    ``wanted`` maps a setting name to ``(option, path)``. Returns the
    matching setting line for each, as Dovecot would write it.
    """
    found = settings(output, tuple(wanted))
    paths = [(name, setting_path(name, value, syntax)) for name, value in found]
    matched = {}
    for name, (option, path) in wanted.items():
        named = [p for n, p in paths if n == name and p]
        if not any(same_file(p, path) for p in named):
            seen = ", ".join(named) or "no file"
            raise DeployError(
                f"Dovecot does not read {option} {path}: its configuration "
                f"names {seen} in {name}. Deploy to the file it reads, or "
                "point the setting at this one.")
        prefix = "<" if syntax.reads_file_with_lt else ""
        matched[name] = f"{name} = {prefix}{path}"
    return matched


class DovecotDeploy(target.Deploy):
    """The shared flow, plus ``-c FILE`` and the settings check by version."""

    def command(self, option: str, what: str) -> commands.Command | None:
        """The default commands read ``config_file`` when it is given."""
        if self.params.get(option) is not None or not self.params.get("config_file"):
            return super().command(option, what)
        argv = commands.with_option(list(getattr(self.server, option)), "-c",
                                    self.params["config_file"])
        return commands.make(argv, what, self.server.name)

    def specs(self, material: mat.Material) -> list:
        """The files; then, before anything is touched, the settings check."""
        specs = super().specs(material)
        if self.params["check_settings"]:
            with self.timings.step("settings"):
                self.result["dovecot"] = self.check_settings()
        return specs

    def read(self, argv: list, what: str) -> str:
        """Run a read-only Dovecot command and return its output."""
        command = commands.make(argv, what, self.server.name)
        commands.check_available(self.module, command)
        commands.pin_program(self.module, command)
        try:
            return commands.run(self.module, command,
                                self.params["command_timeout"]).stdout
        except CommandError as exc:
            # doveconf -P prints secrets: keep its output out of the message.
            details = {k: v for k, v in exc.details.items() if k != "stdout"}
            if details.get("rc") == commands.TIMED_OUT:
                raise CommandError(exc.message, **details) from None
            raise CommandError(
                f"The {what} for dovecot failed: `{command.text}` exited "
                f"{details.get('rc')}: {details.get('stderr') or 'no error output'}",
                **details) from None

    def check_settings(self) -> dict:
        """The installed version, and the settings that read our files."""
        config = self.params.get("config_file")
        version_text = self.read(["dovecot", "--version"], "version query")
        version = parse_version(version_text)
        syntax = syntax_for(version)
        output = self.read(
            commands.with_option(["doveconf", "-n", "-P"], "-c", config),
            "configuration read")
        matched = check_names(output, syntax, {
            syntax.cert: ("cert_path", self.params["cert_path"]),
            syntax.key: ("key_path", self.params["key_path"]),
        })
        return {
            "version": version_text.split()[0],
            "cert_setting": matched[syntax.cert],
            "key_setting": matched[syntax.key],
        }
