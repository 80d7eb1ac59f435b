"""playbooks/examples/mail_host.yml, run for real by ansible-playbook.

One host runs a Postfix and a Dovecot, both serving the same old
certificate; the example deploys one new certificate to both and proves it
on every listener. A second run changes nothing and reloads nothing. What is
served is checked with the harnesses' own clients, not the module's results.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dovecot import Dovecot, require_dovecot
from tests.support.modules import COLLECTIONS, REPO
from tests.support.pki import PKI
from tests.support.postfix import Postfix, require_postfix

EXAMPLE = REPO / "playbooks" / "examples" / "mail_host.yml"


@pytest.fixture
def mail_host(tmp_path: Path, pki: PKI) -> Iterator[tuple]:
    """A Postfix and a Dovecot on loopback, each with its copy of ``pki.rsa``."""
    require_postfix()
    require_dovecot()
    postfix_files = pki.rsa.write(tmp_path / "postfix-tls")
    dovecot_files = pki.rsa.write(tmp_path / "dovecot-tls")
    postfix = Postfix(None, postfix_files["fullchain"], postfix_files["privkey"])
    dovecot = Dovecot(None, dovecot_files["fullchain"], dovecot_files["privkey"])
    try:
        postfix.start()
        dovecot.start()
        yield postfix, dovecot
    finally:
        dovecot.stop()
        postfix.stop()


def run_example(tmp_path: Path, extra_vars: dict) -> str:
    """Run the example on localhost; return its output."""
    (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="true",
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"),
         "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"@{tmp_path / 'vars.json'}", str(EXAMPLE)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    return proc.stdout


def recap(output: str) -> dict:
    """The PLAY RECAP counters of localhost."""
    line = next(ln for ln in output.splitlines() if ln.startswith("localhost"))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def test_mail_host_example_deploys_and_proves_both(mail_host, pki, tmp_path):
    postfix, dovecot = mail_host
    src = pki.ecdsa.write(tmp_path / "src")
    extra_vars = {
        "mail_hosts": "all",
        "mail_cert_src": str(src["cert"]),
        "mail_chain_src": str(src["chain"]),
        "mail_key_src": str(src["privkey"]),
        "mail_expected_names": ["example.com"],
        "mail_postfix_cert_path": str(postfix.cert_path),
        "mail_postfix_key_path": str(postfix.key_path),
        "mail_postfix_config_dir": str(postfix.config_dir),
        "mail_postfix_endpoints": postfix.endpoints,
        "mail_dovecot_cert_path": str(dovecot.cert_path),
        "mail_dovecot_key_path": str(dovecot.key_path),
        "mail_dovecot_config_file": str(dovecot.conf_path),
        "mail_dovecot_endpoints": dovecot.endpoints,
        "mail_backup_dir": str(tmp_path / "state"),
    }
    first = run_example(tmp_path, extra_vars)
    assert recap(first)["changed"] == 2, first
    assert postfix.served_sha256() == pki.ecdsa.sha256
    assert postfix.served_sha256(implicit=True) == pki.ecdsa.sha256
    for protocol in ("tls", "imap", "pop3"):
        assert dovecot.served_sha256(protocol) == pki.ecdsa.sha256, protocol
    assert postfix.cert_path.read_bytes() == pki.ecdsa.fullchain_pem
    assert dovecot.cert_path.read_bytes() == pki.ecdsa.fullchain_pem
    assert (postfix.reloads(), dovecot.reloads()) == (1, 1)

    second = run_example(tmp_path, extra_vars)
    assert recap(second)["changed"] == 0, second
    assert (postfix.reloads(), dovecot.reloads()) == (1, 1)
    assert pki.ecdsa.key_pem.decode().splitlines()[1] not in first + second
