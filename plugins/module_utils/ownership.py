# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Owner, group and mode of each deployed file.

Precedence, the same for every server: an explicit option, else what the file
already has, else the server's default. Default users and groups are lists of
candidates because distributions name them differently (``www-data`` on
Debian, ``nginx`` on RHEL and Alpine): the first that exists wins, and when
none exists ownership is left to the running user.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass

from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)


@dataclass(frozen=True)
class Ownership:
    """Numeric owner and group (``None``: leave as created) and the mode."""

    uid: int | None
    gid: int | None
    mode: int


@dataclass(frozen=True)
class Defaults:
    """A server's defaults for one kind of file."""

    mode: int
    users: tuple = ()
    groups: tuple = ()


def parse_mode(value: object, option: str) -> int | None:
    """Accept an octal string (``'0640'``) or an int; ``None`` passes through."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise DeployError(
            f"Option {option} must be an octal mode such as '0640', not {value!r}."
        )
    if isinstance(value, int):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            raise DeployError(
                f"Option {option} must be an octal mode such as '0640', "
                f"not {value!r}."
            ) from None
    if isinstance(value, int) and mode > 0o777:
        raise DeployError(
            f"Option {option} is the number {value}, which is not a file mode "
            f"(as octal it would be {mode:o}); quote it, such as '0640'."
        )
    if not 0 <= mode <= 0o7777:
        raise DeployError(f"Option {option} is out of range: {value!r}.")
    return mode


def lookup_user(name: str | int, option: str = "owner") -> int:
    """UID of a user name or number; a clear error when it does not exist."""
    try:
        return pwd.getpwnam(str(name)).pw_uid
    except KeyError:
        if str(name).isdigit():
            return int(name)
        raise DeployError(
            f"The {option} {name!r} does not exist on this host."
        ) from None


def lookup_group(name: str | int, option: str = "group") -> int:
    """GID of a group name or number; a clear error when it does not exist."""
    try:
        return grp.getgrnam(str(name)).gr_gid
    except KeyError:
        if str(name).isdigit():
            return int(name)
        raise DeployError(
            f"The {option} {name!r} does not exist on this host."
        ) from None


def first_user(candidates: tuple) -> int | None:
    for name in candidates:
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            continue
    return None


def first_group(candidates: tuple) -> int | None:
    for name in candidates:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            continue
    return None


def resolve(
    path: str,
    defaults: Defaults,
    owner: str | None = None,
    group: str | None = None,
    mode: int | None = None,
) -> Ownership:
    """Decide the owner, group and mode that ``path`` should end up with."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        current = None
    if owner not in (None, ""):
        uid = lookup_user(owner)
    elif current is not None:
        uid = current.st_uid
    else:
        uid = first_user(defaults.users)
    if group not in (None, ""):
        gid = lookup_group(group)
    elif current is not None:
        gid = current.st_gid
    else:
        gid = first_group(defaults.groups)
    if mode is None:
        mode = stat.S_IMODE(current.st_mode) if current else defaults.mode
    return Ownership(uid=uid, gid=gid, mode=mode)


def describe_mode(mode: int) -> str:
    return f"{mode:04o}"
