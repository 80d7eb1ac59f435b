"""nginx_certificate against a real nginx: what is served, what is on disk.

Every test runs the module as a real module process against an nginx that the
fixture started on a loopback port, and checks the certificate nginx actually
serves with a TLS handshake, the bytes and modes on disk, and whether nginx
was reloaded (its worker PIDs change on a reload).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.modules import run_module
from tests.support.nginx import Nginx, free_port
from tests.support.pki import PKI, Leaf

MODULE = "nginx_certificate"


def files_of(site: Nginx) -> dict:
    live = Path(site.cert_path).parent
    return {
        p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(live.iterdir())
    }


def args_for(site: Nginx, leaf: Leaf, tmp_path: Path, **extra) -> dict:
    """Module arguments deploying ``leaf`` to the fixture's nginx."""
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
        "verify_backoff": 0.1,
        "verify_max_backoff": 0.2,
    }
    args.update(extra)
    return args


def assert_no_key_bytes(result: dict, *leaves: Leaf) -> None:
    """No line of any private key's base64 appears anywhere in the result."""
    text = json.dumps(result)
    for leaf in leaves:
        for line in leaf.key_pem.decode().splitlines()[1:-1]:
            assert line not in text


def test_deploy_is_served_and_files_are_right(nginx_site, pki, tmp_path) -> None:
    before_workers = nginx_site.worker_pids()
    result = run_module(MODULE, args_for(nginx_site, pki.ecdsa, tmp_path))
    assert result.get("failed") is not True, result["msg"]
    assert result["changed"] is True
    assert nginx_site.served_sha256() == pki.ecdsa.sha256
    assert result["served"]["sha256"] == pki.ecdsa.sha256
    assert result["served"]["chain_sha256"][1:] == [
        c["sha256"] for c in result["certificate"]["chain"]
    ]
    on_disk = files_of(nginx_site)
    assert on_disk["fullchain.pem"] == (pki.ecdsa.fullchain_pem, 0o644)
    assert on_disk["privkey.pem"][1] == 0o600
    assert nginx_site.worker_pids() != before_workers
    backups = [f["backup"] for f in result["files"]]
    assert Path(backups[0]).read_bytes() == pki.rsa.fullchain_pem
    assert stat.S_IMODE(Path(backups[1]).stat().st_mode) == 0o600
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_rerun_changes_nothing_and_does_not_reload(nginx_site, pki, tmp_path):
    args = args_for(nginx_site, pki.ecdsa, tmp_path)
    assert run_module(MODULE, args)["changed"] is True
    workers = nginx_site.worker_pids()
    disk = files_of(nginx_site)
    again = run_module(MODULE, args)
    assert again["changed"] is False
    assert again["served"]["sha256"] == pki.ecdsa.sha256
    assert nginx_site.worker_pids() == workers
    assert files_of(nginx_site) == disk


