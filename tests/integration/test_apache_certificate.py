"""apache_certificate against a real Apache httpd: what is served, what is on disk.

Every test runs the module as a real module process against an Apache that
the fixture started on a loopback port with a config of its own, and checks
the certificate Apache actually serves with a TLS handshake, the bytes and
modes on disk, and whether Apache was restarted (each start and graceful
restart logs AH00489 once). The commands are Debian's real
``apache2ctl configtest`` and ``apache2ctl graceful``, pointed at the
instance through its own envvars file.
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
from cryptography.hazmat.primitives import hashes

from tests.integration.test_nginx_certificate import (
    assert_no_key_bytes,
    bad_inputs,
    reload_failing_once,
)
from tests.support import apache as apache_support
from tests.support.apache import Apache
from tests.support.binaries import require_binary
from tests.support.modules import run_module
from tests.support.pki import PKI, Leaf

MODULE = "apache_certificate"


@pytest.fixture
def apache_site(tmp_path: Path, pki: PKI) -> Iterator[Apache]:
    """A started Apache serving ``pki.rsa`` from tmp_path/live.

    The live files are ``fullchain.pem`` (0644) and ``privkey.pem`` (0600),
    named by SSLCertificateFile and SSLCertificateKeyFile.
    """
    require_binary(apache_support.APACHE_BINARY, "apache2")
    paths = pki.rsa.write(tmp_path / "live")
    server = Apache(tmp_path / "apache", paths["fullchain"], paths["privkey"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def apache_chain_site(tmp_path: Path, pki: PKI) -> Iterator[Apache]:
    """An Apache of the older kind: leaf in cert.pem, SSLCertificateChainFile."""
    require_binary(apache_support.APACHE_BINARY, "apache2")
    paths = pki.rsa.write(tmp_path / "live")
    server = Apache(tmp_path / "apache", paths["cert"], paths["privkey"],
                    chain_path=paths["chain"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def files_of(site: Apache) -> dict:
    live = Path(site.cert_path).parent
    return {
        p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(live.iterdir())
    }


def args_for(site: Apache, leaf: Leaf, tmp_path: Path, **extra) -> dict:
    """Module arguments deploying ``leaf`` to the fixture's Apache."""
    src = leaf.write(tmp_path / f"src-{leaf.sha256[:8]}")
    args = {
        "cert_src": str(src["cert"]),
        "chain_src": str(src["chain"]),
        "key_src": str(src["privkey"]),
        "cert_path": str(site.cert_path),
        "key_path": str(site.key_path),
        "validate_command": site.validate_command,
        "reload_command": site.reload_command,
        "backup_dir": str(tmp_path / "state"),
        "verify_endpoint": [f"127.0.0.1:{site.port}"],
        "verify_backoff": 0.2,
        "verify_max_backoff": 0.5,
    }
    args.update(extra)
    return args


def test_deploy_is_served_and_files_are_right(apache_site, pki, tmp_path) -> None:
    generation = apache_site.generations()
    result = run_module(MODULE, args_for(apache_site, pki.ecdsa, tmp_path))
    assert result.get("failed") is not True, result["msg"]
    assert result["changed"] is True
    assert apache_site.served_sha256() == pki.ecdsa.sha256
    assert result["served"]["sha256"] == pki.ecdsa.sha256
    assert apache_site.served_chain_sha256() == result["served"]["chain_sha256"]
    assert result["served"]["chain_sha256"][1:] == [
        c["sha256"] for c in result["certificate"]["chain"]
    ]
    on_disk = files_of(apache_site)
    assert on_disk["fullchain.pem"] == (pki.ecdsa.fullchain_pem, 0o644)
    assert on_disk["privkey.pem"] == (pki.ecdsa.key_pem, 0o600)
    assert os.stat(apache_site.key_path).st_uid == 0
    assert apache_site.generations() > generation
    backups = [f["backup"] for f in result["files"]]
    assert Path(backups[0]).read_bytes() == pki.rsa.fullchain_pem
    assert stat.S_IMODE(Path(backups[1]).stat().st_mode) == 0o600
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_rerun_changes_nothing_and_does_not_restart(apache_site, pki, tmp_path):
    args = args_for(apache_site, pki.ecdsa, tmp_path)
    assert run_module(MODULE, args)["changed"] is True
    generation = apache_site.generations()
    disk = files_of(apache_site)
    again = run_module(MODULE, args)
    assert again["changed"] is False
    assert again["served"]["sha256"] == pki.ecdsa.sha256
    assert apache_site.generations() == generation
    assert files_of(apache_site) == disk


