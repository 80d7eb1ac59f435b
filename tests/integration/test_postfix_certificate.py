"""postfix_certificate against a real Postfix: what is served, what is on disk.

Every test runs the module as a real module process against a Postfix that
the fixture started on two loopback ports with a configuration directory of
its own: one listener where clients say STARTTLS, one with implicit TLS (as
on 465). What Postfix serves is read with the standard library's SMTP
client; reloads are counted in the instance's own maillog.
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

from tests.support.modules import run_module
from tests.support.pki import PKI, Leaf, sha256_hex
from tests.support.postfix import Postfix, require_postfix

MODULE = "postfix_certificate"


@pytest.fixture
def postfix_site(tmp_path: Path, pki: PKI) -> Iterator[Postfix]:
    """A started Postfix serving ``pki.rsa`` from tmp_path/live."""
    require_postfix()
    paths = pki.rsa.write(tmp_path / "live")
    server = Postfix(None, paths["fullchain"], paths["privkey"])
    try:
        server.start()
        yield server
    finally:
        server.stop()


def files_of(directory: Path) -> dict:
    return {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(directory.iterdir())}


def args_for(site: Postfix, leaf: Leaf, tmp_path: Path, **extra) -> dict:
    """Module arguments deploying ``leaf`` to the fixture's Postfix.

    ``config_dir`` makes the module's own default commands drive this
    instance: ``postfix -c DIR check`` and ``postfix -c DIR reload``.
    """
    src = leaf.write(tmp_path / f"src-{leaf.sha256[:8]}")
    args = {
        "cert_src": str(src["cert"]),
        "chain_src": str(src["chain"]),
        "key_src": str(src["privkey"]),
        "cert_path": str(site.cert_path),
        "key_path": str(site.key_path),
        "config_dir": str(site.config_dir),
        "backup_dir": str(tmp_path / "state"),
        "verify_endpoint": site.endpoints,
        "verify_backoff": 0.2,
        "verify_max_backoff": 0.4,
    }
    args.update(extra)
    return args


def assert_no_key_bytes(result: dict, *leaves: Leaf) -> None:
    text = json.dumps(result)
    for leaf in leaves:
        for line in leaf.key_pem.decode().splitlines()[1:-1]:
            assert line not in text


def chain_of(leaf: Leaf) -> list:
    """SHA-256 of the leaf and of each certificate of its chain."""
    chain = x509.load_pem_x509_certificates(leaf.chain_pem)
    return [leaf.sha256] + [sha256_hex(cert) for cert in chain]


def assert_serves(site: Postfix, leaf: Leaf) -> None:
    """Both listeners hand ``leaf`` and its intermediate to a new client."""
    assert site.served_chain_sha256() == chain_of(leaf)
    assert site.served_chain_sha256(implicit=True) == chain_of(leaf)


def test_deploy_is_served_on_every_endpoint(postfix_site, pki, tmp_path) -> None:
    live = Path(postfix_site.cert_path).parent
    result = run_module(MODULE, args_for(postfix_site, pki.ecdsa, tmp_path))
    assert result.get("failed") is not True, result["msg"]
    assert result["changed"] is True
    assert_serves(postfix_site, pki.ecdsa)
    assert postfix_site.reloads() == 1
    served = result["served"]["endpoints"]
    assert [e["endpoint"] for e in served] == postfix_site.endpoints
    assert [e["starttls"] for e in served] == ["smtp", None]
    assert {e["sha256"] for e in served} == {pki.ecdsa.sha256}
    on_disk = files_of(live)
    assert on_disk["fullchain.pem"] == (pki.ecdsa.fullchain_pem, 0o644)
    assert on_disk["privkey.pem"] == (pki.ecdsa.key_pem, 0o600)
    assert Path(result["files"][0]["backup"]).read_bytes() == pki.rsa.fullchain_pem
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_rerun_changes_nothing_and_does_not_reload(postfix_site, pki, tmp_path):
    args = args_for(postfix_site, pki.ecdsa, tmp_path)
    assert run_module(MODULE, args)["changed"] is True
    disk = files_of(Path(postfix_site.cert_path).parent)
    again = run_module(MODULE, args)
    assert again["changed"] is False, again.get("msg")
    assert again["served"]["sha256"] == pki.ecdsa.sha256
    assert postfix_site.reloads() == 1
    assert files_of(Path(postfix_site.cert_path).parent) == disk


def test_check_mode_changes_nothing_and_diff_shows_metadata(
        postfix_site, pki, tmp_path) -> None:
    live = Path(postfix_site.cert_path).parent
    disk = files_of(live)
    result = run_module(MODULE, args_for(postfix_site, pki.ecdsa, tmp_path),
                        check_mode=True, diff=True)
    assert result["changed"] is True
    assert files_of(live) == disk
    assert postfix_site.reloads() == 0
    assert postfix_site.served_sha256() == pki.rsa.sha256
    assert pki.rsa.sha256 in result["diff"]["before"]
    assert pki.ecdsa.sha256 in result["diff"]["after"]
    assert "private key (mode 0600)" in result["diff"]["after"]
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_bad_input_fails_and_touches_nothing(postfix_site, pki, tmp_path) -> None:
    """F09, F11, F14 and friends: failed with the cause, no file, no reload."""
    live = Path(postfix_site.cert_path).parent
    disk = files_of(live)
    other = pki.leaf(key_type="ecdsa")
    (tmp_path / "other.key").write_bytes(other.key_pem)
    (tmp_path / "enc.key").write_bytes(pki.ecdsa.encrypted_key_pem(b"pw"))
    cases = {
        "F09 key of another certificate": (
            {"key_src": str(tmp_path / "other.key")}, "does not match"),
        "F03 encrypted key": ({"key_src": str(tmp_path / "enc.key")}, "encrypted"),
        "F11 empty cert_path": ({"cert_path": ""}, "cert_path is empty"),
        "F11 relative key_path": (
            {"key_path": "live/privkey.pem"}, "is a relative path"),
        "F14 expired": (
            {"cert_src": None, "chain_src": None, "key_src": None,
             "cert_content": pki.expired.cert_pem.decode(),
             "key_content": pki.expired.key_pem.decode()}, "expired"),
        "key_path without cert_path": (
            {"cert_path": None}, "cert_path"),
        "bad table name": ({"sni_maps": ["hash:sni"]}, "absolute source file"),
    }
    for name, (extra, words) in cases.items():
        args = args_for(postfix_site, pki.ecdsa, tmp_path)
        args.update(extra)
        args = {k: v for k, v in args.items() if v is not None}
        result = run_module(MODULE, args)
        assert result.get("failed") is True, name
        assert words in result["msg"], (name, result["msg"])
        assert files_of(live) == disk, name
        assert not (tmp_path / "state" / "journal.json").exists(), name
        assert_no_key_bytes(result, pki.rsa, pki.ecdsa, other)
    assert postfix_site.reloads() == 0
    assert postfix_site.served_sha256() == pki.rsa.sha256


def broken_config_dir(site: Postfix, tmp_path: Path) -> str:
    """A copy of the instance's configuration whose master.cf has a bad line."""
    broken = tmp_path / "broken-etc"
    broken.mkdir()
    (broken / "main.cf").write_text((site.config_dir / "main.cf").read_text())
    (broken / "master.cf").write_text(
        (site.config_dir / "master.cf").read_text() + "not_a_service_line\n")
    return str(broken)