def test_check_mode_changes_nothing_and_diff_shows_metadata(nginx_site, pki, tmp_path):
    disk = files_of(nginx_site)
    workers = nginx_site.worker_pids()
    result = run_module(MODULE, args_for(nginx_site, pki.ecdsa, tmp_path),
                        check_mode=True, diff=True)
    assert result["changed"] is True
    assert files_of(nginx_site) == disk
    assert nginx_site.worker_pids() == workers
    assert nginx_site.served_sha256() == pki.rsa.sha256
    assert not (tmp_path / "state").exists()
    diff = result["diff"]
    assert pki.rsa.sha256 in diff["before"] and pki.ecdsa.sha256 in diff["after"]
    assert "example.com" in diff["after"]
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_ed25519_certificate_is_served(nginx_site, pki, tmp_path) -> None:
    result = run_module(MODULE, args_for(nginx_site, pki.ed25519, tmp_path))
    assert result["changed"] is True, result.get("msg")
    assert nginx_site.served_sha256() == pki.ed25519.sha256


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def bad_inputs(pki: PKI, tmp: Path) -> dict:
    """Each kind of bad material, as module arguments, and the words of its error."""
    leaf = pki.ecdsa
    other = pki.leaf(key_type="ecdsa")
    return {
        "F01 intermediate before leaf": (
            {"cert_content": (leaf.chain_pem + leaf.cert_pem).decode(),
             "chain_src": None},
            "out of order"),
        "F03 encrypted key": (
            {"key_src": write(tmp / "enc.key", leaf.encrypted_key_pem(b"pw"))},
            "encrypted"),
        "F03 wrong passphrase": (
            {"key_src": write(tmp / "enc2.key", leaf.encrypted_key_pem(b"pw")),
             "key_passphrase": "nope"},
            "cannot be decrypted"),
        "F04 empty certificate": (
            {"cert_src": write(tmp / "empty.pem", b"")}, "is empty"),
        "F04 truncated certificate": (
            {"cert_src": write(tmp / "cut.pem", leaf.cert_pem[:300])},
            "truncated"),
        "F06 key of another certificate": (
            {"key_src": write(tmp / "other.key", other.key_pem)},
            "does not match"),
        "F14 expired": (
            {"cert_content": pki.expired.cert_pem.decode(),
             "key_content": pki.expired.key_pem.decode()},
            "expired"),
        "F14 not yet valid": (
            {"cert_content": pki.not_yet_valid.cert_pem.decode(),
             "key_content": pki.not_yet_valid.key_pem.decode()},
            "not yet valid"),
        "unrelated chain": (
            {"chain_src": write(tmp / "otherchain.pem",
                                pki.other_ca_leaf().chain_pem)},
            "does not sign"),
        "name not covered": (
            {"expected_names": ["mail.example.org"]}, "does not cover"),
    }


def test_bad_input_fails_and_touches_nothing(nginx_site, pki, tmp_path) -> None:
    """Every kind of bad material: failed, files byte-identical, no reload."""
    disk = files_of(nginx_site)
    workers = nginx_site.worker_pids()
    for name, (extra, words) in bad_inputs(pki, tmp_path).items():
        args = args_for(nginx_site, pki.ecdsa, tmp_path)
        if "cert_content" in extra:
            args.pop("cert_src")
        if "key_content" in extra:
            args.pop("key_src")
        args.update({k: v for k, v in extra.items() if v is not None})
        if extra.get("chain_src", "") is None or "cert_content" in extra:
            args.pop("chain_src", None)
        result = run_module(MODULE, args)
        assert result.get("failed") is True, name
        assert words in result["msg"], (name, result["msg"])
        assert files_of(nginx_site) == disk, name
        assert nginx_site.worker_pids() == workers, name
        assert not (tmp_path / "state" / "journal.json").exists(), name
        assert_no_key_bytes(result, pki.rsa, pki.ecdsa)
    assert nginx_site.served_sha256() == pki.rsa.sha256


def test_encrypted_key_with_passphrase_is_stored_decrypted(nginx_site, pki, tmp_path):
    """F03: with key_passphrase the key is written decrypted and nginx serves it."""
    args = args_for(nginx_site, pki.ecdsa, tmp_path, key_passphrase="s3cret")
    args["key_src"] = write(tmp_path / "enc.key",
                            pki.ecdsa.encrypted_key_pem(b"s3cret"))
    result = run_module(MODULE, args)
    assert result["changed"] is True, result.get("msg")
    key = Path(nginx_site.key_path).read_bytes()
    assert b"ENCRYPTED" not in key and b"PRIVATE KEY" in key
    assert nginx_site.served_sha256() == pki.ecdsa.sha256
    assert "s3cret" not in json.dumps(result)


def test_missing_chain_warns_or_is_refused(nginx_site, pki, tmp_path) -> None:
    """F02: a leaf alone deploys with a warning, or is refused when asked."""
    args = args_for(nginx_site, pki.ecdsa, tmp_path, require_chain=True)
    args.pop("chain_src")
    disk = files_of(nginx_site)
    refused = run_module(MODULE, args)
    assert refused["failed"] is True and "No chain was given" in refused["msg"]
    assert files_of(nginx_site) == disk
    args["require_chain"] = False
    warned = run_module(MODULE, args)
    assert warned["changed"] is True
    # warnings are structured on ansible-core 2.19; their text is what counts
    assert "No chain was given" in json.dumps(warned.get("warnings", []))
    assert nginx_site.served_sha256() == pki.ecdsa.sha256


