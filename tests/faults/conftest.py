"""Fixtures of the fault suite, and the count of faults it injected.

Every fault a test injects is counted by ``faults.inject(kind)``; it counts
as survived once every check after it passed. The end of the test session
prints both counts, per kind.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.faults.adapters import Adapter, Site
from tests.faults.harness import WORKERS


class Tally:
    """Faults injected and survived, per kind."""

    def __init__(self) -> None:
        self.injected: Counter = Counter()
        self.survived: Counter = Counter()
        self.lock = threading.Lock()

    @contextmanager
    def inject(self, kind: str) -> Iterator[None]:
        """Count one fault; it survived if the block ends without an error."""
        with self.lock:
            self.injected[kind] += 1
        yield
        with self.lock:
            self.survived[kind] += 1

    def summary(self) -> str:
        kinds = ", ".join(f"{kind}: {self.survived[kind]}/{count}"
                          for kind, count in sorted(self.injected.items()))
        return (f"fault injection: {sum(self.injected.values())} faults injected, "
                f"{sum(self.survived.values())} survived ({kinds})")


TALLY = Tally()


@pytest.fixture(scope="session")
def faults() -> Tally:
    return TALLY


def pytest_terminal_summary(terminalreporter) -> None:
    if TALLY.injected:
        terminalreporter.write_sep("-", "fault injection")
        terminalreporter.write_line(TALLY.summary())


def start_site(adapter: Adapter, base: Path, pki) -> Site:
    """The adapter's server, serving a fresh ECDSA leaf from base/live."""
    return adapter.start(base / "server", base / "live", pki.leaf(key_type="ecdsa"))


@pytest.fixture
def site(adapter: Adapter, tmp_path: Path, pki) -> Iterator[Site]:
    """One server of ``adapter`` (a test parameter), started for the test."""
    adapter.require()
    running = start_site(adapter, tmp_path, pki)
    try:
        yield running
    finally:
        running.server.stop()


@pytest.fixture
def sites(adapter: Adapter, tmp_path: Path, pki) -> Iterator[list]:
    """Several servers of ``adapter``, so that independent faults can run side
    by side (tests/faults/harness.py ``across``)."""
    adapter.require()
    running = []
    try:
        for number in range(WORKERS):
            running.append(start_site(adapter, tmp_path / f"w{number}", pki))
        yield running
    finally:
        for site in running:
            site.server.stop()
