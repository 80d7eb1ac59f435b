# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write small configuration documents as block YAML, without a YAML library.

Managed hosts need only Python and ``cryptography``, so the dynamic
configuration files of Traefik and Envoy's SDS resources are emitted here.
Only what those files need is supported: mappings, lists, strings, booleans
and integers. Every string is written double-quoted with JSON escapes, which
YAML reads the same way, so no value can turn into another type or break the
structure.
"""

from __future__ import annotations

import json
import re

from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Words YAML readers turn into booleans or null when left unquoted.
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
_INDENT = "  "


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    raise DeployError(
        f"Cannot write {type(value).__name__} values into a YAML document."
    )


def _key(key: str) -> str:
    if _PLAIN_KEY.match(key) and key.lower() not in _RESERVED:
        return key
    return json.dumps(key, ensure_ascii=True)


def _lines(value: object, depth: int) -> list:
    """The lines of a mapping or list nested ``depth`` levels deep."""
    pad = _INDENT * depth
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{_key(key)}:")
                lines += _lines(item, depth + 1)
            else:
                lines.append(f"{pad}{_key(key)}: {_inline(item)}")
        return lines
    for item in value:
        if isinstance(item, (dict, list)) and item:
            nested = _lines(item, depth + 1)
            first = nested[0][len(pad) + len(_INDENT):]
            lines.append(f"{pad}- {first}")
            lines += nested[1:]
        else:
            lines.append(f"{pad}- {_inline(item)}")
    return lines


def _inline(value: object) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def yaml_document(data: dict, comment: str = "") -> bytes:
    """``data`` as a block-style YAML document, with an optional comment."""
    head = [f"# {line}".rstrip() for line in comment.splitlines()]
    return ("\n".join(head + _lines(data, 0)) + "\n").encode("utf-8")


def json_document(data: dict) -> bytes:
    """``data`` as indented JSON, for servers that read ``.json`` files."""
    return (json.dumps(data, indent=2, ensure_ascii=True) + "\n").encode("utf-8")
