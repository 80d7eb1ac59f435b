"""Run modules under injected faults and check what survived them.

A fault survived when, afterwards, the server serves a whole certificate
(the old or the new, with its chain), the pair on disk is consistent (the
key matches the certificate) unless a journal says the transaction is still
open, the next run recovers that transaction, no temporary file is left, no
output, diff, log or journal holds key bytes, and no file the module created
was ever readable beyond what was intended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.faults.adapters import Adapter, Site
from tests.support.modules import COLLECTIONS
from tests.support.pki import Leaf

KILLER = Path(__file__).with_name("killer.py")
KILLED = 137
PACKAGE = "ansible_collections.certfleet.deploy.plugins.modules"
STAGE_SUFFIX = ".certfleet-stage"
RUN_TIMEOUT = 120
HANDSHAKES = 5
# Sites that take faults side by side: runs mostly wait (reloads, settle
# windows, handshakes), so three share two cores well.
WORKERS = 3


@dataclass
class Run:
    """One module process: how it ended, what it printed, what it did."""

    rc: int
    stdout: str
    stderr: str
    events: list = field(default_factory=list)

    @property
    def killed(self) -> bool:
        return self.rc == KILLED

    @property
    def result(self) -> dict:
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(
                f"No JSON result (exit {self.rc}):\n{self.stdout}\n{self.stderr}"
            ) from None

    @property
    def counts(self) -> dict:
        for event in self.events:
            if "counts" in event:
                return event["counts"]
        return {}

    def describe(self) -> str:
        return (f"exit {self.rc}\nstdout: {self.stdout[-2000:]}\n"
                f"stderr: {self.stderr[-2000:]}")


def _env(log: Path, point: str, at: int, mode: str) -> dict:
    path = [str(COLLECTIONS)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path),
                CERTFLEET_FAULT_POINT=point, CERTFLEET_FAULT_AT=str(at),
                CERTFLEET_FAULT_LOG=str(log), CERTFLEET_FAULT_MODE=mode)


def start(adapter: Adapter, args: dict, log: Path, point: str = "", at: int = 0,
          check_mode: bool = False, diff: bool = False,
          mode: str = "kill") -> subprocess.Popen:
    """Start the module process; ``point``/``at`` choose where it dies (or,
    with ``mode="raise"``, which call fails with EIO)."""
    module_args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    proc = subprocess.Popen(
        [sys.executable, str(KILLER), f"{PACKAGE}.{adapter.module}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(log, point, at, mode))
    proc.stdin.write(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen, log: Path) -> Run:
    try:
        stdout = proc.stdout.read()
        stderr = proc.stderr.read()
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = ([json.loads(line) for line in log.read_text().splitlines()]
              if log.exists() else [])
    return Run(proc.returncode, stdout, stderr, events)


def run(adapter: Adapter, args: dict, log: Path, point: str = "", at: int = 0,
        **kwargs) -> Run:
    """Run the module to its end (or to the injected kill)."""
    log.unlink(missing_ok=True)
    return finish(start(adapter, args, log, point, at, **kwargs), log)


# -- what must hold after a fault ----------------------------------------------

def chain_of(leaf: Leaf) -> list:
    """The fingerprints a server sends for ``leaf``'s fullchain, leaf first."""
    return [_sha256(c) for c in x509.load_pem_x509_certificates(leaf.fullchain_pem)]


def _sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def served_whole(adapter: Adapter, site: Site, leaves: list) -> set:
    """Every new handshake gets one of ``leaves``, whole, chain included."""
    chains = {leaf.sha256: chain_of(leaf) for leaf in leaves}
    seen = set()
    for _handshake in range(HANDSHAKES):
        served = adapter.served(site)
        assert served and served[0] in chains, (
            f"served {served[:1]}, none of {sorted(chains)}")
        assert served == chains[served[0]], f"partial chain served: {served}"
        seen.add(served[0])
    return seen


