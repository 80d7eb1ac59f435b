"""Endpoints that name their protocol, and F10 hints when the protocol is wrong."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import probe
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    ProbeError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.probe import (
    Endpoint,
)


@pytest.mark.parametrize(("text", "endpoint"), [
    ("smtp://127.0.0.1:2525", Endpoint("127.0.0.1", 2525, "smtp")),
    ("IMAP://mail.example.com:10143", Endpoint("mail.example.com", 10143, "imap")),
    ("pop3://[::1]:10110", Endpoint("::1", 10110, "pop3")),
    ("tls://127.0.0.1:10465", Endpoint("127.0.0.1", 10465, "tls")),
    ("smtp://mail.example.com", Endpoint("mail.example.com", 25, "smtp")),
    ("imap://mail.example.com", Endpoint("mail.example.com", 143, "imap")),
    ("pop3://mail.example.com", Endpoint("mail.example.com", 110, "pop3")),
    ("tls://mail.example.com", Endpoint("mail.example.com", 993, "tls")),
    ("127.0.0.1:25", Endpoint("127.0.0.1", 25)),
])
def test_an_endpoint_may_name_its_protocol(text: str, endpoint: Endpoint) -> None:
    assert probe.parse_endpoint(text, 993) == endpoint


def test_the_scheme_shows_in_messages() -> None:
    assert str(Endpoint("::1", 143, "imap")) == "imap://[::1]:143"
    assert str(Endpoint("127.0.0.1", 25)) == "127.0.0.1:25"


@pytest.mark.parametrize("text", ["https://example.com:443", "auto://h:1",
                                  "smtps://h:465"])
def test_an_unknown_scheme_is_refused(text: str) -> None:
    with pytest.raises(ProbeError, match="names an unknown protocol"):
        probe.parse_endpoint(text, 443)


def test_a_bad_port_after_a_scheme_quotes_the_whole_endpoint() -> None:
    with pytest.raises(ProbeError) as caught:
        probe.parse_endpoint("smtp://h:x", 25)
    assert caught.value.message == "The endpoint 'smtp://h:x' has no valid port."


@pytest.fixture
def greeter() -> Iterator[int]:
    """A plain-text server that greets like SMTP and then reads until closed."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        try:
            conn = listener.accept()[0]
        except OSError:
            return
        with conn:
            conn.sendall(b"220 mail.example.com ESMTP\r\n")
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(5)


@pytest.fixture
def silent() -> Iterator[int]:
    """A server that accepts and says nothing, as an implicit-TLS port does."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve() -> None:
        try:
            held.append(listener.accept()[0])
        except OSError:
            return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(5)
        for conn in held:
            conn.close()


def test_endpoint_scheme_wins_over_the_requested_protocol(greeter: int) -> None:
    """``tls://`` on a plain-text greeter: implicit TLS, whatever was asked."""
    endpoint = probe.parse_endpoint(f"tls://127.0.0.1:{greeter}", 25)
    with pytest.raises(ProbeError) as caught:
        probe.handshake(endpoint, "example.com", 5.0, "smtp")
    assert caught.value.message.startswith(
        f"No TLS handshake with tls://127.0.0.1:{greeter} (tls, SNI example.com): ")
    assert "answered in plain text" in caught.value.message


def test_starttls_on_a_silent_port_hints_at_implicit_tls(silent: int) -> None:
    endpoint = Endpoint("127.0.0.1", silent, "smtp")
    with pytest.raises(ProbeError) as caught:
        probe.handshake(endpoint, None, 0.5)
    message = caught.value.message
    assert "timed out" in message
    assert "no SMTP greeting" in message and "probe it with tls" in message
