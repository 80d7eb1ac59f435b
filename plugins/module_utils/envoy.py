# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Envoy's SDS from files: a new versioned directory, one link flipped by rename.

Envoy reloads a TLS certificate delivered by SDS when something is moved into
the secret's ``watched_directory``; it reads the certificate chain and the key
together, and it ignores files edited in place (F16). The SDS resource names
the pair through a link inside that directory (``W/current/cert.pem``), so a
deploy:

1. creates a new versioned directory ``W/current.LEAF.SET`` and stages the
   pair in it (a directory created inside ``W`` is not a move);
2. checks what it can before anything moves: the SDS resource against
   Envoy's published API definitions (the ``xds-protos`` package) when it is
   installed, and the staged pair with ``envoy --mode validate`` when an
   ``envoy`` binary is;
3. creates a new link to the new directory under a temporary name and renames
   it over ``W/current``: the one move Envoy reacts to;
4. optionally moves a new SDS resource file into place, after the link;
5. on failure flips the link back the same way.

After a verified deploy, versioned directories of this link that no link in
``W`` points at are retired into the backup set.
"""

from __future__ import annotations

import os
import re

from ansible_collections.certfleet.deploy.plugins.module_utils import (
    commands,
    material as mat,
    ownership,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.emit import (
    json_document,
    yaml_document,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    CommandError,
    DeployError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    Deploy,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.transaction import (
    DIRECTORY,
    SYMLINK,
    FileSpec,
    Transaction,
    read_bytes,
    write_new,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.watched import (
    WatchedDeploy,
    check_directory,
    check_path,
    set_digest,
)

try:  # Envoy's API definitions, generated for Python (PyPI: xds-protos)
    from google.protobuf import json_format
    from envoy.service.discovery.v3 import discovery_pb2
    # Imported for their side effect: they register the message types that
    # the documents below name in "@type", so Any fields can be checked.
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    from envoy.extensions.filters.network.direct_response.v3 import config_pb2
    REGISTERED = (secret_pb2, tls_pb2, config_pb2)
    XDS_ERROR = None
except ImportError as exc:
    XDS_ERROR = f"xds-protos is not installed ({exc})"
except (TypeError, AttributeError) as exc:  # generated code and protobuf disagree
    XDS_ERROR = f"xds-protos cannot be loaded ({exc})"

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
TLS_CONTEXT_TYPE = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
    "DownstreamTlsContext")
DIRECT_RESPONSE_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.direct_response.v3."
    "Config")
SDS_EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_LINK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
HEADER = (
    "Written by certfleet.deploy.envoy_certificate, which moves a new copy of\n"
    "this file into place when it changes: edits here are lost."
)


def sds_document(name: str, cert_path: str, key_path: str, watched: str) -> dict:
    """The SDS resource file: one TLS certificate secret read through the link."""
    return {"resources": [{
        "@type": SECRET_TYPE,
        "name": name,
        "tls_certificate": {
            "certificate_chain": {"filename": cert_path},
            "private_key": {"filename": key_path},
            "watched_directory": {"path": watched},
        },
    }]}


def validation_bootstrap(cert_file: str, key_file: str) -> dict:
    """A bootstrap whose only listener loads the staged pair, for validate mode.

    Envoy in ``--mode validate`` builds the listener's TLS context, which reads
    and checks the certificate chain and key, and binds nothing.
    """
    return {"static_resources": {"listeners": [{
        "name": "certfleet_validate",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
        "filter_chains": [{
            "filters": [{"name": "envoy.filters.network.direct_response",
                         "typed_config": {"@type": DIRECT_RESPONSE_TYPE}}],
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": TLS_CONTEXT_TYPE,
                    "common_tls_context": {"tls_certificates": [{
                        "certificate_chain": {"filename": cert_file},
                        "private_key": {"filename": key_file},
                    }]},
                },
            },
        }],
    }]}}


def check_against_api(document: dict, message: str = "sds") -> str:
    """Parse ``document`` with Envoy's generated API definitions.

    ``message`` is ``sds`` (a file of SDS resources) or ``bootstrap``. Unknown
    fields, wrong types and unknown ``@type`` URLs are refused. Returns what
    checked it, or why nothing could.
    """
    if XDS_ERROR:
        return f"skipped: {XDS_ERROR}"
    target = (discovery_pb2.DiscoveryResponse() if message == "sds"
              else bootstrap_pb2.Bootstrap())
    try:
        json_format.ParseDict(document, target)
    except json_format.ParseError as exc:
        raise DeployError(
            f"The {message} document does not match Envoy's API definitions: "
            f"{exc}. Nothing was changed.") from None
    for resource in document.get("resources", []):
        if not resource.get("name"):
            raise DeployError("The SDS resource has no name; Envoy finds a "
                              "secret by its name. Nothing was changed.")
    return "passed (xds-protos)"


class EnvoyDeploy(WatchedDeploy):
    """One deploy to Envoy's file-based SDS."""

    contents: dict

    # -- the files -------------------------------------------------------------

    def specs(self, material: mat.Material) -> list:
        """New directory, the pair in it, the link, then the SDS resource."""
        self._check_layout()
        p = self.params
        cert_mode = ownership.parse_mode(p.get("cert_mode"), "cert_mode")
        key_mode = ownership.parse_mode(p.get("key_mode"), "key_mode")
        pair = [
            FileSpec("", material.layout("fullchain"),
                     self.new_file_owner(0o644 if cert_mode is None else cert_mode),
                     follow_symlinks=False, label="cert_path"),
            FileSpec("", material.layout("key"),
                     self.new_file_owner(0o600 if key_mode is None else key_mode),
                     secret=True, follow_symlinks=False, label="key_path"),
        ]
        directory = FileSpec("", b"", self.new_file_owner(0o755),
                             kind=DIRECTORY, label="versioned directory")
        version = (f"{self.link_name}.{material.sha256[:16]}."
                   f"{set_digest([directory] + pair)[:8]}")
        directory.path = os.path.join(self.watched, version)
        pair[0].path = os.path.join(directory.path, os.path.basename(self.cert_path))
        pair[1].path = os.path.join(directory.path, os.path.basename(self.key_path))
        link = FileSpec(self.link_path, version.encode(),
                        ownership.Ownership(None, None, 0o777), kind=SYMLINK,
                        label="link", stage_dir=self.stage_dir())
        self.pair_paths = (pair[0].path, pair[1].path)
        specs = [directory, *pair, link]
        sds = self._sds_spec()
        if sds is not None:
            specs.append(sds)
        self.contents = {spec.path: spec.content for spec in specs}
        return specs

    def _check_layout(self) -> None:
        """cert_path and key_path sit in a link directly inside watched_directory."""
        p = self.params
        self.cert_path = check_path("cert_path", p["cert_path"])
        self.key_path = check_path("key_path", p["key_path"])
        self.link_path = os.path.dirname(self.cert_path)
        if os.path.dirname(self.key_path) != self.link_path:
            raise DeployError(
                f"cert_path and key_path must be in the same directory (the "
                f"link Envoy reads through): {self.link_path} and "
                f"{os.path.dirname(self.key_path)} differ.")
        if os.path.basename(self.cert_path) == os.path.basename(self.key_path):
            raise DeployError("cert_path and key_path must name two files.")
        self.link_name = os.path.basename(self.link_path)
        parent = os.path.dirname(self.link_path)
        given = p.get("watched_directory")
        self.watched = check_directory("watched_directory", given or parent)
        if self.watched != parent or not _LINK_NAME.match(self.link_name):
            raise DeployError(
                f"The link {self.link_path} must sit directly inside "
                f"watched_directory {self.watched}: Envoy only reacts to a move "
                "inside the directory it watches, so a link flipped at any "
                "other level is never noticed (F16).")
        if os.path.lexists(self.link_path) and not os.path.islink(self.link_path):
            raise DeployError(
                f"{self.link_path} is a real directory, not a link. Move it "
                "aside once (for example to a versioned name, with a link "
                f"named {self.link_name} pointing at it) so that deploys can "
                "flip the link.")

    def stage_dir(self) -> str | None:
        """Where to make temporary links: never inside the watched directory.

        Creating a link there is no move, but keeping the watched directory
        quiet means the flip is the only event Envoy sees.
        """
        staging = self.params.get("stage_dir")
        return check_directory("stage_dir", staging) if staging else None

    def _sds_spec(self) -> FileSpec | None:
        """The SDS resource file, when ``sds_path`` is given; checked first."""
        p = self.params
        checks = self.result.setdefault("checks", {})
        if not p.get("sds_path"):
            checks["sds_resource"] = "skipped: no sds_path given"
            return None
        path = check_path("sds_path", p["sds_path"])
        kind = SDS_EXTENSIONS.get(os.path.splitext(path)[1].lower())
        if kind is None:
            raise DeployError(
                f"sds_path {path} must end in .yaml, .yml or .json: Envoy reads "
                "a resource file by its extension.")
        check_directory("the directory of sds_path", os.path.dirname(path))
        if not p.get("secret_name"):
            raise DeployError("secret_name is required with sds_path: it is the "
                              "name the listener's SDS config asks for.")
        document = sds_document(p["secret_name"], self.cert_path, self.key_path,
                                self.watched)
        checks["sds_resource"] = check_against_api(document, "sds")
        data = (yaml_document(document, HEADER) if kind == "yaml"
                else json_document(document))
        mode = ownership.parse_mode(p.get("sds_mode"), "sds_mode")
        owner = ownership.resolve(
            path, ownership.Defaults(0o644, self.server.users, self.server.groups),
            owner=p.get("owner"), group=p.get("group"), mode=mode)
        return FileSpec(path, data, owner, follow_symlinks=p["follow_symlinks"],
                        label="sds_path")

    def nudge_path(self) -> str:
        return self.link_path

    def nudge_stage_dir(self) -> str | None:
        return self.stage_dir()

    # -- before the flip -------------------------------------------------------

    def before_swap(self, txn: Transaction) -> None:
        """The operator's config test, then Envoy's own on the staged pair."""
        super().before_swap(txn)
        checks = self.result.setdefault("checks", {})
        name = self.params.get("envoy_binary") or "envoy"
        if "/" in name:
            binary = name if os.access(name, os.X_OK) else None
        else:
            binary = self.module.get_bin_path(name)
        if not binary:
            checks["envoy_validate"] = f"skipped: no {name} binary on this host"
            return
        bootstrap = validation_bootstrap(
            *(self.staged_path(txn, path) for path in self.pair_paths))
        path = os.path.join(txn.state_dir, f"validate-{txn.deployment_id}.json")
        write_new(path, json_document(bootstrap),
                  ownership.Ownership(None, None, 0o600))
        command = commands.Command([binary, "--mode", "validate", "-c", path],
                                   "config test", "envoy")
        try:
            with self.timings.step("validate"):
                commands.run(self.module, command, self.params["command_timeout"])
        except CommandError as exc:
            raise CommandError(
                f"{exc.message} Nothing was moved: Envoy still reads the "
                "previous files.", **exc.details) from None
        finally:
            os.unlink(path)
        checks["envoy_validate"] = f"passed ({binary} --mode validate)"

    # -- what the link points at -----------------------------------------------

    def linked_leaf(self, target: str | None):
        """The leaf in the certificate file reached through a link target."""
        if not target:
            return None
        directory = os.path.join(self.watched, target)
        cert = os.path.join(directory, os.path.basename(self.cert_path))
        pem = self.contents.get(cert) or read_bytes(cert)
        return Deploy.leaf_of(pem) if pem else None

    def old_leaf(self, changes: list) -> str | None:
        """The leaf Envoy read before: through the link's previous target."""
        for change in changes:
            if change.kind == SYMLINK:
                leaf = self.linked_leaf(change.old_link)
                return mat.sha256(leaf) if leaf is not None else None
        return super().old_leaf(changes)

    def diff(self, specs: list, changes: list) -> dict:
        """The link (old and new certificate), the key, the SDS resource."""
        changed = {c.given: c for c in changes}
        before, after = [], []
        for spec in specs:
            change = changed.get(spec.path)
            if change is None or spec.kind == DIRECTORY:
                continue
            if spec.kind == SYMLINK:
                old = (self._describe_leaf(self.linked_leaf(change.old_link))
                       if change.existed else "absent")
                new = self._describe_leaf(self.linked_leaf(change.new_link))
                before.append(f"{spec.path} -> {change.old_link}: {old}")
                after.append(f"{spec.path} -> {change.new_link}: {new}")
            elif spec.secret:
                before.append(f"{spec.path}: absent")
                after.append(f"{spec.path}: private key (mode "
                             f"{ownership.describe_mode(spec.owner.mode)})")
            elif spec.label == "sds_path":
                before.append(f"{spec.path}: "
                              f"{'present' if change.existed else 'absent'}")
                after.append(f"{spec.path}: secret {self.params['secret_name']} "
                             f"through {self.link_path}")
        return {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n",
                "before_header": "deployed", "after_header": "to deploy"}

    def _describe_leaf(self, leaf) -> str:
        if leaf is None:
            return "no certificate"
        info = mat.info(leaf)
        return (f"subject={info['subject']} sans={','.join(info['sans'])} "
                f"not_after={info['not_after']} sha256={info['sha256']}")

    # -- after a verified deploy -------------------------------------------

    def after_commit(self, txn: Transaction) -> None:
        """Retire this link's versioned directories that no link points at."""
        pattern = re.compile(
            rf"^{re.escape(self.link_name)}\.[0-9a-f]{{16}}\.[0-9a-f]{{8}}$")
        targets = set()
        for name in os.listdir(self.watched):
            path = os.path.join(self.watched, name)
            if os.path.islink(path):
                targets.add(os.path.normpath(
                    os.path.join(self.watched, os.readlink(path))))
        unused = [
            os.path.join(self.watched, name)
            for name in sorted(os.listdir(self.watched))
            if pattern.match(name)
            and os.path.join(self.watched, name) not in targets
            and not os.path.islink(os.path.join(self.watched, name))
        ]
        if unused:
            self.result["retired"] = self.retire(txn, unused)
