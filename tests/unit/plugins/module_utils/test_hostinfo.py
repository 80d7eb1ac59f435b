"""Host identity and the collection's own version, from files on the host."""

from __future__ import annotations

import json
import os
import platform
import re
import socket
from pathlib import Path

from ansible_collections.certfleet.deploy.plugins.module_utils import hostinfo

REPO = Path(__file__).resolve().parents[4]

OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
# a comment
HOME_URL="https://www.debian.org/"
BROKEN="unterminated
"""


def test_os_release_fields_are_unquoted() -> None:
    fields = hostinfo.parse_os_release(OS_RELEASE)
    assert fields["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert fields["ID"] == "debian"
    assert fields["VERSION"] == "12 (bookworm)"
    assert fields["BROKEN"] == "unterminated"
    assert "# a comment" not in fields


def test_operating_system_reads_the_first_file_that_exists(tmp_path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Rocky Linux"\nVERSION_ID="9.4"\nID="rocky"\n')
    found = hostinfo.operating_system((str(tmp_path / "missing"), str(release)))
    assert found == {"id": "rocky", "name": "Rocky Linux", "version": "",
                     "version_id": "9.4", "pretty_name": "Rocky Linux",
                     "source": str(release)}


def test_operating_system_without_os_release_falls_back_to_uname(tmp_path) -> None:
    found = hostinfo.operating_system((str(tmp_path / "missing"),))
    assert found["name"] == platform.system()
    assert found["source"] is None


def test_fqdn_comes_from_the_hosts_file_without_lookups(tmp_path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n"
                     "192.0.2.10 web1.example.com web1 # the web host\n"
                     "192.0.2.11 other.example.com other\n")
    assert hostinfo.fqdn("web1", hosts_file=str(hosts)) == "web1.example.com"
    assert hostinfo.fqdn("db1", hosts_file=str(hosts)) == "db1"
    assert hostinfo.fqdn("web1.example.org", hosts_file=str(hosts)) == \
        "web1.example.org"
    assert hostinfo.fqdn("web1", hosts_file=str(tmp_path / "none")) == "web1"


def test_fqdn_from_the_resolver_on_request() -> None:
    # localhost resolves from the hosts file here, so nothing leaves the host.
    assert hostinfo.fqdn("localhost", source="resolver") == socket.getfqdn("localhost")


def test_identity_of_this_host(tmp_path) -> None:
    release = tmp_path / "os-release"
    release.write_text("PRETTY_NAME=Testix 1\n")
    found = hostinfo.identity(os_release=str(release))
    assert found["hostname"] == socket.gethostname()
    assert found["architecture"] == os.uname().machine
    assert found["kernel"] == os.uname().release
    assert found["os"]["pretty_name"] == "Testix 1"


def test_collection_version_from_the_source_tree() -> None:
    galaxy = (REPO / "galaxy.yml").read_text()
    version = re.search(r"^version:\s*(\S+)", galaxy, re.M).group(1)
    start = REPO / "plugins" / "modules" / "certificate_facts.py"
    assert hostinfo.collection_version(str(start)) == {
        "name": "certfleet.deploy", "version": version,
        "source": str(REPO / "galaxy.yml"),
    }


def _manifest(directory: Path, namespace="certfleet", name="deploy",
              version="9.8.7") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "MANIFEST.json").write_text(json.dumps({"collection_info": {
        "namespace": namespace, "name": name, "version": version}}))


def test_collection_version_from_an_installed_manifest(tmp_path) -> None:
    root = tmp_path / "ansible_collections" / "certfleet" / "deploy"
    _manifest(root)
    # Another collection's manifest on the way up is passed over.
    _manifest(root / "plugins", namespace="other", version="1.0.0")
    (root / "plugins" / "action").mkdir()
    found = hostinfo.collection_version(str(root / "plugins" / "action" / "x.py"))
    assert found == {"name": "certfleet.deploy", "version": "9.8.7",
                     "source": str(root / "MANIFEST.json")}


def test_collection_version_unknown_outside_the_collection(tmp_path) -> None:
    (tmp_path / "MANIFEST.json").write_text("[not an object]")
    (tmp_path / "galaxy.yml").write_text("namespace: someone\nname: else\n")
    found = hostinfo.collection_version(str(tmp_path / "module.py"))
    assert found == {"name": "certfleet.deploy", "version": None, "source": None}
