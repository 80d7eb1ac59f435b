"""Filesystems that fail on purpose: small tmpfs mounts, full disks, and
directories or files that even root cannot change.

A tmpfs is mounted by the test itself (root only) and always unmounted in a
``finally``. Root ignores permission bits, so "read-only" here means what
really stops root: a read-only remount, or the immutable attribute
(``chattr +i``), which ext4 and tmpfs both support.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PAGE = 4096


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          check=False)


@contextmanager
def tmpfs(path: Path, size_kib: int = 256) -> Iterator[Path]:
    """A fresh tmpfs of ``size_kib`` mounted at ``path`` for the block."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755",
                   "tmpfs", str(path))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
                    "the disk-full and read-only faults need root and mount")
    try:
        yield path
    finally:
        remount(path, read_only=False)
        unmounted = _run("umount", str(path))
        assert unmounted.returncode == 0, unmounted.stderr


def remount(path: Path, read_only: bool) -> None:
    done = _run("mount", "-o", f"remount,{'ro' if read_only else 'rw'}", str(path))
    assert done.returncode == 0, done.stderr


def fill(directory: Path, free_pages: int = 0) -> Path:
    """Fill the filesystem of ``directory``, then free ``free_pages`` pages."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * PAGE)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - free_pages * PAGE))
    return filler


@contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``chattr +i`` on ``path`` for the block (skip where unsupported)."""
    done = _run("chattr", "+i", str(path))
    if done.returncode != 0:
        pytest.skip(f"chattr +i does not work on {path}: {done.stderr.strip()}")
    try:
        yield path
    finally:
        undone = _run("chattr", "-i", str(path))
        assert undone.returncode == 0, undone.stderr
