"""haproxy_certificate against a real HAProxy: what is served, what is on disk.

Every test runs the module as a real module process against a master-worker
HAProxy that a fixture started on a loopback port with a config of its own,
and checks the certificate HAProxy serves with TLS handshakes (per name, and
without SNI), the bytes and modes on disk, and how HAProxy took the files: a
reload replaces the worker (new PID, and the master's ``show proc`` counts
it), a runtime API update replaces nothing.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_nginx_certificate import (
    assert_no_key_bytes,
    bad_inputs,
    reload_failing_once,
)
from tests.support import haproxy as haproxy_support
from tests.support.binaries import require_binary
from tests.support.haproxy import HAProxy
from tests.support.modules import run_module
from tests.support.nginx import free_port
from tests.support.pki import PKI, Leaf

MODULE = "haproxy_certificate"
# An OpenSSL policy stricter than Debian's (security level 3: RSA keys of
# 3072 bits and more), as a service's environment may set for HAProxy alone.
STRICT_OPENSSL = """\
openssl_conf = certfleet_test
[certfleet_test]
ssl_conf = certfleet_ssl
[certfleet_ssl]
system_default = certfleet_policy
[certfleet_policy]
CipherString = DEFAULT:@SECLEVEL=3
"""


def combined(leaf: Leaf) -> bytes:
    return leaf.fullchain_pem + leaf.key_pem


def start(tmp_path: Path, crt: Path, env: dict | None = None) -> HAProxy:
    require_binary(haproxy_support.HAPROXY_BINARY, "haproxy")
    server = HAProxy(tmp_path / "haproxy", crt, env=env)
    server.start()
    return server


@pytest.fixture
def haproxy_site(tmp_path: Path, pki: PKI) -> Iterator[HAProxy]:
    """HAProxy serving ``pki.rsa`` from the combined PEM tmp_path/certs/site.pem."""
    crt = tmp_path / "certs" / "site.pem"
    crt.parent.mkdir()
    crt.write_bytes(combined(pki.rsa))
    crt.chmod(0o600)
    server = start(tmp_path, crt)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def haproxy_dir_site(tmp_path: Path, pki: PKI) -> Iterator[HAProxy]:
    """HAProxy whose ``crt`` names the directory tmp_path/certs.

    It holds site.pem (leaf and chain) and site.pem.key, the key HAProxy
    looks for beside a certificate without one.
    """
    crt = tmp_path / "certs"
    crt.mkdir()
    (crt / "site.pem").write_bytes(pki.rsa.fullchain_pem)
    (crt / "site.pem.key").write_bytes(pki.rsa.key_pem)
    (crt / "site.pem.key").chmod(0o600)
    server = start(tmp_path, crt)
    try:
        yield server
    finally:
        server.stop()


def files_of(directory: Path) -> dict:
    return {
        p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(directory.iterdir())
    }


def args_for(site: HAProxy, leaf: Leaf, tmp_path: Path, **extra) -> dict:
    """Module arguments deploying ``leaf`` to the fixture's combined PEM."""
    src = leaf.write(tmp_path / f"src-{leaf.sha256[:8]}")
    args = {
        "cert_src": str(src["cert"]),
        "chain_src": str(src["chain"]),
        "key_src": str(src["privkey"]),
        "cert_path": str(site.crt),
        "validate_command": site.validate_command,
        "reload_command": site.reload_command,
        "backup_dir": str(tmp_path / "state"),
        "verify_endpoint": [f"127.0.0.1:{site.port}"],
        "verify_backoff": 0.2,
        "verify_max_backoff": 0.5,
    }
    args.update(extra)
    return args


def runtime(site: HAProxy) -> dict:
    return {"runtime_socket": str(site.admin_socket)}


def served_everywhere(site: HAProxy, sha256: str) -> bool:
    """Each name of the test certificates, and no SNI, get ``sha256``."""
    return all(site.served_sha256(name) == sha256
               for name in ("example.com", "www.example.com", None))


# --- applying ------------------------------------------------------------------


