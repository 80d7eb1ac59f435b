# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The multi-file swap: all of a server's files change together, or none do.

One transaction per target, in a state directory the server never reads:

    STATE/lock                 fcntl lock: runs on one host serialise here
    STATE/journal.json         what is in flight (paths, hashes, modes; no keys)
    STATE/backups/ID/N.NAME    the files as they were, with owner and mode

Phases recorded in the journal: ``backed_up`` (backups written), ``staged``
(temporary files beside each destination), ``swapped`` (every rename done),
``verified`` (the server serves the new files). A run that finds a journal
left by a killed run finishes it first: ``verified`` is completed, anything
earlier is put back as it was.

Besides regular files, a destination may be a symbolic link (its target is
what is compared, staged as a new link and renamed over the old one, so a
watcher sees one move) or a new directory (created at stage time, removed
again on rollback). Servers that watch a directory for moves (Envoy's SDS
``watched_directory``) switch a whole versioned directory with one such link.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
import shlex
import time
from dataclasses import asdict, dataclass
from typing import Callable

from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
    LockError,
    TransactionError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.ownership import (
    Ownership,
)

JOURNAL = "journal.json"
LOCK = "lock"
BACKUPS = "backups"
STAGE_SUFFIX = ".certfleet-stage"
FILE, SYMLINK, DIRECTORY = "file", "symlink", "directory"
KINDS = (FILE, SYMLINK, DIRECTORY)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: str, data: bytes, owner: Ownership) -> None:
    """Create ``path`` exclusively at 0600, write, fsync, then own and chmod.

    The file is never readable by anyone else while it holds partial data or
    before its final mode is set. When any step fails (a full disk, say), the
    partial file is removed before the error is raised: nothing half-written
    is left behind for a later run, or a server reading the directory, to find.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            _own(os.fstat(fd), owner, lambda uid, gid: os.fchown(fd, uid, gid))
            os.fchmod(fd, owner.mode)
        finally:
            os.close(fd)
    except OSError:
        discard(path)
        raise


def _own(info: os.stat_result, owner: Ownership, chown) -> None:
    """Give a new file the wanted owner and group, if it did not get them.

    A new file takes the creating process's user and, in a setgid directory,
    the directory's group; compare with what it got, not with the process.
    """
    uid = -1 if owner.uid in (None, info.st_uid) else owner.uid
    gid = -1 if owner.gid in (None, info.st_gid) else owner.gid
    if (uid, gid) != (-1, -1):
        chown(uid, gid)


def discard(path: str) -> bool:
    """Remove ``path`` after an error; tell whether it is gone.

    Only for cleaning up after another error, which is the one to report: a
    file that cannot be removed now is removed by the next run under the lock.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def make_directory(path: str, owner: Ownership) -> None:
    """Create ``path`` at 0700, then give it its owner and final mode."""
    os.mkdir(path, 0o700)
    _own(os.stat(path), owner, lambda uid, gid: os.chown(path, uid, gid))
    os.chmod(path, owner.mode)


def _stage_path(change, tag: str) -> str:
    """Where a temporary file or link for ``change`` is written."""
    directory, name = os.path.split(change.path)
    return os.path.join(change.stage_dir or directory,
                        f".{name}.{tag}{STAGE_SUFFIX}")


def _check_stage_dir(spec) -> None:
    """A stage directory must share the destination's filesystem (rename)."""
    if not spec.stage_dir:
        return
    parent = os.path.dirname(spec.path)
    try:
        same = os.stat(spec.stage_dir).st_dev == os.stat(parent).st_dev
    except FileNotFoundError as exc:
        raise TransactionError(
            f"Cannot stage {spec.path} in {spec.stage_dir}: {exc.filename} "
            "does not exist."
        ) from None
    if not same:
        raise TransactionError(
            f"Cannot stage {spec.path} in {spec.stage_dir}: it is on another "
            "filesystem, and only a rename within one filesystem is atomic."
        )


