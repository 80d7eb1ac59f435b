"""Watching between attempts: after a mismatch, matches in a row during the
backoff delay prove the new certificate served, as a burst would; without
them nothing about the loop changes.

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


def test_a_streak_while_watching_is_the_next_attempt() -> None:
    """old (burst fails), then while watching: old, new, new, new. Three in a
    row, 20 ms apart, prove it as a burst would: attempt 2, matched."""
    verdict, time, script = run_loop(
        [OLD, OLD, NEW, NEW, NEW], Backoff(attempts=3, initial=1.0),
        WATCHING, since=0.0)
    assert verdict.matched and verdict.attempts == 2
    assert verdict.handshakes == 5 and verdict.last.sha256 == NEW
    assert time.sleeps == pytest.approx([0.15, 0.02, 0.02, 0.02, 0.02])
    assert script.at[-1] - script.at[0] == pytest.approx(0.08)


def test_a_server_still_switching_uses_up_no_attempts() -> None:
    """Old and new alternate (old workers still accept) for a while: the
    streak starts over on every old one, and no attempt is spent. Seen by the
    benchmark, where the first version of the watch burned all three
    attempts within one 100 ms switch-over and rolled back a good deploy."""
    switching = [OLD, NEW] * 10
    verdict, _time, script = run_loop(
        [OLD] + switching + [NEW, NEW], Backoff(attempts=3, initial=1.0),
        WATCHING, since=0.0)
    assert verdict.matched and verdict.attempts == 2
    assert script.results == []


def test_a_streak_cut_short_by_the_backoff_is_no_proof() -> None:
    """A 50 ms delay holds two watching handshakes: two matches, then the
    next attempt is a whole burst of its own."""
    verdict, _time, script = run_loop(
        [OLD, NEW, NEW, NEW, NEW, NEW], Backoff(attempts=3, initial=0.05),
        WATCHING, since=0.0)
    assert verdict.matched and verdict.attempts == 2
    assert verdict.handshakes == 6 and script.results == []


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


def test_errors_while_watching_start_the_streak_again() -> None:
    verdict, time, _script = run_loop(
        [OLD, NEW, refused(), NEW, NEW, NEW], Backoff(attempts=3, initial=1.0),
        WATCHING, since=0.0)
    assert verdict.matched and verdict.attempts == 2
    assert time.sleeps == pytest.approx([0.15] + [0.02] * 5)


def test_watch_off_by_default() -> None:
    time = run_loop([OLD, NEW], Backoff(attempts=3))[1]
    assert time.sleeps == [1.0]
