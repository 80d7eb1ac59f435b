# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Config-test and reload commands, run with a timeout.

Commands are argv lists (a string is split like a shell would, but no shell
runs unless asked). ``AnsibleModule.run_command`` has no timeout of its own,
so the command runs under coreutils ``timeout``, which also turns a missing
executable into an exit code instead of an exception.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass

from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    CommandError,
)

TIMED_OUT = 124
NOT_FOUND = 127
KILL_SIGNAL = 9
KILLED = 128 + KILL_SIGNAL
_STDERR_LIMIT = 2000


@dataclass
class Command:
    """A command as the operator gave it, ready to run."""

    argv: list
    what: str
    server: str
    use_shell: bool = False
    shell_text: str = ""

    @property
    def text(self) -> str:
        return self.shell_text if self.use_shell else shlex.join(self.argv)


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    duration_ms: int


def make(value, what: str, server: str, use_shell: bool = False) -> Command | None:
    """Build a ``Command`` from a list or a string; empty means no command."""
    if not value:
        return None
    if isinstance(value, list):
        argv = [str(v) for v in value]
        text = shlex.join(argv)
    else:
        argv, text = shlex.split(value), str(value)
    return Command(argv=argv, what=what, server=server, use_shell=use_shell,
                   shell_text=text)


def with_option(argv: list, flag: str, value: str | None) -> list:
    """``argv`` with ``flag value`` right after the program, when ``value``.

    For default commands of a server instance with a configuration of its own
    (``postfix -c DIR check``, ``doveconf -c FILE -n``).
    """
    if not value or not argv:
        return list(argv)
    return [argv[0], flag, value, *argv[1:]]


def first_found(module, programs: tuple) -> str:
    """The first of ``programs`` found on PATH, else the first one.

    Distributions name some tools differently (``apachectl``, Debian's
    ``apache2ctl``); when none is found, the first name is the one reported
    missing.
    """
    for program in programs:
        if module.get_bin_path(program):
            return program
    return programs[0]


def check_available(module, command: Command | None) -> None:
    """Fail before anything is touched when the executable is missing."""
    if command is None or command.use_shell:
        return
    program = command.argv[0]
    if "/" in program:
        found = os.access(program, os.X_OK) and not os.path.isdir(program)
    else:
        found = module.get_bin_path(program)
    if not found:
        raise CommandError(
            f"The {command.what} command for {command.server} cannot run: "
            f"{command.argv[0]!r} was not found on this host.",
            cmd=command.text,
        )


def pin_program(module, command: Command | None) -> None:
    """Run the program that ``check_available`` found, by its full path.

    The check searches the sbin directories too; the command later runs with
    the module's PATH, which may lack them. Pinning the path makes both agree.
    """
    if command is None or command.use_shell or "/" in command.argv[0]:
        return
    found = module.get_bin_path(command.argv[0])
    if found:
        command.argv[0] = found


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _STDERR_LIMIT else "..." + text[-_STDERR_LIMIT:]


def run(module, command: Command, timeout: int) -> Outcome:
    """Run ``command``; raise ``CommandError`` with its stderr unless rc is 0."""
    wrapper = ["timeout", "--kill-after=5", f"{timeout}s"]
    if command.use_shell:
        args = wrapper + ["/bin/sh", "-c", command.shell_text]
    else:
        args = wrapper + command.argv
    started = time.monotonic()
    rc, out, err = module.run_command(args, check_rc=False)
    outcome = Outcome(rc, out, err, int((time.monotonic() - started) * 1000))
    details = {"cmd": command.text, "rc": rc, "stdout": _tail(out),
               "stderr": _tail(err)}
    # timeout(1) exits 124; a command that ignores SIGTERM is killed along with
    # timeout itself, which then shows as signal 9. Only the clock tells both
    # apart from a command that merely exits with one of those codes.
    ran_out = outcome.duration_ms >= timeout * 1000
    if ran_out and rc in (TIMED_OUT, KILLED, -KILL_SIGNAL):
        raise CommandError(
            f"The {command.what} for {command.server} timed out after "
            f"{timeout} s: `{command.text}` was stopped.",
            **details,
        )
    if rc != 0:
        cause = _tail(err) or _tail(out) or "no output"
        raise CommandError(
            f"The {command.what} failed for {command.server}: "
            f"`{command.text}` exited {rc}: {cause}",
            **details,
        )
    return outcome
