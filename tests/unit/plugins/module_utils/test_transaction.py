"""The multi-file swap: every failure leaves the files exactly as they were."""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import transaction
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    LockError,
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
MODES = {"cert.pem": 0o644, "key.pem": 0o600}


def live_dir(tmp_path: Path) -> Path:
    """A live directory holding the old pair with the modes a server expects."""
    live = tmp_path / "live"
    live.mkdir()
    for name, data in OLD.items():
        (live / name).write_bytes(data)
        os.chmod(live / name, MODES[name])
    return live


def specs(live: Path, contents: dict | None = None) -> list:
    return [
        FileSpec(
            path=str(live / name),
            content=data,
            owner=Ownership(None, None, MODES[name]),
            secret=name == "key.pem",
        )
        for name, data in (contents or NEW).items()
    ]


def snapshot(directory: Path) -> dict:
    """Every entry of a directory with its bytes and mode."""
    return {
        p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(directory.iterdir())
    }


def old_snapshot() -> dict:
    return {name: (data, MODES[name]) for name, data in OLD.items()}


def deploy(state: Path, live: Path, retention: int = 5) -> Transaction:
    with Transaction(str(state), lock_timeout=2, retention=retention) as txn:
        txn.recover()
        assert txn.plan(specs(live))
        txn.apply()
        txn.mark_verified()
        txn.commit()
    return txn


def test_swap_replaces_both_files_with_their_modes(tmp_path: Path) -> None:
    """A clean run leaves the new pair with the right modes and a backup."""
    live = live_dir(tmp_path)
    txn = deploy(tmp_path / "state", live)
    assert snapshot(live) == {n: (d, MODES[n]) for n, d in NEW.items()}
    backup_dir = tmp_path / "state" / "backups" / txn.deployment_id
    backups = snapshot(backup_dir)
    assert sorted(d for d, _mode in backups.values()) == sorted(OLD.values())
    assert backups["1.key.pem"][1] == 0o600
    assert stat.S_IMODE((tmp_path / "state" / "backups").stat().st_mode) == 0o700
    assert not (tmp_path / "state" / "journal.json").exists()


def test_unchanged_files_plan_nothing(tmp_path: Path) -> None:
    """Same bytes and modes: nothing to do, so no backup and no journal."""
    live = live_dir(tmp_path)
    with Transaction(str(tmp_path / "state")) as txn:
        assert txn.plan(specs(live, OLD)) == []


def test_mode_difference_alone_is_a_change(tmp_path: Path) -> None:
    live = live_dir(tmp_path)
    os.chmod(live / "key.pem", 0o644)
    with Transaction(str(tmp_path / "state")) as txn:
        changes = txn.plan(specs(live, OLD))
    assert [c.given for c in changes] == [str(live / "key.pem")]


def test_new_files_are_created_and_removed_again_on_rollback(tmp_path: Path) -> None:
    """Destinations that did not exist are removed when the swap is undone."""
    live = tmp_path / "live"
    live.mkdir()
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(specs(live))
        txn.apply()
        assert snapshot(live) == {n: (d, MODES[n]) for n, d in NEW.items()}
        txn.rollback()
    assert list(live.iterdir()) == []


def test_rollback_after_swap_restores_bytes_and_modes(tmp_path: Path) -> None:
    live = live_dir(tmp_path)
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(specs(live))
        txn.apply()
        txn.rollback()
    assert snapshot(live) == old_snapshot()
    assert not (tmp_path / "state" / "journal.json").exists()


