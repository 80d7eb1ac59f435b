"""A failing disk: every file-system call of a deploy fails with EIO in turn.

Where the kill suite stops the process, here the module lives on and must
handle the error itself: always a result (never a traceback), and either a
clean failure with the old pair in place and served, or a success with the
new one (if the journal could not be removed, it says ``verified`` and the
next run completes it), or, when even the restore failed, a journal the
next run recovers.
"""

from __future__ import annotations

import json

import pytest

from tests.faults import harness
from tests.faults.adapters import params
from tests.faults.harness import Deploys, across

IO_POINTS = ("os.create", "os.write", "os.fsync", "os.replace", "os.unlink",
             "os.mkdir")


@pytest.mark.parametrize("adapter", params(engine=True))
@pytest.mark.parametrize("point", IO_POINTS)
def test_io_error_at_every_call_of_a_deploy(adapter, sites, pki, tmp_path, faults,
                                            point) -> None:
    """EIO at each call of ``point``: a result, and no certificate lost."""
    pool = [Deploys(adapter, site, pki.leaf(key_type="ecdsa"), tmp_path / f"w{n}")
            for n, site in enumerate(sites)]
    leaf, state, args = pool[0].next()
    total = pool[0].survive(args, leaf, state).counts.get(point, 0)

    def fail(deploys: Deploys, number: int) -> None:
        leaf, state, args = deploys.next()
        with faults.inject(f"EIO at {point}"):
            ran = harness.run(adapter, args, deploys.log("fault"), point, number,
                              mode="raise", diff=True)
            assert any(e.get("failed") == point for e in ran.events), ran.describe()
            outcome(deploys, leaf, state, args, ran)

    across(pool, range(1, total + 1), fail)


def outcome(deploys: Deploys, leaf, state, args: dict, ran: harness.Run) -> None:
    """Whichever way the run ended, it ended well."""
    result = ran.result
    journal = state / "journal.json"
    if not result.get("failed") and journal.exists():
        # Served, but the journal could not go: it must say verified, so that
        # the next run completes the deploy instead of undoing it.
        assert '"phase": "verified"' in journal.read_text()
        assert "could not be removed" in json.dumps(result["warnings"])
        recovery = harness.run(deploys.adapter, args, deploys.log("recovery"))
        assert recovery.result["recovered"]["action"] == "completed"
        deploys.check_recovered(leaf, state, recovery, journal_open=True)
    elif not result.get("failed"):
        deploys.check_recovered(leaf, state, ran, journal_open=False)
    elif not result.get("rollback_failed"):
        deploys.check_clean_failure(state, ran, "")
    else:
        journal_open = deploys.check_fault(state, ran)
        recovery = harness.run(deploys.adapter, args, deploys.log("recovery"))
        deploys.check_recovered(leaf, state, recovery, journal_open)
