"""Owner, group and mode: explicit option, else the existing file's, else defaults.

The tests use real files and the real user database. They compare against
the running user and ``nobody``/``nogroup`` (present on Debian and most
systems), so they need no privileges.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import ownership
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.ownership import (
    Defaults,
    Ownership,
)

MISSING_USER = "certfleet-no-such-user"
MISSING_GROUP = "certfleet-no-such-group"


def _uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def _gid(name: str) -> int:
    return grp.getgrnam(name).gr_gid


def _other_group() -> str:
    """A group that exists and is not the running user's primary group."""
    for name in ("nogroup", "nobody", "daemon"):
        try:
            if _gid(name) != os.getegid():
                return name
        except KeyError:
            continue
    pytest.skip("no second group on this host")


@pytest.fixture
def other_user() -> str:
    """A user that exists and is not the one running the tests."""
    for name in ("nobody", "daemon"):
        try:
            if _uid(name) != os.geteuid():
                return name
        except KeyError:
            continue
    pytest.skip("no second user on this host")


@pytest.fixture
def existing(tmp_path: Path) -> Path:
    """A file with mode 0640 owned by whoever runs the tests."""
    path = tmp_path / "cert.pem"
    path.write_bytes(b"old\n")
    path.chmod(0o640)
    return path


# --- parse_mode -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mode"),
    [("0640", 0o640), ("640", 0o640), ("0o600", 0o600), ("0", 0),
     (0o644, 0o644), (420, 0o644), ("7777", 0o7777)],
)
def test_parse_mode_accepts_octal_strings_and_ints(value, mode: int) -> None:
    """'0640' and the int 0o640 (what YAML makes of 0640) mean the same."""
    assert ownership.parse_mode(value, "cert_mode") == mode


@pytest.mark.parametrize("value", [None, ""])
def test_parse_mode_without_value_leaves_the_decision_open(value) -> None:
    assert ownership.parse_mode(value, "key_mode") is None


@pytest.mark.parametrize("value", ["rw-r-----", "u=rw,g=r", "0648", "0x1a4", "1.5"])
def test_parse_mode_refuses_what_is_not_octal(value: str) -> None:
    """Symbolic or non-octal modes are refused, naming the option and value."""
    with pytest.raises(DeployError) as caught:
        ownership.parse_mode(value, "key_mode")
    assert caught.value.message == (
        f"Option key_mode must be an octal mode such as '0640', not {value!r}."
    )


@pytest.mark.parametrize("value", ["10000", -1, "-1"])
def test_parse_mode_refuses_out_of_range(value) -> None:
    """Modes beyond 07777 (or negative) are refused as out of range."""
    with pytest.raises(DeployError) as caught:
        ownership.parse_mode(value, "cert_mode")
    assert caught.value.message == f"Option cert_mode is out of range: {value!r}."


def test_describe_mode_is_four_octal_digits() -> None:
    assert ownership.describe_mode(0o640) == "0640"
    assert ownership.describe_mode(0o2750) == "2750"


# --- resolve: explicit > existing > defaults --------------------------------------


def test_explicit_options_win_over_the_existing_file(
    existing: Path, other_user: str
) -> None:
    """owner, group and mode given by the operator override the file's own."""
    group = _other_group()
    defaults = Defaults(mode=0o600, users=("root",), groups=("root",))
    result = ownership.resolve(
        str(existing), defaults, owner=other_user, group=group, mode=0o604
    )
    assert result == Ownership(uid=_uid(other_user), gid=_gid(group), mode=0o604)


def test_explicit_mode_zero_is_kept(existing: Path) -> None:
    """Mode 0 is a choice, not 'unset'."""
    result = ownership.resolve(str(existing), Defaults(mode=0o644), mode=0)
    assert result.mode == 0


def test_numeric_owner_and_group_are_taken_as_ids(existing: Path) -> None:
    """An id with no name on this host is still a valid owner."""
    result = ownership.resolve(
        str(existing), Defaults(mode=0o644), owner="54321", group=54322
    )
    assert (result.uid, result.gid) == (54321, 54322)


def test_existing_file_wins_over_defaults(existing: Path, other_user: str) -> None:
    """Without options, the file keeps its owner, group and mode."""
    stat = existing.stat()
    defaults = Defaults(mode=0o600, users=(other_user,), groups=(_other_group(),))
    result = ownership.resolve(str(existing), defaults)
    assert result == Ownership(uid=stat.st_uid, gid=stat.st_gid, mode=0o640)


