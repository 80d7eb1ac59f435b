"""Postfix helpers: ``-c DIR`` on default commands, and postmap -F tables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import commands
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.postfix import (
    SniMap,
)


def test_option_goes_right_after_the_program() -> None:
    assert commands.with_option(["postfix", "check"], "-c", "/etc/pf2") == [
        "postfix", "-c", "/etc/pf2", "check"]
    assert commands.with_option(["postfix", "check"], "-c", None) == [
        "postfix", "check"]
    assert commands.with_option([], "-c", "/etc/pf2") == []


@pytest.mark.parametrize(("text", "source"), [
    ("hash:/etc/postfix/sni", "/etc/postfix/sni"),
    ("lmdb:/etc/postfix/sni", "/etc/postfix/sni"),
    ("/etc/postfix/sni", "/etc/postfix/sni"),
])
def test_table_names_give_their_source(text: str, source: str) -> None:
    assert SniMap.parse(text) == SniMap(text, source)


@pytest.mark.parametrize("text", ["hash:sni", "sni", "hash:"])
def test_a_relative_source_is_refused(text: str) -> None:
    with pytest.raises(DeployError, match="absolute source file"):
        SniMap.parse(text)


def test_values_are_lists_of_files_with_continuations(tmp_path: Path) -> None:
    source = tmp_path / "sni"
    source.write_text(
        "# server name    key, certificate, chain\n"
        "mail.example.com /etc/tls/mail.key,/etc/tls/mail.pem\n"
        "\n"
        "  # a comment inside\n"
        "mx.example.org   /etc/tls/mx.key\n"
        "    /etc/tls/mx.pem, /etc/tls/mx-chain.pem\n"
    )
    assert SniMap.parse(f"hash:{source}").files() == [
        "/etc/tls/mail.key", "/etc/tls/mail.pem", "/etc/tls/mx.key",
        "/etc/tls/mx.pem", "/etc/tls/mx-chain.pem"]


def test_refers_to_matches_given_and_resolved_paths(tmp_path: Path) -> None:
    real = tmp_path / "bundle.pem"
    real.write_text("x")
    link = tmp_path / "current.pem"
    os.symlink(real, link)
    source = tmp_path / "sni"
    source.write_text(f"mail.example.com {link}\n")
    table = SniMap.parse(f"hash:{source}")
    assert table.refers_to([str(real)])
    assert table.refers_to([str(link)])
    assert not table.refers_to([str(tmp_path / "other.pem")])


def test_an_unreadable_source_is_an_error_naming_it(tmp_path: Path) -> None:
    table = SniMap.parse(f"hash:{tmp_path / 'missing'}")
    with pytest.raises(DeployError) as caught:
        table.files()
    assert caught.value.message == (
        f"sni_maps entry hash:{tmp_path / 'missing'}: {tmp_path / 'missing'} "
        "cannot be read: No such file or directory.")