def test_runtime_api_update_is_served_without_reload(haproxy_site, pki, tmp_path):
    """set + commit over the admin socket: new leaf served, same worker PID."""
    site = haproxy_site
    workers, counts = site.worker_pids(), site.reload_counts()
    args = args_for(site, pki.ecdsa, tmp_path, verify_without_sni=True,
                    **runtime(site))
    result = run_module(MODULE, args)
    assert result.get("failed") is not True, result["msg"]
    assert result["changed"] is True
    assert result["applied_by"] == "runtime_api"
    assert result["applied"] == [{"method": "runtime_api", "ok": True}]
    assert site.worker_pids() == workers
    assert site.reload_counts() == counts
    assert served_everywhere(site, pki.ecdsa.sha256)
    probed = [e["server_name"] for e in result["served"]["endpoints"]]
    assert probed == ["example.com", "www.example.com", None]
    assert result["served"]["chain_sha256"] == site.served_chain_sha256()
    assert len(result["served"]["chain_sha256"]) == 2
    assert files_of(site.crt.parent) == {"site.pem": (combined(pki.ecdsa), 0o600)}
    backup = Path(result["files"][0]["backup"])
    assert backup.read_bytes() == combined(pki.rsa)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert site.open_transactions() == []
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_reload_command_deploy_replaces_the_worker(haproxy_site, pki, tmp_path):
    """Without a runtime socket: SIGUSR2 to the master, a new worker serves."""
    site = haproxy_site
    workers, (reloads, failed) = site.worker_pids(), site.reload_counts()
    result = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path))
    assert result.get("failed") is not True, result["msg"]
    assert result["applied_by"] == "reload"
    assert site.reload_counts() == (reloads + 1, failed)
    assert not set(site.worker_pids()) & set(workers)
    assert served_everywhere(site, pki.ecdsa.sha256)
    assert result["served"]["handshakes"] >= 6  # two names, three each


def test_master_socket_reload_is_checked(haproxy_site, pki, tmp_path) -> None:
    """`reload` on the master CLI, then `show proc` counts it as good."""
    site = haproxy_site
    reloads, failed = site.reload_counts()
    args = args_for(site, pki.ecdsa, tmp_path,
                    master_socket=str(site.master_socket))
    del args["reload_command"]
    result = run_module(MODULE, args)
    assert result.get("failed") is not True, result["msg"]
    assert result["applied_by"] == "reload"
    assert site.reload_counts() == (reloads + 1, failed)
    assert served_everywhere(site, pki.ecdsa.sha256)
    seen = {site.served_sha256() for _attempt in range(20)}
    assert seen == {pki.ecdsa.sha256}


def test_rerun_changes_nothing_and_applies_nothing(haproxy_site, pki, tmp_path):
    site = haproxy_site
    args = args_for(site, pki.ecdsa, tmp_path, **runtime(site))
    assert run_module(MODULE, args)["changed"] is True
    workers, counts = site.worker_pids(), site.reload_counts()
    disk = files_of(site.crt.parent)
    again = run_module(MODULE, args)
    assert again["changed"] is False
    assert "applied" not in again
    assert again["served"]["sha256"] == pki.ecdsa.sha256
    assert site.worker_pids() == workers and site.reload_counts() == counts
    assert files_of(site.crt.parent) == disk


def test_check_mode_changes_nothing_and_diff_shows_metadata(haproxy_site, pki,
                                                            tmp_path):
    site = haproxy_site
    disk = files_of(site.crt.parent)
    workers = site.worker_pids()
    result = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path,
                                         **runtime(site)),
                        check_mode=True, diff=True)
    assert result["changed"] is True
    assert files_of(site.crt.parent) == disk
    assert site.worker_pids() == workers
    assert site.served_sha256() == pki.rsa.sha256
    diff = result["diff"]
    assert pki.rsa.sha256 in diff["before"] and pki.ecdsa.sha256 in diff["after"]
    assert "with its private key (mode 0600)" in diff["after"]
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


# --- bad input and failures ---------------------------------------------------


