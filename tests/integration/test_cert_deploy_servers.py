"""The cert_deploy role with a server other than nginx, run for real.

Starts a real Apache on a loopback port (tests/support/apache.py) that reads
its intermediates from ``SSLCertificateChainFile``, runs the role through the
real ``ansible-playbook`` with ``cert_deploy_server: apache`` and
``cert_deploy_chain_path``, and checks that a new TLS handshake gets the new
certificate and chain, that the files have the layout Apache needs, and that
the role recorded the deploy in ``cert_deploy_outcome``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import apache as apache_support
from tests.support.apache import Apache
from tests.support.binaries import require_binary
from tests.support.modules import COLLECTIONS, REPO

PLAYBOOK = """
- name: Deploy with the cert_deploy role
  hosts: all
  gather_facts: false
  tasks:
    - name: Run the role
      ansible.builtin.include_role:
        name: certfleet.deploy.cert_deploy
    - name: Keep the outcome for the test
      ansible.builtin.copy:
        content: "{{ cert_deploy_outcome | to_json }}"
        dest: "{{ outcome_path }}"
        mode: "0600"
      delegate_to: localhost
"""


def ansible_playbook(*args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="1",
    )
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
        check=False,
    )


def test_role_deploys_to_apache_with_a_chain_file(pki, tmp_path) -> None:
    require_binary(apache_support.APACHE_BINARY, "apache2")
    live = pki.rsa.write(tmp_path / "live")
    apache = Apache(tmp_path / "apache", live["cert"], live["privkey"],
                    chain_path=live["chain"])
    apache.start()
    try:
        assert apache.served_sha256() == pki.rsa.sha256
        src = pki.ecdsa.write(tmp_path / "src")
        outcome_path = tmp_path / "outcome.json"
        inventory = {"all": {"hosts": {"apache1": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "outcome_path": str(outcome_path),
            "cert_deploy_server": "apache",
            "cert_deploy_cert_src": str(src["cert"]),
            "cert_deploy_chain_src": str(src["chain"]),
            "cert_deploy_key_src": str(src["privkey"]),
            "cert_deploy_cert_path": str(apache.cert_path),
            "cert_deploy_key_path": str(apache.key_path),
            "cert_deploy_chain_path": str(apache.chain_path),
            "cert_deploy_expected_names": ["example.com", "www.example.com"],
            "cert_deploy_validate_command": apache.validate_command,
            "cert_deploy_reload_command": apache.reload_command,
            "cert_deploy_backup_dir": str(tmp_path / "state"),
            "cert_deploy_verify_endpoint": [f"127.0.0.1:{apache.port}"],
            "cert_deploy_verify_server_name": "example.com",
            "cert_deploy_lb_endpoints": [f"127.0.0.1:{apache.port}"],
        }}}}
        (tmp_path / "inventory.json").write_text(json.dumps(inventory))
        (tmp_path / "play.yml").write_text(PLAYBOOK)
        proc = ansible_playbook("-i", str(tmp_path / "inventory.json"),
                                str(tmp_path / "play.yml"))
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        recap = proc.stdout.rpartition("PLAY RECAP")[2]
        assert "failed=0" in recap, recap

        # What a new handshake gets: the new leaf, then its intermediate.
        assert apache.served_sha256() == pki.ecdsa.sha256 != pki.rsa.sha256
        assert len(apache.served_chain_sha256()) == 2
        # cert_deploy_apache_cert_layout is left unset (the role's null
        # default must pass its argument spec): with a chain file, the module
        # then writes the leaf alone to the certificate file.
        assert Path(apache.cert_path).read_bytes() == pki.ecdsa.cert_pem
        assert Path(apache.chain_path).read_bytes() == pki.ecdsa.chain_pem
        assert Path(apache.key_path).read_bytes() == pki.ecdsa.key_pem

        outcome = json.loads(outcome_path.read_text())
        assert outcome["status"] == "deployed", outcome
        assert outcome["server"] == "apache"
        assert outcome["served_sha256"] == pki.ecdsa.sha256
        assert outcome["certificate"]["sha256"] == pki.ecdsa.sha256
    finally:
        apache.stop()
