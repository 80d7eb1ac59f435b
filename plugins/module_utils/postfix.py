# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Postfix needs beyond the shared flow.

Two things. An instance with its own configuration directory is driven with
``postfix -c DIR``, so the default commands take the directory too. And
tables built with ``postmap -F`` (``tls_server_sni_maps``) hold copies of
the files they name, not references: after those files change, the table
must be built again before the reload, or smtpd keeps serving the copies.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ansible_collections.certfleet.deploy.plugins.module_utils import (
    commands,
    material as mat,
    target,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)


@dataclass(frozen=True)
class SniMap:
    """One ``postmap -F`` table: how it is named to postmap, and its source."""

    name: str
    source: str

    @classmethod
    def parse(cls, text: str) -> "SniMap":
        """``type:/path`` or a bare ``/path`` (Postfix's default table type)."""
        _kind, sep, path = text.partition(":")
        source = path if sep else text
        if not os.path.isabs(source):
            raise DeployError(
                f"sni_maps entry {text!r} does not name an absolute source file: "
                "use type:/path, for example hash:/etc/postfix/sni.")
        return cls(text, source)

    def files(self) -> list:
        """Every file the table's values name, in order.

        Values are lists of file names separated by commas or white space; a
        line that starts with white space continues the previous one.
        """
        try:
            with open(self.source, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            cause = getattr(exc, "strerror", None) or str(exc)
            raise DeployError(
                f"sni_maps entry {self.name}: {self.source} cannot be read: "
                f"{cause}.") from None
        names = []
        for line in lines:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.replace(",", " ").split()
            names += fields if line[:1].isspace() else fields[1:]
        return names

    def refers_to(self, paths: list) -> bool:
        """Whether the table names one of ``paths`` (as given or resolved)."""
        wanted = set(paths) | {os.path.realpath(p) for p in paths}
        return any(name in wanted or os.path.realpath(name) in wanted
                   for name in self.files())


class PostfixDeploy(target.Deploy):
    """The shared flow, plus ``postfix -c DIR`` and ``postmap -F`` tables."""

    maps: tuple = ()

    def command(self, option: str, what: str) -> commands.Command | None:
        """The default commands run against ``config_dir`` when it is given."""
        if self.params.get(option) is not None or not self.params.get("config_dir"):
            return super().command(option, what)
        argv = commands.with_option(list(getattr(self.server, option)), "-c",
                                    self.params["config_dir"])
        return commands.make(argv, what, self.server.name)

    def postmap(self, sni_map: SniMap) -> commands.Command:
        """``postmap [-c DIR] -F TABLE``, by the full path the check found."""
        argv = commands.with_option(["postmap"], "-c",
                                    self.params.get("config_dir"))
        command = commands.make(argv + ["-F", sni_map.name], "table rebuild",
                                self.server.name)
        commands.pin_program(self.module, command)
        return command

    def specs(self, material: mat.Material) -> list:
        """The files, and before anything is touched, the tables naming them."""
        specs = super().specs(material)
        paths = [s.path for s in specs]
        secret = [s.path for s in specs if s.secret]
        self.maps = []
        for text in self.params.get("sni_maps") or []:
            sni_map = SniMap.parse(text)
            if not sni_map.refers_to(paths):
                self.module.warn(
                    f"sni_maps entry {text} names none of the deployed files; "
                    "it is not rebuilt.")
                continue
            if sni_map.refers_to(secret):
                self.warn_if_readable(sni_map)
            self.maps.append(sni_map)
        if self.maps:
            commands.check_available(self.module, self.postmap(self.maps[0]))
        return specs

    def warn_if_readable(self, sni_map: SniMap) -> None:
        """postmap gives the table the source's mode; the table holds the key."""
        mode = stat.S_IMODE(os.stat(sni_map.source).st_mode)
        if mode & 0o077:
            self.module.warn(
                f"sni_maps entry {sni_map.name}: {sni_map.source} has mode "
                f"{mode:04o}, and postmap gives the table it builds, which will "
                "hold the private key, the same mode. Make the source 0600.")

    def apply(self) -> float:
        """Rebuild the tables that copy the deployed files, then reload.

        Runs again in a rollback, on the restored files, so the tables copy
        the previous certificate again.
        """
        rebuilt = []
        with self.timings.step("postmap"):
            for sni_map in self.maps:
                commands.run(self.module, self.postmap(sni_map),
                             self.params["command_timeout"])
                rebuilt.append(sni_map.name)
        if rebuilt:
            self.result["sni_maps_rebuilt"] = rebuilt
        return super().apply()

    def manual_commands(self) -> list:
        """By hand: test, rebuild the tables, then reload."""
        steps = [self.validate.text] if self.validate else []
        steps += [self.postmap(m).text for m in self.maps]
        return steps + ([self.reload.text] if self.reload else [])
