"""playbooks/facts.yml on a small local fleet, and its report in a browser.

Three inventory hosts, each an ``ansible_connection=local`` host with its own
real nginx on its own loopback address (127.0.0.2 to 127.0.0.4) serving its
own certificate; one expires in five days. A fourth host cannot run Python
at all, so the report must still be written and must list it as a host
without facts. The playbook runs once for the whole module; the tests read
the JSON report, and open the HTML page in headless Chromium to check what a
person sees there.
"""

from __future__ import annotations

import datetime
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.modules import COLLECTIONS, REPO
from tests.support.nginx import Nginx

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLEET = {
    # host: (address, server name, days of validity left)
    "web1": ("127.0.0.2", "web1.example.test", 60),
    "web2": ("127.0.0.3", "web2.example.test", 5),
    "web3": ("127.0.0.4", "web3.example.test", 200),
}
BROKEN_HOST = "web4"


@dataclass
class Fleet:
    """The running fleet and what the playbook run left behind."""

    servers: dict
    leaves: dict
    report_dir: Path
    run: subprocess.CompletedProcess


def _galaxy_version() -> str:
    text = (REPO / "galaxy.yml").read_text()
    return re.search(r"^version:\s*(\S+)", text, re.M).group(1)


def _inventory(fleet_dir: Path, servers: dict) -> dict:
    hosts = {
        name: {
            "ansible_host": server.host,
            "fleet_facts_nginx_command": server.argv("-T"),
        }
        for name, server in servers.items()
    }
    hosts[BROKEN_HOST] = {
        "ansible_host": "127.0.0.5",
        "ansible_python_interpreter": str(fleet_dir / "no-such-python"),
    }
    return {"all": {
        "hosts": hosts,
        "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "fleet_facts_servers": ["nginx"],
            "fleet_facts_report_dir": str(fleet_dir / "report"),
        },
    }}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, pki):
    """Start the fleet's nginx instances, run facts.yml once, stop them.

    Yields a ``Fleet``: servers and leaves by host, the report, the run.
    """
    fleet_dir = tmp_path_factory.mktemp("fleet")
    now = datetime.datetime.now(datetime.timezone.utc)
    leaves, servers = {}, {}
    try:
        for name, (address, server_name, days) in FLEET.items():
            leaves[name] = pki.leaf(
                names=[server_name], key_type="ecdsa",
                not_after=now + datetime.timedelta(days=days, hours=12),
            )
            paths = leaves[name].write(fleet_dir / name / "live")
            servers[name] = Nginx(fleet_dir / name / "nginx", paths["fullchain"],
                                  paths["privkey"], host=address,
                                  server_name=server_name)
            servers[name].start()
        inventory = fleet_dir / "inventory.json"
        inventory.write_text(json.dumps(_inventory(fleet_dir, servers)))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
                   ANSIBLE_RETRY_FILES_ENABLED="false")
        run = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i",
             str(inventory), str(REPO / "playbooks" / "facts.yml")],
            capture_output=True, text=True, env=env, cwd=fleet_dir, timeout=600,
            check=False,
        )
        yield Fleet(servers, leaves, fleet_dir / "report", run)
    finally:
        for server in servers.values():
            server.stop()


def _report(fleet: Fleet) -> dict:
    path = fleet.report_dir / "fleet-facts.json"
    assert path.exists(), fleet.run.stdout[-4000:] + fleet.run.stderr[-4000:]
    return json.loads(path.read_text())


def test_playbook_reports_every_host_and_survives_a_broken_one(fleet) -> None:
    run = fleet.run
    # Exit 2: one host failed; the play still ran to the end for the others.
    assert run.returncode == 2, run.stdout[-4000:] + run.stderr[-4000:]
    report = _report(fleet)
    assert [h["host"] for h in report["hosts"]] == ["web2", "web1", "web3", BROKEN_HOST]
    broken = report["hosts"][-1]
    assert broken["facts_missing"] is True
    assert BROKEN_HOST in broken["problems"][0]
    assert report["summary"] == {
        "hosts": 4, "hosts_without_facts": 1, "certificates": 3, "expired": 0,
        "expiring": 1, "problems": 1,
    }


def test_report_lists_what_each_nginx_serves(fleet) -> None:
    servers, leaves = fleet.servers, fleet.leaves
    by_host = {h["host"]: h for h in _report(fleet)["hosts"]}
    for name, (_address, server_name, days) in FLEET.items():
        host = by_host[name]
        (cert,) = host["certificates"]
        assert cert["sha256"] == leaves[name].sha256
        assert cert["sha256"] == servers[name].served_sha256(server_name)
        assert cert["days_left"] == days
        assert cert["path"] == str(servers[name].cert_path)
        assert cert["used_by"] == [{
            "server": "nginx", "site": server_name, "directive": "ssl_certificate",
            "source": f"{servers[name].conf_path}:{_line_of(servers[name])}",
        }]
        assert host["servers"][0]["name"] == "nginx"
        assert host["servers"][0]["version"]
        assert host["collection_version"] == _galaxy_version()
        assert host["ip"] and host["os"] and host["architecture"]
        assert host["soonest_expiry"]["sha256"] == leaves[name].sha256
    assert by_host["web2"]["certificates"][0]["status"] == "expiring"
    assert by_host["web1"]["certificates"][0]["status"] == "ok"


def _line_of(server: Nginx) -> int:
    lines = server.conf_path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if "ssl_certificate " in line)


class _Text(html.parser.HTMLParser):
    """The visible text of a page, in document order, and its element names."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.tags: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        self._skip += tag in ("style", "script", "title")

    def handle_endtag(self, tag) -> None:
        self._skip -= tag in ("style", "script", "title")

    def handle_data(self, data) -> None:
        if not self._skip and data.strip():
            self.chunks.append(data.strip())


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180, check=False,
    )


def test_html_report_reads_right_in_chromium(fleet, tmp_path) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is missing (scripts/bootstrap.sh installs it)")
        pytest.skip("chromium is missing (scripts/bootstrap.sh installs it)")
    page = (fleet.report_dir / "fleet-facts.html").as_uri()
    dumped = _chromium(tmp_path / "profile-dom", "--dump-dom", page)
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    text = _Text()
    text.feed(dumped.stdout)
    assert "script" not in text.tags
    seen = " | ".join(text.chunks)
    assert "Certificate fleet report" in seen
    for name in [*FLEET, BROKEN_HOST]:
        assert name in text.chunks, f"{name} is not shown: {seen[:2000]}"
    # The hosts table comes first and starts with the host that expires first.
    assert text.chunks.index("web2") < text.chunks.index("web1") \
        < text.chunks.index("web3") < text.chunks.index(BROKEN_HOST)
    assert "5 days left" in text.chunks
    first_sha = [c for c in text.chunks if re.fullmatch(r"[0-9a-f]{64}", c)]
    assert first_sha[0] == fleet.leaves["web2"].sha256
    assert seen.index("5 days left") < seen.index("60 days left") \
        < seen.index("200 days left")
    shot = tmp_path / "report.png"
    taken = _chromium(tmp_path / "profile-shot", "--hide-scrollbars",
                      "--window-size=1440,1100", f"--screenshot={shot}", page)
    assert taken.returncode == 0, taken.stderr[-3000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("CERTFLEET_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["CERTFLEET_KEEP_SCREENSHOT"])
