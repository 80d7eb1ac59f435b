"""Measure how fast nginx hands out a new certificate after ``-s reload``.

Not a test: timing depends on the machine, so nothing here asserts. Run
from the repo root::

    python -m tests.support.reload_timing --runs 10

Each run swaps the live files between the RSA and the ECDSA leaf, runs the
reload command, and from the moment it returns opens a new TLS connection
about every 5 ms for 400 ms, noting which leaf each one got and when the
old worker process disappeared. Times are in milliseconds from the return
of the reload command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.nginx import Nginx
from tests.support.pki import PKI, Leaf


@dataclass
class Run:
    """What one reload looked like from the client side."""

    reload_ms: float
    probes: int
    first_new_ms: float | None
    last_old_ms: float | None
    old_after_new: int
    old_worker_gone_ms: float | None
    pattern: str

    def __str__(self) -> str:
        def ms(value: float | None) -> str:
            return "never" if value is None else f"{value:6.1f}"

        return (
            f"reload {self.reload_ms:5.1f}  first new {ms(self.first_new_ms)}  "
            f"last old {ms(self.last_old_ms)}  old worker gone "
            f"{ms(self.old_worker_gone_ms)}  probes {self.probes}  "
            f"old after new {self.old_after_new}  {self.pattern}"
        )


def _swap(live: Path, leaf: Leaf) -> None:
    """Put ``leaf`` into the live files by rename."""
    files = (("privkey.pem", leaf.key_pem), ("fullchain.pem", leaf.fullchain_pem))
    for name, data in files:
        staged = live / f".{name}.new"
        staged.write_bytes(data)
        os.replace(staged, live / name)


def measure_once(
    server: Nginx, leaf: Leaf, window: float = 0.4, interval: float = 0.005
) -> Run:
    """Swap to ``leaf``, reload, and probe for ``window`` seconds."""
    old_workers = server.worker_pids()
    _swap(server.cert_path.parent, leaf)
    before = time.monotonic()
    subprocess.run(server.reload_command, check=True, capture_output=True)
    start = time.monotonic()
    samples: list[tuple[float, bool]] = []
    gone_at: float | None = None
    while (now := time.monotonic()) < start + window:
        served = server.served_sha256(timeout=1.0)
        samples.append(((now - start) * 1000, served == leaf.sha256))
        old_alive = any(Path(f"/proc/{pid}").exists() for pid in old_workers)
        if gone_at is None and not old_alive:
            gone_at = (time.monotonic() - start) * 1000
        time.sleep(max(0.0, now + interval - time.monotonic()))
    new_times = [t for t, is_new in samples if is_new]
    old_times = [t for t, is_new in samples if not is_new]
    first_new = min(new_times) if new_times else None
    return Run(
        reload_ms=(start - before) * 1000,
        probes=len(samples),
        first_new_ms=first_new,
        last_old_ms=max(old_times) if old_times else None,
        old_after_new=sum(1 for t in old_times if t > (first_new or window * 1000)),
        old_worker_gone_ms=gone_at,
        pattern="".join("N" if is_new else "o" for _time, is_new in samples[:30]),
    )


def _summary(label: str, values: list[float | None]) -> str:
    """min / median / max of the values that are set."""
    known = [v for v in values if v is not None]
    if not known:
        return f"{label}: never"
    return (
        f"{label}: min {min(known):.1f}, median {statistics.median(known):.1f}, "
        f"max {max(known):.1f} ms ({len(known)}/{len(values)} runs)"
    )


def main() -> None:
    """Run the measurement and print one line per run and a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.005, help="seconds")
    parser.add_argument("--settle", type=float, default=0.5, help="seconds")
    args = parser.parse_args()
    pki = PKI()
    with tempfile.TemporaryDirectory(prefix="reload-timing-") as tmp:
        paths = pki.rsa.write(Path(tmp) / "live")
        runs: list[Run] = []
        server = Nginx(Path(tmp) / "nginx", paths["fullchain"], paths["privkey"])
        with server:
            for number in range(args.runs):
                time.sleep(args.settle)
                leaf = pki.ecdsa if number % 2 == 0 else pki.rsa
                run = measure_once(server, leaf, interval=args.interval)
                runs.append(run)
                print(f"run {number + 1:2d}: {run}")
    for label, field in (
        ("reload command", "reload_ms"),
        ("first new cert", "first_new_ms"),
        ("last old cert", "last_old_ms"),
        ("old worker gone", "old_worker_gone_ms"),
    ):
        print(_summary(label, [getattr(run, field) for run in runs]))
    mixed = sum(run.old_after_new for run in runs)
    print(f"probes that got the old cert after one got the new: {mixed}")
    print("pattern: first 30 probes of each run, N = new cert, o = old cert")


if __name__ == "__main__":
    main()