def test_bad_input_fails_and_touches_nothing(haproxy_site, pki, tmp_path) -> None:
    """Every kind of bad material (F07 among them): nothing touched or applied."""
    site = haproxy_site
    disk = files_of(site.crt.parent)
    workers, counts = site.worker_pids(), site.reload_counts()
    cases = bad_inputs(pki, tmp_path)
    cases["F07 certificate without its key"] = (
        {"cert_content": pki.ecdsa.fullchain_pem.decode(), "key_src": None},
        "holds no private key")
    for name, (extra, words) in cases.items():
        args = args_for(site, pki.ecdsa, tmp_path, **runtime(site))
        if "cert_content" in extra:
            args.pop("cert_src")
            args.pop("chain_src")
        if "key_content" in extra or extra.get("key_src", "") is None:
            args.pop("key_src")
        args.update({k: v for k, v in extra.items() if v is not None})
        result = run_module(MODULE, args)
        assert result.get("failed") is True, name
        assert words in result["msg"], (name, result["msg"])
        assert files_of(site.crt.parent) == disk, name
        assert site.worker_pids() == workers, name
        assert site.reload_counts() == counts, name
        assert_no_key_bytes(result, pki.rsa, pki.ecdsa)
    assert site.served_sha256() == pki.rsa.sha256
    assert site.open_transactions() == []


def test_key_first_bundle_is_written_leaf_chain_key(haproxy_site, pki, tmp_path):
    """F07: a key-first bundle is valid input; HAProxy gets leaf, chain, key."""
    site = haproxy_site
    args = args_for(site, pki.ecdsa, tmp_path, **runtime(site))
    for option in ("cert_src", "chain_src", "key_src"):
        del args[option]
    args["cert_content"] = (pki.ecdsa.key_pem + pki.ecdsa.fullchain_pem).decode()
    result = run_module(MODULE, args)
    assert result.get("failed") is not True, result["msg"]
    assert site.crt.read_bytes() == combined(pki.ecdsa)
    assert site.served_sha256() == pki.ecdsa.sha256


def test_config_test_failure_restores_files_and_applies_nothing(haproxy_site, pki,
                                                                tmp_path):
    """A real `haproxy -c` failure: a keyword HAProxy does not know."""
    site = haproxy_site
    broken = tmp_path / "broken.cfg"
    broken.write_text(site.conf_path.read_text() + "    no-such-keyword on\n")
    disk = files_of(site.crt.parent)
    workers, counts = site.worker_pids(), site.reload_counts()
    args = args_for(site, pki.ecdsa, tmp_path, **runtime(site),
                    validate_command=[haproxy_support.HAPROXY_BINARY, "-c", "-f",
                                      str(broken)])
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "config test failed for haproxy" in result["msg"]
    assert "no-such-keyword" in result["msg"]
    assert result["rolled_back"] is True and "applied" not in result
    assert files_of(site.crt.parent) == disk
    assert site.worker_pids() == workers and site.reload_counts() == counts
    assert site.served_sha256() == pki.rsa.sha256


def test_reload_failure_serves_the_old_certificate_again(haproxy_site, pki,
                                                         tmp_path):
    """The reload signals HAProxy but reports failure; the rollback reloads again.

    The master socket makes each reload wait until the master has counted the
    previous one: a SIGUSR2 that arrives while HAProxy 2.6 re-executes itself
    is lost.
    """
    site = haproxy_site
    disk = files_of(site.crt.parent)
    reloads, failed = site.reload_counts()
    args = args_for(site, pki.ecdsa, tmp_path,
                    reload_command=reload_failing_once(site, tmp_path),
                    master_socket=str(site.master_socket))
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "reload failed for haproxy" in result["msg"]
    assert "reload reported a failure" in result["msg"]
    assert result["rolled_back"] is True and result["rollback_failed"] is False
    assert site.reload_counts() == (reloads + 2, failed)
    assert files_of(site.crt.parent) == disk
    assert served_everywhere(site, pki.rsa.sha256)


def test_verify_mismatch_rolls_back(haproxy_site, pki, tmp_path) -> None:
    """F05: the file replaced but HAProxy never told: caught and undone."""
    site = haproxy_site
    disk = files_of(site.crt.parent)
    result = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path,
                                         reload_command=["true"]))
    assert result["failed"] is True
    assert pki.rsa.sha256 in result["msg"]
    assert result["rolled_back"] is True
    assert files_of(site.crt.parent) == disk
    assert site.served_sha256() == pki.rsa.sha256


def test_failed_rollback_names_the_master_reload(haproxy_site, pki, tmp_path):
    """Nothing answers on the verify endpoint: the steps by hand say how to reload."""
    site = haproxy_site
    dead = f"127.0.0.1:{free_port()}"
    args = args_for(site, pki.ecdsa, tmp_path, verify_endpoint=[dead],
                    verify_attempts=2, verify_timeout=0.5,
                    master_socket=str(site.master_socket))
    del args["reload_command"]
    result = run_module(MODULE, args)
    assert result["failed"] is True and result["rollback_failed"] is True
    steps = result["manual_steps"]
    assert steps[0].startswith("cp -p ") and steps[0].endswith(str(site.crt))
    assert steps[-1] == f"echo reload | socat {site.master_socket} -"
    assert site.crt.read_bytes() == combined(pki.rsa)