def pair_on_disk(site: Site) -> tuple:
    """(leaf SHA-256 on disk, whether the key on disk belongs to that leaf)."""
    cert = x509.load_pem_x509_certificates(site.cert_path.read_bytes())[0]
    key = serialization.load_pem_private_key(site.key_path.read_bytes(), None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    matches = (cert.public_key().public_bytes(der, spki)
               == key.public_key().public_bytes(der, spki))
    return _sha256(cert), matches


def leftovers(*directories: Path) -> list:
    """Temporary files a run may create and must not leave behind."""
    found = []
    for directory in directories:
        if not directory.exists():
            continue
        for path in directory.rglob("*"):
            if path.name.endswith(STAGE_SUFFIX) or path.name.endswith(".tmp"):
                found.append(str(path))
    return found


def key_lines(leaves: list) -> list:
    """The base64 lines of every private key: none may appear anywhere."""
    return [line for leaf in leaves
            for line in leaf.key_pem.decode().splitlines()[1:-1]]


def assert_no_key_bytes(texts: dict, leaves: list) -> None:
    lines = key_lines(leaves)
    for where, text in texts.items():
        for line in lines:
            assert line not in text, f"key bytes in {where}"


def state_texts(state: Path) -> dict:
    """The journal and its temporary file, as a killed run left them."""
    texts = {}
    for name in ("journal.json", "journal.json.tmp"):
        path = state / name
        if path.exists():
            texts[str(path)] = path.read_text(errors="replace")
    return texts


def log_texts(site: Site) -> dict:
    return {str(p): Path(p).read_text(errors="replace")
            for p in site.logs if Path(p).exists()}


def assert_modes(run_: Run, key_name: str, key_mode: int = 0o600) -> None:
    """Created 0600 (umask 0), and a key's copies never opened to others."""
    for event in run_.events:
        if "created" in event:
            assert event["mode"] == 0o600, (
                f"{event['created']} created with mode {event['mode']:04o}")
        if "mode_set" in event and key_name in os.path.basename(event["mode_set"]):
            assert event["mode"] & ~key_mode & 0o777 == 0, (
                f"{event['mode_set']} (a key) given mode {event['mode']:04o}")


# -- one fault and its recovery, end to end -------------------------------------

class Deploys:
    """Deploys to one site that alternate between two leaves.

    Each deploy gets a state directory of its own, so every run makes the
    same calls in the same order and a call counted in a clean run can be
    chosen as the point to die at in another.
    """

    def __init__(self, adapter: Adapter, site: Site, other: Leaf, tmp: Path) -> None:
        self.adapter, self.site, self.tmp = adapter, site, tmp
        self.leaves = [site.leaf, other]
        self.current = site.leaf
        self.number = 0
        self.key_name = site.key_path.name

    def next(self, **extra) -> tuple:
        """(leaf, state dir, args) of the next deploy: the other leaf."""
        self.number += 1
        leaf = self.leaves[1] if self.current is self.leaves[0] else self.leaves[0]
        state = self.tmp / f"state-{self.number}"
        args = self.adapter.args(self.site, leaf, self.tmp / "material", state,
                                 **extra)
        return leaf, state, args

    def log(self, name: str) -> Path:
        return self.tmp / f"log-{self.number}-{name}.jsonl"

    def texts(self, *runs: Run) -> dict:
        texts = log_texts(self.site)
        for number, run_ in enumerate(runs):
            texts[f"run {number} stdout"] = run_.stdout
            texts[f"run {number} stderr"] = run_.stderr
        return texts

    def check_fault(self, state: Path, *runs: Run) -> bool:
        """After the fault: whole certificate served, pair consistent or
        recoverable, no key bytes anywhere, modes right. Returns whether a
        transaction is left open."""
        served_whole(self.adapter, self.site, self.leaves)
        on_disk, matches = pair_on_disk(self.site)
        assert on_disk in {leaf.sha256 for leaf in self.leaves}
        journal_open = (state / "journal.json").exists()
        assert matches or journal_open, (
            "the key on disk does not match the certificate, and no journal "
            "is left to recover the pair")
        assert_no_key_bytes({**self.texts(*runs), **state_texts(state)},
                            self.leaves)
        for run_ in runs:
            assert_modes(run_, self.key_name)
        return journal_open

    def check_recovered(self, leaf: Leaf, state: Path, recovery: Run,
                        journal_open: bool) -> None:
        """After the next run: ``leaf`` served and on disk, nothing left over."""
        result = recovery.result
        assert result.get("failed") is not True, result.get("msg")
        if journal_open:
            assert result.get("recovered", {}).get("action") in (
                "restored", "completed"), result.get("recovered")
        assert served_whole(self.adapter, self.site, self.leaves) == {leaf.sha256}
        assert pair_on_disk(self.site) == (leaf.sha256, True)
        assert not (state / "journal.json").exists()
        assert leftovers(self.site.live_dir, state) == []
        assert os.stat(self.site.key_path).st_mode & 0o077 == 0
        assert_no_key_bytes(self.texts(recovery), self.leaves)
        assert_modes(recovery, self.key_name)
        self.current = leaf

    def check_clean_failure(self, state: Path, failed: Run, words: str) -> None:
        """A run that failed by itself: nothing changed, nothing left over."""
        result = failed.result
        assert result.get("failed") is True, result
        assert words in result["msg"], result["msg"]
        assert served_whole(self.adapter, self.site, self.leaves) == {
            self.current.sha256}
        assert pair_on_disk(self.site) == (self.current.sha256, True)
        assert not (state / "journal.json").exists()
        assert leftovers(self.site.live_dir, state) == []
        assert_no_key_bytes({**self.texts(failed), "result": json.dumps(result)},
                            self.leaves)
        assert_modes(failed, self.key_name)

    def survive(self, args: dict, leaf: Leaf, state: Path, point: str = "",
                at: int = 0, fault_args: dict | None = None) -> Run:
        """Run with ``fault_args`` (default ``args``) and the injected kill,
        check, then run ``args`` again and check it recovered."""
        faulty = run(self.adapter, fault_args or args, self.log("fault"), point, at)
        if point:
            assert faulty.killed, f"not killed at {point} #{at}: {faulty.describe()}"
        journal_open = self.check_fault(state, faulty)
        recovery = run(self.adapter, args, self.log("recovery"), diff=True)
        self.check_recovered(leaf, state, recovery, journal_open)
        return faulty


@contextmanager
def serving(adapter: Adapter, base: Path, live: Path, leaf: Leaf) -> Iterator[Site]:
    """A server of ``adapter`` serving ``leaf`` from ``live``, for the block."""
    adapter.require()
    site = adapter.start(base, live, leaf)
    try:
        yield site
    finally:
        site.server.stop()


def calls_after(run_: Run, point: str, marker: str, nth: int = 1) -> range:
    """The numbers of the calls of ``point`` made after the nth ``marker`` call."""
    seen = {point: 0, marker: 0}
    start = None
    for event in run_.events:
        name = event.get("call")
        if name in seen:
            seen[name] += 1
            if name == marker and seen[marker] == nth and start is None:
                start = seen[point] + 1
    total = seen[point]
    return range(start or total + 1, total + 1)


def across(workers: list, numbers, body: Callable) -> None:
    """``body(deploys, number)`` for every number, the numbers dealt out to
    the workers (one ``Deploys`` per site), which run side by side; each
    site takes one fault at a time."""
    numbers = list(numbers)
    shares = [numbers[i::len(workers)] for i in range(len(workers))]

    def work(deploys: Deploys, share: list) -> None:
        for number in share:
            body(deploys, number)

    with ThreadPoolExecutor(len(workers)) as pool:
        futures = [pool.submit(work, d, share) for d, share in zip(workers, shares)
                   if share]
        for future in futures:
            future.result()
