# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who the host is: names, operating system, architecture, our own version.

Nothing here asks the network. The FQDN comes from the hosts file unless the
operator asks for the resolver, because a resolver lookup may query DNS
servers elsewhere. The collection's version is read from the collection's own
metadata, found by walking up from a file of the collection, so it can never
drift from what is installed.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import socket

OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")
HOSTS_FILE = "/etc/hosts"
COLLECTION = ("certfleet", "deploy")
_GALAXY_KEY = re.compile(r"^(namespace|name|version):\s*['\"]?([^'\"#\s]+)", re.M)


def parse_os_release(text: str) -> dict:
    """The fields of an os-release file (shell-style ``KEY=value`` lines)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            words = [value.strip("\"'")]
        fields[key] = " ".join(words)
    return fields


def operating_system(paths: tuple = OS_RELEASE_PATHS) -> dict:
    """Name, id and version of the OS, from the first os-release that exists."""
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                fields = parse_os_release(handle.read())
        except OSError:
            continue
        return {
            "id": fields.get("ID", "linux"),
            "name": fields.get("NAME", platform.system()),
            "version": fields.get("VERSION", ""),
            "version_id": fields.get("VERSION_ID", ""),
            "pretty_name": fields.get("PRETTY_NAME", fields.get("NAME", "")),
            "source": path,
        }
    system = platform.system()
    return {"id": system.lower(), "name": system, "version": platform.release(),
            "version_id": "", "pretty_name": system, "source": None}


def fqdn_from_hosts(hostname: str, text: str) -> str | None:
    """The first dotted name on a hosts-file line that names ``hostname``.

    That is what ``hostname --fqdn`` answers when the hosts file is the only
    source: the canonical name is the first name of the line.
    """
    short = hostname.split(".")[0]
    for line in text.splitlines():
        names = line.split("#", 1)[0].split()[1:]
        if hostname in names or short in names:
            dotted = [n for n in names if "." in n and n.split(".")[0] == short]
            if dotted:
                return dotted[0]
    return None


def fqdn(hostname: str, source: str = "hosts", hosts_file: str = HOSTS_FILE) -> str:
    """The host's fully qualified name; the short name when none is known.

    ``source`` is ``hosts`` (read the hosts file, no lookups) or ``resolver``
    (ask the system resolver, which may query DNS).
    """
    if source == "resolver":
        return socket.getfqdn(hostname)
    if "." in hostname:
        return hostname
    try:
        with open(hosts_file, encoding="utf-8", errors="replace") as handle:
            found = fqdn_from_hosts(hostname, handle.read())
    except OSError:
        found = None
    return found or hostname


def identity(fqdn_source: str = "hosts", os_release: str | None = None) -> dict:
    """Hostname, FQDN, OS, architecture and kernel of this host."""
    uname = os.uname()
    hostname = socket.gethostname()
    paths = (os_release,) if os_release else OS_RELEASE_PATHS
    return {
        "hostname": hostname,
        "fqdn": fqdn(hostname, fqdn_source),
        "os": operating_system(paths),
        "architecture": uname.machine,
        "kernel": uname.release,
    }


def _read_manifest(path: str) -> dict | None:
    with open(path, encoding="utf-8") as handle:
        info = json.load(handle).get("collection_info", {})
    return {k: info.get(k) for k in ("namespace", "name", "version")}


def _read_galaxy(path: str) -> dict | None:
    with open(path, encoding="utf-8") as handle:
        return dict(_GALAXY_KEY.findall(handle.read()))


def collection_version(start: str) -> dict:
    """Version of this collection, found by walking up from the file ``start``.

    An installed collection has a MANIFEST.json at its root; a source tree
    has galaxy.yml. The first directory on the way up that holds either, for
    this collection's namespace and name, answers. ``version`` is ``None``
    when none is found (a module copied to the host without its collection).
    """
    directory = os.path.dirname(os.path.abspath(start))
    while True:
        for name, reader in (("MANIFEST.json", _read_manifest),
                             ("galaxy.yml", _read_galaxy)):
            path = os.path.join(directory, name)
            try:
                info = reader(path)
            except (OSError, ValueError, AttributeError):
                continue
            if (info.get("namespace"), info.get("name")) == COLLECTION:
                return {"name": ".".join(COLLECTION), "version": info.get("version"),
                        "source": path}
        parent = os.path.dirname(directory)
        if parent == directory:
            return {"name": ".".join(COLLECTION), "version": None, "source": None}
        directory = parent