def _remove_created_directory(change) -> None:
    """Remove a directory this transaction created, once it is empty again.

    Files that the transaction put there were removed before (they come later
    in the list of changes and are undone first); a directory that still holds
    anything holds files this transaction did not write, so it stays.
    """
    if change.existed or not os.path.isdir(change.path):
        return
    try:
        os.rmdir(change.path)
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise


def new_deployment_id() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"


@dataclass
class FileSpec:
    """One file the server reads: where it goes and what it must hold.

    ``kind`` is ``file`` (``content`` is the file's bytes), ``symlink``
    (``content`` is the link's target, as bytes; the link itself is replaced,
    never followed; its owner and mode are not managed) or ``directory`` (a
    directory to create with ``owner``; ``content`` is empty). ``stage_dir``
    stages the new file or link in another directory of the same filesystem
    instead of beside the destination, for servers that react to any change
    in the destination's directory.
    """

    path: str
    content: bytes
    owner: Ownership
    secret: bool = False
    follow_symlinks: bool = True
    label: str = ""
    kind: str = FILE
    stage_dir: str | None = None


@dataclass
class Change:
    """A file that differs from what it should be, as recorded in the journal."""

    path: str            # the real file written (a symlink's target)
    given: str           # the path as the operator named it
    label: str
    secret: bool
    existed: bool
    old_sha256: str | None
    new_sha256: str
    uid: int | None
    gid: int | None
    mode: int
    old_uid: int | None = None
    old_gid: int | None = None
    old_mode: int | None = None
    backup: str | None = None
    stage: str | None = None
    kind: str = FILE
    old_link: str | None = None   # a symlink's previous target (not secret)
    new_link: str | None = None
    stage_dir: str | None = None


def _target(spec: FileSpec) -> str:
    """The file to write: a symlinked destination's target unless told not to."""
    if spec.follow_symlinks and os.path.islink(spec.path):
        return os.path.realpath(spec.path)
    return spec.path


