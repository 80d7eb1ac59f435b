"""Engine hooks that server modules build on: roles, command names, state dir.

``Deploy`` is built around a stand-in for ``AnsibleModule`` holding only the
parameters and ``get_bin_path``; nothing here runs a command or touches a
server.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import commands
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.ownership import (
    Ownership,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    Deploy,
    FileRole,
    Server,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.transaction import (
    FileSpec,
)

FILES = (
    FileRole("cert_path", "fullchain", "cert_mode", 0o644),
    FileRole("key_path", "key", "key_mode", 0o600, secret=True),
)


class ParamsModule:
    """Just enough of AnsibleModule for ``Deploy``: params and get_bin_path."""

    def __init__(self, params: dict, programs: tuple = ()) -> None:
        self.params = params
        self.programs = programs

    def get_bin_path(self, name: str):
        if self.programs:
            return f"/usr/sbin/{name}" if name in self.programs else None
        return shutil.which(name)


def spec(path: Path, label: str = "cert_path") -> FileSpec:
    return FileSpec(path=str(path), content=b"", owner=Ownership(None, None, 0o600),
                    label=label)


# --- first found of a tool's names ---------------------------------------------


def test_first_found_takes_the_first_name_on_path() -> None:
    module = ParamsModule({}, programs=("apache2ctl",))
    assert commands.first_found(module, ("apachectl", "apache2ctl")) == "apache2ctl"


def test_first_found_reports_the_first_name_when_none_exists() -> None:
    module = ParamsModule({}, programs=("unrelated",))
    assert commands.first_found(module, ("apachectl", "apache2ctl")) == "apachectl"


def test_default_command_picks_the_program_this_host_has() -> None:
    """A default's program given as alternatives becomes the one found."""
    server = Server(name="web", files=FILES,
                    reload_command=(("apachectl", "apache2ctl"), "graceful"))
    deploy = Deploy(ParamsModule({"reload_command": None},
                                 programs=("apache2ctl",)), server)
    made = deploy.command("reload_command", "reload")
    assert made is not None and made.argv == ["apache2ctl", "graceful"]


def test_operator_command_is_taken_as_given() -> None:
    server = Server(name="web", files=FILES,
                    reload_command=(("apachectl", "apache2ctl"), "graceful"))
    deploy = Deploy(ParamsModule({"reload_command": ["true"]}), server)
    made = deploy.command("reload_command", "reload")
    assert made is not None and made.argv == ["true"]


# --- roles ---------------------------------------------------------------------


def test_roles_are_the_servers_files_by_default() -> None:
    deploy = Deploy(ParamsModule({}), Server(name="web", files=FILES))
    assert deploy.roles() == FILES


# --- the state directory is never among the live files -----------------------


def test_state_dir_equal_to_a_destination_directory_is_refused(tmp_path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    deploy = Deploy(ParamsModule({}), Server(name="web", files=FILES))
    with pytest.raises(DeployError) as caught:
        deploy.check_state_dir(str(live), [spec(live / "cert.pem")])
    message = caught.value.message
    assert f"backup_dir {live} is {live}" in message
    assert "cert_path" in message and "web could read" in message


def test_state_dir_beside_the_live_files_is_accepted(tmp_path) -> None:
    live = tmp_path / "live"
    deploy = Deploy(ParamsModule({}), Server(name="web", files=FILES))
    deploy.check_state_dir(str(tmp_path / "state"), [spec(live / "cert.pem")])
    deploy.check_state_dir(str(live / "sub"), [spec(live / "cert.pem")])


def test_state_dir_inside_a_loaded_directory_is_refused(tmp_path) -> None:
    """A server that loads whole directories may not hold the state below one."""
    crt = tmp_path / "crt"
    server = Server(name="haproxy", files=FILES, loads_directories=True)
    deploy = Deploy(ParamsModule({}), server)
    with pytest.raises(DeployError) as caught:
        deploy.check_state_dir(str(crt / "backups"), [spec(crt / "site.pem")])
    assert f"is inside {crt}" in caught.value.message


def test_state_dir_seen_through_a_symlink_is_refused(tmp_path) -> None:
    """The directory a symlinked destination really lives in counts too."""
    real = tmp_path / "archive"
    real.mkdir()
    (real / "cert.pem").write_bytes(b"")
    live = tmp_path / "live"
    live.mkdir()
    os.symlink(real / "cert.pem", live / "cert.pem")
    deploy = Deploy(ParamsModule({}), Server(name="web", files=FILES))
    with pytest.raises(DeployError):
        deploy.check_state_dir(str(real), [spec(live / "cert.pem")])
