# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Servers that pick up new files by themselves when a rename happens.

Traefik's file provider and Envoy's SDS watcher have no reload command: the
rename that puts the new files in place is the apply step. That changes three
things in the shared flow, gathered here:

- a config test after the swap would run after the server saw the files, so
  it runs on the staged files, before the first rename;
- the apply step returns when the last rename happened; when nothing was
  renamed in this run (the files were already in place but not served), it
  renames one file again, unchanged, so the watcher looks once more;
- old file sets that nothing refers to any more are retired after a verified
  deploy: copied into this deployment's backup set, then removed.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.certfleet.deploy.plugins.module_utils import (
    commands,
    ownership,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    CommandError,
    DeployError,
    TransactionError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.ownership import (
    Ownership,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    Deploy,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.transaction import (
    STAGE_SUFFIX,
    Transaction,
    digest,
    read_bytes,
    write_new,
)

RETIRED = "retired"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def set_digest(specs: list) -> str:
    """SHA-256 over the contents, owners and modes of a file set.

    Names derived from it change whenever anything about the set changes, so
    a new set never overwrites a file a server may already have read.
    """
    parts = []
    for spec in specs:
        owner = spec.owner
        parts.append(f"{digest(spec.content)}:{owner.uid}:{owner.gid}:{owner.mode:o}")
    return digest("\n".join(parts).encode())


def check_path(option: str, path: str | None) -> str:
    """An absolute path without control characters, or a clear error."""
    if path is None or not path.strip():
        raise DeployError(f"{option} is empty: give an absolute path.")
    if not os.path.isabs(path):
        raise DeployError(f"{option} {path!r} is a relative path: give an "
                          "absolute path.")
    if _CONTROL.search(path):
        raise DeployError(f"{option} {path!r} holds control characters.")
    return os.path.normpath(path)


def check_directory(option: str, path: str) -> str:
    """An existing directory, or a clear error before anything is touched."""
    path = check_path(option, path)
    if not os.path.isdir(path):
        raise DeployError(f"{option} {path} is not an existing directory; "
                          "create it first, with the owner the server needs.")
    return path


def rename_again(path: str, stage_dir: str | None, tag: str) -> None:
    """Replace ``path`` by a rename with an identical copy of itself.

    A link gets a new link to the same target; a file a copy with the same
    bytes, owner and mode. Nothing changes but the directory entry, which is
    what a watcher reacts to.
    """
    directory, name = os.path.split(path)
    temp = os.path.join(stage_dir or directory, f".{name}.{tag}{STAGE_SUFFIX}")
    if os.path.lexists(temp):
        os.unlink(temp)
    if os.path.islink(path):
        os.symlink(os.readlink(path), temp)
    else:
        info = os.stat(path)
        data = read_bytes(path)
        if data is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        write_new(temp, data, Ownership(info.st_uid, info.st_gid,
                                        info.st_mode & 0o7777))
    os.replace(temp, path)


class WatchedDeploy(Deploy):
    """A deploy whose apply step is the rename a server watches for."""

    txn: Transaction

    def transact(self, txn: Transaction, specs: list) -> None:
        self.txn = txn
        self.result.setdefault("checks", {})
        super().transact(txn, specs)

    def settles(self) -> bool:
        """The watcher needs a moment after the rename: wait ``settle`` first."""
        return True

    def serves_chain(self) -> bool:
        """Both watched servers get the leaf and its chain in one file."""
        return True

    def nudge_path(self) -> str:
        """The file or link to rename again when nothing else was renamed."""
        raise NotImplementedError

    def nudge_stage_dir(self) -> str | None:
        return None

    # -- before the first rename ---------------------------------------------

    def before_swap(self, txn: Transaction) -> None:
        """Run the operator's config test on the staged files.

        Once a rename happens the server may already read the new files, so
        the shared flow's config test after the swap would be too late; it is
        run here instead, and not again after the swap.
        """
        if not self.validate:
            return
        command, self.validate = self.validate, None
        try:
            with self.timings.step("validate"):
                commands.run(self.module, command, self.params["command_timeout"])
        except CommandError as exc:
            raise CommandError(
                f"{exc.message} Nothing was moved: {self.server.name} still "
                "reads the previous files.", **exc.details) from None

    def new_file_owner(self, mode: int) -> Ownership:
        """Owner of a file under a new name: the option, else the default.

        Names derived from content are new on every deploy, so there is no
        existing file whose owner could be kept.
        """
        p = self.params
        uid = (ownership.lookup_user(p["owner"]) if p.get("owner")
               else ownership.first_user(self.server.users))
        gid = (ownership.lookup_group(p["group"]) if p.get("group")
               else ownership.first_group(self.server.groups))
        return Ownership(uid, gid, mode)

    @staticmethod
    def staged_path(txn: Transaction, path: str) -> str:
        """Where the new content of ``path`` is right now (staged or final)."""
        for change in txn.changes:
            if change.given == path and change.stage:
                return change.stage
        return path

    # -- apply -----------------------------------------------------------------

    def apply(self) -> float:
        """Return when the last rename happened; run a reload command if given."""
        renamed = self.txn.last_rename
        if renamed is None:
            path = self.nudge_path()
            try:
                with self.timings.step("nudge"):
                    rename_again(path, self.nudge_stage_dir(),
                                 f"{self.txn.deployment_id}.again")
            except OSError as exc:
                raise TransactionError(
                    f"Could not rename {path} again so that "
                    f"{self.server.name} reads it once more: "
                    f"{exc.strerror or exc}.") from None
            self.result["nudged"] = path
            renamed = self.txn.last_rename = time.monotonic()
        super().apply()
        return renamed

    # -- after a failed rollback -------------------------------------------------

    def fail_rollback(self, txn, cause: DeployError, exc: DeployError):
        """As the shared flow, with manual steps that also flip links back."""
        try:
            super().fail_rollback(txn, cause, exc)
        except DeployError:
            self.result["manual_steps"] = txn.restore_commands() + [
                c.text for c in (self.validate, self.reload) if c]
            raise

    # -- after a verified deploy -----------------------------------------------

    def retire(self, txn: Transaction, paths: list) -> list:
        """Copy each path into this deployment's backup set, then remove it.

        A directory is retired with the files it holds. Failures are warnings:
        the deploy itself is proven and committed by now.
        """
        retired = []
        root = os.path.join(txn.backup_root, txn.deployment_id, RETIRED)
        for path in paths:
            try:
                self._retire_one(path, root)
            except OSError as exc:
                self.module.warn(
                    f"Could not retire {path}, which nothing refers to any more: "
                    f"{exc.strerror or exc}. It was left in place.")
                continue
            retired.append(path)
        return retired

    @staticmethod
    def _retire_one(path: str, root: str) -> None:
        os.makedirs(root, mode=0o700, exist_ok=True)
        name = os.path.basename(path)
        if os.path.isdir(path) and not os.path.islink(path):
            keep = os.path.join(root, name)
            os.makedirs(keep, mode=0o700, exist_ok=True)
            for entry in sorted(os.listdir(path)):
                WatchedDeploy._retire_one(os.path.join(path, entry), keep)
            os.rmdir(path)
            return
        if os.path.islink(path):
            os.unlink(path)
            return
        info = os.stat(path)
        keep = os.path.join(root, name)
        if os.path.lexists(keep):
            os.unlink(keep)
        write_new(keep, read_bytes(path) or b"",
                  Ownership(info.st_uid, info.st_gid, info.st_mode & 0o7777))
        os.unlink(path)
