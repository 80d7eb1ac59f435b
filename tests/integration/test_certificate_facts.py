"""certificate_facts as a real module process, against real server tools.

Every server gets a configuration of its own under tmp_path, read the way the
module reads it on a host: ``nginx -T`` from the real nginx, ``postconf``
and ``doveconf`` from the real Postfix and Dovecot when installed, and the
configuration files of Apache, HAProxy, Traefik and Envoy. Nothing under
/etc is read: every option points into tmp_path. The routing tables are
fake files, the interfaces are this machine's.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.support.modules import REPO, run_module
from tests.support.nginx import NGINX_BINARY, TEMP_PATHS

ALL_SERVERS = ["nginx", "apache", "haproxy", "postfix", "dovecot", "traefik", "envoy"]
ROUTE_HEADER = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask"
                "\t\tMTU\tWindow\tIRTT\n")


def _nginx_tree(root: Path, site_a: dict, site_b: dict) -> list[str]:
    """An nginx prefix with two TLS sites in an included file; its -T command."""
    (root / "sites").mkdir(parents=True)
    temp = "\n".join(f"    {n}_temp_path {root}/{n}_temp;" for n in TEMP_PATHS)
    (root / "nginx.conf").write_text(
        f"pid {root}/nginx.pid;\nerror_log {root}/error.log;\nevents {{ }}\n"
        f"http {{\n    access_log off;\n{temp}\n    include sites/*.conf;\n}}\n"
    )
    (root / "sites" / "sites.conf").write_text(textwrap.dedent(f"""\
        server {{
            listen 127.0.0.1:1 ssl;
            server_name a.example.test www.a.example.test;
            ssl_certificate {site_a['fullchain']};
            ssl_certificate_key {site_a['privkey']};
        }}
        server {{
            listen 127.0.0.1:2 ssl;
            server_name b.example.test;
            ssl_certificate {site_b['fullchain']};
            ssl_certificate_key {site_b['privkey']};
        }}
        """))
    return [NGINX_BINARY, "-p", str(root), "-e", str(root / "error.log"),
            "-c", str(root / "nginx.conf"), "-T"]


def _apache_tree(root: Path, site: dict, broken: Path) -> Path:
    (root / "sites").mkdir(parents=True)
    (root / "apache2.conf").write_text(
        f'ServerRoot "{root}"\nIncludeOptional sites/*.conf\n'
    )
    (root / "sites" / "ssl.conf").write_text(textwrap.dedent(f"""\
        <VirtualHost 127.0.0.1:443>
            ServerName shop.example.test
            SSLEngine on
            SSLCertificateFile {site['fullchain']}
            SSLCertificateKeyFile {site['privkey']}
        </VirtualHost>
        <VirtualHost 127.0.0.1:444>
            ServerName broken.example.test
            SSLEngine on
            SSLCertificateFile {broken}
        </VirtualHost>
        """))
    return root / "apache2.conf"


def _haproxy_config(root: Path, pki) -> tuple[Path, Path]:
    crt_dir = root / "certs"
    crt_dir.mkdir(parents=True)
    combined = crt_dir / "lb.pem"
    combined.write_bytes(pki.ecdsa.fullchain_pem + pki.ecdsa.key_pem)
    (crt_dir / "lb.pem.ocsp").write_bytes(b"\x30\x03")
    config = root / "haproxy.cfg"
    config.write_text(f"frontend fe_tls\n    bind 127.0.0.1:8443 ssl crt {crt_dir}\n")
    return config, combined


def _postfix_dir(root: Path, site: dict) -> Path:
    root.mkdir(parents=True)
    (root / "main.cf").write_text(
        f"smtpd_tls_chain_files = {site['privkey']}, {site['fullchain']}\n"
    )
    (root / "master.cf").write_text("smtp inet n - n - - smtpd\n")
    return root


def _dovecot_config(root: Path, site: dict, missing: Path) -> Path:
    root.mkdir(parents=True)
    config = root / "dovecot.conf"
    config.write_text(
        f"ssl_cert = <{site['fullchain']}\nssl_key = <{site['privkey']}\n"
        f"local_name imap.example.test {{\n  ssl_cert = <{missing}\n}}\n"
    )
    return config


def _traefik_dir(root: Path, site: dict) -> Path:
    root.mkdir(parents=True)
    (root / "tls.yml").write_text(
        f"tls:\n  certificates:\n    - certFile: {site['fullchain']}\n"
        f"      keyFile: {site['privkey']}\n"
    )
    return root


def _envoy_config(root: Path, site: dict) -> Path:
    root.mkdir(parents=True)
    config = root / "envoy.json"
    config.write_text(json.dumps({"static_resources": {"listeners": [{
        "name": "ingress", "address": {},
        "filter_chains": [{"transport_socket": {"typed_config": {
            "common_tls_context": {"tls_certificates": [{
                "certificate_chain": {"filename": str(site["cert"])},
                "private_key": {"filename": str(site["privkey"])},
            }]}}}}],
    }]}}))
    return config


def _uses(result: dict) -> dict:
    """{(server, site): (path, sha256 or error)} over every certificate record."""
    found = {}
    for record in result["ansible_facts"]["certfleet"]["certificates"]:
        for use in record["used_by"]:
            found[(use["server"], use["site"])] = (
                record["path"], record["sha256"] or record["error"])
    return found


def test_every_server_reads_its_own_configuration(tmp_path, pki) -> None:
    if not os.access(NGINX_BINARY, os.X_OK):
        pytest.skip("nginx is not installed")
    now = datetime.datetime.now(datetime.timezone.utc)
    soon = pki.leaf(names=["b.example.test"], key_type="ecdsa",
                    not_after=now + datetime.timedelta(days=9, hours=12))
    site_a = pki.rsa.write(tmp_path / "tls" / "a")
    site_b = soon.write(tmp_path / "tls" / "b")
    broken = tmp_path / "tls" / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    missing = tmp_path / "tls" / "missing.pem"
    haproxy, combined = _haproxy_config(tmp_path / "haproxy", pki)
    result = run_module("certificate_facts", {
        "servers": ALL_SERVERS,
        "nginx_command": _nginx_tree(tmp_path / "nginx", site_a, site_b),
        "apache_config": str(_apache_tree(tmp_path / "apache", site_a, broken)),
        "haproxy_config": [str(haproxy)],
        "postfix_config_dir": str(_postfix_dir(tmp_path / "postfix", site_b)),
        "dovecot_config": str(_dovecot_config(tmp_path / "dovecot", site_a, missing)),
        "traefik_config": [str(_traefik_dir(tmp_path / "traefik", site_b))],
        "envoy_config": [str(_envoy_config(tmp_path / "envoy", site_a))],
    }, check_mode=True)
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    facts = result["ansible_facts"]["certfleet"]
    servers = {s["name"]: s for s in facts["servers"]}
    assert list(servers) == ALL_SERVERS
    assert servers["nginx"]["version"] == re.search(
        r"nginx/(\S+)", subprocess.run([NGINX_BINARY, "-v"], capture_output=True,
                                       text=True, check=True).stderr).group(1)
    uses = _uses(result)
    rsa, ecdsa = pki.rsa.sha256, pki.ecdsa.sha256
    expected = {
        ("nginx", "a.example.test www.a.example.test"): (site_a["fullchain"], rsa),
        ("nginx", "b.example.test"): (site_b["fullchain"], soon.sha256),
        ("apache", "shop.example.test (127.0.0.1:443)"): (site_a["fullchain"], rsa),
        ("haproxy", "frontend fe_tls (bind 127.0.0.1:8443)"): (combined, ecdsa),
        ("traefik", "tls.certificates"): (site_b["fullchain"], soon.sha256),
        ("envoy", "listener ingress"): (site_a["cert"], rsa),
    }
    if shutil.which("postconf"):
        expected[("postfix", "smtpd")] = (site_b["fullchain"], soon.sha256)
    if shutil.which("doveconf"):
        expected[("dovecot", "global")] = (site_a["fullchain"], rsa)
        expected[("dovecot", "local_name imap.example.test")] = (
            missing, f"Certificate file {missing} cannot be read: "
                     "No such file or directory.")
    for key, (path, sha_or_error) in expected.items():
        assert uses[key] == (str(path), sha_or_error), key
    assert uses[("apache", "broken.example.test (127.0.0.1:444)")][1].startswith(
        f"Certificate file {broken} is truncated")
    # The Postfix key file is not a certificate: skipped, not a problem.
    assert str(site_b["privkey"]) not in {path for path, _sha in uses.values()}
    first = facts["certificates"][0]
    assert first["sha256"] == soon.sha256 and first["days_left"] == 9
    assert facts["soonest_expiry"]["sha256"] == soon.sha256
    assert facts["certificates"][-1]["error"] is not None
    assert "PRIVATE KEY" not in json.dumps(result)


def _route_table(tmp_path: Path, rows: str) -> dict:
    ipv4 = tmp_path / "route"
    ipv4.write_text(ROUTE_HEADER + rows)
    ipv6 = tmp_path / "ipv6_route"
    ipv6.write_text("")
    return {"route_table_path": str(ipv4), "ipv6_route_table_path": str(ipv6),
            "servers": []}


def _first_interface_up() -> tuple[str, str]:
    """What iproute2 says: the first up, non-loopback interface with an address."""
    links = json.loads(subprocess.run(["ip", "-j", "addr", "show"], check=True,
                                      capture_output=True, text=True).stdout)
    for link in sorted(links, key=lambda i: i["ifindex"]):
        if "UP" in link["flags"] and "LOOPBACK" not in link["flags"]:
            v4 = [a["local"] for a in link["addr_info"] if a["family"] == "inet"]
            v6 = [a["local"] for a in link["addr_info"]
                  if a["family"] == "inet6" and a.get("scope") == "global"]
            if v4 or v6:
                return link["ifname"], (v4 or v6)[0]
    return "lo", "127.0.0.1"


def test_primary_address_from_a_default_route(tmp_path) -> None:
    # A default route through the loopback interface: its address wins.
    args = _route_table(tmp_path, "lo\t00000000\t00000000\t0001\t0\t0\t5\t00000000"
                                  "\t0\t0\t0\n")
    facts = run_module("certificate_facts", args)["ansible_facts"]["certfleet"]
    assert facts["primary_ip"] == "127.0.0.1"
    assert facts["network"] == {"address": "127.0.0.1", "interface": "lo",
                                "family": "ipv4", "source": "default route"}
    assert facts["servers"] == [] and facts["certificates"] == []
    assert facts["soonest_expiry"] is None


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed")
def test_primary_address_without_a_default_route(tmp_path) -> None:
    args = _route_table(tmp_path, "lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF"
                                  "\t0\t0\t0\n")
    facts = run_module("certificate_facts", args)["ansible_facts"]["certfleet"]
    interface, address = _first_interface_up()
    assert facts["primary_ip"] == address
    assert facts["network"]["interface"] == interface
    assert facts["network"]["source"] == (
        "loopback" if interface == "lo" else "first interface up")


def test_identity_and_collection_version(tmp_path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Testix"\nVERSION_ID="7"\nPRETTY_NAME="Testix 7"\n')
    facts = run_module("certificate_facts", {
        "servers": [], "os_release_path": str(release),
    })["ansible_facts"]["certfleet"]
    assert facts["os"]["pretty_name"] == "Testix 7"
    assert facts["os"]["version_id"] == "7"
    assert facts["hostname"] == os.uname().nodename
    assert facts["architecture"] == os.uname().machine
    version = re.search(r"^version:\s*(\S+)", (REPO / "galaxy.yml").read_text(),
                        re.M).group(1)
    assert facts["collection"]["version"] == version
    assert re.match(r"\d{4}-\d\d-\d\dT.*\+00:00$", facts["collected_at"])