def test_staged_files_are_never_readable_by_others(tmp_path: Path, monkeypatch) -> None:
    """Each staged file is created 0600 and only then given its final mode."""
    live = live_dir(tmp_path)
    created = []
    real_open = os.open

    def watching_open(path, flags, mode=0o777, *args, **kwargs):
        fd = real_open(path, flags, mode, *args, **kwargs)
        if flags & os.O_CREAT and transaction.STAGE_SUFFIX in str(path):
            created.append((path, stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    monkeypatch.setattr(os, "open", watching_open)
    deploy(tmp_path / "state", live)
    assert len(created) == 2
    assert all(mode == 0o600 for _path, mode in created)


def test_symlinked_destination_is_followed_and_kept(tmp_path: Path) -> None:
    """F13: writing through a certbot-style link keeps the link."""
    live = live_dir(tmp_path)
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "cert1.pem").write_bytes(OLD["cert.pem"])
    (live / "cert.pem").unlink()
    (live / "cert.pem").symlink_to(archive / "cert1.pem")
    deploy(tmp_path / "state", live)
    assert (live / "cert.pem").is_symlink()
    assert (archive / "cert1.pem").read_bytes() == NEW["cert.pem"]


def test_symlink_replaced_when_asked(tmp_path: Path) -> None:
    live = live_dir(tmp_path)
    (tmp_path / "elsewhere.pem").write_bytes(OLD["cert.pem"])
    (live / "cert.pem").unlink()
    (live / "cert.pem").symlink_to(tmp_path / "elsewhere.pem")
    only = [FileSpec(str(live / "cert.pem"), NEW["cert.pem"],
                     Ownership(None, None, 0o644), follow_symlinks=False)]
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(only)
        txn.apply()
        txn.commit()
    assert not (live / "cert.pem").is_symlink()
    assert (tmp_path / "elsewhere.pem").read_bytes() == OLD["cert.pem"]


def test_retention_keeps_the_newest_backup_sets(tmp_path: Path) -> None:
    live = live_dir(tmp_path)
    for number in range(4):
        contents = {n: d + str(number).encode() for n, d in NEW.items()}
        with Transaction(str(tmp_path / "state"), retention=2) as txn:
            txn.plan(specs(live, contents))
            txn.apply()
            txn.commit()
    assert len(list((tmp_path / "state" / "backups").iterdir())) == 2


def test_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Transaction(str(state)):
        with pytest.raises(LockError, match="holds the lock on"):
            with Transaction(str(state), lock_timeout=0.2):
                pass


def test_unreadable_journal_is_reported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "journal.json").write_text("{not json")
    with Transaction(str(state)) as txn:
        with pytest.raises(TransactionError, match="journal .* is unreadable"):
            txn.recover()


def test_journal_never_holds_file_contents(tmp_path: Path, monkeypatch) -> None:
    """The journal names paths and hashes; it never holds the key's bytes."""
    live = live_dir(tmp_path)
    journals = []
    real_replace = os.replace

    def keep_journal(src, dst):
        if str(dst).endswith("journal.json"):
            journals.append(Path(src).read_bytes())
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", keep_journal)
    deploy(tmp_path / "state", live)
    assert journals
    for data in journals:
        for secret in (OLD["key.pem"], NEW["key.pem"]):
            assert secret.strip() not in data


# -- injected failures at every step ------------------------------------------

FAULT_POINTS = ["write", "fsync", "fchmod", "replace", "makedirs"]


