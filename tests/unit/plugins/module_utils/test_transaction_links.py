"""Links and new directories in the swap: one rename flips a whole file set.

The layout is the one a watching server reads (Envoy's SDS
``watched_directory``): ``W/current`` is a symbolic link to a versioned
directory ``W/v1`` holding the pair. A deploy creates ``W/v2``, stages the new
pair in it, and renames a new link over ``W/current``. Every failure, and a
process killed at any rename, must leave the link pointing at a complete pair.
"""

from __future__ import annotations

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
    CommandError,
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


def watched(tmp_path: Path, with_old: bool = True) -> Path:
    """W with ``current -> v1`` and the old pair in v1 (or W empty)."""
    root = tmp_path / "watched"
    root.mkdir()
    if with_old:
        (root / "v1").mkdir(mode=0o755)
        for name, data in OLD.items():
            (root / "v1" / name).write_bytes(data)
            os.chmod(root / "v1" / name, MODES[name])
        (root / "current").symlink_to("v1")
    return root


def link_specs(root: Path, version: str = "v2", contents: dict | None = None,
               stage_dir: str | None = None) -> list:
    """Directory, pair, then the link: the order a deploy must rename in."""
    contents = NEW if contents is None else contents
    directory = root / version
    specs = [FileSpec(str(directory), b"", Ownership(None, None, 0o755),
                      kind="directory", label="versioned directory")]
    for name, data in contents.items():
        specs.append(FileSpec(str(directory / name), data,
                              Ownership(None, None, MODES[name]),
                              secret=name == "key.pem", label=name))
    specs.append(FileSpec(str(root / "current"), version.encode(),
                          Ownership(None, None, 0o777), kind="symlink",
                          label="link", stage_dir=stage_dir))
    return specs


def state(root: Path) -> dict:
    """What a server reading W/current/* would see, plus every entry of W."""
    current = root / "current"
    return {
        "link": os.readlink(current) if current.is_symlink() else None,
        "served": {n: (current / n).read_bytes() for n in OLD}
        if current.exists() else None,
        "entries": sorted(p.name for p in root.iterdir()),
    }


def old_state() -> dict:
    return {"link": "v1", "served": OLD, "entries": ["current", "v1"]}


def test_deploy_flips_the_link_and_keeps_the_old_directory(tmp_path) -> None:
    root = watched(tmp_path)
    with Transaction(str(tmp_path / "state")) as txn:
        changes = txn.plan(link_specs(root))
        assert [c.kind for c in changes] == ["directory", "file", "file", "symlink"]
        txn.apply()
        assert txn.last_rename is not None
        txn.mark_verified()
        txn.commit()
    assert state(root) == {"link": "v2", "served": NEW,
                           "entries": ["current", "v1", "v2"]}
    assert stat.S_IMODE((root / "v2").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "v2" / "key.pem").stat().st_mode) == 0o600
    assert (root / "v1" / "cert.pem").read_bytes() == OLD["cert.pem"]
    assert not (tmp_path / "state" / "journal.json").exists()


def test_the_link_is_replaced_by_one_rename(tmp_path, monkeypatch) -> None:
    """The link is never removed first: a new link is renamed over it."""
    root = watched(tmp_path)
    renames, unlinked = [], []
    real_replace, real_unlink = os.replace, os.unlink
    monkeypatch.setattr(os, "replace",
                        lambda s, d: renames.append((s, d)) or real_replace(s, d))
    monkeypatch.setattr(os, "unlink",
                        lambda p, *a, **k: unlinked.append(p) or real_unlink(p))
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(link_specs(root))
        txn.apply()
    link_renames = [(s, d) for s, d in renames if d == str(root / "current")]
    assert len(link_renames) == 1
    assert os.path.basename(link_renames[0][0]).endswith(transaction.STAGE_SUFFIX)
    assert str(root / "current") not in unlinked
    # the pair is in place before the link moves
    order = [dst for _src, dst in renames if not dst.endswith("journal.json")]
    assert order[-1] == str(root / "current")


def test_unchanged_link_plans_nothing(tmp_path) -> None:
    root = watched(tmp_path)
    specs = link_specs(root, "v1", OLD)
    with Transaction(str(tmp_path / "state")) as txn:
        assert txn.plan(specs) == []


def test_rollback_after_swap_points_the_link_back(tmp_path) -> None:
    root = watched(tmp_path)
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(link_specs(root))
        txn.apply()
        swapped_at = txn.last_rename
        txn.rollback()
        assert txn.last_rename > swapped_at
    assert state(root) == old_state()
    assert not (tmp_path / "state" / "journal.json").exists()


