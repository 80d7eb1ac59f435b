"""The four-run pattern for Traefik and Envoy, through ansible-playbook.

Check mode, a real run, check mode again and a real run again, in one
playbook run by the real ``ansible-playbook``, with the options given once
through the collection's action group. Each result is checked against what
the server serves: the real Traefik binary, and Envoy's documented watch
rules (``tests/support/envoy_rules.py``; no Envoy binary is installable here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.test_envoy_certificate import SECRET, Site, write_sds
from tests.integration.test_traefik_certificate import (
    CONFIG,
    hand_config,
    require_traefik,
)
from tests.support.envoy_rules import EnvoyRules
from tests.support.modules import COLLECTIONS, REPO
from tests.support.traefik import Traefik

PLAYBOOK = """
- name: Four runs of one deploy
  hosts: all
  gather_facts: false
  module_defaults:
    group/certfleet.deploy.deploy: "{{ deploy_options }}"
  tasks:
    - name: Check mode before the deploy
      certfleet.deploy.MODULE:
      check_mode: true
      diff: true
      register: check1
    - name: The deploy
      certfleet.deploy.MODULE:
      register: deploy1
    - name: Check mode after the deploy
      certfleet.deploy.MODULE:
      check_mode: true
      register: check2
    - name: The deploy again
      certfleet.deploy.MODULE:
      register: deploy2
    - name: Keep the results for the test
      ansible.builtin.copy:
        content: "{{ [check1, deploy1, check2, deploy2] | to_json }}"
        dest: "{{ results }}"
        mode: "0600"
"""


def four_runs(tmp_path: Path, module: str, options: dict) -> list:
    play = tmp_path / "play.yml"
    play.write_text(PLAYBOOK.replace("MODULE", module))
    results = tmp_path / "results.json"
    (tmp_path / "vars.json").write_text(json.dumps(
        {"deploy_options": options, "results": str(results)}))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
               ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"),
         "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"@{tmp_path / 'vars.json'}", str(play)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
        check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(results.read_text())


def source(leaf, directory: Path) -> dict:
    src = leaf.write(directory)
    return {"cert_src": str(src["cert"]), "chain_src": str(src["chain"]),
            "key_src": str(src["privkey"])}


def test_four_runs_against_traefik(pki, tmp_path) -> None:
    require_traefik()
    site = Traefik(tmp_path / "traefik")
    site.certs.mkdir(parents=True)
    site.dynamic.mkdir(parents=True)
    (site.certs / "hand.crt").write_bytes(pki.rsa.fullchain_pem)
    (site.certs / "hand.key").write_bytes(pki.rsa.key_pem)
    (site.dynamic / CONFIG).write_text(hand_config(site))
    site.start()
    try:
        assert site.wait_until_served(pki.rsa.sha256) == pki.rsa.sha256
        check1, deploy1, check2, deploy2 = four_runs(
            tmp_path, "traefik_certificate", {
                **source(pki.ecdsa, tmp_path / "src"),
                "config_path": str(site.dynamic / CONFIG),
                "cert_dir": str(site.certs),
                "backup_dir": str(tmp_path / "state"),
                "verify_endpoint": [f"127.0.0.1:{site.port}"],
            })
        assert check1["changed"] is True
        assert pki.ecdsa.sha256 in check1["diff"]["after"]
        assert deploy1["changed"] is True
        assert deploy1["served"]["sha256"] == pki.ecdsa.sha256
        assert check2["changed"] is False and deploy2["changed"] is False
        assert site.served_sha256() == pki.ecdsa.sha256
    finally:
        site.stop()


def test_four_runs_against_envoys_rules(pki, tmp_path) -> None:
    base = tmp_path / "envoy"
    (base / "certs" / "hand").mkdir(parents=True)
    (base / "certs" / "hand" / "cert.pem").write_bytes(pki.rsa.fullchain_pem)
    (base / "certs" / "hand" / "key.pem").write_bytes(pki.rsa.key_pem)
    (base / "certs" / "current").symlink_to("hand")
    site = Site(None, base)
    write_sds(site)
    site.server = EnvoyRules(site.sds, SECRET)
    site.server.start()
    try:
        check1, deploy1, check2, deploy2 = four_runs(
            tmp_path, "envoy_certificate", {
                **source(pki.ecdsa, tmp_path / "src"),
                "cert_path": str(site.link / "cert.pem"),
                "key_path": str(site.link / "key.pem"),
                "sds_path": str(site.sds),
                "secret_name": SECRET,
                "backup_dir": str(tmp_path / "state"),
                "verify_endpoint": [f"127.0.0.1:{site.server.port}"],
            })
        assert check1["changed"] is True
        assert pki.ecdsa.sha256 in check1["diff"]["after"]
        assert deploy1["changed"] is True
        assert deploy1["served"]["sha256"] == pki.ecdsa.sha256
        assert deploy1["checks"]["sds_resource"] == "passed (xds-protos)"
        assert check2["changed"] is False and deploy2["changed"] is False
        assert site.served() == pki.ecdsa.sha256
        assert site.server.counters.reloads == 3  # start, the flip, the SDS file
    finally:
        site.server.stop()
