"""playbooks/examples/web_servers.yml: syntax, and a real run on three servers.

The real run starts nginx, Apache and HAProxy on loopback ports, each with
its own config, writes an inventory with one ``ansible_connection=local``
host per server, and runs the example with the real ``ansible-playbook``;
then every server must serve the new certificate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import apache as apache_support
from tests.support import haproxy as haproxy_support
from tests.support.apache import Apache
from tests.support.binaries import require_binary
from tests.support.haproxy import HAProxy
from tests.support.modules import COLLECTIONS, REPO
from tests.support.nginx import Nginx

PLAYBOOK = REPO / "playbooks" / "examples" / "web_servers.yml"


def ansible_playbook(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
        check=False,
    )


def test_example_passes_syntax_check() -> None:
    proc = ansible_playbook("--syntax-check", "-i", "localhost,", str(PLAYBOOK))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_example_deploys_one_certificate_to_all_three(nginx_site, pki, tmp_path):
    require_binary(apache_support.APACHE_BINARY, "apache2")
    require_binary(haproxy_support.HAPROXY_BINARY, "haproxy")
    apache_files = pki.rsa.write(tmp_path / "apache-live")
    apache = Apache(tmp_path / "apache", apache_files["fullchain"],
                    apache_files["privkey"])
    crt = tmp_path / "haproxy-certs" / "site.pem"
    crt.parent.mkdir()
    crt.write_bytes(pki.rsa.fullchain_pem + pki.rsa.key_pem)
    haproxy = HAProxy(tmp_path / "haproxy", crt)
    apache.start()
    try:
        haproxy.start()
        try:
            run_example(tmp_path, pki, nginx_site, apache, haproxy)
        finally:
            haproxy.stop()
    finally:
        apache.stop()


def run_example(tmp_path: Path, pki, nginx: Nginx, apache: Apache,
                haproxy: HAProxy) -> None:
    src = pki.ecdsa.write(tmp_path / "src")
    workers = haproxy.worker_pids()

    def host(site, **extra) -> dict:
        return dict(web_verify_endpoint=[f"127.0.0.1:{site.port}"],
                    web_validate_command=site.validate_command, **extra)

    inventory = {
        "all": {"vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "web_cert_src": str(src["cert"]),
            "web_chain_src": str(src["chain"]),
            "web_key_src": str(src["privkey"]),
            "web_expected_names": ["example.com", "www.example.com"],
        }},
        "web_nginx": {"hosts": {"nginx1": host(
            nginx, web_cert_path=str(nginx.cert_path),
            web_key_path=str(nginx.key_path),
            web_reload_command=nginx.reload_command,
            web_backup_dir=str(tmp_path / "state-nginx"))}},
        "web_apache": {"hosts": {"apache1": host(
            apache, web_cert_path=str(apache.cert_path),
            web_key_path=str(apache.key_path),
            web_reload_command=apache.reload_command,
            web_backup_dir=str(tmp_path / "state-apache"))}},
        "web_haproxy": {"hosts": {"haproxy1": host(
            haproxy, web_cert_path=str(haproxy.crt),
            web_haproxy_runtime_socket=str(haproxy.admin_socket),
            web_haproxy_master_socket=str(haproxy.master_socket),
            web_backup_dir=str(tmp_path / "state-haproxy"))}},
    }
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    proc = ansible_playbook("-i", str(tmp_path / "inventory.json"), str(PLAYBOOK))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    recap = proc.stdout.rpartition("PLAY RECAP")[2]
    assert recap.count("changed=1") == 3 and recap.count("failed=0") == 3, recap
    for site in (nginx, apache, haproxy):
        assert site.served_sha256() == pki.ecdsa.sha256, site
    assert haproxy.worker_pids() == workers