def test_check_mode_changes_nothing_and_diff_shows_metadata(apache_site, pki,
                                                            tmp_path):
    disk = files_of(apache_site)
    generation = apache_site.generations()
    result = run_module(MODULE, args_for(apache_site, pki.ecdsa, tmp_path),
                        check_mode=True, diff=True)
    assert result["changed"] is True
    assert files_of(apache_site) == disk
    assert apache_site.generations() == generation
    assert apache_site.served_sha256() == pki.rsa.sha256
    diff = result["diff"]
    assert pki.rsa.sha256 in diff["before"] and pki.ecdsa.sha256 in diff["after"]
    assert "private key (mode 0600)" in diff["after"]
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)
    assert not (tmp_path / "state").exists()


def test_default_commands_are_found_on_this_host(apache_site, pki, tmp_path):
    """Without commands given, apachectl (or apache2ctl) is found; check mode."""
    args = args_for(apache_site, pki.ecdsa, tmp_path)
    del args["validate_command"], args["reload_command"]
    result = run_module(MODULE, args, check_mode=True)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True


def test_bad_input_fails_and_touches_nothing(apache_site, pki, tmp_path) -> None:
    """Every kind of bad material: failed, files byte-identical, no restart."""
    disk = files_of(apache_site)
    generation = apache_site.generations()
    for name, (extra, words) in bad_inputs(pki, tmp_path).items():
        args = args_for(apache_site, pki.ecdsa, tmp_path)
        if "cert_content" in extra:
            args.pop("cert_src")
            args.pop("chain_src")
        if "key_content" in extra:
            args.pop("key_src")
        args.update({k: v for k, v in extra.items() if v is not None})
        result = run_module(MODULE, args)
        assert result.get("failed") is True, name
        assert words in result["msg"], (name, result["msg"])
        assert files_of(apache_site) == disk, name
        assert apache_site.generations() == generation, name
        assert not (tmp_path / "state" / "journal.json").exists(), name
        assert_no_key_bytes(result, pki.rsa, pki.ecdsa)
    assert apache_site.served_sha256() == pki.rsa.sha256


