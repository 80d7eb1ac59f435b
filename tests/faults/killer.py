"""Run a server module as a real process that dies at a chosen call.

``python tests/faults/killer.py MODULE`` (arguments as JSON on stdin, as
Ansible sends them) runs ``MODULE`` with a few functions wrapped:

- every call of a fault point is counted; at the Nth call of the chosen point
  (``CERTFLEET_FAULT_POINT`` and ``CERTFLEET_FAULT_AT``) the process ends
  with ``os._exit(KILLED)``, exactly like ``kill -9``: no cleanup, no
  ``finally``, no output; or, with ``CERTFLEET_FAULT_MODE=raise``, that call
  fails with EIO instead, as a failing disk would make it;
- every file the module creates is noted with its mode right after creation,
  and every mode it sets later, in ``CERTFLEET_FAULT_LOG`` (JSON lines);
- every counted call is noted in order, and a run that is not killed also
  writes how often each point was called.

The umask is 0, so a file mode that is right proves the code chose it, not
the umask. Point names: ``os.NAME`` for os functions (``os.create`` is an
``os.open`` with O_CREAT), ``run_command`` and ``run_command.after`` (before
a config-test or reload command runs, or right after it returned) and
``socket.create_connection`` (each handshake of the verify loop).
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import runpy
import socket
import sys

KILLED = 137
OS_POINTS = ("replace", "rename", "fsync", "write", "unlink", "fchmod",
             "fchown", "chmod", "mkdir", "symlink", "rmdir")

_real_open = os.open
_real_write = os.write
_real_fstat = os.fstat
_point = os.environ.get("CERTFLEET_FAULT_POINT", "")
_kill_at = int(os.environ.get("CERTFLEET_FAULT_AT", "0") or 0)
_raise = os.environ.get("CERTFLEET_FAULT_MODE") == "raise"
_log_path = os.environ.get("CERTFLEET_FAULT_LOG", "")
_counts: dict = {}
_fd_paths: dict = {}


def _log(record: dict) -> None:
    if not _log_path:
        return
    fd = _real_open(_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        _real_write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def _count(point: str) -> None:
    """Count a call of ``point``; die if it is the chosen one."""
    _counts[point] = _counts.get(point, 0) + 1
    _log({"call": point})
    if point == _point and _counts[point] == _kill_at:
        if _raise:
            _log({"failed": point, "at": _kill_at})
            raise OSError(errno.EIO, f"Input/output error injected at {point}")
        _log({"killed": point, "at": _kill_at})
        os._exit(KILLED)


def _wrap_os(name: str) -> None:
    real = getattr(os, name)

    def wrapper(*args, **kwargs):
        _count(f"os.{name}")
        result = real(*args, **kwargs)
        if name in ("fchmod", "chmod"):
            target = _fd_paths.get(args[0], f"fd {args[0]}") \
                if name == "fchmod" else os.fsdecode(args[0])
            _log({"mode_set": target, "mode": args[1]})
        return result

    setattr(os, name, wrapper)


def _open(path, flags, mode=0o777, *args, **kwargs):
    if flags & os.O_CREAT:
        _count("os.create")
    fd = _real_open(path, flags, mode, *args, **kwargs)
    _fd_paths[fd] = os.fsdecode(path)
    if flags & os.O_CREAT:
        _log({"created": os.fsdecode(path), "mode": _real_fstat(fd).st_mode & 0o7777})
    return fd


def _wrap_run_command() -> None:
    from ansible.module_utils.basic import AnsibleModule

    real = AnsibleModule.run_command

    def run_command(self, *args, **kwargs):
        _count("run_command")
        result = real(self, *args, **kwargs)
        _count("run_command.after")
        return result

    AnsibleModule.run_command = run_command


def _wrap_connect() -> None:
    real = socket.create_connection

    def create_connection(*args, **kwargs):
        _count("socket.create_connection")
        return real(*args, **kwargs)

    socket.create_connection = create_connection


def main() -> None:
    module = sys.argv[1]
    os.umask(0)
    for name in OS_POINTS:
        _wrap_os(name)
    os.open = _open
    _wrap_run_command()
    _wrap_connect()
    atexit.register(lambda: _log({"counts": _counts}))
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__")


if __name__ == "__main__":
    main()
