"""The four-run pattern through ansible-playbook, as an operator runs it.

Check mode, a real run, check mode again and a real run again, all in one
playbook run by the real ``ansible-playbook`` against a real nginx, through
the collection's action group; each result is checked against what nginx
serves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.modules import COLLECTIONS, REPO

PLAYBOOK = """
- name: Four runs of one deploy
  hosts: all
  gather_facts: false
  module_defaults:
    group/certfleet.deploy.deploy:
      cert_src: "{{ cert_src }}"
      chain_src: "{{ chain_src }}"
      key_src: "{{ key_src }}"
      cert_path: "{{ cert_path }}"
      key_path: "{{ key_path }}"
      validate_command: "{{ validate_command }}"
      reload_command: "{{ reload_command }}"
      backup_dir: "{{ backup_dir }}"
      verify_endpoint: "{{ endpoint }}"
  tasks:
    - name: Check mode before the deploy
      certfleet.deploy.nginx_certificate:
      check_mode: true
      diff: true
      register: check1
    - name: The deploy
      certfleet.deploy.nginx_certificate:
      register: deploy1
    - name: Check mode after the deploy
      certfleet.deploy.nginx_certificate:
      check_mode: true
      register: check2
    - name: The deploy again
      certfleet.deploy.nginx_certificate:
      register: deploy2
    - name: Probe what is served
      certfleet.deploy.tls_probe:
        endpoint: "{{ endpoint }}"
        server_name: example.com
      register: probed
    - name: Keep the results for the test
      ansible.builtin.copy:
        content: "{{ [check1, deploy1, check2, deploy2, probed] | to_json }}"
        dest: "{{ results }}"
        mode: "0600"
"""


def run_playbook(tmp_path: Path, extra_vars: dict) -> list:
    """Run the playbook on localhost; return each task's result."""
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"),
         "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"@{tmp_path / 'vars.json'}", str(tmp_path / "play.yml")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(Path(extra_vars["results"]).read_text())


def test_four_runs_through_ansible_playbook(nginx_site, pki, tmp_path) -> None:
    src = pki.ecdsa.write(tmp_path / "src")
    before = Path(nginx_site.cert_path).read_bytes()
    check1, deploy1, check2, deploy2, probed = run_playbook(tmp_path, {
        "cert_src": str(src["cert"]),
        "chain_src": str(src["chain"]),
        "key_src": str(src["privkey"]),
        "cert_path": str(nginx_site.cert_path),
        "key_path": str(nginx_site.key_path),
        "validate_command": nginx_site.validate_command,
        "reload_command": nginx_site.reload_command,
        "backup_dir": str(tmp_path / "state"),
        "endpoint": f"127.0.0.1:{nginx_site.port}",
        "results": str(tmp_path / "results.json"),
    })
    assert check1["changed"] is True
    assert pki.ecdsa.sha256 in check1["diff"]["after"]
    assert deploy1["changed"] is True
    assert deploy1["served"]["sha256"] == pki.ecdsa.sha256
    assert check2["changed"] is False
    assert deploy2["changed"] is False
    assert probed["sha256"] == pki.ecdsa.sha256 == nginx_site.served_sha256()
    assert Path(nginx_site.cert_path).read_bytes() == pki.ecdsa.fullchain_pem
    assert before == pki.rsa.fullchain_pem