def test_config_test_failure_restores_files_without_restart(apache_site, pki,
                                                            tmp_path):
    """A real `apache2ctl configtest` failure: a directive Apache does not know."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "envvars").write_text(apache_site.envvars_path.read_text())
    (broken / "apache2.conf").write_text(
        apache_site.conf_path.read_text() + "NoSuchDirective on\n")
    validate = ["env", f"APACHE_CONFDIR={broken}", apache_support.APACHECTL,
                "configtest"]
    disk = files_of(apache_site)
    generation = apache_site.generations()
    result = run_module(MODULE, args_for(apache_site, pki.ecdsa, tmp_path,
                                         validate_command=validate))
    assert result["failed"] is True
    assert "config test failed for apache" in result["msg"]
    assert "NoSuchDirective" in result["msg"]
    assert result["rolled_back"] is True
    assert files_of(apache_site) == disk
    assert apache_site.generations() == generation
    assert apache_site.served_sha256() == pki.rsa.sha256


def test_reload_failure_serves_the_old_certificate_again(apache_site, pki,
                                                         tmp_path):
    disk = files_of(apache_site)
    args = args_for(apache_site, pki.ecdsa, tmp_path,
                    reload_command=reload_failing_once(apache_site, tmp_path))
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "reload failed for apache" in result["msg"]
    assert "reload reported a failure" in result["msg"]
    assert result["rolled_back"] is True and result["rollback_failed"] is False
    assert files_of(apache_site) == disk
    assert apache_site.served_sha256() == pki.rsa.sha256


def test_verify_mismatch_rolls_back(apache_site, pki, tmp_path) -> None:
    """F05: files replaced but Apache never restarted: caught and undone."""
    disk = files_of(apache_site)
    args = args_for(apache_site, pki.ecdsa, tmp_path, reload_command=["true"])
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert pki.rsa.sha256 in result["msg"]
    assert result["rolled_back"] is True
    assert files_of(apache_site) == disk
    assert apache_site.served_sha256() == pki.rsa.sha256


def test_graceful_that_kills_apache_is_rolled_back(apache_site, pki, tmp_path):
    """F06: graceful exits 0, Apache exits (AH02565); the rollback revives it.

    Honest set-up: the module checks the pair it is given, so the mismatch
    has to come from outside what it can see. Here, as in the field, the task
    names a different key file (``privkey-new.pem``) than the one
    SSLCertificateKeyFile names (``privkey.pem``). The new certificate and
    its own key are written, ``apache2ctl configtest`` says Syntax OK (it
    loads no keys), ``apache2ctl graceful`` exits 0, and Apache pairs the new
    certificate with the old key, logs AH02565 and exits. The probe finds
    nothing listening; the previous files are restored (the new key file,
    which did not exist, is removed), and ``apache2ctl graceful`` starts
    Apache again on them.
    """
    old_master = apache_site.master_pid()
    disk = files_of(apache_site)
    log_offset = apache_site.error_log.stat().st_size
    stray_key = Path(apache_site.key_path).with_name("privkey-new.pem")
    args = args_for(apache_site, pki.ecdsa, tmp_path, key_path=str(stray_key),
                    verify_attempts=4)
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert result["rolled_back"] is True and result["rollback_failed"] is False
    assert "did not serve the certificate" in result["msg"]
    assert "AH02565" in apache_site.log_tail(log_offset, lines=200)
    assert files_of(apache_site) == disk
    assert not stray_key.exists()
    assert apache_site.master_pid() not in (None, old_master)
    assert apache_site.served_sha256() == pki.rsa.sha256


def test_files_in_place_but_old_served_is_converged(apache_site, pki, tmp_path):
    """F05: a later run notices Apache serves something else, and restarts it."""
    Path(apache_site.cert_path).write_bytes(pki.ecdsa.fullchain_pem)
    Path(apache_site.key_path).write_bytes(pki.ecdsa.key_pem)
    assert apache_site.served_sha256() == pki.rsa.sha256
    result = run_module(MODULE, args_for(apache_site, pki.ecdsa, tmp_path))
    assert result["changed"] is True, result.get("msg")
    assert "did not serve them" in result["reason"]
    assert apache_site.served_sha256() == pki.ecdsa.sha256


def test_served_means_every_new_connection(apache_site, pki, tmp_path) -> None:
    """Right after the module returns, every handshake gets the new certificate."""
    result = run_module(MODULE, args_for(apache_site, pki.ecdsa, tmp_path))
    assert result["changed"] is True, result.get("msg")
    seen = {apache_site.served_sha256() for _attempt in range(30)}
    assert seen == {pki.ecdsa.sha256}
    assert result["served"]["handshakes"] >= 3


def test_concurrent_runs_serialise_and_leave_one_pair(apache_site, pki, tmp_path):
    """Two deploys of different certificates at once: one consistent pair wins."""
    leaves = [pki.ecdsa, pki.leaf(key_type="rsa")]
    procs = []
    for number, leaf in enumerate(leaves):
        args = args_for(apache_site, leaf, tmp_path / str(number),
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
    on_disk = Path(apache_site.cert_path).read_bytes()
    winner = next(leaf for leaf in leaves if leaf.fullchain_pem == on_disk)
    assert Path(apache_site.key_path).read_bytes() == winner.key_pem
    assert apache_site.served_sha256() == winner.sha256
    leftovers = [p.name for p in Path(apache_site.cert_path).parent.iterdir()
                 if p.name.startswith(".")]
    assert leftovers == []


def test_chain_file_setup_gets_leaf_and_chain_apart(apache_chain_site, pki,
                                                    tmp_path):
    """With chain_path the leaf is alone in cert_path: each certificate once."""
    site = apache_chain_site
    assert site.served_chain_sha256() == [pki.rsa.sha256, _intermediate(pki)]
    args = args_for(site, pki.ecdsa, tmp_path, chain_path=str(site.chain_path))
    result = run_module(MODULE, args)
    assert result["changed"] is True, result.get("msg")
    assert Path(site.cert_path).read_bytes() == pki.ecdsa.cert_pem
    assert Path(site.chain_path).read_bytes() == pki.ecdsa.chain_pem
    assert site.served_chain_sha256() == [pki.ecdsa.sha256, _intermediate(pki)]
    assert result["served"]["chain_sha256"] == site.served_chain_sha256()


def test_fullchain_with_a_chain_file_is_refused(apache_chain_site, pki, tmp_path):
    """cert_layout=fullchain and chain_path would send the chain twice."""
    site = apache_chain_site
    disk = files_of(site)
    args = args_for(site, pki.ecdsa, tmp_path, chain_path=str(site.chain_path),
                    cert_layout="fullchain")
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "send every intermediate twice" in result["msg"]
    assert files_of(site) == disk


def _intermediate(pki: PKI) -> str:
    """SHA-256 of the intermediate's DER, as handshakes report it."""
    return pki.intermediate_cert.fingerprint(hashes.SHA256()).hex()
