"""Servers, versions and certificate files, as certificate_facts sees them.

``LocalModule`` stands in for ``AnsibleModule`` with real processes behind
``run_command`` and a PATH of our choosing behind ``get_bin_path``, so the
servers a test "installs" are small scripts that print what the real ones
print.
"""

from __future__ import annotations

import datetime
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import discovery
from ansible_collections.certfleet.deploy.plugins.module_utils.confparse import (
    CertUse,
)

VERSION_OUTPUTS = {
    "nginx": ("nginx version: nginx/1.22.1\n", "1.22.1"),
    "apache": ("Server version: Apache/2.4.62 (Debian)\nServer built: x\n", "2.4.62"),
    "haproxy": ("HAProxy version 2.6.12-1+deb12u1 2023/12/16 - https://x/\n",
                "2.6.12-1+deb12u1"),
    "postfix": ("mail_version = 3.7.11\n", "3.7.11"),
    "dovecot": ("2.3.19.1 (9b53102964)\n", "2.3.19.1"),
    "traefik": ("Version:      3.1.2\nCodename:     comte\n", "3.1.2"),
    "envoy": ("envoy  version: 816188b86a0a52095b116b107f576324082c7c02/1.28.0/"
              "Clean/RELEASE/BoringSSL\n", "1.28.0"),
}


@pytest.mark.parametrize("spec", discovery.SERVERS, ids=lambda s: s.name)
def test_version_of_each_server(spec) -> None:
    output, version = VERSION_OUTPUTS[spec.name]
    assert discovery.parse_version(spec, output) == version
    assert discovery.parse_version(spec, "something else\n") is None


