"""Run the rollout playbook under ansible-runner against a small local fleet.

ansible-runner is the engine that AWX and Automation Platform job templates
run playbooks with. This script lays out a private data directory the way a
job gets one, runs ``ansible-runner run`` on it, and checks the outcome the
way an operator would: by the job's status and artifacts and by a TLS
handshake with every host.

The fleet: FLEET_SIZE throw-away nginx instances, each on a free high port of
127.0.0.1 with its own configuration, certificate, key and state directory
under one temporary directory, and each an inventory host with
``ansible_connection: local``. One of them already serves the new
certificate, so the rollout must leave it unchanged.

The private data directory:

  project/rollout.yml        imports the collection's playbook,
                             certfleet.deploy.rollout
  project/collections/       the collection, installed from the artifact
                             built from this checkout (as a job installs it
                             from the project's requirements)
  inventory/hosts.yml        the fleet
  env/extravars              rollout_hosts, batch size, summary path
  env/envvars                collections path, no colour
  env/settings               job and idle timeouts

Every process this starts (nginx instances) is stopped by its PID at the
end, and the temporary directory is removed unless --keep is given.

Usage: python scripts/runner_rollout.py --ansible-runner PATH [--keep]
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLEET_SIZE = 3
SERVER_NAME = "fleet.example.com"
JOB_TIMEOUT = 900


class CheckFailed(Exception):
    """One of the checks on the job's outcome failed."""


