# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Traefik's file provider: a new pair under new names, one config rename.

Traefik watches the dynamic-configuration files of its provider directory,
not the certificate files they name, and skips a configuration that has not
changed (F15): rewriting a pair in place is never noticed. So each deploy
writes the pair under names derived from its content, then replaces one
dynamic-configuration file, which lists that pair under
``tls.certificates``, with a single rename. Traefik sees one change that
names one complete pair. After the new certificate is proven served, pairs
of this file's name that no configuration names any more are retired into
the backup set.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.certfleet.deploy.plugins.module_utils import (
    material as mat,
    ownership,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.emit import (
    yaml_document,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    Deploy,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.transaction import (
    FileSpec,
    Transaction,
    read_bytes,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.watched import (
    WatchedDeploy,
    check_directory,
    check_path,
    set_digest,
)

CONFIG_EXTENSIONS = (".yml", ".yaml")
PROVIDER_EXTENSIONS = (".yml", ".yaml", ".toml")
_PAIR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REFERENCE = re.compile(
    r"""(?:certFile|keyFile)\s*[:=]\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^\s#,}]+)""")
HEADER = (
    "Written by certfleet.deploy.traefik_certificate, which replaces this file\n"
    "as a whole on every deploy: edits here are lost."
)


def config_document(cert_file: str, key_file: str, default: bool) -> bytes:
    """The dynamic configuration that makes Traefik serve one pair."""
    pair = {"certFile": cert_file, "keyFile": key_file}
    tls: dict = {"certificates": [dict(pair)]}
    if default:
        tls["stores"] = {"default": {"defaultCertificate": dict(pair)}}
    return yaml_document({"tls": tls}, HEADER)


def referenced_files(text: str) -> list:
    """Every ``certFile`` and ``keyFile`` value in a YAML or TOML document."""
    found = []
    for match in _REFERENCE.finditer(text):
        value = match.group(1)
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        elif value.startswith("'"):
            value = value[1:-1]
        found.append(value)
    return found


class TraefikDeploy(WatchedDeploy):
    """One deploy to Traefik's file provider."""

    contents: dict

    # -- the files -------------------------------------------------------------

    def specs(self, material: mat.Material) -> list:
        """The new pair (names from its content), then the dynamic config."""
        p = self.params
        self.config_path = check_path("config_path", p["config_path"])
        if not self.config_path.endswith(CONFIG_EXTENSIONS):
            raise DeployError(
                f"config_path {self.config_path} must end in .yml or .yaml: "
                "the module writes YAML, and Traefik's file provider reads a "
                "file by its extension.")
        check_directory("the directory of config_path",
                        os.path.dirname(self.config_path))
        self.cert_dir = check_directory(
            "cert_dir", p.get("cert_dir") or os.path.dirname(self.config_path))
        self.pair_name = p.get("pair_name") or os.path.splitext(
            os.path.basename(self.config_path))[0]
        if not _PAIR_NAME.match(self.pair_name):
            raise DeployError(
                f"pair_name {self.pair_name!r} may only hold letters, digits, "
                "dots, dashes and underscores, starting with a letter or digit.")
        cert, key = self._pair_specs(material)
        name = f"{self.pair_name}.{material.sha256[:16]}.{set_digest([cert, key])[:8]}"
        cert.path = os.path.join(self.cert_dir, f"{name}.crt")
        key.path = os.path.join(self.cert_dir, f"{name}.key")
        for spec in (cert, key):
            if "{{" in spec.path:
                raise DeployError(
                    f"{spec.path} holds '{{{{', which Traefik's file provider "
                    "would read as the start of a template.")
        specs = [cert, key, self._config_spec(cert.path, key.path)]
        self.contents = {spec.path: spec.content for spec in specs}
        return specs

    def _pair_specs(self, material: mat.Material) -> tuple:
        """Certificate (leaf and chain) and key, owners and modes resolved."""
        p, specs = self.params, []
        for option, mode_option, layout, default_mode in (
                ("cert_file", "cert_mode", "fullchain", 0o644),
                ("key_file", "key_mode", "key", 0o600)):
            mode = ownership.parse_mode(p.get(mode_option), mode_option)
            owner = self.new_file_owner(default_mode if mode is None else mode)
            specs.append(FileSpec(path="", content=material.layout(layout),
                                  owner=owner, secret=layout == "key",
                                  follow_symlinks=False, label=option))
        return tuple(specs)

    def _config_spec(self, cert_file: str, key_file: str) -> FileSpec:
        """The dynamic-configuration file, staged outside the watched directory.

        Creating the staged file beside it would itself be a change Traefik
        reacts to, and Traefik applies a second change only after its
        providers throttle (2 s by default); staged in ``cert_dir`` (when that
        is another directory on the same filesystem), the rename is the one
        change Traefik sees.
        """
        p = self.params
        mode = ownership.parse_mode(p.get("config_mode"), "config_mode")
        owner = ownership.resolve(
            self.config_path,
            ownership.Defaults(0o644, self.server.users, self.server.groups),
            owner=p.get("owner"), group=p.get("group"), mode=mode)
        return FileSpec(
            path=self.config_path,
            content=config_document(cert_file, key_file,
                                    p["default_certificate"]),
            owner=owner, follow_symlinks=p["follow_symlinks"],
            label="config_path", stage_dir=self.nudge_stage_dir())

    def nudge_path(self) -> str:
        return self.config_path

    def nudge_stage_dir(self) -> str | None:
        """``cert_dir`` when it is another directory on the same filesystem."""
        watched = os.path.dirname(self.config_path)
        if os.path.realpath(self.cert_dir) == os.path.realpath(watched):
            return None
        if os.stat(self.cert_dir).st_dev != os.stat(watched).st_dev:
            return None
        return self.cert_dir

    # -- what the configuration points at ----------------------------------

    def leaf_of(self, data: bytes):
        """The leaf in PEM data, or in the pair a dynamic configuration names."""
        leaf = Deploy.leaf_of(data)
        if leaf is not None or not data:
            return leaf
        text = data.decode("utf-8", errors="replace")
        for path in referenced_files(text):
            pem = self.contents.get(path) or read_bytes(path)
            leaf = Deploy.leaf_of(pem) if pem else None
            if leaf is not None:
                return leaf
        return None

    # -- after a verified deploy -------------------------------------------

    def after_commit(self, txn: Transaction) -> None:
        """Retire this name's pairs that no dynamic configuration names."""
        pattern = re.compile(
            rf"^{re.escape(self.pair_name)}\.[0-9a-f]{{16}}\.[0-9a-f]{{8}}\.(crt|key)$")
        texts = self._provider_texts()
        keep = {os.path.basename(path) for path in self.contents}
        unused = [
            os.path.join(self.cert_dir, name)
            for name in sorted(os.listdir(self.cert_dir))
            if pattern.match(name) and name not in keep
            and not any(name in text for text in texts)
        ]
        if unused:
            self.result["retired"] = self.retire(txn, unused)

    def _provider_texts(self) -> list:
        """The text of every configuration file Traefik reads beside ours."""
        texts = []
        watched = os.path.dirname(self.config_path)
        for directory, _dirs, files in os.walk(watched):
            for name in files:
                if name.lower().endswith(PROVIDER_EXTENSIONS):
                    data = read_bytes(os.path.join(directory, name))
                    texts.append((data or b"").decode("utf-8", errors="replace"))
        return texts
