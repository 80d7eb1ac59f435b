"""playbooks/rollout.yml on a local fleet of real nginx instances.

21 nginx instances listen on their own loopback addresses (127.0.0.2 to
127.0.0.22), each an inventory host with ``ansible_connection=local``, its
own certificate, key, state directory and endpoint. The real
``ansible-playbook`` runs the rollout by its collection name with forks 10:
a canary, then batches of 5. Every claim is checked the way an operator
would: by a TLS handshake with each instance, by the bytes on disk, and by
what reached the notification receiver (a local stand-in for a webhook and
for Slack).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.modules import COLLECTIONS
from tests.support.nginx import Nginx
from tests.support.receiver import Receiver

FLEET_SIZE = 21
BATCH = 5
FORKS = 10
HOOK_SECRET = "fleet-hook-secret"
PLAYBOOK_TIMEOUT = 900


@dataclass
class Member:
    """One host of the fleet: its nginx and its files."""

    name: str
    nginx: Nginx
    state_dir: Path

    @property
    def endpoint(self) -> str:
        return f"{self.nginx.host}:{self.nginx.port}"

    def served(self) -> str:
        return self.nginx.served_sha256("example.com")

    def files(self) -> tuple[bytes, bytes]:
        return self.nginx.cert_path.read_bytes(), self.nginx.key_path.read_bytes()


@pytest.fixture
def make_fleet(tmp_path: Path, pki):
    """Start ``size`` nginx instances on 127.0.0.2 onwards, all serving ``pki.rsa``."""
    members: list[Member] = []

    def make(size: int = FLEET_SIZE) -> list[Member]:
        for index in range(1, size + 1):
            name = f"web{index:02d}"
            live = pki.rsa.write(tmp_path / name / "live")
            server = Nginx(tmp_path / name / "nginx", live["fullchain"],
                           live["privkey"], host=f"127.0.0.{index + 1}")
            server.start()
            members.append(Member(name, server, tmp_path / name / "state"))
        return list(members)

    try:
        yield make
    finally:
        for member in members:
            member.nginx.stop()


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def inventory(members: list[Member], receiver: Receiver, src: dict,
              overrides: dict | None = None) -> dict:
    """A YAML (here JSON) inventory: group ``fleet``, one host per instance."""
    hosts = {}
    for member in members:
        hosts[member.name] = {
            "cert_deploy_cert_path": str(member.nginx.cert_path),
            "cert_deploy_key_path": str(member.nginx.key_path),
            "cert_deploy_backup_dir": str(member.state_dir),
            "cert_deploy_verify_endpoint": [member.endpoint],
            "cert_deploy_lb_endpoints": [member.endpoint],
            "cert_deploy_validate_command": member.nginx.validate_command,
            "cert_deploy_reload_command": member.nginx.reload_command,
        }
        hosts[member.name].update((overrides or {}).get(member.name, {}))
    return {"fleet": {"hosts": hosts, "vars": {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "cert_deploy_server": "nginx",
        "cert_deploy_cert_src": str(src["cert"]),
        "cert_deploy_chain_src": str(src["chain"]),
        "cert_deploy_key_src": str(src["privkey"]),
        "cert_deploy_verify_server_name": "example.com",
        "cert_deploy_verify_backoff": 0.5,
        "cert_deploy_lb_backoff": 0.5,
        "cert_deploy_notify": [
            {"service": "webhook", "url": receiver.url("/hooks/certfleet"),
             "secret": HOOK_SECRET, "timeout": 20},
            {"service": "slack", "url": receiver.url("/services/T0/B0/fleet"),
             "timeout": 20},
        ],
    }}}


def rollout(tmp_path: Path, inv: dict, name: str, *extra: str
            ) -> tuple[subprocess.CompletedProcess, dict, float]:
    """Run the rollout; return the process, the JSON summary and the wall time."""
    inv_path = tmp_path / f"{name}-inventory.yml"
    inv_path.write_text(json.dumps(inv, indent=1))
    summary_path = tmp_path / f"{name}-summary.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="false")
    started = time.monotonic()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"),
         "-i", str(inv_path), "-f", str(FORKS),
         "-e", "rollout_hosts=fleet", "-e", f"rollout_batch_size={BATCH}",
         "-e", f"rollout_summary_path={summary_path}", *extra,
         "certfleet.deploy.rollout"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=PLAYBOOK_TIMEOUT, check=False,
    )
    elapsed = time.monotonic() - started
    (tmp_path / f"{name}-output.txt").write_text(proc.stdout + proc.stderr)
    print(f"{name}: ansible-playbook took {elapsed:.1f} s for {len(inv['fleet']['hosts'])} hosts")
    assert summary_path.exists(), proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc, json.loads(summary_path.read_text()), elapsed


def statuses(summary: dict) -> dict:
    return {row["host"]: row["status"] for row in summary["hosts"]}


def test_clean_rollout_reaches_every_host(make_fleet, receiver, pki, tmp_path) -> None:
    fleet = make_fleet()
    src = pki.ecdsa.write(tmp_path / "src")
    # web21 was already deployed by hand: the rollout must leave it unchanged.
    last = fleet[-1]
    last.nginx.cert_path.write_bytes(pki.ecdsa.fullchain_pem)
    last.nginx.key_path.write_bytes(pki.ecdsa.key_pem)
    last.nginx.reload()
    assert last.nginx.wait_until_served(pki.ecdsa.sha256) == pki.ecdsa.sha256

    proc, summary, _elapsed = rollout(tmp_path, inventory(fleet, receiver, src),
                                      "clean")

    assert proc.returncode == 0, proc.stdout[-6000:]
    expected = {m.name: "deployed" for m in fleet[:-1]}
    expected[last.name] = "unchanged"
    assert statuses(summary) == expected
    assert summary["counts"] == {"deployed": FLEET_SIZE - 1, "unchanged": 1}
    assert summary["stopped"] is False
    for member in fleet:
        assert member.served() == pki.ecdsa.sha256, member.name
        assert member.files() == (pki.ecdsa.fullchain_pem, pki.ecdsa.key_pem)
    assert {row["sha256"] for row in summary["hosts"]} == {pki.ecdsa.sha256}
    assert "Total: deployed: 20, unchanged: 1." in proc.stdout
    # Only failures are sent by default.
    assert receiver.requests == []


def test_a_failure_in_the_second_batch_stops_the_rollout(make_fleet, receiver, pki,
                                                         tmp_path) -> None:
    fleet = make_fleet()
    src = pki.ecdsa.write(tmp_path / "src")
    batches = [fleet[:1]] + [fleet[i:i + BATCH] for i in range(1, FLEET_SIZE, BATCH)]
    second, later = batches[1], [m for batch in batches[2:] for m in batch]
    behind_lb, no_reload, stopped = second[1], second[2], second[3]
    failing = (behind_lb, no_reload, stopped)
    # web03's "load balancer" address leads to another instance, which still
    # serves the old certificate: web03 itself is deployed, but fails.
    # web04's reload command signals nothing, so nginx keeps the old
    # certificate in memory: verification fails and the deploy rolls back.
    # web05's nginx is down, so its reload fails, and so does the rollback's.
    stopped.nginx.stop()
    overrides = {
        behind_lb.name: {"cert_deploy_lb_endpoints": [fleet[-1].endpoint],
                         "cert_deploy_lb_attempts": 2},
        no_reload.name: {"cert_deploy_reload_command": ["/bin/true"]},
    }
    before = {m.name: m.files() for m in fleet}

    proc, summary, _elapsed = rollout(
        tmp_path, inventory(fleet, receiver, src, overrides), "failing")

    assert proc.returncode == 2, proc.stdout[-6000:]
    got = statuses(summary)
    assert got[fleet[0].name] == "deployed"
    assert got[behind_lb.name] == "failed"
    assert got[no_reload.name] == "rolled_back"
    assert got[stopped.name] == "rollback_failed"
    assert {got[m.name] for m in second if m not in failing} == {"deployed"}
    assert {got[m.name] for m in later} == {"not_attempted"}
    assert summary["stopped"] is True
    assert summary["counts"]["not_attempted"] == len(later)
    assert "The rollout stopped after a failure." in proc.stdout

    # What each host serves and holds now.
    assert behind_lb.served() == pki.ecdsa.sha256
    assert no_reload.served() == pki.rsa.sha256
    assert no_reload.files() == before[no_reload.name]
    assert stopped.files() == before[stopped.name]
    for member in later:
        assert member.served() == pki.rsa.sha256, member.name
        assert member.files() == before[member.name], member.name
        assert not member.state_dir.exists(), member.name
    for member in batches[0] + [m for m in second if m not in failing]:
        assert member.served() == pki.ecdsa.sha256, member.name

    # The receivers heard about each failure, with host and reason.
    requests = receiver.wait_for(6)
    hooks = [r for r in requests if r.path == "/hooks/certfleet"]
    slack = [r for r in requests if r.path.startswith("/services/")]
    assert len(hooks) == 3 and len(slack) == 3
    events = {r.json["host"]: r.json for r in hooks}
    assert events[behind_lb.name]["event"] == "failed"
    assert "not through every address" in events[behind_lb.name]["message"]
    assert events[no_reload.name]["event"] == "rolled_back"
    assert "did not serve the certificate" in events[no_reload.name]["message"]
    assert events[no_reload.name]["details"]["rolled_back"] is True
    assert events[stopped.name]["event"] == "rollback_failed"
    assert "exited 1" in events[stopped.name]["message"]
    assert events[stopped.name]["details"]["manual_steps"]
    for hook in hooks:
        stamp = hook.header("X-Certfleet-Timestamp")
        mac = hmac.new(HOOK_SECRET.encode(), f"{stamp}.".encode() + hook.body,
                       hashlib.sha256).hexdigest()
        assert hook.header("X-Certfleet-Signature") == f"sha256={mac}"
    slack_text = " ".join(r.json["text"] for r in slack)
    assert all(m.name in slack_text for m in failing)
    assert HOOK_SECRET not in proc.stdout + proc.stderr

    # The operator fixes both hosts and runs the rollout again: it finishes,
    # and hosts already deployed are left alone.
    stopped.nginx.start()
    proc, summary, _elapsed = rollout(
        tmp_path, inventory(fleet, receiver, src), "rerun")
    assert proc.returncode == 0, proc.stdout[-6000:]
    got = statuses(summary)
    done_before = batches[0] + [m for m in second if m not in failing] + [behind_lb]
    assert {got[m.name] for m in done_before} == {"unchanged"}
    assert {got[m.name] for m in fleet if m not in done_before} == {"deployed"}
    for member in fleet:
        assert member.served() == pki.ecdsa.sha256, member.name


def test_a_failed_canary_stops_everything_and_check_mode_changes_nothing(
        make_fleet, receiver, pki, tmp_path) -> None:
    fleet = make_fleet(4)
    src = pki.ecdsa.write(tmp_path / "src")
    before = {m.name: m.files() for m in fleet}

    proc, summary, _elapsed = rollout(
        tmp_path, inventory(fleet, receiver, src), "check", "--check")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert summary["check_mode"] is True
    assert set(statuses(summary).values()) == {"deployed"}
    assert "Check mode: nothing was changed." in proc.stdout
    for member in fleet:
        assert member.files() == before[member.name]
        assert member.served() == pki.rsa.sha256

    overrides = {fleet[0].name: {"cert_deploy_expected_names": ["mail.example.org"]}}
    proc, summary, _elapsed = rollout(
        tmp_path, inventory(fleet, receiver, src, overrides), "canary",
        "-e", "rollout_max_fail_percentage=50")
    assert proc.returncode == 2, proc.stdout[-6000:]
    got = statuses(summary)
    assert got[fleet[0].name] == "failed"
    assert {got[m.name] for m in fleet[1:]} == {"not_attempted"}
    for member in fleet:
        assert member.files() == before[member.name]
        assert member.served() == pki.rsa.sha256
    (hook,) = [r for r in receiver.wait_for(2) if r.path == "/hooks/certfleet"]
    assert hook.json["event"] == "failed" and hook.json["host"] == fleet[0].name
    assert "mail.example.org" in hook.json["message"]
