"""Watching between attempts: the wait after a mismatch ends once the new
certificate shows up, and nothing else about the loop changes.

Found by the benchmark (issue 8): on a busy machine nginx's old worker
outlived the settle window for most hosts, and each of them then slept the
whole first backoff delay (1 s) although the new certificate was served
tens of milliseconds later.
"""

from __future__ import annotations

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils.probe import (
    Backoff,
    Confirm,
)
from tests.unit.plugins.module_utils.test_probe import NEW, OLD, refused, run_loop

WATCHING = Confirm(settle=0.15, handshakes=3, interval=0.02, watch=0.02)


def test_watch_starts_the_next_attempt_as_soon_as_the_new_leaf_shows() -> None:
    """old (burst fails), old, new while watching, then a full burst of three."""
    verdict, time, script = run_loop(
        [OLD, OLD, NEW, NEW, NEW, NEW], Backoff(attempts=3, initial=1.0),
        WATCHING, since=0.0)
    assert verdict.matched and verdict.attempts == 2
    assert verdict.handshakes == 6
    assert time.sleeps == pytest.approx([0.15, 0.02, 0.02, 0.02, 0.02])
    assert script.at[-1] - script.at[0] == pytest.approx(0.08)


def test_the_proof_still_needs_a_whole_burst() -> None:
    """A match seen while watching is no proof: the burst after it fails on
    the old certificate, and the loop goes on."""
    verdict = run_loop(
        [OLD, NEW, NEW, OLD, NEW, NEW, NEW, NEW],
        Backoff(attempts=3, initial=1.0), WATCHING, since=0.0)[0]
    assert verdict.matched and verdict.attempts == 3
    assert verdict.seen == [OLD, NEW]


def test_without_a_match_the_waits_add_up_as_before() -> None:
    """Nothing but the old certificate: three attempts over 1 s + 2 s of
    backoff, watching all along."""
    verdict, time, _script = run_loop(
        [OLD] * 200, Backoff(attempts=3, initial=1.0), WATCHING, since=0.0)
    assert not verdict.matched and verdict.attempts == 3
    assert sum(time.sleeps) == pytest.approx(0.15 + 3.0)
    assert f"served {OLD}" in verdict.error


def test_errors_are_not_watched() -> None:
    """A refused connection is no sign of a switch in progress: plain sleep."""
    verdict, time, _script = run_loop([refused(), NEW, NEW, NEW],
                                      Backoff(attempts=3), WATCHING)
    assert verdict.matched and verdict.attempts == 2
    assert time.sleeps == pytest.approx([0.15, 1.0, 0.02, 0.02])


def test_errors_while_watching_do_not_end_the_wait() -> None:
    verdict, time, _script = run_loop(
        [OLD, refused(), NEW, NEW, NEW, NEW], Backoff(attempts=3, initial=1.0),
        WATCHING, since=0.0)
    assert verdict.matched and verdict.attempts == 2
    assert time.sleeps == pytest.approx([0.15, 0.02, 0.02, 0.02, 0.02])


def test_watch_off_by_default() -> None:
    time = run_loop([OLD, NEW], Backoff(attempts=3))[1]
    assert time.sleeps == [1.0]
