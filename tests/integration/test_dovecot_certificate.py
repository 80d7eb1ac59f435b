"""dovecot_certificate against a real Dovecot: what is served, what is on disk.

Every test runs the module as a real module process against a Dovecot that
the fixture started with a configuration file of its own and three loopback
listeners: IMAPS (implicit TLS), IMAP and POP3 (both STARTTLS). What Dovecot
serves is read with the standard library's IMAP and POP3 clients; reloads
are counted in the instance's own log.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.dovecot import Dovecot, require_dovecot
from tests.support.modules import run_module
from tests.support.pki import PKI, Leaf, sha256_hex

MODULE = "dovecot_certificate"
PROTOCOLS = ("tls", "imap", "pop3")


def start_dovecot(tmp_path: Path, pki: PKI, ssl_settings: str | None = None,
                  ) -> Dovecot:
    require_dovecot()
    paths = pki.rsa.write(tmp_path / "live")
    server = Dovecot(None, paths["fullchain"], paths["privkey"],
                     ssl_settings=ssl_settings)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def dovecot_site(tmp_path: Path, pki: PKI) -> Iterator[Dovecot]:
    """A started Dovecot serving ``pki.rsa`` from tmp_path/live."""
    server = start_dovecot(tmp_path, pki)
    try:
        yield server
    finally:
        server.stop()


def files_of(site: Dovecot) -> dict:
    live = site.cert_path.parent
    return {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(live.iterdir())}


def args_for(site: Dovecot, leaf: Leaf, tmp_path: Path, **extra) -> dict:
    """Module arguments deploying ``leaf`` to the fixture's Dovecot.

    ``config_file`` makes the module's own default commands drive this
    instance: ``doveconf -c FILE -n`` and ``doveadm -c FILE reload``.
    """
    src = leaf.write(tmp_path / f"src-{leaf.sha256[:8]}")
    args = {
        "cert_src": str(src["cert"]),
        "chain_src": str(src["chain"]),
        "key_src": str(src["privkey"]),
        "cert_path": str(site.cert_path),
        "key_path": str(site.key_path),
        "config_file": str(site.conf_path),
        "backup_dir": str(tmp_path / "state"),
        "verify_endpoint": site.endpoints,
        "verify_backoff": 0.2,
        "verify_max_backoff": 0.4,
    }
    args.update(extra)
    return args


def chain_of(leaf: Leaf) -> list:
    chain = x509.load_pem_x509_certificates(leaf.chain_pem)
    return [leaf.sha256] + [sha256_hex(cert) for cert in chain]


def assert_serves(site: Dovecot, leaf: Leaf) -> None:
    """IMAPS, IMAP STARTTLS and POP3 STLS all hand out ``leaf`` and its chain."""
    for protocol in PROTOCOLS:
        assert site.served_chain_sha256(protocol) == chain_of(leaf), protocol


def assert_no_key_bytes(result: dict, *leaves: Leaf) -> None:
    text = json.dumps(result)
    for leaf in leaves:
        for line in leaf.key_pem.decode().splitlines()[1:-1]:
            assert line not in text


def test_deploy_is_served_on_every_endpoint(dovecot_site, pki, tmp_path) -> None:
    result = run_module(MODULE, args_for(dovecot_site, pki.ecdsa, tmp_path))
    assert result.get("failed") is not True, result["msg"]
    assert result["changed"] is True
    assert_serves(dovecot_site, pki.ecdsa)
    assert dovecot_site.reloads() == 1
    served = result["served"]["endpoints"]
    assert [e["starttls"] for e in served] == [None, "imap", "pop3"]
    on_disk = files_of(dovecot_site)
    assert on_disk["fullchain.pem"] == (pki.ecdsa.fullchain_pem, 0o644)
    assert on_disk["privkey.pem"] == (pki.ecdsa.key_pem, 0o600)
    assert result["dovecot"] == {
        "version": result["dovecot"]["version"],
        "cert_setting": f"ssl_cert = <{dovecot_site.cert_path}",
        "key_setting": f"ssl_key = <{dovecot_site.key_path}",
    }
    assert result["dovecot"]["version"].startswith("2.")
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_rerun_changes_nothing_and_does_not_reload(dovecot_site, pki, tmp_path):
    args = args_for(dovecot_site, pki.ecdsa, tmp_path)
    assert run_module(MODULE, args)["changed"] is True
    disk = files_of(dovecot_site)
    again = run_module(MODULE, args)
    assert again["changed"] is False, again.get("msg")
    assert again["served"]["sha256"] == pki.ecdsa.sha256
    assert dovecot_site.reloads() == 1
    assert files_of(dovecot_site) == disk


def test_check_mode_changes_nothing_and_diff_shows_metadata(
        dovecot_site, pki, tmp_path) -> None:
    disk = files_of(dovecot_site)
    result = run_module(MODULE, args_for(dovecot_site, pki.ecdsa, tmp_path),
                        check_mode=True, diff=True)
    assert result["changed"] is True
    assert files_of(dovecot_site) == disk
    assert dovecot_site.reloads() == 0
    assert dovecot_site.served_sha256() == pki.rsa.sha256
    assert pki.rsa.sha256 in result["diff"]["before"]
    assert pki.ecdsa.sha256 in result["diff"]["after"]
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_bad_input_fails_and_touches_nothing(dovecot_site, pki, tmp_path) -> None:
    """F11, F12, F14 and friends: failed with the cause, no file, no reload."""
    disk = files_of(dovecot_site)
    other = pki.leaf(key_type="ecdsa")
    (tmp_path / "other.key").write_bytes(other.key_pem)
    elsewhere = tmp_path / "elsewhere.pem"
    cases = {
        "F12 key of another generation": (
            {"key_src": str(tmp_path / "other.key")}, "does not match"),
        "F11 empty cert_path": ({"cert_path": ""}, "cert_path is empty"),
        "F11 relative key_path": ({"key_path": "privkey.pem"}, "relative path"),
        "F14 not yet valid": (
            {"cert_src": None, "chain_src": None, "key_src": None,
             "cert_content": pki.not_yet_valid.cert_pem.decode(),
             "key_content": pki.not_yet_valid.key_pem.decode()}, "not yet valid"),
        "a file Dovecot does not read": (
            {"cert_path": str(elsewhere)},
            f"Dovecot does not read cert_path {elsewhere}"),
    }
    for name, (extra, words) in cases.items():
        args = args_for(dovecot_site, pki.ecdsa, tmp_path)
        args.update(extra)
        args = {k: v for k, v in args.items() if v is not None}
        result = run_module(MODULE, args)
        assert result.get("failed") is True, name
        assert words in result["msg"], (name, result["msg"])
        assert files_of(dovecot_site) == disk, name
        assert not elsewhere.exists(), name
        assert not (tmp_path / "state" / "journal.json").exists(), name
        assert_no_key_bytes(result, pki.rsa, pki.ecdsa, other)
    assert dovecot_site.reloads() == 0
    assert dovecot_site.served_sha256() == pki.rsa.sha256


@pytest.mark.parametrize(("settings", "words"), [
    ("ssl_cert = {cert}\nssl_key = <{key}\n", "without the '<' Dovecot 2.3 needs"),
    ("ssl_cert = <{cert}\nssl_key = {key}\n", "ssl_key = /"),
])
def test_f11_settings_are_refused_before_anything(
        tmp_path: Path, pki: PKI, settings: str, words: str) -> None:
    """Dovecot starts with these and doveconf -n is happy; handshakes fail.

    The module reads the settings first and refuses, touching nothing.
    """
    live = tmp_path / "live"
    server = start_dovecot(tmp_path, pki, settings.format(
        cert=live / "fullchain.pem", key=live / "privkey.pem"))
    try:
        disk = files_of(server)
        result = run_module(MODULE, args_for(server, pki.ecdsa, tmp_path))
        assert result["failed"] is True
        assert words in result["msg"], result["msg"]
        assert files_of(server) == disk
        assert server.reloads() == 0
        unchecked = run_module(MODULE, args_for(
            server, pki.ecdsa, tmp_path, check_settings=False, verify_attempts=1))
        assert unchecked["failed"] is True  # the handshakes find what was skipped
        assert files_of(server) == disk
    finally:
        server.stop()


def broken_config(site: Dovecot, tmp_path: Path) -> str:
    conf = tmp_path / "broken.conf"
    conf.write_text(site.conf_path.read_text() + "no_such_setting = yes\n")
    return str(conf)


def test_config_test_failure_restores_files_without_reload(
        dovecot_site, pki, tmp_path) -> None:
    disk = files_of(dovecot_site)
    args = args_for(dovecot_site, pki.ecdsa, tmp_path, validate_command=[
        "doveconf", "-c", broken_config(dovecot_site, tmp_path), "-n"])
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "config test failed for dovecot" in result["msg"]
    assert "no_such_setting" in result["msg"]
    assert result["rolled_back"] is True
    assert files_of(dovecot_site) == disk
    assert dovecot_site.reloads() == 0
    assert dovecot_site.served_sha256() == pki.rsa.sha256


def test_reload_failure_serves_the_old_certificate_again(
        dovecot_site, pki, tmp_path) -> None:
    disk = files_of(dovecot_site)
    marker = tmp_path / "reloaded-once"
    script = tmp_path / "reload.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"{subprocess.list2cmdline(dovecot_site.reload_command)} || exit 1\n"
        f"if [ ! -e {marker} ]; then touch {marker}; "
        "echo 'reload reported a failure' >&2; exit 1; fi\n")
    script.chmod(0o700)
    result = run_module(MODULE, args_for(dovecot_site, pki.ecdsa, tmp_path,
                                         reload_command=[str(script)]))
    assert result["failed"] is True
    assert "reload failed for dovecot" in result["msg"]
    assert "reload reported a failure" in result["msg"]
    assert result["rolled_back"] is True and result["rollback_failed"] is False
    assert files_of(dovecot_site) == disk
    assert_serves(dovecot_site, pki.rsa)


def test_verify_mismatch_rolls_back(dovecot_site, pki, tmp_path) -> None:
    """F05: files replaced, Dovecot not reloaded: it still serves the old."""
    disk = files_of(dovecot_site)
    result = run_module(MODULE, args_for(dovecot_site, pki.ecdsa, tmp_path,
                                         reload_command=["true"]))
    assert result["failed"] is True
    assert pki.rsa.sha256 in result["msg"]
    assert result["rolled_back"] is True
    assert "are served again" in result["msg"]
    assert files_of(dovecot_site) == disk
    assert dovecot_site.served_sha256() == pki.rsa.sha256


def test_files_in_place_but_old_served_is_converged(dovecot_site, pki, tmp_path):
    dovecot_site.cert_path.write_bytes(pki.ecdsa.fullchain_pem)
    dovecot_site.key_path.write_bytes(pki.ecdsa.key_pem)
    assert dovecot_site.served_sha256() == pki.rsa.sha256
    result = run_module(MODULE, args_for(dovecot_site, pki.ecdsa, tmp_path))
    assert result["changed"] is True, result.get("msg")
    assert "did not serve them" in result["reason"]
    assert_serves(dovecot_site, pki.ecdsa)


def test_starttls_port_needs_the_imap_protocol(dovecot_site, pki, tmp_path):
    """F10: implicit TLS to the IMAP port fails, saying why; imap succeeds."""
    plain = f"127.0.0.1:{dovecot_site.imap_port}"
    wrong = run_module(MODULE, args_for(dovecot_site, pki.ecdsa, tmp_path,
                                        verify_endpoint=[plain],
                                        verify_attempts=1))
    assert wrong["failed"] is True
    assert "answered in plain text" in wrong["msg"]
    assert dovecot_site.served_sha256() == pki.rsa.sha256
    right = run_module(MODULE, args_for(dovecot_site, pki.ecdsa, tmp_path,
                                        verify_endpoint=[plain],
                                        verify_protocol="imap"))
    assert right["changed"] is True, right.get("msg")
    assert right["served"]["endpoints"][0]["starttls"] == "imap"


def test_concurrent_runs_serialise_and_leave_one_pair(dovecot_site, pki, tmp_path):
    leaves = [pki.ecdsa, pki.leaf(key_type="rsa")]
    procs = []
    for number, leaf in enumerate(leaves):
        args = args_for(dovecot_site, leaf, tmp_path / str(number),
                        backup_dir=str(tmp_path / "state"))
        procs.append(subprocess.Popen(
            [sys.executable, "-m",
             f"ansible_collections.certfleet.deploy.plugins.modules.{MODULE}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=os.environ.copy()))
        procs[-1].stdin.write(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        procs[-1].stdin.close()
    results = [json.loads(p.stdout.read()) for p in procs]
    for proc in procs:
        proc.wait(timeout=120)
    assert all(r["changed"] and not r.get("failed") for r in results), results
    on_disk = dovecot_site.cert_path.read_bytes()
    winner = next(leaf for leaf in leaves if leaf.fullchain_pem == on_disk)
    assert dovecot_site.key_path.read_bytes() == winner.key_pem
    assert_serves(dovecot_site, winner)


def test_served_means_every_new_connection(dovecot_site, pki, tmp_path) -> None:
    result = run_module(MODULE, args_for(dovecot_site, pki.ecdsa, tmp_path))
    assert result["changed"] is True
    seen = {dovecot_site.served_sha256(p) for p in PROTOCOLS * 8}
    assert seen == {pki.ecdsa.sha256}