def test_config_test_failure_restores_files_without_reload(
        postfix_site, pki, tmp_path) -> None:
    live = Path(postfix_site.cert_path).parent
    disk = files_of(live)
    broken = broken_config_dir(postfix_site, tmp_path)
    args = args_for(postfix_site, pki.ecdsa, tmp_path,
                    validate_command=["postfix", "-c", broken, "check"])
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "config test failed for postfix" in result["msg"]
    assert "bad field count" in result["msg"]
    assert result["rolled_back"] is True
    assert files_of(live) == disk
    assert postfix_site.reloads() == 0
    assert postfix_site.served_sha256() == pki.rsa.sha256


def reload_script(tmp_path: Path, first: str, later: str) -> list:
    """A reload command that runs ``first`` the first time, ``later`` after."""
    marker = tmp_path / "reloaded-once"
    script = tmp_path / "reload.sh"
    script.write_text(
        "#!/bin/sh\nset -e\n"
        f"if [ ! -e {marker} ]; then touch {marker}\n{first}\n"
        f"else\n{later}\nfi\n")
    script.chmod(0o700)
    return [str(script)]


def test_reload_failure_serves_the_old_certificate_again(
        postfix_site, pki, tmp_path) -> None:
    live = Path(postfix_site.cert_path).parent
    disk = files_of(live)
    reload = subprocess.list2cmdline(postfix_site.reload_command)
    args = args_for(postfix_site, pki.ecdsa, tmp_path, reload_command=reload_script(
        tmp_path, f"{reload}\necho 'reload reported a failure' >&2\nexit 1",
        reload))
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "reload failed for postfix" in result["msg"]
    assert "reload reported a failure" in result["msg"]
    assert result["rolled_back"] is True and result["rollback_failed"] is False
    assert files_of(live) == disk
    assert_serves(postfix_site, pki.rsa)