def test_refused_commit_is_aborted_and_the_old_certificate_stays(tmp_path, pki):
    """HAProxy itself refuses the commit; nothing half-applied is left.

    Honest set-up: the running HAProxy enforces a stricter OpenSSL policy
    than the machine's default (OPENSSL_CONF with security level 3 in its
    environment only, as a service unit may set). The module's config test,
    `haproxy -c` in the module's own environment, accepts the RSA-2048
    certificate; the running process builds its TLS context under level 3
    and answers the commit with "unable to load SSL certificate ...
    Failed!". The module aborts, falls back to a reload through the master
    CLI, which the master reports as failed (the new worker cannot load the
    file either, so the old worker stays), and rolls back: the previous
    (self-signed P-256) certificate is committed again over the runtime API.
    """
    policy = tmp_path / "strict-openssl.cnf"
    policy.write_text(STRICT_OPENSSL)
    old = pki.leaf(key_type="ecdsa", issuer="self")
    crt = tmp_path / "certs" / "site.pem"
    crt.parent.mkdir()
    crt.write_bytes(old.cert_pem + old.key_pem)
    crt.chmod(0o600)
    site = start(tmp_path, crt, env={"OPENSSL_CONF": str(policy)})
    try:
        disk = files_of(crt.parent)
        workers = site.worker_pids()
        args = args_for(site, pki.rsa, tmp_path, **runtime(site),
                        master_socket=str(site.master_socket))
        del args["reload_command"]
        result = run_module(MODULE, args)
        assert result["failed"] is True
        assert "refused `commit ssl cert" in result["msg"]
        assert "unable to load SSL certificate" in result["msg"]
        assert "reports the reload failed" in result["msg"]
        assert result["rolled_back"] is True and result["rollback_failed"] is False
        deploy_runtime, deploy_reload, rollback = result["applied"]
        assert deploy_runtime["ok"] is False and "abort" in deploy_runtime
        assert deploy_reload == {"method": "reload", "ok": False,
                                 "error": deploy_reload["error"]}
        assert rollback == {"method": "runtime_api", "ok": True}
        assert site.open_transactions() == []
        assert site.reload_counts()[1] == 1
        assert site.worker_pids() == workers
        assert files_of(crt.parent) == disk
        assert site.served_sha256() == old.sha256
    finally:
        site.stop()


def test_unknown_certificate_name_falls_back_to_a_reload(haproxy_site, pki,
                                                         tmp_path):
    """`set ssl cert` refused (name not in the running config): reload instead."""
    site = haproxy_site
    reloads, failed = site.reload_counts()
    args = args_for(site, pki.ecdsa, tmp_path, **runtime(site),
                    runtime_cert_name="/nowhere/not-loaded.pem")
    result = run_module(MODULE, args)
    assert result.get("failed") is not True, result["msg"]
    first, second = result["applied"]
    assert first["method"] == "runtime_api" and first["ok"] is False
    assert "not referenced by the configuration" in first["error"]
    assert second == {"method": "reload", "ok": True}
    assert "reloaded instead" in json.dumps(result.get("warnings", []))
    assert site.reload_counts() == (reloads + 1, failed)
    assert served_everywhere(site, pki.ecdsa.sha256)


def test_file_in_place_but_old_served_is_converged_at_runtime(
        haproxy_site, pki, tmp_path):
    """F05: the file is right, HAProxy serves the old one; the API fixes it."""
    site = haproxy_site
    site.crt.write_bytes(combined(pki.ecdsa))
    workers = site.worker_pids()
    assert site.served_sha256() == pki.rsa.sha256
    result = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path,
                                         **runtime(site)))
    assert result["changed"] is True, result.get("msg")
    assert "did not serve them" in result["reason"]
    assert result["applied_by"] == "runtime_api"
    assert site.worker_pids() == workers
    assert served_everywhere(site, pki.ecdsa.sha256)