class Transaction:
    """A locked, journaled swap of one target's files. Use as a context manager."""

    def __init__(self, state_dir: str, lock_timeout: float = 60,
                 retention: int = 5, read_only: bool = False) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        self.retention = retention
        self.deployment_id = new_deployment_id()
        self.changes: list = []
        self._contents: dict = {}
        self.phase = "new"
        self._lock_fd: int | None = None
        self.lock_wait_ms = 0
        # Why the verified phase could not be recorded, if it could not.
        self.unrecorded: OSError | None = None
        # When the last rename into place happened (swap or restore), for
        # servers that pick changes up by themselves.
        self.last_rename: float | None = None

    # -- lock and journal ---------------------------------------------------

    def __enter__(self) -> "Transaction":
        """Take the lock; a read-only (check mode) run creates nothing for it."""
        if self.read_only and not os.path.exists(
                os.path.join(self.state_dir, LOCK)):
            return self
        try:
            if not self.read_only:
                os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.state_dir, LOCK),
                         os.O_RDONLY if self.read_only
                         else os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise TransactionError(
                f"Cannot open the state directory {self.state_dir}: "
                f"{exc.strerror}."
            ) from None
        started = time.monotonic()
        deadline = started + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockError(
                        f"Another deploy holds the lock on {self.state_dir} "
                        f"and did not release it within {self.lock_timeout} s."
                    ) from None
                time.sleep(0.05)
        self._lock_fd = fd
        self.lock_wait_ms = int((time.monotonic() - started) * 1000)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def journal_path(self) -> str:
        return os.path.join(self.state_dir, JOURNAL)

    @property
    def backup_root(self) -> str:
        return os.path.join(self.state_dir, BACKUPS)

    @property
    def journal_temp(self) -> str:
        return self.journal_path + ".tmp"

    def _write_journal(self, phase: str) -> None:
        """Record the phase atomically: temp file, fsync, rename, fsync dir.

        ``phase`` becomes the transaction's phase once the journal says so.
        """
        record = {
            "deployment_id": self.deployment_id,
            "phase": phase,
            "changes": [asdict(c) for c in self.changes],
        }
        temp = self.journal_temp
        if os.path.exists(temp):
            os.unlink(temp)
        data = json.dumps(record, indent=1, sort_keys=True).encode()
        write_new(temp, data, Ownership(None, None, 0o600))
        try:
            os.replace(temp, self.journal_path)
        except OSError:
            discard(temp)
            raise
        self.phase = phase
        fsync_dir(self.state_dir)

    def _drop_journal(self) -> None:
        try:
            os.unlink(self.journal_path)
        except FileNotFoundError:
            return
        fsync_dir(self.state_dir)

    # -- recovery -------------------------------------------------------------

    def pending(self) -> dict | None:
        """The transaction a killed run left open, without touching it."""
        raw = read_bytes(self.journal_path)
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            return {"deployment_id": record["deployment_id"],
                    "phase": record["phase"], "action": "none (check mode)"}
        except (ValueError, KeyError, TypeError):
            return {"deployment_id": None, "phase": "unreadable",
                    "action": "none (check mode)"}

    def recover(self, own_paths: set | None = None) -> dict | None:
        """Finish a transaction a killed run left behind; say what was done.

        A temporary journal that a run died writing is removed first: it never
        became the journal, so nothing relied on it. With ``own_paths`` (the
        destinations of this run), a journal about none of them belongs to
        another target sharing the state directory: it is left for that
        target's next run, which alone knows how to reload its server.
        """
        if os.path.lexists(self.journal_temp) and not discard(self.journal_temp):
            raise TransactionError(
                f"The temporary journal {self.journal_temp} of an earlier run "
                "cannot be removed; remove it by hand.")
        raw = read_bytes(self.journal_path)
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            changes = [Change(**c) for c in record["changes"]]
            phase, old_id = record["phase"], record["deployment_id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TransactionError(
                f"The journal {self.journal_path} is unreadable ({exc}); "
                "check the files and backups by hand, then remove it."
            ) from None
        theirs = {c.given for c in changes} | {c.path for c in changes}
        if own_paths is not None and changes and not theirs & own_paths:
            raise TransactionError(
                f"The state directory {self.state_dir} holds an open transaction "
                f"of another target ({', '.join(sorted(theirs))}), left by a run "
                "that was killed. Run that target's deploy again to recover it, "
                "and give each server its own backup_dir.",
                journal=self.journal_path)
        saved_id, self.deployment_id = self.deployment_id, old_id
        self.changes = changes
        if phase == "verified":
            try:
                self._cleanup_stages()
                self._drop_journal()
            except OSError as exc:
                raise TransactionError(
                    f"The verified transaction in {self.journal_path} cannot be "
                    f"closed: {exc.strerror} ({exc.filename}); its new files are "
                    "in place. Remove the journal by hand.") from None
            action = "completed"
        else:
            self.rollback()
            action = "restored"
        self.deployment_id, self.changes, self.phase = saved_id, [], "new"
        return {"deployment_id": old_id, "phase": phase, "action": action}

    # -- planning ---------------------------------------------------------------

    def plan(self, specs: list) -> list:
        """Compare every destination with what it should hold; keep the diffs."""
        changes, self._contents = [], {}
        planners = {FILE: self._plan_file, SYMLINK: self._plan_link,
                    DIRECTORY: self._plan_directory}
        seen, made = {}, set()
        for spec in specs:
            if spec.kind not in planners:
                raise TransactionError(
                    f"{spec.path} has an unknown kind {spec.kind!r}; "
                    f"expected one of {', '.join(KINDS)}.")
            _check_stage_dir(spec)
            self._check_destination(spec, seen, made)
            try:
                change = planners[spec.kind](spec)
            except OSError as exc:
                raise TransactionError(
                    f"{spec.label or 'The destination'} {spec.path} cannot be "
                    f"read: {exc.strerror}; nothing was changed.") from None
            if change is None:
                continue
            change.stage_dir = spec.stage_dir
            changes.append(change)
            self._contents[change.path] = spec.content
        self.changes = changes
        return changes

    @staticmethod
    def _check_destination(spec: FileSpec, seen: dict, made: set) -> None:
        """Refuse two roles on one file, and a directory that is not there."""
        follows = spec.kind == FILE and spec.follow_symlinks
        real = (os.path.realpath(spec.path) if follows
                else os.path.join(os.path.realpath(os.path.dirname(spec.path)),
                                  os.path.basename(spec.path)))
        if real in seen:
            raise TransactionError(
                f"{seen[real]} and {spec.label or spec.path} name the same file "
                f"{spec.path}; give each its own path. Nothing was changed.")
        seen[real] = spec.label or spec.path
        if spec.kind == DIRECTORY:
            made.add(real)
            return
        parent = os.path.dirname(real)
        if not os.path.isdir(parent) and parent not in made:
            raise TransactionError(
                f"The directory {parent} of {spec.label or 'the destination'} "
                f"{spec.path} does not exist; nothing was changed.")

    @staticmethod
    def _plan_file(spec: FileSpec) -> Change | None:
        path = _target(spec)
        old_link = os.readlink(path) if os.path.islink(path) else None
        current = read_bytes(path)
        new_sha = digest(spec.content)
        info = os.stat(path) if current is not None else None
        same = (
            old_link is None
            and current is not None
            and digest(current) == new_sha
            and stat.S_IMODE(info.st_mode) == spec.owner.mode
            and spec.owner.uid in (None, info.st_uid)
            and spec.owner.gid in (None, info.st_gid)
        )
        if same:
            return None
        return Change(
            path=path, given=spec.path, label=spec.label or spec.path,
            secret=spec.secret, existed=current is not None,
            old_sha256=digest(current) if current is not None else None,
            new_sha256=new_sha, uid=spec.owner.uid, gid=spec.owner.gid,
            mode=spec.owner.mode,
            old_uid=info.st_uid if info else None,
            old_gid=info.st_gid if info else None,
            old_mode=stat.S_IMODE(info.st_mode) if info else None,
            old_link=old_link,
        )

    @staticmethod
    def _plan_link(spec: FileSpec) -> Change | None:
        """A link differs when it is missing or points elsewhere."""
        target = os.fsdecode(spec.content)
        if os.path.lexists(spec.path) and not os.path.islink(spec.path):
            raise TransactionError(
                f"{spec.label or spec.path} {spec.path} exists and is not a "
                "symbolic link; nothing was changed. Move it aside and let the "
                "deploy create the link.")
        current = os.readlink(spec.path) if os.path.islink(spec.path) else None
        if current == target:
            return None
        return Change(
            path=spec.path, given=spec.path, label=spec.label or spec.path,
            secret=False, existed=current is not None,
            old_sha256=(digest(os.fsencode(current)) if current is not None
                        else None),
            new_sha256=digest(spec.content), uid=None, gid=None,
            mode=spec.owner.mode, kind=SYMLINK, old_link=current,
            new_link=target,
        )

    @staticmethod
    def _plan_directory(spec: FileSpec) -> Change | None:
        """An existing directory is left as it is; a missing one is created."""
        if os.path.isdir(spec.path) and not os.path.islink(spec.path):
            return None
        if os.path.lexists(spec.path):
            raise TransactionError(
                f"{spec.label or spec.path} {spec.path} exists and is not a "
                "directory; nothing was changed.")
        return Change(
            path=spec.path, given=spec.path, label=spec.label or spec.path,
            secret=False, existed=False, old_sha256=None,
            new_sha256=digest(b""), uid=spec.owner.uid, gid=spec.owner.gid,
            mode=spec.owner.mode, kind=DIRECTORY,
        )

    # -- the swap ---------------------------------------------------------------

    def backup(self) -> None:
        """Copy every existing file into this deployment's backup directory."""
        directory = os.path.join(self.backup_root, self.deployment_id)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(self.backup_root, 0o700)
        for number, change in enumerate(self.changes):
            if not change.existed or change.kind != FILE:
                continue  # a link's old target is in the journal itself
            backup = os.path.join(
                directory, f"{number}.{os.path.basename(change.path)}")
            data = read_bytes(change.path)
            if data is None or digest(data) != change.old_sha256:
                raise TransactionError(
                    f"{change.path} changed while it was being backed up; "
                    "nothing was replaced."
                )
            write_new(backup, data, Ownership(change.old_uid, change.old_gid,
                                              change.old_mode))
            change.backup = backup
        fsync_dir(directory)
        self._write_journal("backed_up")

    def stage(self) -> None:
        """Write each new file beside its destination, final owner and mode.

        A new link is created under a temporary name; a new directory is
        created in place (nothing refers to it before a later rename does),
        before the files staged inside it.
        """
        for change in self.changes:
            if change.kind != DIRECTORY:
                change.stage = _stage_path(change, self.deployment_id)
        self._write_journal("staged")
        for change in self.changes:
            owner = Ownership(change.uid, change.gid, change.mode)
            if change.kind == DIRECTORY:
                make_directory(change.path, owner)
            elif change.kind == SYMLINK:
                os.symlink(change.new_link, change.stage)
            else:
                write_new(change.stage, self._contents[change.path], owner)

    def swap(self) -> None:
        """Rename every staged file over its destination; fsync directories."""
        for change in self.changes:
            if change.stage:
                os.replace(change.stage, change.path)
                self.last_rename = time.monotonic()
        for directory in sorted({os.path.dirname(c.path) for c in self.changes}):
            fsync_dir(directory)
        self._write_journal("swapped")

    def apply(self, before_swap: Callable | None = None) -> None:
        """Back up, stage and swap; any error puts every file back, then raises.

        ``before_swap(transaction)``, when given, runs once every new file is
        staged and before the first rename: a check there that raises a
        ``DeployError`` leaves every destination untouched.
        """
        try:
            self.backup()
            self.stage()
            if before_swap is not None:
                before_swap(self)
            self.swap()
        except TransactionError:
            self.rollback()
            raise
        except DeployError:
            self.rollback()
            raise
        except OSError as exc:
            self.rollback()
            where = f" ({exc.filename})" if exc.filename else ""
            raise TransactionError(
                f"Replacing the files failed{where}: {exc.strerror or exc}; "
                "every file was put back as it was."
            ) from None

    def mark_verified(self) -> None:
        """Record that the new files are served.

        From then on a run that dies before the journal is gone completes the
        transaction instead of undoing it. Failing to write this record undoes
        nothing by itself: ``commit`` removing the journal closes the
        transaction just as well, and says so when it cannot.
        """
        try:
            self._write_journal("verified")
        except OSError as exc:
            self.unrecorded = exc

    def commit(self) -> list:
        """Forget a verified transaction: drop the journal, prune old backups.

        The new files are in place and served, so nothing here undoes them.
        Returns warnings about what could not be tidied up. Raises
        ``TransactionError`` only when a journal without the ``verified``
        record stays behind, because the next run would then put the previous
        files back.
        """
        warnings = []
        try:
            self._cleanup_stages()
            self._drop_journal()
        except OSError as exc:
            if os.path.lexists(self.journal_path) and self.phase != "verified":
                why = f"{exc.strerror} ({exc.filename})"
                if self.unrecorded is not None:
                    why = f"{self.unrecorded.strerror}, then {why}"
                raise TransactionError(
                    f"The new files are in place and served, but the journal "
                    f"{self.journal_path} could not be closed: {why}. The next "
                    "run would put the previous files back: remove the journal "
                    "by hand.", journal=self.journal_path) from None
            if os.path.lexists(self.journal_path):
                warnings.append(
                    f"The journal {self.journal_path} of this verified deploy "
                    f"could not be removed ({exc.strerror}); the next run "
                    "removes it.")
        try:
            self.prune()
        except OSError as exc:
            warnings.append(f"Old backups in {self.backup_root} could not be "
                            f"pruned ({exc.strerror}); the next deploy tries again.")
        return warnings

    # -- undo -------------------------------------------------------------------

    def _cleanup_stages(self) -> None:
        for change in self.changes:
            if change.stage and os.path.lexists(change.stage):
                os.unlink(change.stage)

    def _restore_one(self, change: Change) -> None:
        if change.kind == SYMLINK:
            self._restore_link(change)
            return
        if change.kind == DIRECTORY:
            _remove_created_directory(change)
            return
        current = read_bytes(change.path)
        if not change.existed:
            if current is not None and digest(current) == change.new_sha256:
                os.unlink(change.path)
            return
        data = read_bytes(change.backup) if change.backup else None
        if data is None:
            if current is not None and digest(current) == change.old_sha256:
                return  # never replaced: the backup was not needed
            raise TransactionError(
                f"The backup of {change.path} is missing; it cannot be restored."
            )
        if change.old_link is not None:
            self._restore_link(change)
            return
        if current is not None and digest(current) == change.old_sha256:
            info = os.stat(change.path)
            if (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (
                    change.old_mode, change.old_uid, change.old_gid):
                return
        temp = _stage_path(change, f"{self.deployment_id}.restore")
        if os.path.lexists(temp):
            os.unlink(temp)
        write_new(temp, data,
                  Ownership(change.old_uid, change.old_gid, change.old_mode))
        os.replace(temp, change.path)
        self.last_rename = time.monotonic()

    def _restore_link(self, change: Change) -> None:
        """Point the link back where it pointed, by one rename; or remove it."""
        current = (os.readlink(change.path) if os.path.islink(change.path)
                   else None)
        if not change.existed:
            if current == change.new_link:
                os.unlink(change.path)
            return
        if current == change.old_link:
            return
        temp = _stage_path(change, f"{self.deployment_id}.restore")
        if os.path.lexists(temp):
            os.unlink(temp)
        os.symlink(change.old_link, temp)
        os.replace(temp, change.path)
        self.last_rename = time.monotonic()

    def rollback(self, keep_backups: bool = False) -> None:
        """Put every file back as it was; leave no staged file behind.

        The backup set is removed afterwards unless ``keep_backups``: a caller
        that still has to prove the old files are served keeps it until then,
        so that instructions for a manual restore never name deleted files.
        """
        self._cleanup_stages()
        failures = []
        for change in reversed(self.changes):
            try:
                self._restore_one(change)
            except (OSError, TransactionError) as exc:
                failures.append(f"{change.path}: {exc}")
        for directory in sorted({os.path.dirname(c.path) for c in self.changes}):
            if os.path.isdir(directory):
                fsync_dir(directory)
        if failures:
            try:
                self._write_journal("restore_failed")
            except OSError:
                pass  # the journal of the earlier phase also leads to a restore
            raise TransactionError(
                "Restoring the previous files failed: " + "; ".join(failures),
                backups=self.backups(),
            )
        self._drop_journal()
        if not keep_backups:
            self.discard_backups()
        self.phase = "rolled_back"

    def discard_backups(self) -> None:
        """Remove this deployment's backup set, now that nothing needs it."""
        shutil.rmtree(os.path.join(self.backup_root, self.deployment_id),
                      ignore_errors=True)

    def backups(self) -> list:
        return [
            {"path": c.path, "backup": c.backup}
            for c in self.changes if c.backup
        ]

    def restore_commands(self) -> list:
        """Shell commands that put every changed destination back by hand.

        A link is flipped back the way a deploy flips it: a new link under a
        temporary name, renamed over the old one.
        """
        commands = []
        for change in self.changes:
            path = shlex.quote(change.path)
            if change.old_link is not None or (
                    change.kind == SYMLINK and change.existed):
                temp = shlex.quote(f"{change.path}.certfleet-restore")
                commands.append(
                    f"ln -sfn {shlex.quote(change.old_link)} {temp} && "
                    f"mv -Tf {temp} {path}")
            elif change.backup:
                commands.append(f"cp -p {shlex.quote(change.backup)} {path}")
        return commands

    def prune(self) -> list:
        """Remove backup directories beyond the retention count, oldest first."""
        try:
            entries = sorted(os.listdir(self.backup_root))
        except FileNotFoundError:
            return []
        removed = entries[:max(0, len(entries) - self.retention)]
        for entry in removed:
            shutil.rmtree(os.path.join(self.backup_root, entry))
        return removed
