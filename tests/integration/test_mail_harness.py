"""The Postfix and Dovecot harnesses against the real servers.

What the module tests rely on: each harness serves the certificate it was
given on every listener, counts reloads, serves the old certificate until a
reload (F05), and leaves no process and no directory behind once stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.dovecot import Dovecot, require_dovecot
from tests.support.nginx import _alive, _children
from tests.support.pki import PKI
from tests.support.postfix import Postfix, require_postfix


def eventually(check: Callable[[], object], timeout: float = 10.0):
    """The first true value of ``check()`` within ``timeout`` s, else its last.

    Logs are written by another process and services respawn after a reload:
    what a test reads right after an action may lag a little behind it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_postfix_serves_reloads_and_stops_clean(tmp_path: Path, pki: PKI) -> None:
    require_postfix()
    live = pki.rsa.write(tmp_path / "live")
    server = Postfix(None, live["fullchain"], live["privkey"])
    try:
        server.start()
        assert server.served_sha256() == pki.rsa.sha256
        assert server.served_sha256(implicit=True) == pki.rsa.sha256
        Path(live["fullchain"]).write_bytes(pki.ecdsa.fullchain_pem)
        Path(live["privkey"]).write_bytes(pki.ecdsa.key_pem)
        assert server.served_sha256() == pki.rsa.sha256  # idle smtpd, old files
        server.reload()
        assert eventually(lambda: server.reloads() == 1)
        master = server.master_pid()
        children = eventually(lambda: _children(master))
        assert children
    finally:
        server.stop()
    assert not any(_alive(pid) for pid in [master, *children])
    assert not server.base_dir.exists()


def test_dovecot_serves_reloads_and_stops_clean(tmp_path: Path, pki: PKI) -> None:
    require_dovecot()
    live = pki.rsa.write(tmp_path / "live")
    server = Dovecot(None, live["fullchain"], live["privkey"])
    try:
        server.start()
        for protocol in ("tls", "imap", "pop3"):
            assert server.served_sha256(protocol) == pki.rsa.sha256, protocol
        Path(live["fullchain"]).write_bytes(pki.ecdsa.fullchain_pem)
        Path(live["privkey"]).write_bytes(pki.ecdsa.key_pem)
        assert server.served_sha256() == pki.rsa.sha256  # read at start only
        server.reload()
        assert eventually(lambda: server.reloads() == 1)
        master = server.master_pid()
        children = eventually(lambda: _children(master))
        assert children
    finally:
        server.stop()
    assert not any(_alive(pid) for pid in [master, *children])
    assert not server.base_dir.exists()


@pytest.mark.parametrize("harness", ["postfix", "dovecot"])
def test_a_failed_start_leaves_nothing(tmp_path: Path, pki: PKI, harness: str):
    """A configuration the server refuses: an error with its words, no leftovers."""
    live = pki.rsa.write(tmp_path / "live")
    if harness == "postfix":
        require_postfix()
        server = Postfix(None, live["fullchain"], live["privkey"],
                         extra_main="queue_directory = /nonexistent/queue\n")
    else:
        require_dovecot()
        server = Dovecot(None, live["fullchain"], live["privkey"],
                         ssl_settings="ssl_cert = </nonexistent.pem\n")
    with pytest.raises(RuntimeError, match="nonexistent"):
        try:
            server.start()
        finally:
            server.stop()
    assert not server.base_dir.exists()
