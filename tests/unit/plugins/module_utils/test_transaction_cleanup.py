"""What a failing disk leaves behind: nothing half-written, and no traceback
once the new files are served.

Found by the fault suite (tests/faults): a full state directory left a
partial journal.json.tmp, and an I/O error while recording or closing a
verified transaction escaped as a traceback, with the journal still saying
the files should be put back.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import transaction
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    TransactionError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.ownership import (
    Ownership,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.transaction import (
    FileSpec,
    Transaction,
)

OLD = {"cert.pem": b"old certificate\n", "key.pem": b"old key\n"}
NEW = {"cert.pem": b"new certificate\n", "key.pem": b"new key\n"}


def live_dir(tmp_path: Path) -> Path:
    live = tmp_path / "live"
    live.mkdir()
    for name, data in OLD.items():
        (live / name).write_bytes(data)
        os.chmod(live / name, 0o600)
    return live


def specs(live: Path) -> list:
    return [FileSpec(str(live / name), data, Ownership(None, None, 0o600))
            for name, data in NEW.items()]


def failing(monkeypatch, name: str, when) -> None:
    """Make os.<name> fail with EIO on the calls for which ``when(args)``."""
    real = getattr(os, name)

    def call(*args, **kwargs):
        if when(args):
            raise OSError(errno.EIO, "Input/output error", str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, call)


def raising(error: OSError):
    """A stand-in for an os function that always fails with ``error``."""
    def fail(*args, **kwargs):
        raise error
    return fail


def applied(tmp_path: Path) -> Transaction:
    """A transaction whose new files are swapped in (and, say, served)."""
    txn = Transaction(str(tmp_path / "state"))
    txn.__enter__()
    txn.plan(specs(live_dir(tmp_path)))
    txn.apply()
    return txn


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    """Disk full in the middle of write_new: the file it created is gone."""
    target = tmp_path / "new.pem"
    monkeypatch.setattr(os, "write", raising(OSError(errno.ENOSPC, "No space")))
    with pytest.raises(OSError):
        transaction.write_new(str(target), b"data", Ownership(None, None, 0o600))
    assert not target.exists()


def test_a_journal_whose_rename_fails_leaves_no_temporary_journal(
        tmp_path, monkeypatch) -> None:
    txn = Transaction(str(tmp_path / "state"))
    with txn:
        failing(monkeypatch, "replace", lambda a: str(a[1]).endswith("journal.json"))
        with pytest.raises(OSError):
            txn._write_journal("staged")
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["lock"]
    assert txn.phase == "new"


def test_recovery_removes_a_stale_temporary_journal(tmp_path) -> None:
    """A run died writing its first journal: the next run removes the rest."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "journal.json.tmp").write_text('{"phase": "back')
    with Transaction(str(state)) as txn:
        assert txn.recover() is None
    assert not (state / "journal.json.tmp").exists()


def test_unrecordable_verified_phase_still_commits(tmp_path, monkeypatch) -> None:
    """Writing the verified record fails; removing the journal closes it anyway."""
    txn = applied(tmp_path)
    failing(monkeypatch, "replace", lambda a: str(a[1]).endswith("journal.json"))
    txn.mark_verified()
    monkeypatch.undo()
    assert txn.commit() == []
    txn.__exit__(None, None, None)
    assert not (tmp_path / "state" / "journal.json").exists()
    assert (tmp_path / "live" / "cert.pem").read_bytes() == NEW["cert.pem"]


def test_verified_journal_that_cannot_go_is_a_warning(tmp_path, monkeypatch) -> None:
    """Recorded verified, then the journal cannot be removed: a warning, and
    the journal the next run completes rather than undoes."""
    txn = applied(tmp_path)
    txn.mark_verified()
    failing(monkeypatch, "unlink", lambda a: str(a[0]).endswith("journal.json"))
    warnings = txn.commit()
    monkeypatch.undo()
    txn.__exit__(None, None, None)
    assert "could not be removed" in warnings[0]
    with Transaction(str(tmp_path / "state")) as again:
        assert again.recover()["action"] == "completed"
    assert (tmp_path / "live" / "cert.pem").read_bytes() == NEW["cert.pem"]


def test_unverified_journal_that_cannot_go_is_an_error(tmp_path, monkeypatch):
    """Neither the record nor the removal works: say so, do not pretend."""
    txn = applied(tmp_path)
    failing(monkeypatch, "replace", lambda a: str(a[1]).endswith("journal.json"))
    failing(monkeypatch, "unlink", lambda a: str(a[0]).endswith("journal.json"))
    txn.mark_verified()
    with pytest.raises(TransactionError, match="could not be closed: Input/output"):
        txn.commit()
    monkeypatch.undo()
    txn.__exit__(None, None, None)


def test_backups_that_cannot_be_pruned_are_a_warning(tmp_path, monkeypatch) -> None:
    txn = applied(tmp_path)
    txn.retention = 0
    txn.mark_verified()
    monkeypatch.setattr(transaction.shutil, "rmtree",
                        raising(OSError(errno.EROFS, "Read-only file system")))
    warnings = txn.commit()
    txn.__exit__(None, None, None)
    assert warnings and "could not be pruned" in warnings[0]
    assert not (tmp_path / "state" / "journal.json").exists()
