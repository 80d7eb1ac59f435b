"""The module's process killed at every step of the transaction.

A clean deploy is run first with every call of each fault point counted
(tests/faults/killer.py); then one deploy per call dies right before that
call, like ``kill -9``. After each: a whole certificate is served, the pair
on disk is consistent or a journal is left to make it so, and the same
deploy run again recovers and ends with the new certificate served.

The engine's file-system steps are the same under every server module and
run through one server (``Adapter.engine``); the steps each server does its
own way (config test, apply, verify, their rollback) run for every server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import harness
from tests.faults.adapters import ADAPTERS, params
from tests.faults.harness import Deploys, across

# Every boundary of the swap, and the three steps of commands and probe.
ENGINE_POINTS = ("os.create", "os.write", "os.fsync", "os.replace", "os.rename",
                 "os.unlink", "os.mkdir")
SERVER_POINTS = ("run_command", "run_command.after", "socket.create_connection")
# Where a rollback writes, after a failed config test.
ROLLBACK_POINTS = ("os.create", "os.replace", "os.unlink")
# How many handshakes a verify makes depends on timing (an old worker seen
# means more); the first burst's three always happen.
ALWAYS_MADE = {"socket.create_connection": 3}


def reachable(point: str, numbers) -> list:
    """The calls of ``point`` that every run makes, so that a kill happens."""
    numbers = list(numbers)
    return numbers[:ALWAYS_MADE.get(point, len(numbers))]


def deploy_points() -> list:
    return [pytest.param(a, p, id=f"{a.name}-{p}") for a in ADAPTERS
            for p in (ENGINE_POINTS + SERVER_POINTS if a.engine
                      else ("os.replace",) + SERVER_POINTS)]


def workers(adapter, sites: list, pki, tmp_path: Path) -> list:
    """One ``Deploys`` per site, each with a second leaf and a directory."""
    return [Deploys(adapter, site, pki.leaf(key_type="ecdsa"), tmp_path / f"w{n}")
            for n, site in enumerate(sites)]


def failing_validate(tmp_path: Path) -> list:
    """A config test that refuses the files."""
    script = tmp_path / "validate-fails.sh"
    script.write_text("#!/bin/sh\necho 'config test refused the files' >&2\n"
                      "exit 1\n")
    script.chmod(0o700)
    return [str(script)]


def reload_failing_once(deploys: Deploys) -> dict:
    """A reload that reloads, then reports failure, the first time only."""
    marker = deploys.tmp / f"reloaded-{deploys.number}"
    script = deploys.tmp / f"reload-{deploys.number}.sh"
    reload = " ".join(f"'{word}'" for word in deploys.site.server.reload_command)
    script.write_text(
        f"#!/bin/sh\n{reload} || exit 1\n"
        f"if [ ! -e '{marker}' ]; then touch '{marker}'; "
        "echo 'reload reported a failure' >&2; exit 1; fi\n")
    script.chmod(0o700)
    return {"reload_command": [str(script)]}


@pytest.mark.parametrize("adapter,point", deploy_points())
def test_killed_at_every_call_of_a_deploy(adapter, sites, pki, tmp_path, faults,
                                          point) -> None:
    """Killed before each call of ``point``: recovered by the next run."""
    pool = workers(adapter, sites, pki, tmp_path)
    leaf, state, args = pool[0].next()
    total = pool[0].survive(args, leaf, state).counts.get(point, 0)
    if not total:
        pytest.skip(f"{adapter.module} never calls {point}")

    def kill(deploys: Deploys, number: int) -> None:
        leaf, state, args = deploys.next()
        with faults.inject(f"killed at {point}"):
            deploys.survive(args, leaf, state, point, number)

    across(pool, reachable(point, range(1, total + 1)), kill)


@pytest.mark.parametrize("adapter", params(engine=True))
@pytest.mark.parametrize("point", ROLLBACK_POINTS)
def test_killed_while_a_failed_config_test_is_undone(adapter, sites, pki, tmp_path,
                                                     faults, point) -> None:
    """The config test fails; the restore that follows dies at each call."""
    pool = workers(adapter, sites, pki, tmp_path)
    failing = {"validate_command": failing_validate(tmp_path)}
    leaf, state, args = pool[0].next()
    probe = harness.run(adapter, dict(args, **failing), pool[0].log("count"))
    assert probe.result.get("rolled_back") is True, probe.describe()

    def kill(deploys: Deploys, number: int) -> None:
        leaf, state, args = deploys.next()
        with faults.inject(f"killed undoing a failed config test at {point}"):
            deploys.survive(args, leaf, state, point, number,
                            fault_args=dict(args, **failing))

    across(pool, harness.calls_after(probe, point, "run_command"), kill)


@pytest.mark.parametrize("adapter", params())
@pytest.mark.parametrize("point", SERVER_POINTS + ("os.replace",))
def test_killed_while_a_failed_reload_is_rolled_back(adapter, sites, pki, tmp_path,
                                                     faults, point) -> None:
    """The reload fails; the rollback (restore, reload, probe for the old
    certificate) dies at each call after it."""
    pool = workers(adapter, sites, pki, tmp_path)
    leaf, state, args = pool[0].next()
    probe = harness.run(adapter, dict(args, **reload_failing_once(pool[0])),
                        pool[0].log("count"))
    assert probe.result.get("rolled_back") is True, probe.describe()

    def kill(deploys: Deploys, number: int) -> None:
        leaf, state, args = deploys.next()
        with faults.inject(f"killed rolling back a failed reload at {point}"):
            deploys.survive(args, leaf, state, point, number,
                            fault_args=dict(args, **reload_failing_once(deploys)))

    across(pool, reachable(point, harness.calls_after(probe, point, "run_command",
                                                      nth=2)), kill)


@pytest.mark.parametrize("adapter", params(engine=True))
def test_killed_again_while_recovering(adapter, sites, pki, tmp_path, faults):
    """A deploy dies between its two file renames; the run that recovers it
    dies at each of its own renames; a third run still ends with the new
    pair in place and served."""
    pool = workers(adapter, sites, pki, tmp_path)
    leaf, state, args = pool[0].next()
    between = second_file_rename(pool[0].survive(args, leaf, state), sites[0])
    leaf, state, args = pool[0].next()
    harness.run(adapter, args, pool[0].log("first"), "os.replace", between)
    counting = harness.run(adapter, args, pool[0].log("count"))
    pool[0].check_recovered(leaf, state, counting, journal_open=True)

    def kill_twice(deploys: Deploys, number: int) -> None:
        leaf, state, args = deploys.next()
        with faults.inject("killed in a deploy, then in its recovery"):
            first = harness.run(adapter, args, deploys.log("first"),
                                "os.replace", between)
            second = harness.run(adapter, args, deploys.log("second"),
                                 "os.replace", number)
            assert first.killed and second.killed, second.describe()
            journal_open = deploys.check_fault(state, first, second)
            third = harness.run(adapter, args, deploys.log("third"), diff=True)
            deploys.check_recovered(leaf, state, third, journal_open)

    across(pool, range(1, counting.counts["os.replace"] + 1), kill_twice)


def second_file_rename(clean: harness.Run, site) -> int:
    """Which os.replace call of a deploy renames the second live file."""
    live = str(site.live_dir)
    renames = staged_before = 0
    for event in clean.events:
        if event.get("call") == "os.replace":
            renames += 1
        if "created" in event and event["created"].startswith(live):
            staged_before = renames
    return staged_before + 2