def count_calls(tmp_path: Path, name: str, monkeypatch) -> int:
    """How often a clean apply() calls os.<name>."""
    live = live_dir(tmp_path / "count")
    calls = []
    real = getattr(os, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    with Transaction(str(tmp_path / "count" / "state")) as txn:
        txn.plan(specs(live))
        monkeypatch.setattr(os, name, counting)
        txn.apply()
        monkeypatch.setattr(os, name, real)
    return len(calls)


@pytest.mark.parametrize("name", FAULT_POINTS)
def test_failure_at_any_step_restores_everything(
    tmp_path: Path, monkeypatch, name: str
) -> None:
    """os.<name> fails at each of its calls in turn: the old pair stays intact."""
    (tmp_path / "count").mkdir()
    total = count_calls(tmp_path, name, monkeypatch)
    assert total >= 2
    for nth in range(1, total + 1):
        case = tmp_path / f"{name}{nth}"
        case.mkdir()
        live = live_dir(case)
        state = case / "state"
        real = getattr(os, name)
        seen = []

        def failing(*args, **kwargs):
            seen.append(1)
            if len(seen) == nth:
                raise OSError(28, "No space left on device")
            return real(*args, **kwargs)

        with Transaction(str(state)) as txn:
            txn.plan(specs(live))
            monkeypatch.setattr(os, name, failing)
            try:
                with pytest.raises(TransactionError, match="put back as it was"):
                    txn.apply()
            finally:
                monkeypatch.setattr(os, name, real)
        assert snapshot(live) == old_snapshot(), f"os.{name} call {nth}"
        assert not (state / "journal.json").exists()


def test_failed_restore_reports_backups_and_next_run_recovers(
    tmp_path: Path, monkeypatch
) -> None:
    """When even the restore fails, the journal stays and the next run finishes it."""
    live = live_dir(tmp_path)
    state = tmp_path / "state"
    with Transaction(str(state)) as txn:
        txn.plan(specs(live))
        txn.apply()
        real = os.replace

        def read_only(*args):
            raise OSError(30, "Read-only file system")

        monkeypatch.setattr(os, "replace", read_only)
        with pytest.raises(TransactionError) as failed:
            txn.rollback()
        monkeypatch.setattr(os, "replace", real)
    assert "Restoring the previous files failed" in failed.value.message
    assert {b["path"] for b in failed.value.details["backups"]} == {
        str(live / n) for n in OLD
    }
    with Transaction(str(state)) as txn:
        recovered = txn.recover()
    assert recovered["action"] == "restored"
    assert snapshot(live) == old_snapshot()


def test_verified_transaction_is_completed_not_undone(tmp_path: Path) -> None:
    live = live_dir(tmp_path)
    state = tmp_path / "state"
    with Transaction(str(state)) as txn:
        txn.plan(specs(live))
        txn.apply()
        txn.mark_verified()
    with Transaction(str(state)) as txn:
        assert txn.recover()["action"] == "completed"
    assert snapshot(live) == {n: (d, MODES[n]) for n, d in NEW.items()}


# -- a process killed mid-swap --------------------------------------------------

KILLER = textwrap.dedent("""
    import json, os, sys
    from ansible_collections.certfleet.deploy.plugins.module_utils.transaction import (
        FileSpec, Transaction)
    from ansible_collections.certfleet.deploy.plugins.module_utils.ownership import (
        Ownership)
    state, live, kill_at, contents = sys.argv[1], sys.argv[2], int(sys.argv[3]), \\
        json.loads(sys.argv[4])
    real, calls = os.replace, []
    def dying(src, dst):
        calls.append(dst)
        if len(calls) == kill_at:
            os._exit(9)
        return real(src, dst)
    os.replace = dying
    specs = [FileSpec(os.path.join(live, n), d.encode(),
                      Ownership(None, None, 0o600)) for n, d in contents.items()]
    with Transaction(state) as txn:
        txn.recover()
        txn.plan(specs)
        txn.apply()
        txn.mark_verified()
        txn.commit()
    print(len(calls))
""")


def run_killer(tmp_path: Path, live: Path, kill_at: int) -> subprocess.CompletedProcess:
    contents = {n: d.decode() for n, d in NEW.items()}
    return subprocess.run(
        [sys.executable, "-c", KILLER, str(tmp_path / "state"), str(live),
         str(kill_at), json.dumps(contents)],
        capture_output=True, text=True, env=os.environ.copy(), check=False,
    )


def test_killed_between_renames_next_run_recovers_a_consistent_pair(
    tmp_path: Path,
) -> None:
    """Kill the process at every rename of a deploy; the next run recovers."""
    (tmp_path / "probe").mkdir()
    clean = run_killer(tmp_path / "probe", live_dir(tmp_path / "probe"), 0)
    assert clean.returncode == 0, clean.stderr
    renames = int(clean.stdout)
    assert renames >= 4  # journal twice at least, then both destinations
    for kill_at in range(1, renames + 1):
        case = tmp_path / f"kill{kill_at}"
        case.mkdir()
        live = live_dir(case)
        for name in OLD:
            os.chmod(live / name, 0o600)
        died = run_killer(case, live, kill_at)
        assert died.returncode == 9, died.stderr
        pair = {p.name: p.read_bytes() for p in live.iterdir() if p.name in OLD}
        with Transaction(str(case / "state")) as txn:
            recovered = txn.recover()
        after = snapshot(live)
        assert set(after) == set(OLD), f"leftover files after kill {kill_at}"
        contents = {n: d for n, (d, _mode) in after.items()}
        assert contents in (OLD, NEW), f"mixed pair after kill {kill_at}: {pair}"
        if recovered and recovered["phase"] != "verified":
            assert contents == OLD
        assert not (case / "state" / "journal.json").exists()


# -- findings from trying the module as an operator -----------------------------


def test_new_file_gets_the_wanted_group_in_a_setgid_directory(tmp_path: Path) -> None:
    """A setgid directory must not hand its group to a new key file."""
    live = tmp_path / "live"
    live.mkdir()
    other = next(g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getegid())
    os.chown(live, -1, other)
    os.chmod(live, 0o2755)
    key = live / "key.pem"
    spec = FileSpec(str(key), b"key\n", Ownership(None, os.getegid(), 0o600))
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan([spec])
        txn.apply()
        txn.commit()
    assert key.stat().st_gid == os.getegid()
    with Transaction(str(tmp_path / "state")) as txn:
        assert txn.plan([spec]) == []


def test_rollback_restores_owner_and_group(tmp_path: Path) -> None:
    """Same bytes and mode but a new group is still put back."""
    live = live_dir(tmp_path)
    other = next(g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getegid())
    spec = FileSpec(str(live / "key.pem"), OLD["key.pem"],
                    Ownership(None, other, 0o600))
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan([spec])
        txn.apply()
        assert (live / "key.pem").stat().st_gid == other
        txn.rollback()
    assert (live / "key.pem").stat().st_gid == os.getegid()


def test_rollback_puts_a_replaced_link_back(tmp_path: Path) -> None:
    """follow_symlinks=false replaces a link; undoing that restores the link."""
    live = live_dir(tmp_path)
    (tmp_path / "real.pem").write_bytes(OLD["cert.pem"])
    (live / "cert.pem").unlink()
    (live / "cert.pem").symlink_to(tmp_path / "real.pem")
    spec = FileSpec(str(live / "cert.pem"), NEW["cert.pem"],
                    Ownership(None, None, 0o644), follow_symlinks=False)
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan([spec])
        txn.apply()
        assert not (live / "cert.pem").is_symlink()
        assert txn.restore_commands()[0].startswith("ln -sfn ")
        txn.rollback()
    assert os.readlink(live / "cert.pem") == str(tmp_path / "real.pem")
    assert (tmp_path / "real.pem").read_bytes() == OLD["cert.pem"]


def test_two_roles_on_one_file_are_refused(tmp_path: Path) -> None:
    live = live_dir(tmp_path)
    same = [FileSpec(str(live / "cert.pem"), d, Ownership(None, None, 0o600),
                     label=label)
            for label, d in (("cert_path", b"c"), ("key_path", b"k"))]
    with Transaction(str(tmp_path / "state")) as txn:
        with pytest.raises(TransactionError, match="cert_path and key_path name"):
            txn.plan(same)
    assert snapshot(live) == old_snapshot()


def test_missing_directory_is_named_before_anything(tmp_path: Path) -> None:
    spec = FileSpec(str(tmp_path / "nope" / "cert.pem"), b"c",
                    Ownership(None, None, 0o644), label="cert_path")
    with Transaction(str(tmp_path / "state")) as txn:
        with pytest.raises(TransactionError, match="nope of cert_path .* does not"):
            txn.plan([spec])


def test_unreadable_destination_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    spec = FileSpec(str(tmp_path / "loop"), b"c", Ownership(None, None, 0o644),
                    label="cert_path", follow_symlinks=False)
    (tmp_path / "dir.pem").mkdir()
    as_dir = FileSpec(str(tmp_path / "dir.pem"), b"c",
                      Ownership(None, None, 0o644), label="cert_path")
    with Transaction(str(tmp_path / "state")) as txn:
        for bad in (spec, as_dir):
            with pytest.raises(TransactionError, match="cannot be read"):
                txn.plan([bad])


def test_journal_of_another_target_is_left_alone(tmp_path: Path) -> None:
    """Two servers sharing a state directory: one never undoes the other."""
    live = live_dir(tmp_path)
    state = tmp_path / "state"
    with Transaction(str(state)) as txn:
        txn.plan(specs(live))
        txn.apply()  # left open, as by a killed run
    with Transaction(str(state)) as txn:
        with pytest.raises(TransactionError, match="open transaction of another"):
            txn.recover(own_paths={str(tmp_path / "elsewhere.pem")})
    assert (state / "journal.json").exists()
    with Transaction(str(state)) as txn:
        assert txn.recover(own_paths={str(live / "cert.pem")})["action"] == "restored"
    assert snapshot(live) == old_snapshot()


def test_rollback_can_keep_the_backups_for_manual_steps(tmp_path: Path) -> None:
    live = live_dir(tmp_path)
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(specs(live))
        txn.apply()
        txn.rollback(keep_backups=True)
        kept = [b["backup"] for b in txn.backups()]
        assert kept and all(Path(b).exists() for b in kept)
        txn.discard_backups()
        assert not any(Path(b).exists() for b in kept)