def test_concurrent_runs_serialise_and_leave_one_file(haproxy_site, pki, tmp_path):
    """Two deploys of different certificates at once: one whole PEM wins."""
    site = haproxy_site
    leaves = [pki.ecdsa, pki.leaf(key_type="rsa")]
    procs = []
    for number, leaf in enumerate(leaves):
        args = args_for(site, leaf, tmp_path / str(number), **runtime(site),
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
    winner = next(leaf for leaf in leaves if combined(leaf) == site.crt.read_bytes())
    assert served_everywhere(site, winner.sha256)
    assert sorted(p.name for p in site.crt.parent.iterdir()) == ["site.pem"]


# --- a crt directory -------------------------------------------------------------


def test_crt_directory_gets_cert_and_key_sibling_only(haproxy_dir_site, pki,
                                                      tmp_path):
    """Split layout in a crt directory: nothing but the live files stays there."""
    site = haproxy_dir_site
    args = args_for(site, pki.ecdsa, tmp_path, **runtime(site),
                    cert_path=str(site.crt / "site.pem"),
                    key_path=str(site.crt / "site.pem.key"))
    workers = site.worker_pids()
    result = run_module(MODULE, args)
    assert result.get("failed") is not True, result["msg"]
    assert result["applied_by"] == "runtime_api"
    assert site.worker_pids() == workers
    assert files_of(site.crt) == {
        "site.pem": (pki.ecdsa.fullchain_pem, 0o644),
        "site.pem.key": (pki.ecdsa.key_pem, 0o600),
    }
    assert served_everywhere(site, pki.ecdsa.sha256)
    reload = subprocess.run(site.validate_command, capture_output=True, check=False)
    assert reload.returncode == 0, reload.stderr


def test_crt_directory_never_shows_a_readable_key_or_a_loadable_file(
        haproxy_dir_site, pki, tmp_path):
    """F08: watched during a deploy, the directory only ever holds live files.

    A thread lists the crt directory as fast as it can while the module runs.
    Every file it sees that holds the key must be mode 0600, and every name
    that is not a live file must be hidden (HAProxy skips hidden files).
    """
    site = haproxy_dir_site
    live = {"site.pem", "site.pem.key"}
    seen: dict = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for entry in os.scandir(site.crt):
                try:
                    mode = stat.S_IMODE(entry.stat().st_mode)
                except FileNotFoundError:
                    continue
                seen.setdefault(entry.name, set()).add(mode)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        args = args_for(site, pki.ecdsa, tmp_path, **runtime(site),
                        cert_path=str(site.crt / "site.pem"),
                        key_path=str(site.crt / "site.pem.key"))
        result = run_module(MODULE, args)
    finally:
        done.set()
        watcher.join()
    assert result.get("failed") is not True, result["msg"]
    assert any(name.endswith(".certfleet-stage") for name in seen), seen
    assert all(name in live or name.startswith(".") for name in seen), seen
    assert seen["site.pem.key"] == {0o600}
    assert all(modes == {0o600} for name, modes in seen.items()
               if name.startswith(".site.pem.key")), seen
    assert sorted(p.name for p in site.crt.iterdir()) == sorted(live)


@pytest.mark.parametrize("where", ["inside", "equal"])
def test_backup_dir_in_the_crt_directory_is_refused(haproxy_dir_site, pki,
                                                    tmp_path, where):
    """HAProxy would load the lock, journal and backups as certificates."""
    site = haproxy_dir_site
    state = site.crt / "backups" if where == "inside" else site.crt
    disk = files_of(site.crt)
    args = args_for(site, pki.ecdsa, tmp_path, **runtime(site),
                    cert_path=str(site.crt / "site.pem"),
                    key_path=str(site.crt / "site.pem.key"),
                    backup_dir=str(state))
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert f"backup_dir {state} is" in result["msg"]
    assert "outside the server's certificate directories" in result["msg"]
    assert files_of(site.crt) == disk
    assert site.served_sha256() == pki.rsa.sha256


def test_key_file_where_haproxy_does_not_look_is_refused(haproxy_dir_site, pki,
                                                         tmp_path):
    site = haproxy_dir_site
    disk = files_of(site.crt)
    args = args_for(site, pki.ecdsa, tmp_path,
                    cert_path=str(site.crt / "site.pem"),
                    key_path=str(tmp_path / "elsewhere.key"))
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "is not where HAProxy reads the key" in result["msg"]
    assert files_of(site.crt) == disk