def test_verify_mismatch_rolls_back(postfix_site, pki, tmp_path) -> None:
    """F05: files replaced but Postfix never reloaded: its idle smtpd still
    has the old certificate. Caught, and undone."""
    live = Path(postfix_site.cert_path).parent
    disk = files_of(live)
    result = run_module(MODULE, args_for(postfix_site, pki.ecdsa, tmp_path,
                                         reload_command=["true"]))
    assert result["failed"] is True
    assert pki.rsa.sha256 in result["msg"]
    assert result["rolled_back"] is True
    assert "are served again" in result["msg"]
    assert files_of(live) == disk
    assert postfix_site.served_sha256() == pki.rsa.sha256


def test_tls_not_available_after_reload_is_caught_and_rolled_back(
        postfix_site, pki, tmp_path) -> None:
    """F09: Postfix reloads fine, then answers STARTTLS with 454.

    The reload command is an operator's that also applies a main.cf change
    made in the same window: it points smtpd_tls_key_file at a key file that
    does not exist, as a template with a wrong variable would. ``postfix
    reload`` exits 0; smtpd cannot load its key, so it answers ``454 4.7.0 TLS
    not available due to local problem`` and drops implicit-TLS clients. The
    second run of the command (the rollback's) puts the setting back.
    """
    live = Path(postfix_site.cert_path).parent
    disk = files_of(live)
    postconf = f"/usr/sbin/postconf -c {postfix_site.config_dir} -e"
    reload = subprocess.list2cmdline(postfix_site.reload_command)
    missing = live / "no-such.key"
    args = args_for(postfix_site, pki.ecdsa, tmp_path, reload_command=reload_script(
        tmp_path,
        f"{postconf} smtpd_tls_key_file={missing}\n{reload}",
        f"{postconf} smtpd_tls_key_file={postfix_site.key_path}\n{reload}"))
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "refused STARTTLS over SMTP: 454 4.7.0 TLS not available" in result["msg"]
    assert result["rolled_back"] is True and result["rollback_failed"] is False
    assert files_of(live) == disk
    assert_serves(postfix_site, pki.rsa)
    assert "cannot get RSA private key" in postfix_site.log_tail(lines=200) or \
        "no-such.key" in postfix_site.log_tail(lines=200)


def test_implicit_tls_on_the_starttls_port_fails(postfix_site, pki, tmp_path):
    """F10: implicit TLS spoken to the STARTTLS listener is no proof: it fails,
    saying why, and the files are put back."""
    live = Path(postfix_site.cert_path).parent
    disk = files_of(live)
    args = args_for(postfix_site, pki.ecdsa, tmp_path, verify_protocol="tls",
                    verify_endpoint=[f"127.0.0.1:{postfix_site.smtp_port}"],
                    verify_attempts=1)
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "answered in plain text" in result["msg"]
    assert files_of(live) == disk
    assert postfix_site.served_sha256() == pki.rsa.sha256


def test_protocol_chosen_per_endpoint(postfix_site, pki, tmp_path) -> None:
    """F10: verify_protocol for plain host:port, or the endpoint's own scheme."""
    args = args_for(postfix_site, pki.ecdsa, tmp_path, verify_protocol="smtp",
                    verify_endpoint=[
                        f"127.0.0.1:{postfix_site.smtp_port}",
                        f"tls://127.0.0.1:{postfix_site.smtps_port}"])
    result = run_module(MODULE, args)
    assert result["changed"] is True, result.get("msg")
    assert [e["starttls"] for e in result["served"]["endpoints"]] == ["smtp", None]
    assert_serves(postfix_site, pki.ecdsa)


def test_files_in_place_but_old_served_is_converged(postfix_site, pki, tmp_path):
    """F05: files replaced by hand, idle smtpd still serves the old ones."""
    Path(postfix_site.cert_path).write_bytes(pki.ecdsa.fullchain_pem)
    Path(postfix_site.key_path).write_bytes(pki.ecdsa.key_pem)
    assert postfix_site.served_sha256() == pki.rsa.sha256
    result = run_module(MODULE, args_for(postfix_site, pki.ecdsa, tmp_path))
    assert result["changed"] is True, result.get("msg")
    assert "did not serve them" in result["reason"]
    assert_serves(postfix_site, pki.ecdsa)


def test_served_means_every_new_connection(postfix_site, pki, tmp_path) -> None:
    result = run_module(MODULE, args_for(postfix_site, pki.ecdsa, tmp_path))
    assert result["changed"] is True
    seen = {postfix_site.served_sha256(implicit=implicit)
            for implicit in (False, True) * 20}
    assert seen == {pki.ecdsa.sha256}
    assert result["served"]["handshakes"] >= 6