def broken_config(site: Nginx, tmp_path: Path) -> list:
    """A config test that really fails: nginx -t on a config with a bad line."""
    conf = tmp_path / "broken.conf"
    conf.write_text(Path(site.conf_path).read_text().replace(
        "events {", "no_such_directive on;\nevents {", 1))
    return [*site.argv("-t")[:-3], "-c", str(conf), "-t"]


def test_config_test_failure_restores_files_without_reload(nginx_site, pki, tmp_path):
    disk = files_of(nginx_site)
    workers = nginx_site.worker_pids()
    args = args_for(nginx_site, pki.ecdsa, tmp_path,
                    validate_command=broken_config(nginx_site, tmp_path))
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "config test failed for nginx" in result["msg"]
    assert "no_such_directive" in result["msg"]
    assert result["rolled_back"] is True
    assert files_of(nginx_site) == disk
    assert nginx_site.worker_pids() == workers
    assert nginx_site.served_sha256() == pki.rsa.sha256


def reload_failing_once(site: Nginx, tmp_path: Path) -> list:
    """A reload that signals nginx but reports failure the first time only."""
    marker = tmp_path / "reloaded-once"
    script = tmp_path / "reload.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"{subprocess.list2cmdline(site.reload_command)} || exit 1\n"
        f"if [ ! -e {marker} ]; then touch {marker}; "
        "echo 'reload reported a failure' >&2; exit 1; fi\n"
    )
    script.chmod(0o700)
    return [str(script)]


def test_reload_failure_serves_the_old_certificate_again(nginx_site, pki, tmp_path):
    disk = files_of(nginx_site)
    args = args_for(nginx_site, pki.ecdsa, tmp_path,
                    reload_command=reload_failing_once(nginx_site, tmp_path))
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "reload failed for nginx" in result["msg"]
    assert "reload reported a failure" in result["msg"]
    assert result["rolled_back"] is True and result["rollback_failed"] is False
    assert files_of(nginx_site) == disk
    assert nginx_site.served_sha256() == pki.rsa.sha256


def test_verify_mismatch_rolls_back(nginx_site, pki, tmp_path) -> None:
    """F05: files replaced but nginx never reloaded: caught and undone."""
    disk = files_of(nginx_site)
    args = args_for(nginx_site, pki.ecdsa, tmp_path, reload_command=["true"])
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert pki.rsa.sha256 in result["msg"]  # names what was served instead
    assert result["rolled_back"] is True
    assert files_of(nginx_site) == disk
    assert nginx_site.served_sha256() == pki.rsa.sha256


def test_failed_rollback_gives_backups_and_manual_steps(nginx_site, pki, tmp_path):
    """Nothing answers on the verify endpoint: the rollback cannot be proven."""
    dead = f"127.0.0.1:{free_port()}"
    args = args_for(nginx_site, pki.ecdsa, tmp_path, verify_endpoint=[dead],
                    verify_attempts=2, verify_timeout=0.5)
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert result["rollback_failed"] is True
    assert dead in result["msg"]
    steps = result["manual_steps"]
    assert any(s.startswith("cp -p ") and s.endswith(str(nginx_site.cert_path))
               for s in steps)
    assert " ".join(nginx_site.reload_command) in steps
    assert files_of(nginx_site)["fullchain.pem"][0] == pki.rsa.fullchain_pem


def test_files_in_place_but_old_served_is_converged(nginx_site, pki, tmp_path):
    """F05: a later run notices nginx serves something else, and reloads."""
    Path(nginx_site.cert_path).write_bytes(pki.ecdsa.fullchain_pem)
    Path(nginx_site.key_path).write_bytes(pki.ecdsa.key_pem)
    assert nginx_site.served_sha256() == pki.rsa.sha256
    result = run_module(MODULE, args_for(nginx_site, pki.ecdsa, tmp_path))
    assert result["changed"] is True, result.get("msg")
    assert "did not serve them" in result["reason"]
    assert nginx_site.served_sha256() == pki.ecdsa.sha256