def log(message: str) -> None:
    """Print a progress line."""
    print(f"runner: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def served_sha256(port: int) -> str:
    """SHA-256 of the leaf that 127.0.0.1:port serves for SERVER_NAME."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def pem_sha256(path: Path) -> str:
    """SHA-256 of the first certificate in a PEM file."""
    text = path.read_text(encoding="ascii")
    begin = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(text[begin:end])).hexdigest()


class Nginx:
    """One throw-away nginx under its own directory."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.flags = ["-p", str(directory), "-e", str(directory / "error.log"),
                      "-c", str(directory / "nginx.conf")]

    @property
    def cert_path(self) -> Path:
        return self.directory / "tls" / "fullchain.pem"

    @property
    def key_path(self) -> Path:
        return self.directory / "tls" / "privkey.pem"

    def start(self, fullchain: Path, key: Path) -> None:
        """Write the configuration and the initial files; start nginx."""
        for sub in ("tmp", "tls", "state"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fullchain, self.cert_path)
        shutil.copyfile(key, self.key_path)
        self.key_path.chmod(0o600)
        d = self.directory
        (d / "nginx.conf").write_text(
            f"worker_processes 1;\npid {d}/nginx.pid;\n"
            f"error_log {d}/error.log notice;\n"
            "events {\n    worker_connections 64;\n}\n"
            "http {\n"
            f"    access_log {d}/access.log;\n"
            + "".join(f"    {kind}_temp_path {d}/tmp/{kind};\n"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + "    server {\n"
            f"        listen 127.0.0.1:{self.port} ssl;\n"
            f"        server_name {SERVER_NAME};\n"
            f"        ssl_certificate {self.cert_path};\n"
            f"        ssl_certificate_key {self.key_path};\n"
            "        location / {\n            return 200 \"fleet\\n\";\n        }\n"
            "    }\n}\n",
            encoding="utf-8",
        )
        subprocess.run(["nginx", *self.flags], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                served_sha256(self.port)
                return
            except OSError:
                time.sleep(0.1)
        raise CheckFailed(f"nginx in {d} does not answer on 127.0.0.1:{self.port}")

    def pid(self) -> int | None:
        """The master's PID from the pid file, if nginx runs."""
        try:
            text = (self.directory / "nginx.pid").read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        return int(text) if text else None

    def stop(self) -> None:
        """Stop this nginx by its PID; wait until it is gone."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGTERM)


def install_collection(work: Path, collections: Path) -> None:
    """Build the artifact from this checkout and install it into collections."""
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    dist = work / "dist"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(galaxy), "collection", "build", "--output-path", str(dist), str(ROOT)],
                   check=True, capture_output=True, env=env)
    artifact = next(dist.glob("certfleet-deploy-*.tar.gz"))
    # Only the new path may count: with the checkout's collection on the
    # configured path, ansible-galaxy would find it "already installed".
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    subprocess.run([str(galaxy), "collection", "install", "--offline", "-p", str(collections),
                    str(artifact)], check=True, capture_output=True, env=env)
    manifest = collections / "ansible_collections" / "certfleet" / "deploy" / "MANIFEST.json"
    check(manifest.is_file(), f"the collection was not installed into {collections}")


def write_private_data_dir(pdd: Path, fleet: dict[str, Nginx], pki: Path) -> None:
    """Lay out project, inventory and env the way a job gets them."""
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "env").mkdir()
    (pdd / "project" / "rollout.yml").write_text(
        "---\n"
        "# The job template's playbook: the collection's rollout.\n"
        "- name: Roll the certificate out with certfleet.deploy\n"
        "  ansible.builtin.import_playbook: certfleet.deploy.rollout\n",
        encoding="utf-8",
    )
    hosts = {
        name: {
            "cert_deploy_cert_path": str(server.cert_path),
            "cert_deploy_key_path": str(server.key_path),
            "cert_deploy_backup_dir": str(server.directory / "state"),
            "cert_deploy_verify_endpoint": [f"127.0.0.1:{server.port}"],
            "cert_deploy_validate_command": ["nginx", *server.flags, "-t"],
            "cert_deploy_reload_command": ["nginx", *server.flags, "-s", "reload"],
        }
        for name, server in fleet.items()
    }
    inventory = {"fleet": {"hosts": hosts, "vars": {
        "ansible_connection": "local",
        # The test environment's interpreter, which has the modules' requirements.
        "ansible_python_interpreter": sys.executable,
        "cert_deploy_server": "nginx",
        "cert_deploy_cert_src": str(pki / "new.crt"),
        "cert_deploy_chain_src": str(pki / "intermediate.crt"),
        "cert_deploy_key_src": str(pki / "new.key"),
        "cert_deploy_verify_server_name": SERVER_NAME,
        "cert_deploy_verify_backoff": 0.5,
    }}}
    # JSON is YAML: the inventory plugin reads it as hosts.yml.
    (pdd / "inventory" / "hosts.yml").write_text(json.dumps(inventory, indent=2),
                                                 encoding="utf-8")
    (pdd / "env" / "extravars").write_text(json.dumps({
        "rollout_hosts": "fleet",
        "rollout_batch_size": 2,
        "rollout_summary_path": str(pdd / "summary.json"),
    }), encoding="utf-8")
    (pdd / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_COLLECTIONS_PATH": str(pdd / "project" / "collections"),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "false",
    }), encoding="utf-8")
    (pdd / "env" / "settings").write_text(json.dumps({
        "job_timeout": JOB_TIMEOUT, "idle_timeout": 600, "suppress_ansible_output": False,
    }), encoding="utf-8")


def run_job(runner: str, pdd: Path, ident: str) -> int:
    """ansible-runner run; returns its exit status."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [runner, "run", str(pdd), "-p", "rollout.yml", "--ident", ident]
    log(" ".join(command))
    return subprocess.run(command, env=env, timeout=JOB_TIMEOUT + 60, check=False).returncode


def check(condition: bool, message: str) -> None:
    """Raise CheckFailed with message unless condition holds."""
    if not condition:
        raise CheckFailed(message)


def check_job(pdd: Path, ident: str, rc: int, fleet: dict[str, Nginx], new_sha: str,
              done_before: str) -> None:
    """The checks on the job's artifacts and on what every host serves."""
    artifacts = pdd / "artifacts" / ident
    status = (artifacts / "status").read_text(encoding="utf-8").strip()
    check(rc == 0 and status == "successful",
          f"the job ended {status!r} with exit status {rc}; see {artifacts}/stdout")
    check((artifacts / "rc").read_text(encoding="utf-8").strip() == "0",
          "the job's rc artifact is not 0")

    events = [json.loads(path.read_text(encoding="utf-8"))
              for path in sorted((artifacts / "job_events").glob("*.json"))]
    stats = [e for e in events if e.get("event") == "playbook_on_stats"]
    check(len(stats) == 1, f"{len(stats)} playbook_on_stats events, expected 1")
    summary = stats[0]["event_data"].get("artifact_data", {}).get("certfleet_rollout")
    check(summary is not None,
          "the job's statistics lack certfleet_rollout (the rollout's set_stats)")
    outcome = {row["host"]: row["status"] for row in summary["hosts"]}
    expected = {name: "unchanged" if name == done_before else "deployed" for name in fleet}
    check(outcome == expected, f"the rollout reports {outcome}, expected {expected}")
    check(summary["stopped"] is False, "the rollout says it stopped")
    written = json.loads((pdd / "summary.json").read_text(encoding="utf-8"))
    check(written["counts"] == summary["counts"],
          "the summary file and the job's statistics disagree")

    deploys = [e for e in events if e.get("event") == "runner_on_ok"
               and e["event_data"].get("resolved_action") == "certfleet.deploy.nginx_certificate"]
    check(sorted(e["event_data"]["host"] for e in deploys) == sorted(fleet),
          "not every host has an ok event for certfleet.deploy.nginx_certificate")

    for name, server in fleet.items():
        served = served_sha256(server.port)
        check(served == new_sha, f"{name} serves {served}, not the new certificate {new_sha}")
        check(pem_sha256(server.cert_path) == new_sha,
              f"{name}'s certificate file does not hold the new certificate")
        check(server.key_path.stat().st_mode & 0o777 == 0o600,
              f"{name}'s key file is not private (mode 0600)")
    log(f"job {ident}: {summary['counts']}; every host serves {new_sha[:16]}...")


def main() -> int:
    """Set up the fleet, run the job, check it, and tear everything down."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ansible-runner", required=True, help="the ansible-runner program")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="certfleet-runner."))
    fleet: dict[str, Nginx] = {}
    try:
        pki = work / "pki"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_pki.py"), str(pki),
                        SERVER_NAME], check=True, capture_output=True)
        new_fullchain = work / "new-fullchain.crt"
        new_fullchain.write_bytes((pki / "new.crt").read_bytes()
                                  + (pki / "intermediate.crt").read_bytes())
        done_before = f"web{FLEET_SIZE}"
        for index in range(1, FLEET_SIZE + 1):
            name = f"web{index}"
            server = Nginx(work / "fleet" / name, free_port())
            fleet[name] = server
            if name == done_before:
                server.start(new_fullchain, pki / "new.key")
            else:
                server.start(pki / "initial-fullchain.crt", pki / "initial.key")
        log(f"{FLEET_SIZE} nginx instances on 127.0.0.1 ports "
            f"{', '.join(str(s.port) for s in fleet.values())}")

        pdd = work / "private_data_dir"
        write_private_data_dir(pdd, fleet, pki)
        install_collection(work, pdd / "project" / "collections")
        rc = run_job(args.ansible_runner, pdd, "rollout-1")
        check_job(pdd, "rollout-1", rc, fleet, pem_sha256(pki / "new.crt"), done_before)
    except (CheckFailed, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None)
        log(f"FAILED: {error}" + (f"\n{detail.decode(errors='replace')}" if detail else ""))
        return 1
    finally:
        for server in fleet.values():
            server.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log("the rollout ran under ansible-runner and every host serves the new certificate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
