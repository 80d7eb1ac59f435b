"""Faults of the machine around a deploy: full disks, read-only directories,
files even root cannot replace, an unwritable backup directory.

Each fault makes the deploy fail by itself (or, where space suffices,
succeed): afterwards the old certificate is still served whole, the pair on
disk is the old one, nothing temporary is left, and once the fault is lifted
the same deploy goes through.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import fs, harness
from tests.faults.adapters import params
from tests.faults.harness import Deploys

PUT_BACK = "put back as it was"


def lift_and_redeploy(deploys: Deploys, leaf, state: Path, args: dict) -> None:
    recovery = harness.run(deploys.adapter, args, deploys.log("recovery"), diff=True)
    deploys.check_recovered(leaf, state, recovery, journal_open=False)


def fault_run(deploys: Deploys, args: dict) -> harness.Run:
    return harness.run(deploys.adapter, args, deploys.log("fault"), diff=True)


@pytest.mark.parametrize("free_pages", [0, 1])
@pytest.mark.parametrize("adapter", params(engine=True))
def test_live_filesystem_full(adapter, pki, tmp_path, faults, free_pages) -> None:
    """No room for the first (0 pages free) or the second (1) staged file."""
    with fs.tmpfs(tmp_path / "live", size_kib=64) as live, \
            harness.serving(adapter, tmp_path / "server", live,
                            pki.leaf(key_type="ecdsa")) as site:
        deploys = Deploys(adapter, site, pki.leaf(key_type="ecdsa"), tmp_path)
        leaf, state, args = deploys.next()
        filler = fs.fill(live, free_pages)
        with faults.inject("live filesystem full"):
            deploys.check_clean_failure(state, fault_run(deploys, args), PUT_BACK)
            filler.unlink()
            lift_and_redeploy(deploys, leaf, state, args)


@pytest.mark.parametrize("free_pages", range(6))
@pytest.mark.parametrize("adapter", params(engine=True))
def test_backup_filesystem_full(adapter, site, pki, tmp_path, faults,
                                free_pages) -> None:
    """The state directory fills up at each of its writes in turn: a backup,
    the journal, a later journal phase; or, with room enough, nothing fails."""
    deploys = Deploys(adapter, site, pki.leaf(key_type="ecdsa"), tmp_path)
    leaf, state, args = deploys.next()
    with fs.tmpfs(state, size_kib=64):
        filler = fs.fill(state, free_pages)
        with faults.inject("backup filesystem full"):
            ran = fault_run(deploys, args)
            if ran.result.get("failed"):
                deploys.check_clean_failure(state, ran, "")
            filler.unlink()
            lift_and_redeploy(deploys, leaf, state, args)


@pytest.mark.parametrize("adapter", params(engine=True))
def test_live_filesystem_read_only(adapter, pki, tmp_path, faults) -> None:
    """The live directory's filesystem is remounted read-only."""
    with fs.tmpfs(tmp_path / "live") as live, \
            harness.serving(adapter, tmp_path / "server", live,
                            pki.leaf(key_type="ecdsa")) as site:
        deploys = Deploys(adapter, site, pki.leaf(key_type="ecdsa"), tmp_path)
        leaf, state, args = deploys.next()
        fs.remount(live, read_only=True)
        with faults.inject("live directory read-only"):
            deploys.check_clean_failure(state, fault_run(deploys, args), PUT_BACK)
            fs.remount(live, read_only=False)
            lift_and_redeploy(deploys, leaf, state, args)


@pytest.mark.parametrize("what", ["directory", "certificate", "key"])
@pytest.mark.parametrize("adapter", params(engine=True))
def test_live_path_immutable(adapter, site, pki, tmp_path, faults, what) -> None:
    """``chattr +i`` on the live directory, or on one of the two files: the
    key's rename fails after the certificate's went through."""
    deploys = Deploys(adapter, site, pki.leaf(key_type="ecdsa"), tmp_path)
    leaf, state, args = deploys.next()
    target = {"directory": site.live_dir, "certificate": site.cert_path,
              "key": site.key_path}[what]
    with faults.inject(f"live {what} immutable"):
        with fs.immutable(target):
            deploys.check_clean_failure(state, fault_run(deploys, args), PUT_BACK)
        lift_and_redeploy(deploys, leaf, state, args)


@pytest.mark.parametrize("adapter", params(engine=True))
def test_backup_directory_on_read_only_filesystem(adapter, site, pki, tmp_path,
                                                  faults) -> None:
    """backup_dir cannot even hold the lock: the deploy stops before anything."""
    deploys = Deploys(adapter, site, pki.leaf(key_type="ecdsa"), tmp_path)
    leaf, state, args = deploys.next()
    with fs.tmpfs(state):
        fs.remount(state, read_only=True)
        with faults.inject("backup directory read-only"):
            deploys.check_clean_failure(state, fault_run(deploys, args),
                                        "Cannot open the state directory")
            fs.remount(state, read_only=False)
            lift_and_redeploy(deploys, leaf, state, args)


@pytest.mark.parametrize("what", ["state", "backups"])
@pytest.mark.parametrize("adapter", params(engine=True))
def test_backup_directory_immutable(adapter, site, pki, tmp_path, faults,
                                    what) -> None:
    """An earlier deploy made the state directory; now it (or its backups
    directory) cannot take new entries: no journal, or no backup set."""
    deploys = Deploys(adapter, site, pki.leaf(key_type="ecdsa"), tmp_path)
    leaf, state, args = deploys.next()
    lift_and_redeploy(deploys, leaf, state, args)
    leaf, _state, args = deploys.next()
    args["backup_dir"] = str(state)
    with faults.inject(f"backup directory immutable ({what})"):
        with fs.immutable(state if what == "state" else state / "backups"):
            deploys.check_clean_failure(state, fault_run(deploys, args), PUT_BACK)
        lift_and_redeploy(deploys, leaf, state, args)