def test_served_means_every_new_connection(nginx_site, pki, tmp_path) -> None:
    """Right after the module returns, every handshake gets the new certificate."""
    result = run_module(MODULE, args_for(nginx_site, pki.ecdsa, tmp_path))
    assert result["changed"] is True
    seen = {nginx_site.served_sha256() for _attempt in range(30)}
    assert seen == {pki.ecdsa.sha256}
    assert result["served"]["handshakes"] >= 3


def test_concurrent_runs_serialise_and_leave_one_pair(nginx_site, pki, tmp_path):
    """Two deploys of different certificates at once: one consistent pair wins."""
    leaves = [pki.ecdsa, pki.leaf(key_type="rsa")]
    procs = []
    for number, leaf in enumerate(leaves):
        args = args_for(nginx_site, leaf, tmp_path / str(number),
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
        proc.wait(timeout=60)
    assert all(r["changed"] and not r.get("failed") for r in results), results
    on_disk = Path(nginx_site.cert_path).read_bytes()
    winner = next(leaf for leaf in leaves if leaf.fullchain_pem == on_disk)
    assert Path(nginx_site.key_path).read_bytes() == winner.key_pem
    assert nginx_site.served_sha256() == winner.sha256
    leftovers = [p.name for p in Path(nginx_site.cert_path).parent.iterdir()
                 if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("layout", ["cert"])
def test_cert_layout_and_chain_path(nginx_site, pki, tmp_path, layout) -> None:
    """Split layout: leaf alone in cert_path, the chain in chain_path."""
    chain_path = Path(nginx_site.cert_path).parent / "chain-only.pem"
    args = args_for(nginx_site, pki.ecdsa, tmp_path, cert_layout=layout,
                    chain_path=str(chain_path))
    result = run_module(MODULE, args)
    assert result["changed"] is True, result.get("msg")
    assert Path(nginx_site.cert_path).read_bytes() == pki.ecdsa.cert_pem
    assert chain_path.read_bytes() == pki.ecdsa.chain_pem
    assert result["served"]["chain_sha256"] == [pki.ecdsa.sha256]


DYING_MODULE = """
import os, runpy
real, calls = os.replace, []
def dying(src, dst):
    calls.append(dst)
    if len(calls) == int(os.environ["KILL_AT_RENAME"]):
        os._exit(9)
    return real(src, dst)
os.replace = dying
runpy.run_module(
    "ansible_collections.certfleet.deploy.plugins.modules.nginx_certificate",
    run_name="__main__")
"""


@pytest.mark.parametrize("kill_at", [3, 4])
def test_killed_deploy_is_recovered_by_the_next_run(
    nginx_site, pki, tmp_path, kill_at
) -> None:
    """Killed after the first (3) or second (4) file rename: the next run first
    restores the old pair, then deploys, and nginx serves a consistent pair."""
    args = args_for(nginx_site, pki.ecdsa, tmp_path)
    died = subprocess.run(
        [sys.executable, "-c", DYING_MODULE],
        input=json.dumps({"ANSIBLE_MODULE_ARGS": args}), text=True,
        capture_output=True, env=dict(os.environ, KILL_AT_RENAME=str(kill_at)),
        check=False)
    assert died.returncode == 9, died.stdout + died.stderr
    assert (tmp_path / "state" / "journal.json").exists()
    pending = run_module(MODULE, args, check_mode=True)
    assert pending["recovered"]["phase"] == "staged"
    assert (tmp_path / "state" / "journal.json").exists()
    old_args = args_for(nginx_site, pki.rsa, tmp_path)
    result = run_module(MODULE, old_args)
    assert result["recovered"]["action"] == "restored", result
    assert files_of(nginx_site)["fullchain.pem"][0] == pki.rsa.fullchain_pem
    assert Path(nginx_site.key_path).read_bytes() == pki.rsa.key_pem
    assert nginx_site.served_sha256() == pki.rsa.sha256
    assert not (tmp_path / "state" / "journal.json").exists()
    leftovers = [p.name for p in Path(nginx_site.cert_path).parent.iterdir()
                 if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("extra,words", [
    ({"verify_endpoint": ["127.0.0.1:notaport"]}, "no valid port"),
    ({"verify_timeout": -1}, "verify_timeout must be"),
    ({"verify_max_backoff": -1}, "verify_max_backoff must be"),
    ({"command_timeout": 0}, "command_timeout must be"),
    ({"key_mode": 644}, "not a file mode"),
    ({"key_mode": "0644"}, "every user on the host"),
    ({"backup_dir": "relative/state"}, "absolute path"),
    ({"backup_retention": -1}, "backup_retention must be"),
])
def test_bad_options_fail_before_anything(nginx_site, pki, tmp_path, extra, words):
    """Option values that could only fail after the swap are refused first."""
    disk = files_of(nginx_site)
    workers = nginx_site.worker_pids()
    result = run_module(MODULE, args_for(nginx_site, pki.ecdsa, tmp_path, **extra))
    assert result.get("failed") is True
    assert words in result["msg"], result["msg"]
    assert files_of(nginx_site) == disk
    assert nginx_site.worker_pids() == workers


def test_key_inside_cert_content_is_never_logged(nginx_site, pki, tmp_path) -> None:
    """A combined bundle in cert_content carries the key: it is masked too."""
    args = args_for(nginx_site, pki.ecdsa, tmp_path)
    for option in ("cert_src", "chain_src", "key_src"):
        args.pop(option)
    args["cert_content"] = (pki.ecdsa.fullchain_pem + pki.ecdsa.key_pem).decode()
    result = run_module(MODULE, args, check_mode=True, diff=True)
    assert result["changed"] is True, result.get("msg")
    assert_no_key_bytes(result, pki.ecdsa)


def test_manual_steps_restore_from_backups_that_exist(nginx_site, pki, tmp_path):
    """After rollback_failed every cp in manual_steps names a file that is there."""
    dead = f"127.0.0.1:{free_port()}"
    args = args_for(nginx_site, pki.ecdsa, tmp_path, verify_endpoint=[dead],
                    verify_attempts=1, verify_timeout=0.5)
    result = run_module(MODULE, args)
    assert result["rollback_failed"] is True
    copies = [s for s in result["manual_steps"] if s.startswith("cp -p ")]
    assert copies
    for step in copies:
        backup = step.split()[2]
        assert Path(backup).is_file(), step
    entry = next(f for f in result["files"] if f["path"] == str(nginx_site.cert_path))
    assert entry["sha256"] == hashlib.sha256(pki.rsa.fullchain_pem).hexdigest()


def test_rerun_notices_a_served_chain_that_differs(nginx_site, pki, tmp_path):
    """Files in place but nginx still sends the leaf alone: reloaded, chain proven."""
    split = args_for(nginx_site, pki.ecdsa, tmp_path, cert_layout="cert")
    assert run_module(MODULE, split)["changed"] is True
    assert nginx_site.served_chain_sha256() == [pki.ecdsa.sha256]
    Path(nginx_site.cert_path).write_bytes(pki.ecdsa.fullchain_pem)
    result = run_module(MODULE, args_for(nginx_site, pki.ecdsa, tmp_path))
    assert result["changed"] is True, result.get("msg")
    assert "served chain differs" in result["reason"]
    assert len(nginx_site.served_chain_sha256()) == 2


def test_commands_found_in_sbin_run_without_it_on_path(nginx_site, pki, tmp_path):
    """The program check and the run agree, whatever PATH the module gets."""
    args = args_for(nginx_site, pki.ecdsa, tmp_path)
    args["validate_command"] = ["nginx", *nginx_site.validate_command[1:]]
    args["reload_command"] = ["nginx", *nginx_site.reload_command[1:]]
    env_path = os.environ["PATH"]
    os.environ["PATH"] = ":".join(
        p for p in env_path.split(":") if not p.endswith("sbin"))
    try:
        result = run_module(MODULE, args)
    finally:
        os.environ["PATH"] = env_path
    assert result.get("failed") is not True, result.get("msg")
    assert nginx_site.served_sha256() == pki.ecdsa.sha256
