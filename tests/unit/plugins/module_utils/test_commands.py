"""Config-test and reload commands: our wrapper around real processes.

``LocalModule`` stands in for ``AnsibleModule`` with the two methods the
wrapper uses, backed by ``subprocess`` and ``shutil.which``, so every test
runs real commands and checks what the operator would read.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import commands
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    CommandError,
)

MISSING = "certfleet-no-such-program"


class LocalModule:
    """Just enough of AnsibleModule: run_command and get_bin_path."""

    def __init__(self) -> None:
        self.ran: list[list[str]] = []

    def run_command(self, args, check_rc=False):
        assert check_rc is False, "the wrapper must judge the exit code itself"
        self.ran.append(list(args))
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def get_bin_path(self, name):
        return shutil.which(name)


def command(value, use_shell: bool = False) -> commands.Command:
    made = commands.make(value, "config test", "nginx", use_shell=use_shell)
    assert made is not None
    return made


def failure(value, timeout: int = 10, use_shell: bool = False) -> CommandError:
    """Run a command that must fail; return the CommandError."""
    with pytest.raises(CommandError) as caught:
        commands.run(LocalModule(), command(value, use_shell), timeout)
    return caught.value


# --- make -------------------------------------------------------------------------


def test_make_from_a_list_keeps_each_argument() -> None:
    """A list is the argv as given; numbers become strings."""
    made = commands.make(["nginx", "-t", "-c", "/etc/my nginx/nginx.conf", 1],
                         "config test", "nginx")
    assert made.argv == ["nginx", "-t", "-c", "/etc/my nginx/nginx.conf", "1"]
    assert made.text == "nginx -t -c '/etc/my nginx/nginx.conf' 1"
    assert (made.what, made.server, made.use_shell) == ("config test", "nginx", False)


def test_make_from_a_string_splits_like_a_shell() -> None:
    """Quotes group words, as the operator expects; no shell is involved."""
    made = commands.make("haproxy -c -f '/etc/haproxy/my cfg.cfg'", "check", "haproxy")
    assert made.argv == ["haproxy", "-c", "-f", "/etc/haproxy/my cfg.cfg"]


@pytest.mark.parametrize("value", [None, "", []])
def test_make_without_a_command_gives_none(value) -> None:
    """An empty validate_command or reload_command means: run nothing."""
    assert commands.make(value, "reload", "nginx") is None


# --- check_available ---------------------------------------------------------------


def test_missing_program_is_reported_before_anything_runs() -> None:
    """A program not on PATH is named, with the command and the server."""
    module = LocalModule()
    with pytest.raises(CommandError) as caught:
        commands.check_available(module, command([MISSING, "-t"]))
    assert caught.value.message == (
        f"The config test command for nginx cannot run: {MISSING!r} was not "
        "found on this host."
    )
    assert caught.value.details == {"cmd": f"{MISSING} -t"}
    assert module.ran == []


def test_program_on_path_is_available() -> None:
    commands.check_available(LocalModule(), command(["sh", "-c", "exit 0"]))


def test_absolute_path_to_an_executable_is_available() -> None:
    commands.check_available(LocalModule(), command([sys.executable, "-V"]))


@pytest.mark.parametrize("kind", ["missing", "directory", "not executable"])
def test_absolute_path_that_cannot_run_is_refused(tmp_path: Path, kind: str) -> None:
    """A path that is absent, a directory or not executable is refused."""
    path = tmp_path / "bin" / "nginx"
    if kind == "directory":
        path.mkdir(parents=True)
    elif kind == "not executable":
        path.parent.mkdir()
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o644)
    with pytest.raises(CommandError) as caught:
        commands.check_available(LocalModule(), command([str(path), "-t"]))
    assert f"{str(path)!r} was not found on this host" in caught.value.message


def test_nothing_to_check_without_a_command_or_with_a_shell() -> None:
    """No command, or a shell command (its program is the shell's business)."""
    commands.check_available(LocalModule(), None)
    commands.check_available(LocalModule(), command(f"{MISSING} | true", True))


# --- run ----------------------------------------------------------------------------


def test_success_returns_output_and_runs_under_timeout() -> None:
    """rc 0: the outcome carries stdout, stderr and the duration."""
    module = LocalModule()
    outcome = commands.run(
        module, command(["sh", "-c", "echo syntax is ok; echo warn >&2"]), 10
    )
    assert (outcome.rc, outcome.stdout, outcome.stderr) == (
        0, "syntax is ok\n", "warn\n"
    )
    assert 0 <= outcome.duration_ms < 10_000
    assert module.ran[0][:3] == ["timeout", "--kill-after=5", "10s"]


def test_non_zero_exit_quotes_stderr() -> None:
    """A failing config test shows its exit code and stderr in the message."""
    script = "echo 'nginx: [emerg] cannot load certificate' >&2; exit 1"
    argv = ["sh", "-c", script]
    error = failure(argv)
    assert error.message == (
        f"The config test failed for nginx: `{shlex.join(argv)}` exited 1: "
        "nginx: [emerg] cannot load certificate"
    )
    assert error.details["rc"] == 1
    assert error.details["stderr"] == "nginx: [emerg] cannot load certificate"
    assert error.details["cmd"] == shlex.join(argv)


def test_non_zero_exit_without_stderr_quotes_stdout() -> None:
    error = failure(["sh", "-c", "echo configuration file test failed; exit 2"])
    assert error.message.endswith("exited 2: configuration file test failed")


def test_non_zero_exit_without_output_says_so() -> None:
    error = failure(["false"])
    assert error.message == (
        "The config test failed for nginx: `false` exited 1: no output"
    )


def test_long_stderr_is_cut_to_its_end() -> None:
    """A flood of output keeps the message readable: the last part is kept."""
    code = "import sys; sys.stderr.write('x' * 5000 + 'LAST LINE'); sys.exit(3)"
    error = failure([sys.executable, "-c", code])
    assert error.message.endswith("exited 3: ..." + "x" * 1991 + "LAST LINE")
    assert len(error.details["stderr"]) == 2003


def test_timeout_stops_the_command_and_says_so() -> None:
    """sleep 5 with a 1 s timeout: stopped after about a second, 'timed out'."""
    started = time.monotonic()
    error = failure(["sleep", "5"], timeout=1)
    assert time.monotonic() - started < 4
    assert error.message == (
        "The config test for nginx timed out after 1 s: `sleep 5` was stopped."
    )
    assert error.details["rc"] == commands.TIMED_OUT


def test_command_ignoring_sigterm_is_reported_as_timed_out() -> None:
    """A hung reload that ignores SIGTERM is still reported as a timeout."""
    error = failure(["sh", "-c", "trap '' TERM; sleep 30"], timeout=1)
    assert "timed out after 1 s" in error.message


def test_missing_executable_fails_with_rc_127() -> None:
    """A program that is not there fails with 127 and the reason in stderr."""
    error = failure([MISSING, "-t"])
    assert error.details["rc"] == commands.NOT_FOUND
    assert error.message.startswith(
        f"The config test failed for nginx: `{MISSING} -t` exited 127: "
    )
    assert "No such file or directory" in error.message


def test_shell_command_runs_in_a_shell() -> None:
    """use_shell: pipes and redirections work."""
    outcome = commands.run(LocalModule(), command("echo abc | tr a-c x-z", True), 10)
    assert outcome.stdout == "xyz\n"


def test_shell_command_keeps_its_quoting() -> None:
    """A quoted argument with a space reaches the shell as one word."""
    outcome = commands.run(LocalModule(), command("printf '%s' 'a b'", True), 10)
    assert outcome.stdout == "a b"