class LocalModule:
    """Just enough of AnsibleModule, with binaries looked up in ``bin_dir``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir

    def run_command(self, args, check_rc=False):
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def get_bin_path(self, name):
        path = self.bin_dir / name
        return str(path) if path.exists() else None


def _script(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _params(**overrides) -> dict:
    params = {"servers": list(discovery.SERVER_NAMES), "command_timeout": 30}
    params.update(overrides)
    return params


def test_reads_each_certificate_once_with_every_use(tmp_path, pki) -> None:
    live = pki.rsa.write(tmp_path / "live")
    soon = pki.leaf(names=["soon.example.com"], key_type="ecdsa",
                    not_after=datetime.datetime.now(datetime.timezone.utc)
                    + datetime.timedelta(days=3, hours=12))
    soon_paths = soon.write(tmp_path / "soon")
    (tmp_path / "garbage.pem").write_text("not PEM at all\n")
    uses = [
        CertUse("nginx", str(live["fullchain"]), "a.example.com", "ssl_certificate"),
        CertUse("apache", str(live["fullchain"]), "b (*:443)", "SSLCertificateFile"),
        CertUse("haproxy", str(tmp_path / "garbage.pem"), "frontend x", "crt"),
        CertUse("nginx", str(soon_paths["cert"]), "soon.example.com",
                "ssl_certificate"),
        CertUse("postfix", str(live["privkey"]), "smtpd", "smtpd_tls_chain_files",
                optional=True),
        CertUse("dovecot", str(tmp_path / "missing.pem"), "global", "ssl_cert"),
        CertUse("traefik", str(tmp_path), "tls", "certFile"),
    ]
    records = discovery.inspect(uses)
    assert [r["path"] for r in records] == [
        str(soon_paths["cert"]), str(live["fullchain"]), str(tmp_path),
        str(tmp_path / "garbage.pem"), str(tmp_path / "missing.pem"),
    ]
    first, second = records[0], records[1]
    assert first["sha256"] == soon.sha256 and first["days_left"] == 3
    assert first["certificates_in_file"] == 1 and first["chain"] == []
    assert second["sha256"] == pki.rsa.sha256
    assert second["sans"] == ["example.com", "www.example.com"]
    assert second["certificates_in_file"] == 2
    intermediate = pki.intermediate_cert.subject.rfc4514_string()
    assert second["chain"][0]["subject"] == intermediate
    assert [u["server"] for u in second["used_by"]] == ["nginx", "apache"]
    assert second["error"] is None
    errors = {r["path"]: r["error"] for r in records[2:]}
    assert errors == {
        str(tmp_path): f"Certificate file {tmp_path} cannot be read: Is a directory.",
        str(tmp_path / "garbage.pem"):
            f"Certificate file {tmp_path}/garbage.pem holds no PEM data.",
        str(tmp_path / "missing.pem"):
            f"Certificate file {tmp_path}/missing.pem cannot be read: "
            "No such file or directory.",
    }
    assert all(r["sha256"] is None and r["days_left"] is None for r in records[2:])


def test_key_material_never_reaches_a_record(tmp_path, pki) -> None:
    combined = tmp_path / "combined.pem"
    combined.write_bytes(pki.rsa.fullchain_pem + pki.rsa.key_pem)
    key_only = tmp_path / "key.pem"
    key_only.write_bytes(pki.rsa.key_pem)
    records = discovery.inspect([
        CertUse("haproxy", str(combined), "frontend a", "crt"),
        CertUse("nginx", str(key_only), "x", "ssl_certificate"),
    ])
    assert records[0]["sha256"] == pki.rsa.sha256
    assert records[1]["error"] == (
        f"Certificate file {key_only} holds no certificate, only PEM blocks of kind "
        "PRIVATE KEY."
    )
    text = repr(records)
    assert "PRIVATE KEY-----" not in text and "BEGIN" not in text
    body = b"".join(pki.rsa.key_pem.splitlines()[1:3]).decode()
    assert body not in text


def test_broken_certificate_and_oversized_file(tmp_path, pki) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_bytes(pki.rsa.cert_pem + b"-----BEGIN CERTIFICATE-----\n"
                       b"Tm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    big = tmp_path / "big.pem"
    big.write_bytes(b"#" * (discovery.MAX_CERT_FILE + 1))
    cut = tmp_path / "cut.pem"
    cut.write_bytes(pki.rsa.cert_pem[:200])
    records = {r["path"]: r["error"] for r in discovery.inspect([
        CertUse("nginx", str(p), "x", "ssl_certificate") for p in (broken, big, cut)
    ])}
    assert records[str(broken)].startswith(
        f"Certificate 2 in file {broken} cannot be parsed: ")
    assert records[str(big)] == (
        f"Certificate file {big} is larger than {discovery.MAX_CERT_FILE} bytes: "
        "not a certificate file."
    )
    assert records[str(cut)].startswith(f"Certificate file {cut} is truncated")


def test_without_cryptography_every_file_says_so(tmp_path, monkeypatch, pki) -> None:
    monkeypatch.setattr(discovery.material, "x509", None)
    path = pki.rsa.write(tmp_path)["cert"]
    (record,) = discovery.inspect([CertUse("nginx", str(path), "x", "ssl_certificate")])
    assert "the Python library cryptography is not installed" in record["error"]


def test_servers_found_their_versions_and_problems(tmp_path) -> None:
    bin_dir = tmp_path / "bin"
    _script(bin_dir, "nginx",
            '[ "$1" = "-v" ] && echo "nginx version: nginx/1.99.0" >&2\n'
            '[ "$1" = "-T" ] && { echo "nginx: [emerg] broken" >&2; exit 1; }; exit 0')
    _script(bin_dir, "haproxy", "echo 'no version here'")
    _script(bin_dir, "traefik", "exit 3")
    module = LocalModule(bin_dir)
    result = discovery.Discovery(module, _params(
        servers=["nginx", "haproxy", "traefik", "envoy"],
        haproxy_config=[str(tmp_path / "none.cfg")],
    )).run()
    by_name = {s["name"]: s for s in result["servers"]}
    assert list(by_name) == ["nginx", "haproxy", "traefik", "envoy"]
    nginx = by_name["nginx"]
    assert nginx["installed"] is True and nginx["version"] == "1.99.0"
    assert nginx["config"] is None
    assert nginx["problems"] == [
        f"The configuration dump failed for nginx: `{bin_dir}/nginx -T` exited 1: "
        "nginx: [emerg] broken"
    ]
    assert by_name["haproxy"]["version"] is None
    assert "printed no version number" in by_name["haproxy"]["problems"][0]
    assert "cannot be read" in by_name["haproxy"]["problems"][1]
    assert by_name["traefik"]["problems"][0].startswith(
        "The version query failed for traefik")
    assert by_name["envoy"] == {
        "name": "envoy", "installed": False, "binary": None, "version": None,
        "config": None, "problems": [], "certificates": 0,
    }
    assert result["certificates"] == []


def test_nothing_installed_reads_nothing(tmp_path) -> None:
    result = discovery.Discovery(LocalModule(tmp_path / "bin"), _params()).run()
    assert [s["config"] for s in result["servers"]] == [None] * 7
    assert all(not s["installed"] and not s["problems"] for s in result["servers"])


def test_explicit_nginx_command_that_does_not_exist(tmp_path) -> None:
    module = LocalModule(tmp_path / "bin")
    result = discovery.Discovery(module, _params(
        servers=["nginx"], nginx_command=[str(tmp_path / "no-nginx"), "-T"],
    )).run()
    assert result["servers"][0]["problems"] == [
        f"The configuration dump command for nginx cannot run: "
        f"'{tmp_path}/no-nginx' was not found on this host."
    ]


@pytest.mark.skipif(not shutil.which("postconf"), reason="Postfix is not installed")
def test_postfix_through_real_postconf(tmp_path, pki) -> None:
    live = pki.rsa.write(tmp_path / "tls")
    (tmp_path / "main.cf").write_text(
        "smtpd_tls_chain_files = $config_directory/tls/privkey.pem, "
        "$config_directory/tls/fullchain.pem\n"
    )
    (tmp_path / "master.cf").write_text(
        "smtp inet n - n - - smtpd\nsubmission inet n - n - - smtpd\n"
        f"  -o smtpd_tls_cert_file={live['cert']}\n"
    )
    bin_dir = Path(shutil.which("postconf")).parent
    result = discovery.Discovery(LocalModule(bin_dir), _params(
        servers=["postfix"], postfix_config_dir=str(tmp_path),
    )).run()
    assert result["servers"][0]["config"] == str(tmp_path)
    assert [(c["path"], [u["site"] for u in c["used_by"]])
            for c in result["certificates"]] == [
        # The same leaf in both: equal expiry, so by path.
        (str(live["cert"]), ["service submission/inet"]),
        (str(live["fullchain"]), ["smtpd"]),
    ]


def test_default_locations_are_used_only_when_present(tmp_path, monkeypatch) -> None:
    for name, path in (("APACHE", "a.conf"), ("TRAEFIK", "t"), ("ENVOY", "e.yaml"),
                       ("HAPROXY", "h.cfg")):
        monkeypatch.setattr(discovery, f"DEFAULT_{name}_CONFIGS",
                            (str(tmp_path / path),))
    monkeypatch.setattr(discovery, "DEFAULT_POSTFIX_DIR", str(tmp_path / "pf"))
    monkeypatch.setattr(discovery, "DEFAULT_DOVECOT_CONFIG", str(tmp_path / "d.conf"))
    bin_dir = tmp_path / "bin"
    for name in ("apache2", "postconf", "dovecot", "doveconf", "traefik", "envoy",
                 "haproxy"):
        _script(bin_dir, name, "exit 0")
    module = LocalModule(bin_dir)
    params = _params(servers=["apache", "traefik", "envoy", "haproxy", "postfix",
                              "dovecot"])
    assert [s["config"] for s in discovery.Discovery(module, params).run()["servers"]] \
        == [None] * 6
    (tmp_path / "a.conf").write_text("SSLCertificateFile /x.pem\n")
    (tmp_path / "t").mkdir()
    (tmp_path / "e.yaml").write_text("{}\n")
    (tmp_path / "h.cfg").write_text("global\n")
    (tmp_path / "pf").mkdir()
    (tmp_path / "pf" / "main.cf").write_text("")
    (tmp_path / "d.conf").write_text("")
    servers = discovery.Discovery(module, params).run()["servers"]
    configs = [s["config"] for s in servers]
    assert configs == [str(tmp_path / "a.conf"), str(tmp_path / "h.cfg"),
                       str(tmp_path / "pf"), str(tmp_path / "d.conf"),
                       str(tmp_path / "t"), str(tmp_path / "e.yaml")]
