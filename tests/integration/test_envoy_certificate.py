"""envoy_certificate against Envoy's SDS file watch: what is served, what is on disk.

Each test runs twice where it can: against a real ``envoy`` when one is on
PATH (these machines have none, so that run is skipped with the reason), and
against ``tests/support/envoy_rules.py``, a TLS server that follows Envoy's
documented rules for file-based SDS (reload on a move in the watched
directory, read certificate and key together, ignore edits in place). What
the second run proves is the module's side of that contract.

The starting point, as an operator would have it: ``certs/`` is the watched
directory, ``certs/current`` a link to ``certs/hand`` holding the RSA pair,
and ``sds/site.yaml`` the SDS resource naming ``certs/current/cert.pem``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ansible_collections.certfleet.deploy.plugins.module_utils import envoy
from tests.integration.test_nginx_certificate import bad_inputs
from tests.support import envoy as real_envoy
from tests.support.envoy_rules import EnvoyRules
from tests.support.modules import run_module
from tests.support.nginx import free_port
from tests.support.pki import PKI, Leaf

MODULE = "envoy_certificate"
SECRET = "site_cert"
NO_ENVOY = ("no envoy binary on PATH: Envoy cannot be installed on this "
            "machine, so only the run against tests/support/envoy_rules.py, "
            "which follows Envoy's documented watch rules, proves anything here")


@dataclass
class Site:
    server: object
    base: Path

    @property
    def watched(self) -> Path:
        return self.base / "certs"

    @property
    def link(self) -> Path:
        return self.watched / "current"

    @property
    def sds(self) -> Path:
        return self.base / "sds" / "site.yaml"

    def served(self) -> str:
        return self.server.served_sha256()

    def versioned(self) -> list:
        return sorted(p.name for p in self.watched.iterdir()
                      if p.name.startswith("current.") and not p.is_symlink())


def write_sds(site: Site) -> None:
    document = envoy.sds_document(SECRET, str(site.link / "cert.pem"),
                                  str(site.link / "key.pem"), str(site.watched))
    site.sds.parent.mkdir(parents=True, exist_ok=True)
    temp = site.sds.with_suffix(".tmp")
    temp.write_text(yaml.safe_dump(document))
    os.replace(temp, site.sds)


@pytest.fixture(params=["envoy", "rules"])
def envoy_site(request, tmp_path: Path, pki: PKI) -> Iterator[Site]:
    """Envoy (or the rules stand-in) serving ``pki.rsa`` through certs/current."""
    base = tmp_path / "envoy"
    hand = base / "certs" / "hand"
    hand.mkdir(parents=True)
    (hand / "cert.pem").write_bytes(pki.rsa.fullchain_pem)
    (hand / "key.pem").write_bytes(pki.rsa.key_pem)
    os.chmod(hand / "key.pem", 0o600)
    (base / "certs" / "current").symlink_to("hand")
    if request.param == "envoy":
        if real_envoy.binary() is None:
            pytest.skip(NO_ENVOY)
        site = Site(None, base)
        write_sds(site)
        site.server = real_envoy.Envoy(site.sds, SECRET, base / "run")
    else:
        site = Site(None, base)
        write_sds(site)
        site.server = EnvoyRules(site.sds, SECRET)
    site.server.start()
    try:
        assert site.server.wait_until_served(pki.rsa.sha256) == pki.rsa.sha256
        yield site
    finally:
        site.server.stop()


def args_for(site: Site, leaf: Leaf, tmp_path: Path, **extra) -> dict:
    src = leaf.write(tmp_path / f"src-{leaf.sha256[:8]}")
    args = {
        "cert_src": str(src["cert"]),
        "chain_src": str(src["chain"]),
        "key_src": str(src["privkey"]),
        "cert_path": str(site.link / "cert.pem"),
        "key_path": str(site.link / "key.pem"),
        "backup_dir": str(tmp_path / "state"),
        "verify_endpoint": [f"127.0.0.1:{site.server.port}"],
    }
    args.update(extra)
    return args


def tree(site: Site) -> dict:
    """Everything under the base directory: links, bytes, modes, inodes."""
    found = {}
    for path in sorted(site.base.rglob("*")):
        if "run" in path.relative_to(site.base).parts:
            continue
        name = str(path.relative_to(site.base))
        if path.is_symlink():
            found[name] = ("link", os.readlink(path), path.lstat().st_ino)
        elif path.is_file():
            info = path.stat()
            found[name] = (path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_ino)
    return found


def reloads(site: Site) -> int | None:
    """Pair reloads the stand-in counted (None for a real Envoy)."""
    counters = getattr(site.server, "counters", None)
    return counters.reloads if counters else None


def assert_no_key_bytes(result: dict, *leaves: Leaf) -> None:
    text = json.dumps(result)
    for leaf in leaves:
        for line in leaf.key_pem.decode().splitlines()[1:-1]:
            assert line not in text


def test_deploy_is_served_and_files_are_right(envoy_site, pki, tmp_path) -> None:
    site = envoy_site
    before = tree(site)
    result = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path,
                                         sds_path=str(site.sds),
                                         secret_name=SECRET))
    assert result.get("failed") is not True, result["msg"]
    assert result["changed"] is True
    assert site.served() == pki.ecdsa.sha256
    assert result["served"]["chain_sha256"] == [
        pki.ecdsa.sha256, *[c["sha256"] for c in result["certificate"]["chain"]]]
    [version] = site.versioned()
    assert os.readlink(site.link) == version
    assert pki.ecdsa.sha256[:16] in version
    assert (site.link / "cert.pem").read_bytes() == pki.ecdsa.fullchain_pem
    assert (site.link / "key.pem").read_bytes() == pki.ecdsa.key_pem
    assert stat.S_IMODE((site.link / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((site.watched / version).stat().st_mode) == 0o755
    # the SDS resource written by the module says what the operator's did
    assert yaml.safe_load(site.sds.read_text()) == yaml.safe_load(
        before["sds/site.yaml"][0])
    assert result["checks"]["sds_resource"] == "passed (xds-protos)"
    if real_envoy.binary() is None:
        assert result["checks"]["envoy_validate"].startswith("skipped: no envoy")
    # the operator's directory is untouched, and nothing is left staged
    for name in ("certs/hand/cert.pem", "certs/hand/key.pem"):
        assert tree(site)[name] == before[name]
    assert not [p for p in site.base.rglob(".*") if "run" not in p.parts]
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_rerun_changes_nothing_and_moves_nothing(envoy_site, pki, tmp_path) -> None:
    site = envoy_site
    args = args_for(site, pki.ecdsa, tmp_path)
    assert run_module(MODULE, args)["changed"] is True
    before, count = tree(site), reloads(site)
    again = run_module(MODULE, args)
    assert again["changed"] is False, again
    assert again["served"]["sha256"] == pki.ecdsa.sha256
    assert "nudged" not in again
    assert tree(site) == before  # the link and every file: same inodes
    site.server.settle()
    assert reloads(site) == count


def test_check_mode_changes_nothing_and_diff_shows_metadata(
        envoy_site, pki, tmp_path) -> None:
    site = envoy_site
    before = tree(site)
    result = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path,
                                         sds_path=str(site.sds),
                                         secret_name=SECRET),
                        check_mode=True, diff=True)
    assert result["changed"] is True
    assert tree(site) == before
    assert not (tmp_path / "state").exists()
    assert site.served() == pki.rsa.sha256
    link_before = [line for line in result["diff"]["before"].splitlines()
                   if line.startswith(f"{site.link} -> ")][0]
    assert "-> hand" in link_before and pki.rsa.sha256 in link_before
    assert pki.ecdsa.sha256 in result["diff"]["after"]
    assert "private key (mode 0600)" in result["diff"]["after"]
    assert_no_key_bytes(result, pki.rsa, pki.ecdsa)


def test_bad_input_fails_and_touches_nothing(envoy_site, pki, tmp_path) -> None:
    site = envoy_site
    before = tree(site)
    deep = site.watched / "hand" / "inner"
    cases = dict(bad_inputs(pki, tmp_path))
    cases.update({
        "F16 link below the watched level": (
            {"cert_path": str(deep / "cert.pem"), "key_path": str(deep / "key.pem"),
             "watched_directory": str(site.watched)}, "must sit directly inside"),
        "F16 watched directory above the link's parent": (
            {"watched_directory": str(site.base)}, "must sit directly inside"),
        "pair split over two directories": (
            {"key_path": str(site.watched / "other" / "key.pem")},
            "must be in the same directory"),
        "a real directory where the link goes": (
            {"cert_path": str(site.watched / "hand" / "cert.pem"),
             "key_path": str(site.watched / "hand" / "key.pem")},
            "is a real directory, not a link"),
        "SDS file of unknown kind": (
            {"sds_path": str(site.base / "sds" / "site.txt"),
             "secret_name": SECRET}, "must end in .yaml, .yml or .json"),
        "SDS file without a secret name": (
            {"sds_path": str(site.sds)}, "secret_name is required"),
    })
    for name, (extra, words) in cases.items():
        args = args_for(site, pki.ecdsa, tmp_path)
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
        assert tree(site) == before, name
        assert not (tmp_path / "state" / "journal.json").exists(), name
        assert_no_key_bytes(result, pki.rsa, pki.ecdsa)
    assert site.served() == pki.rsa.sha256


def test_f16_edits_in_place_and_flips_above_are_ignored(
        envoy_site, pki, tmp_path) -> None:
    """F16: what Envoy does not notice, and the module not doing it.

    Rewriting the live files in place, and flipping a link one level above the
    watched directory, leave the old certificate served. The module's deploy
    is noticed; and across two deploys it never writes into a directory the
    link points at: the first set keeps its bytes and inodes until retired.
    """
    site = envoy_site
    count = reloads(site)
    (site.watched / "hand" / "cert.pem").write_bytes(pki.ecdsa.fullchain_pem)
    (site.watched / "hand" / "key.pem").write_bytes(pki.ecdsa.key_pem)
    (site.watched / "notes.txt").write_text("created, not moved\n")
    site.server.settle()
    assert site.served() == pki.rsa.sha256
    if count is not None:  # the stand-in saw the creation, and ignored it
        assert [e.name for e in site.server.counters.events] == ["notes.txt"] * 3
        assert reloads(site) == count
    (site.watched / "hand" / "cert.pem").write_bytes(pki.rsa.fullchain_pem)
    (site.watched / "hand" / "key.pem").write_bytes(pki.rsa.key_pem)
    first = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path))
    assert first["changed"] is True, first.get("msg")
    assert site.served() == pki.ecdsa.sha256
    [version] = site.versioned()
    # a certificate edited in place inside the live versioned directory: ignored
    count = reloads(site)
    original = (site.link / "cert.pem").read_bytes()
    (site.link / "cert.pem").write_bytes(pki.ed25519.fullchain_pem)
    site.server.settle()
    assert site.served() == pki.ecdsa.sha256
    if count is not None:
        assert reloads(site) == count
    (site.link / "cert.pem").write_bytes(original)
    live = {name: v for name, v in tree(site).items() if version in name}
    second = run_module(MODULE, args_for(site, pki.ed25519, tmp_path))
    assert second["changed"] is True, second.get("msg")
    assert site.served() == pki.ed25519.sha256
    written = {f["path"] for f in second["files"] if f["changed"]}
    assert not any(version in path for path in written if path != str(site.link))
    retired = tmp_path / "state" / "backups" / second["deployment_id"] / "retired"
    assert second["retired"] == [str(site.watched / version)]
    for name, entry in live.items():
        if name.endswith(".pem"):
            assert (retired / version / Path(name).name).read_bytes() == entry[0]
    assert (site.watched / "hand").is_dir()  # not the module's: kept


def test_link_flipped_above_the_watched_level_is_not_seen(
        envoy_site, pki, tmp_path) -> None:
    """F16, the other half: swapping the watched directory itself is no move in it."""
    site = envoy_site
    other = site.base / "certs-next"
    (other / "hand").mkdir(parents=True)
    (other / "hand" / "cert.pem").write_bytes(pki.ecdsa.fullchain_pem)
    (other / "hand" / "key.pem").write_bytes(pki.ecdsa.key_pem)
    (other / "current").symlink_to("hand")
    real = site.base / "certs-real"
    site.watched.rename(real)
    (site.base / "tmp-link").symlink_to("certs-next")
    os.replace(site.base / "tmp-link", site.watched)
    site.server.settle()
    assert site.served() == pki.rsa.sha256


def test_verify_failure_flips_the_link_back(envoy_site, pki, tmp_path) -> None:
    """The SDS resource names another link than the module flips: the new
    certificate is never served, so the link goes back and the old is proven."""
    site = envoy_site
    (site.watched / "live").symlink_to("hand")
    document = envoy.sds_document(SECRET, str(site.watched / "live" / "cert.pem"),
                                  str(site.watched / "live" / "key.pem"),
                                  str(site.watched))
    site.sds.with_suffix(".tmp").write_text(yaml.safe_dump(document))
    os.replace(site.sds.with_suffix(".tmp"), site.sds)
    site.server.settle()
    before = tree(site)
    result = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path,
                                         verify_attempts=4))
    assert result["failed"] is True
    assert result["rolled_back"] is True and result["rollback_failed"] is False
    assert pki.rsa.sha256 in result["msg"]
    assert os.readlink(site.link) == "hand"
    assert site.versioned() == []
    after = tree(site)
    assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before.items()}
    assert site.served() == pki.rsa.sha256


def test_failing_config_test_moves_nothing(envoy_site, pki, tmp_path) -> None:
    site = envoy_site
    before = tree(site)
    result = run_module(MODULE, args_for(
        site, pki.ecdsa, tmp_path,
        validate_command=["sh", "-c", "echo refused >&2; exit 3"]))
    assert result["failed"] is True
    assert "Nothing was moved" in result["msg"] and "refused" in result["msg"]
    assert tree(site) == before
    assert site.served() == pki.rsa.sha256


def fake_envoy(tmp_path: Path, rc: int) -> Path:
    """A stand-in ``envoy`` that records its arguments and the bootstrap given."""
    script = tmp_path / "bin" / "envoy"
    script.parent.mkdir(exist_ok=True)
    record = tmp_path / "envoy-called.json"
    script.write_text(
        "#!/bin/sh\n"
        f"{sys.executable} - \"$@\" <<'EOF'\n"
        "import json, sys, pathlib\n"
        "config = json.loads(pathlib.Path(sys.argv[4]).read_text())\n"
        "tls = config['static_resources']['listeners'][0]['filter_chains'][0]"
        "['transport_socket']['typed_config']['common_tls_context']"
        "['tls_certificates'][0]\n"
        "files = {k: pathlib.Path(v['filename']).read_text() "
        "for k, v in tls.items()}\n"
        f"pathlib.Path({str(record)!r}).write_text(json.dumps("
        "{'argv': sys.argv[1:], 'config': config, 'files': files}))\n"
        "EOF\n"
        f"[ {rc} -eq 0 ] || echo 'error initializing configuration: bad key' >&2\n"
        f"exit {rc}\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("rc", [0, 1])
def test_envoy_validate_runs_on_the_staged_pair(envoy_site, pki, tmp_path, rc):
    """``envoy --mode validate`` (here a recording stand-in) sees the new pair
    before the flip; its refusal moves nothing."""
    site = envoy_site
    before = tree(site)
    fake = fake_envoy(tmp_path, rc)
    result = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path,
                                         envoy_binary=str(fake)))
    called = json.loads((tmp_path / "envoy-called.json").read_text())
    assert called["argv"][:3] == ["--mode", "validate", "-c"]
    assert called["files"]["certificate_chain"] == pki.ecdsa.fullchain_pem.decode()
    assert envoy.check_against_api(called["config"], "bootstrap").startswith("passed")
    assert not list((tmp_path / "state").glob("validate-*"))
    if rc == 0:
        assert result["changed"] is True, result.get("msg")
        assert result["checks"]["envoy_validate"].startswith("passed")
        assert site.served() == pki.ecdsa.sha256
    else:
        assert result["failed"] is True
        assert "bad key" in result["msg"] and "Nothing was moved" in result["msg"]
        assert tree(site) == before
        assert site.served() == pki.rsa.sha256


def test_failed_rollback_gives_manual_steps_that_work(envoy_site, pki, tmp_path):
    site = envoy_site
    dead = f"127.0.0.1:{free_port()}"
    result = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path,
                                         verify_endpoint=[dead], verify_attempts=2,
                                         verify_timeout=0.5))
    assert result["failed"] is True and result["rollback_failed"] is True
    assert dead in result["msg"]
    # the automatic restore already flipped the link back; the manual step
    # for it is the same flip, and works when run again
    flip = [s for s in result["manual_steps"] if "mv -Tf" in s]
    assert flip and str(site.link) in flip[0]
    subprocess.run(["/bin/sh", "-c", flip[0]], check=True)
    assert os.readlink(site.link) == "hand"


def test_link_recreated_in_place_is_converged(envoy_site, pki, tmp_path) -> None:
    """F05 for a watcher: a link removed and created again is no move, so the
    server keeps the old pair; the next deploy sees the files in place but not
    served, and flips the link again by rename."""
    site = envoy_site
    args = args_for(site, pki.ecdsa, tmp_path)
    assert run_module(MODULE, args)["changed"] is True
    [version] = site.versioned()
    temp = site.base / "tmp-link"
    temp.symlink_to("hand")
    os.replace(temp, site.link)  # an operator's proper flip back: a move
    assert site.server.wait_until_served(pki.rsa.sha256) == pki.rsa.sha256
    os.unlink(site.link)
    os.symlink(version, site.link)
    site.server.settle()
    assert site.served() == pki.rsa.sha256  # not noticed
    result = run_module(MODULE, args)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert "did not serve them" in result["reason"]
    assert result["nudged"] == str(site.link)
    assert site.served() == pki.ecdsa.sha256


def test_sds_resource_written_as_json_is_read(envoy_site, pki, tmp_path) -> None:
    site = envoy_site
    if site.server.kind == "envoy":
        pytest.skip("the real Envoy's bootstrap names sds/site.yaml")
    json_sds = site.base / "sds" / "site.json"
    result = run_module(MODULE, args_for(site, pki.ecdsa, tmp_path,
                                         sds_path=str(json_sds),
                                         secret_name=SECRET))
    assert result["changed"] is True, result.get("msg")
    document = json.loads(json_sds.read_text())
    assert document == envoy.sds_document(SECRET, str(site.link / "cert.pem"),
                                          str(site.link / "key.pem"),
                                          str(site.watched))


def test_concurrent_runs_leave_one_consistent_set(envoy_site, pki, tmp_path):
    site = envoy_site
    leaves = [pki.ecdsa, pki.leaf(key_type="rsa")]
    procs = []
    for number, leaf in enumerate(leaves):
        args = args_for(site, leaf, tmp_path / str(number),
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
    cert = (site.link / "cert.pem").read_bytes()
    winner = next(leaf for leaf in leaves if leaf.fullchain_pem == cert)
    assert (site.link / "key.pem").read_bytes() == winner.key_pem
    assert site.served() == winner.sha256
    assert site.versioned() == [os.readlink(site.link)]
    assert not [p for p in site.base.rglob(".*") if "run" not in p.parts]


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
    "ansible_collections.certfleet.deploy.plugins.modules.envoy_certificate",
    run_name="__main__")
"""


@pytest.mark.parametrize("kill_at", [3, 4, 5])
def test_killed_deploy_is_recovered_by_the_next_run(
        envoy_site, pki, tmp_path, kill_at) -> None:
    """Killed after the certificate (3), the key (4) or the link flip (5): a
    complete pair is served all along, and the next run puts the link back."""
    site = envoy_site
    args = args_for(site, pki.ecdsa, tmp_path)
    died = subprocess.run(
        [sys.executable, "-c", DYING_MODULE],
        input=json.dumps({"ANSIBLE_MODULE_ARGS": args}), text=True,
        capture_output=True, env=dict(os.environ, KILL_AT_RENAME=str(kill_at)),
        check=False)
    assert died.returncode == 9, died.stdout + died.stderr
    site.server.settle()
    assert site.served() in (pki.rsa.sha256, pki.ecdsa.sha256)
    result = run_module(MODULE, args_for(site, pki.rsa, tmp_path))
    assert result["recovered"]["action"] == "restored", result
    assert site.served() == pki.rsa.sha256
    assert not (tmp_path / "state" / "journal.json").exists()
    assert not [p for p in site.base.rglob(".*") if "run" not in p.parts]