def test_explicit_and_existing_mix_per_field(existing: Path, other_user: str) -> None:
    """Only the fields given explicitly change; the rest come from the file."""
    stat = existing.stat()
    result = ownership.resolve(str(existing), Defaults(mode=0o600), owner=other_user)
    assert result == Ownership(uid=_uid(other_user), gid=stat.st_gid, mode=0o640)


def test_symlinked_destination_reports_the_target(tmp_path: Path) -> None:
    """F13: a symlink's own 0777 is not the mode to copy; the target's is."""
    target = tmp_path / "archive" / "privkey1.pem"
    target.parent.mkdir()
    target.write_bytes(b"key\n")
    target.chmod(0o600)
    link = tmp_path / "privkey.pem"
    link.symlink_to(target)
    assert ownership.resolve(str(link), Defaults(mode=0o644)).mode == 0o600


def test_defaults_take_the_first_candidate_that_exists(
    tmp_path: Path, other_user: str
) -> None:
    """A new file gets the first existing default user and group, and mode."""
    group = _other_group()
    defaults = Defaults(
        mode=0o640,
        users=(MISSING_USER, other_user, "root"),
        groups=(MISSING_GROUP, group, "root"),
    )
    result = ownership.resolve(str(tmp_path / "new.pem"), defaults)
    assert result == Ownership(uid=_uid(other_user), gid=_gid(group), mode=0o640)


def test_no_candidate_leaves_ownership_alone(tmp_path: Path) -> None:
    """When no default user or group exists, uid and gid are None."""
    defaults = Defaults(mode=0o600, users=(MISSING_USER,), groups=(MISSING_GROUP,))
    result = ownership.resolve(str(tmp_path / "new.pem"), defaults)
    assert result == Ownership(uid=None, gid=None, mode=0o600)


def test_no_candidates_at_all_leaves_ownership_alone(tmp_path: Path) -> None:
    result = ownership.resolve(str(tmp_path / "new.pem"), Defaults(mode=0o644))
    assert result == Ownership(uid=None, gid=None, mode=0o644)


def test_unknown_owner_is_named(existing: Path) -> None:
    """An owner that does not exist is refused, by name."""
    with pytest.raises(DeployError) as caught:
        ownership.resolve(str(existing), Defaults(mode=0o644), owner=MISSING_USER)
    assert caught.value.message == (
        f"The owner {MISSING_USER!r} does not exist on this host."
    )


def test_unknown_group_is_named(existing: Path) -> None:
    """A group that does not exist is refused, by name."""
    with pytest.raises(DeployError) as caught:
        ownership.resolve(str(existing), Defaults(mode=0o644), group=MISSING_GROUP)
    assert caught.value.message == (
        f"The group {MISSING_GROUP!r} does not exist on this host."
    )


def test_lookups_name_the_option_they_serve() -> None:
    """Callers resolving a different option get its name in the message."""
    with pytest.raises(DeployError) as caught:
        ownership.lookup_user(MISSING_USER, "backup_owner")
    assert "The backup_owner 'certfleet-no-such-user'" in caught.value.message
    with pytest.raises(DeployError) as caught:
        ownership.lookup_group(MISSING_GROUP, "backup_group")
    assert "The backup_group 'certfleet-no-such-group'" in caught.value.message


@pytest.mark.parametrize("value", [True, False])
def test_boolean_is_not_a_mode(value: bool) -> None:
    """YAML's yes/no must not silently become mode 0001 or 0000."""
    with pytest.raises(DeployError, match="octal mode"):
        ownership.parse_mode(value, "key_mode")


@pytest.mark.parametrize("value", [644, 600, 0o10000])
def test_int_that_is_no_file_mode_is_refused(value: int) -> None:
    """A YAML 644 (decimal, octal 1204) must not become a world-readable key."""
    with pytest.raises(DeployError, match="not a file mode"):
        ownership.parse_mode(value, "key_mode")


def test_int_from_yaml_octal_is_taken_as_is() -> None:
    """YAML reads an unquoted 0640 as the int 416, which is the mode meant."""
    assert ownership.parse_mode(0o640, "key_mode") == 0o640