def test_concurrent_runs_serialise_and_leave_one_pair(postfix_site, pki, tmp_path):
    leaves = [pki.ecdsa, pki.leaf(key_type="rsa")]
    procs = []
    for number, leaf in enumerate(leaves):
        args = args_for(postfix_site, leaf, tmp_path / str(number),
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
    on_disk = Path(postfix_site.cert_path).read_bytes()
    winner = next(leaf for leaf in leaves if leaf.fullchain_pem == on_disk)
    assert Path(postfix_site.key_path).read_bytes() == winner.key_pem
    assert_serves(postfix_site, winner)


@pytest.fixture
def chain_file_site(tmp_path: Path, pki: PKI) -> Iterator[Postfix]:
    """A Postfix reading one smtpd_tls_chain_files file: key, leaf, chain."""
    require_postfix()
    live = tmp_path / "live"
    live.mkdir()
    bundle = live / "chain.pem"
    bundle.write_bytes(pki.rsa.key_pem + pki.rsa.fullchain_pem)
    bundle.chmod(0o600)
    server = Postfix(None, chain_files=bundle)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_chain_file_is_key_first_and_served(chain_file_site, pki, tmp_path):
    bundle = chain_file_site.chain_files
    args = args_for(chain_file_site, pki.ecdsa, tmp_path,
                    chain_file_path=str(bundle))
    del args["cert_path"], args["key_path"]
    result = run_module(MODULE, args)
    assert result["changed"] is True, result.get("msg")
    assert bundle.read_bytes() == pki.ecdsa.key_pem + pki.ecdsa.fullchain_pem
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    assert_serves(chain_file_site, pki.ecdsa)
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_chain_file_rollback_proves_the_old_leaf(chain_file_site, pki, tmp_path):
    """The old leaf is read from the key-first backup to prove the rollback."""
    bundle = chain_file_site.chain_files
    before = bundle.read_bytes()
    args = args_for(chain_file_site, pki.ecdsa, tmp_path,
                    chain_file_path=str(bundle), reload_command=["true"])
    del args["cert_path"], args["key_path"]
    result = run_module(MODULE, args)
    assert result["failed"] is True and result["rolled_back"] is True
    assert "are served again" in result["msg"]
    assert bundle.read_bytes() == before
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


@pytest.fixture
def sni_site(tmp_path: Path, pki: PKI) -> Iterator[Postfix]:
    """A Postfix whose SNI table sends www.example.com to its own bundle.

    The table is built with ``postmap -F``, so it holds a copy of the
    bundle's content, not its name.
    """
    require_postfix()
    paths = pki.rsa.write(tmp_path / "live")
    bundle = tmp_path / "live" / "www.pem"
    bundle.write_bytes(pki.rsa.key_pem + pki.rsa.fullchain_pem)
    bundle.chmod(0o600)
    server = Postfix(None, paths["fullchain"], paths["privkey"])
    table = server.config_dir / "sni"
    server.extra_main = f"tls_server_sni_maps = hash:{table}\n"
    server.write_config()
    table.write_text(f"www.example.com {bundle}\n")
    table.chmod(0o600)
    unrelated = server.config_dir / "other-sni"
    unrelated.write_text(f"mx.example.org {paths['fullchain']}\n")
    for name in (table, unrelated):
        subprocess.run(["postmap", "-c", str(server.config_dir), "-F",
                        f"hash:{name}"], check=True, timeout=60)
    server.sni_bundle = bundle
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_sni_table_is_rebuilt_before_the_reload(sni_site, pki, tmp_path) -> None:
    """Without the rebuild the table keeps serving its copy; with it, the new
    certificate is served for that name and the default one is untouched."""
    table = f"hash:{sni_site.config_dir / 'sni'}"
    unrelated_db = sni_site.config_dir / "other-sni.db"
    unrelated_mtime = unrelated_db.stat().st_mtime_ns
    args = args_for(sni_site, pki.ecdsa, tmp_path,
                    chain_file_path=str(sni_site.sni_bundle),
                    verify_server_name="www.example.com")
    del args["cert_path"], args["key_path"]
    stale = run_module(MODULE, args)
    assert stale["failed"] is True and stale["rolled_back"] is True
    assert pki.rsa.sha256 in stale["msg"]

    args["sni_maps"] = [table, f"hash:{sni_site.config_dir / 'other-sni'}"]
    result = run_module(MODULE, args)
    assert result["changed"] is True, result.get("msg")
    assert result["sni_maps_rebuilt"] == [table]
    assert "names none of the deployed files" in json.dumps(result["warnings"])
    assert sni_site.served_sha256(server_name="www.example.com") == pki.ecdsa.sha256
    assert sni_site.served_sha256(server_name="example.com") == pki.rsa.sha256
    assert unrelated_db.stat().st_mtime_ns == unrelated_mtime
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)
