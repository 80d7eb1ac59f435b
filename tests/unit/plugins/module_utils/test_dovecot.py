"""The Dovecot settings check: version, syntax, and what doveconf -n says (F11)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import dovecot
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)

CERT = "/etc/dovecot/private/mail.pem"
KEY = "/etc/dovecot/private/mail.key"
PEM_LINE = "MIIBszCCAVmgAwIBAgIUSecretKeyMaterialLine"

DOVECONF_23 = f"""\
# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf
listen = 127.0.0.1
passdb {{
  args = password=hunter2
  driver = static
}}
ssl_cert = <{CERT}
ssl_key = <{KEY}
local_name imap.example.org {{
  ssl_cert = </etc/dovecot/private/other.pem
  ssl_key = </etc/dovecot/private/other.key
}}
"""

DOVECONF_24 = f"""\
# 2.4.1 (abcdef): /etc/dovecot/dovecot.conf
dovecot_config_version = 2.4.1
ssl_server_cert_file = {CERT}
ssl_server_key_file = {KEY}
"""

WANTED_23 = {"ssl_cert": ("cert_path", CERT), "ssl_key": ("key_path", KEY)}
WANTED_24 = {"ssl_server_cert_file": ("cert_path", CERT),
             "ssl_server_key_file": ("key_path", KEY)}


@pytest.mark.parametrize(("text", "version"), [
    ("2.3.19.1 (9b53102964)\n", (2, 3)),
    ("2.4.1 (abcdef)", (2, 4)),
    ("2.2.36", (2, 2)),
])
def test_version_is_major_and_minor(text: str, version: tuple) -> None:
    assert dovecot.parse_version(text) == version


def test_unreadable_version_is_an_error() -> None:
    with pytest.raises(DeployError, match="version could not be read"):
        dovecot.parse_version("dovecot: command not found")


def test_syntax_follows_the_version() -> None:
    assert dovecot.syntax_for((2, 3)) is dovecot.SYNTAX_23
    assert dovecot.syntax_for((2, 2)) is dovecot.SYNTAX_23
    assert dovecot.syntax_for((2, 4)) is dovecot.SYNTAX_24
    assert dovecot.syntax_for((3, 0)) is dovecot.SYNTAX_24


def test_23_settings_that_read_the_files_are_found() -> None:
    matched = dovecot.check_names(DOVECONF_23, dovecot.SYNTAX_23, WANTED_23)
    assert matched == {"ssl_cert": f"ssl_cert = <{CERT}",
                       "ssl_key": f"ssl_key = <{KEY}"}


def test_a_path_in_a_local_name_block_counts() -> None:
    wanted = {"ssl_cert": ("cert_path", "/etc/dovecot/private/other.pem"),
              "ssl_key": ("key_path", "/etc/dovecot/private/other.key")}
    matched = dovecot.check_names(DOVECONF_23, dovecot.SYNTAX_23, wanted)
    assert matched["ssl_cert"] == "ssl_cert = </etc/dovecot/private/other.pem"


def test_24_settings_take_plain_paths() -> None:
    matched = dovecot.check_names(DOVECONF_24, dovecot.SYNTAX_24, WANTED_24)
    assert matched["ssl_server_key_file"] == f"ssl_server_key_file = {KEY}"


def test_23_names_do_not_count_under_24() -> None:
    with pytest.raises(DeployError, match="in ssl_server_cert_file"):
        dovecot.check_names(DOVECONF_23, dovecot.SYNTAX_24, WANTED_24)


def test_a_symlink_to_the_deployed_file_counts(tmp_path: Path) -> None:
    real = tmp_path / "real.pem"
    real.write_text("x")
    link = tmp_path / "link.pem"
    os.symlink(real, link)
    output = f"ssl_cert = <{link}\nssl_key = <{KEY}\n"
    wanted = {"ssl_cert": ("cert_path", str(real)), "ssl_key": ("key_path", KEY)}
    dovecot.check_names(output, dovecot.SYNTAX_23, wanted)


def test_another_file_is_refused_naming_what_dovecot_reads() -> None:
    output = DOVECONF_23.replace(CERT, "/etc/ssl/certs/dovecot.pem")
    with pytest.raises(DeployError) as caught:
        dovecot.check_names(output, dovecot.SYNTAX_23, WANTED_23)
    message = caught.value.message
    assert message.startswith(f"Dovecot does not read cert_path {CERT}:")
    assert "/etc/ssl/certs/dovecot.pem" in message


@pytest.mark.parametrize(("line", "words"), [
    (f"ssl_cert = {CERT}", "without the '<' Dovecot 2.3 needs"),
    ("ssl_cert = <", "with no file after it"),
    ("ssl_cert = <mail.pem", "a relative path"),
    ("ssl_cert = ./mail.pem", "without the '<'"),
])
def test_f11_faults_in_23_are_refused(line: str, words: str) -> None:
    output = DOVECONF_23.replace(f"ssl_cert = <{CERT}", line)
    with pytest.raises(DeployError, match=words):
        dovecot.check_names(output, dovecot.SYNTAX_23, WANTED_23)


@pytest.mark.parametrize(("line", "words"), [
    (f"ssl_server_cert_file = <{CERT}", "remove the '<'"),
    ("ssl_server_cert_file = mail.pem", "a relative path"),
])
def test_f11_faults_in_24_are_refused(line: str, words: str) -> None:
    output = DOVECONF_24.replace(f"ssl_server_cert_file = {CERT}", line)
    with pytest.raises(DeployError, match=words):
        dovecot.check_names(output, dovecot.SYNTAX_24, WANTED_24)


def test_inline_key_content_is_never_quoted() -> None:
    """A key given inline is not a file; its bytes stay out of the message."""
    output = DOVECONF_23.replace(f"ssl_key = <{KEY}",
                                 f"ssl_key = -----BEGIN PRIVATE KEY-----{PEM_LINE}")
    with pytest.raises(DeployError) as caught:
        dovecot.check_names(output, dovecot.SYNTAX_23, WANTED_23)
    assert PEM_LINE not in caught.value.message
    assert "names /etc/dovecot/private/other.key in ssl_key" in caught.value.message


def test_only_the_named_settings_are_read() -> None:
    found = dovecot.settings(DOVECONF_23, ("ssl_key",))
    assert found == [("ssl_key", f"<{KEY}"),
                     ("ssl_key", "</etc/dovecot/private/other.key")]
