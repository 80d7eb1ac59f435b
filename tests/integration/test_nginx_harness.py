"""Tests of the nginx harness against the real nginx from Debian's package."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support import nginx as nginx_support
from tests.support.nginx import Nginx, served_chain_der
from tests.support.pki import PKI

pytestmark = pytest.mark.integration


def _der_sha256(pki: PKI) -> str:
    """SHA-256 of the intermediate's DER, as the harness reports it."""
    der = pki.intermediate_cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _replace(path: Path, data: bytes) -> None:
    """Swap a live file by rename, as a careful deploy would."""
    staged = path.with_name(f".{path.name}.new")
    staged.write_bytes(data)
    staged.chmod(path.stat().st_mode & 0o777)
    os.replace(staged, path)


def _verified_handshake(
    server: Nginx, cafile: Path, name: str, version: ssl.TLSVersion
) -> tuple[str | None, bytes]:
    """Handshake trusting only ``cafile`` and checking ``name``.

    Returns the protocol version and the leaf's DER.
    """
    context = ssl.create_default_context(cafile=str(cafile))
    context.minimum_version = context.maximum_version = version
    with socket.create_connection((server.host, server.port), timeout=3) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            return tls.version(), tls.getpeercert(binary_form=True)


def test_serves_the_leaf_and_the_intermediate(nginx_site: Nginx, pki: PKI) -> None:
    assert nginx_site.served_sha256() == pki.rsa.sha256
    assert nginx_site.served_chain_sha256() == [pki.rsa.sha256, _der_sha256(pki)]


def test_served_chain_verifies_against_the_root(
    nginx_site: Nginx, pki: PKI, tmp_path: Path
) -> None:
    root = pki.write_root(tmp_path / "root.pem")

    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        got_version, leaf = _verified_handshake(
            nginx_site, root, "www.example.com", version
        )
        assert hashlib.sha256(leaf).hexdigest() == pki.rsa.sha256
        assert got_version == version.name.replace("_", ".")


def test_validate_command_accepts_the_config(nginx_site: Nginx) -> None:
    result = subprocess.run(
        nginx_site.validate_command, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_workers_are_children_of_the_master(nginx_site: Nginx) -> None:
    master = nginx_site.master_pid()
    workers = nginx_site.worker_pids()

    assert master is not None and master == int(nginx_site.pid_path.read_text())
    assert workers
    assert workers == nginx_support._children_by_scan(master)
    for pid in workers:
        assert nginx_support._proc_stat(pid) == ("nginx", "S", master)


def test_reload_serves_the_swapped_files(nginx_site: Nginx, pki: PKI) -> None:
    live = nginx_site.cert_path.parent
    _replace(live / "privkey.pem", pki.ecdsa.key_pem)
    _replace(live / "fullchain.pem", pki.ecdsa.fullchain_pem)

    nginx_site.reload()

    served = nginx_site.wait_until_served(pki.ecdsa.sha256, timeout=2.0)
    assert served == pki.ecdsa.sha256
    assert nginx_site.served_chain_sha256()[1:] == [_der_sha256(pki)]


def test_stop_closes_the_port_and_ends_the_master(nginx_site: Nginx) -> None:
    master = nginx_site.master_pid()
    workers = nginx_site.worker_pids()
    assert master is not None and workers

    nginx_site.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((nginx_site.host, nginx_site.port), timeout=1)
    for pid in (master, *workers):
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} still exists"
    assert nginx_site.master_pid() is None
    assert not nginx_site.pid_path.exists()
    nginx_site.stop()  # a second stop is harmless


def test_stop_kills_a_master_that_ignores_sigterm(
    nginx_site: Nginx, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = nginx_site.master_pid()
    workers = nginx_site.worker_pids()
    assert master is not None and workers
    os.kill(master, signal.SIGSTOP)  # a stopped process leaves SIGTERM pending
    monkeypatch.setattr(nginx_support, "STOP_TIMEOUT", 0.3)

    nginx_site.stop()

    assert not Path(f"/proc/{master}").exists()
    for pid in workers:
        stat = nginx_support._proc_stat(pid)  # comm, state, ppid
        assert stat is None or stat[1] == "Z", f"worker {pid} still runs"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((nginx_site.host, nginx_site.port), timeout=1)


def test_context_manager_starts_and_stops(pki: PKI, tmp_path: Path) -> None:
    paths = pki.ecdsa.write(tmp_path / "live")

    with Nginx(tmp_path / "nginx", paths["fullchain"], paths["privkey"]) as server:
        assert server.served_sha256() == pki.ecdsa.sha256
        master = server.master_pid()

    assert master is not None and not Path(f"/proc/{master}").exists()


def test_ed25519_leaf_works_with_python_clients(pki: PKI, tmp_path: Path) -> None:
    """nginx 1.22 on OpenSSL 3.0 serves an Ed25519 leaf over TLS 1.2 and 1.3.

    Clients that do not offer Ed25519 signatures (browsers, as of now) get a
    handshake failure instead; Python's ssl offers them.
    """
    paths = pki.ed25519.write(tmp_path / "live")
    root = pki.write_root(tmp_path / "root.pem")

    with Nginx(tmp_path / "nginx", paths["fullchain"], paths["privkey"]) as server:
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            leaf = _verified_handshake(server, root, "example.com", version)[1]
            assert hashlib.sha256(leaf).hexdigest() == pki.ed25519.sha256


def test_refuses_non_loopback_hosts(pki: PKI, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Nginx(tmp_path, tmp_path / "c.pem", tmp_path / "k.pem", host="192.0.2.1")
    with pytest.raises(ValueError, match="loopback"):
        served_chain_der("192.0.2.1", 443)