def test_first_deploy_rolled_back_leaves_nothing(tmp_path) -> None:
    """No link before: the rollback removes the link, the pair and the directory."""
    root = watched(tmp_path, with_old=False)
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(link_specs(root))
        txn.apply()
        assert os.readlink(root / "current") == "v2"
        txn.rollback()
    assert list(root.iterdir()) == []


def test_a_link_path_that_is_a_real_directory_is_refused(tmp_path) -> None:
    root = tmp_path / "watched"
    (root / "current").mkdir(parents=True)
    with Transaction(str(tmp_path / "state")) as txn:
        with pytest.raises(TransactionError, match="is not a symbolic link"):
            txn.plan(link_specs(root))
    assert sorted(p.name for p in root.iterdir()) == ["current"]


def test_a_file_where_the_directory_goes_is_refused(tmp_path) -> None:
    root = watched(tmp_path)
    (root / "v2").write_bytes(b"not a directory")
    with Transaction(str(tmp_path / "state")) as txn:
        with pytest.raises(TransactionError, match="is not a directory"):
            txn.plan(link_specs(root))


def test_a_refusal_before_the_swap_changes_nothing(tmp_path) -> None:
    """A check run on the staged files (before_swap) that fails moves nothing."""
    root = watched(tmp_path)
    seen = []

    def refuse(txn: Transaction) -> None:
        seen.extend(c.stage for c in txn.changes if c.stage)
        assert all(os.path.lexists(s) for s in seen)
        raise CommandError("The config test failed for envoy: exited 1.")

    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(link_specs(root))
        with pytest.raises(CommandError, match="config test failed"):
            txn.apply(before_swap=refuse)
        assert txn.last_rename is None
    assert len(seen) == 3
    assert state(root) == old_state()
    assert not (tmp_path / "state" / "journal.json").exists()


def test_stage_dir_keeps_temporary_links_out_of_the_watched_directory(
    tmp_path, monkeypatch
) -> None:
    root = watched(tmp_path)
    outside = tmp_path / "staging"
    outside.mkdir()
    created = []
    real_symlink = os.symlink
    monkeypatch.setattr(os, "symlink",
                        lambda s, d: created.append(d) or real_symlink(s, d))
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(link_specs(root, stage_dir=str(outside)))
        txn.apply()
        txn.rollback()
    assert created and all(os.path.dirname(d) == str(outside) for d in created)
    assert state(root) == old_state()
    assert list(outside.iterdir()) == []


def test_stage_dir_on_another_filesystem_is_refused(tmp_path, monkeypatch) -> None:
    root = watched(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    real_stat = os.stat

    def other_device(path, *args, **kwargs):
        info = real_stat(path, *args, **kwargs)
        if str(path) == str(outside):
            values = list(info)
            values[stat.ST_DEV] = info.st_dev + 1
            return os.stat_result(values)
        return info

    monkeypatch.setattr(os, "stat", other_device)
    with Transaction(str(tmp_path / "state")) as txn:
        with pytest.raises(TransactionError, match="another filesystem"):
            txn.plan(link_specs(root, stage_dir=str(outside)))


def test_journal_records_link_targets_and_no_file_contents(tmp_path, monkeypatch):
    root = watched(tmp_path)
    journals = []
    real_replace = os.replace

    def keep_journal(src, dst):
        if str(dst).endswith("journal.json"):
            journals.append(json.loads(Path(src).read_bytes()))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", keep_journal)
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(link_specs(root))
        txn.apply()
    link = [c for c in journals[-1]["changes"] if c["kind"] == "symlink"][0]
    assert (link["old_link"], link["new_link"]) == ("v1", "v2")
    text = json.dumps(journals)
    assert "new key" not in text and "old key" not in text


def test_restore_commands_put_the_link_back_by_hand(tmp_path) -> None:
    """The manual steps of a failed rollback really restore the old link."""
    root = watched(tmp_path)
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(link_specs(root))
        txn.apply()
        commands = txn.restore_commands()
    assert len(commands) == 1 and "mv -Tf" in commands[0]
    subprocess.run(["/bin/sh", "-c", commands[0]], check=True)
    assert os.readlink(root / "current") == "v1"


# -- injected failures at every step ------------------------------------------

FAULT_POINTS = ["symlink", "replace", "mkdir", "write", "fsync", "chmod"]


def calls_of(tmp_path: Path, name: str, monkeypatch) -> int:
    """How often a clean apply() calls os.<name>."""
    root = watched(tmp_path / "count")
    calls = []
    real = getattr(os, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    with Transaction(str(tmp_path / "count" / "state")) as txn:
        txn.plan(link_specs(root))
        monkeypatch.setattr(os, name, counting)
        txn.apply()
        monkeypatch.setattr(os, name, real)
    return len(calls)


@pytest.mark.parametrize("name", FAULT_POINTS)
def test_failure_at_any_step_keeps_the_old_link(tmp_path, monkeypatch, name) -> None:
    """os.<name> fails at each of its calls in turn: the old set stays served."""
    (tmp_path / "count").mkdir()
    total = calls_of(tmp_path, name, monkeypatch)
    assert total >= 1
    for nth in range(1, total + 1):
        case = tmp_path / f"{name}{nth}"
        case.mkdir()
        root = watched(case)
        real = getattr(os, name)
        seen = []

        def failing(*args, **kwargs):
            seen.append(1)
            if len(seen) == nth:
                raise OSError(28, "No space left on device")
            return real(*args, **kwargs)

        with Transaction(str(case / "state")) as txn:
            txn.plan(link_specs(root))
            monkeypatch.setattr(os, name, failing)
            try:
                with pytest.raises(TransactionError, match="put back as it was"):
                    txn.apply()
            finally:
                monkeypatch.setattr(os, name, real)
        assert state(root) == old_state(), f"os.{name} call {nth}"
        assert not (case / "state" / "journal.json").exists()


def test_failed_link_restore_is_finished_by_the_next_run(tmp_path, monkeypatch):
    root = watched(tmp_path)
    with Transaction(str(tmp_path / "state")) as txn:
        txn.plan(link_specs(root))
        txn.apply()
        real = os.replace

        def read_only(*_args):
            raise OSError(30, "Read-only file system")

        monkeypatch.setattr(os, "replace", read_only)
        with pytest.raises(TransactionError, match="Restoring the previous"):
            txn.rollback()
        monkeypatch.setattr(os, "replace", real)
    assert os.readlink(root / "current") == "v2"
    with Transaction(str(tmp_path / "state")) as txn:
        assert txn.recover()["action"] == "restored"
    assert state(root) == old_state()


# -- a process killed mid-swap --------------------------------------------------

KILLER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[4])
    from test_transaction_links import link_specs
    from pathlib import Path
    from ansible_collections.certfleet.deploy.plugins.module_utils.transaction import (
        Transaction)
    state, root, kill_at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    real, calls = os.replace, []
    def dying(src, dst):
        calls.append(dst)
        if len(calls) == kill_at:
            os._exit(9)
        return real(src, dst)
    os.replace = dying
    with Transaction(state) as txn:
        txn.recover()
        txn.plan(link_specs(root))
        txn.apply()
        txn.mark_verified()
        txn.commit()
    print(len(calls))
""")


def run_killer(case: Path, root: Path, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KILLER, str(case / "state"), str(root),
         str(kill_at), str(Path(__file__).parent)],
        capture_output=True, text=True, env=os.environ.copy(), check=False,
    )


def test_killed_at_every_rename_the_next_run_recovers_a_whole_set(tmp_path):
    """Kill the deploy at each rename; the link always ends on a complete pair."""
    (tmp_path / "probe").mkdir()
    clean = run_killer(tmp_path / "probe", watched(tmp_path / "probe"), 0)
    assert clean.returncode == 0, clean.stderr
    renames = int(clean.stdout)
    assert renames >= 5  # journal twice, two files, the link, journal again
    for kill_at in range(1, renames + 1):
        case = tmp_path / f"kill{kill_at}"
        case.mkdir()
        root = watched(case)
        died = run_killer(case, root, kill_at)
        assert died.returncode == 9, died.stderr
        seen = state(root)
        assert seen["served"] in (OLD, NEW), f"mixed pair after kill {kill_at}"
        with Transaction(str(case / "state")) as txn:
            recovered = txn.recover()
        after = state(root)
        if recovered and recovered["phase"] != "verified":
            assert after == old_state(), f"kill {kill_at}: {recovered}"
        else:
            assert after["served"] in (OLD, NEW)
        leftovers = [p.name for p in root.rglob("*")
                     if p.name.endswith(transaction.STAGE_SUFFIX)]
        assert leftovers == [], f"kill {kill_at}"
        assert not (case / "state" / "journal.json").exists()
