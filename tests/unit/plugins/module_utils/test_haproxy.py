"""HAProxy's CLI client: what is sent, what each answer means, what is hidden.

A scripted Unix socket server stands in for HAProxy's admin and master
sockets: it records each command (one per connection, as HAProxy takes them
in non-interactive mode) and answers with HAProxy 2.6's own wording.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import haproxy
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    CommandError,
)

NAME = "/etc/haproxy/certs/site.pem"
SHA1 = "FF740D0775A82430A196592F7FB7024C94422B92"
KEY = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKey\n-----END PRIVATE KEY-----"
PAYLOAD = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n" + KEY
SHOWN = (f"Filename: {NAME}\nStatus: Used\nSerial: 02\n"
         f"SHA1 FingerPrint: {SHA1}\nSubject: /CN=example.com\n\n")


class ScriptedSocket:
    """Answers each connection with the reply for its command's first words."""

    def __init__(self, path: Path, replies: dict) -> None:
        self.path, self.replies, self.received = path, replies, []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _address = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                text = data.decode()
                self.received.append(text)
                command = text.split("\n", 1)[0]
                reply = next((r for prefix, r in self.replies.items()
                              if command.startswith(prefix)), "Unknown command.\n")
                conn.sendall(reply.encode())

    def commands(self) -> list:
        return [text.split("\n", 1)[0] for text in self.received]

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def admin(tmp_path):
    servers = []

    def make(replies: dict) -> ScriptedSocket:
        servers.append(ScriptedSocket(tmp_path / f"admin{len(servers)}.sock",
                                      replies))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def api(server: ScriptedSocket) -> haproxy.RuntimeApi:
    return haproxy.RuntimeApi(str(server.path), NAME, 5.0)


def test_a_committed_update_sends_set_commit_show(admin) -> None:
    server = admin({
        "set ssl cert": f"Transaction created for certificate {NAME}!\n\n",
        "commit ssl cert": f"Committing {NAME}.\nSuccess!\n\n",
        "show ssl cert": SHOWN,
    })
    api(server).update(PAYLOAD, SHA1.lower())
    assert server.commands() == [f"set ssl cert {NAME} <<",
                                 f"commit ssl cert {NAME}",
                                 f"show ssl cert {NAME}"]
    assert server.received[0] == f"set ssl cert {NAME} <<\n{PAYLOAD}\n\n"


def test_a_refused_commit_is_aborted_and_named(admin) -> None:
    """The socket answers; only the text says it failed."""
    server = admin({
        "set ssl cert": f"Transaction created for certificate {NAME}!\n\n",
        "commit ssl cert": (f"Committing {NAME}.\nunable to load SSL certificate "
                            f"into SSL Context '{NAME}'.\nFailed!\n\n"),
        "abort ssl cert": "No ongoing transaction!\n\n",
    })
    with pytest.raises(CommandError) as caught:
        api(server).update(PAYLOAD, SHA1)
    assert "refused `commit ssl cert" in caught.value.message
    assert "unable to load SSL certificate" in caught.value.message
    assert caught.value.details["abort"] == "No ongoing transaction!"
    assert server.commands()[-1] == f"abort ssl cert {NAME}"


def test_a_refused_set_is_aborted_too(admin) -> None:
    server = admin({
        "set ssl cert": ("Can't replace a certificate which is not referenced by "
                         f"the configuration!\nCan't update {NAME}!\n\n"),
        "abort ssl cert": "No ongoing transaction!\n\n",
    })
    with pytest.raises(CommandError) as caught:
        api(server).update(PAYLOAD, SHA1)
    assert "not referenced by the configuration" in caught.value.message
    assert server.commands() == [f"set ssl cert {NAME} <<", f"abort ssl cert {NAME}"]


def test_a_commit_of_another_leaf_is_caught(admin) -> None:
    server = admin({
        "set ssl cert": f"Transaction updated for certificate {NAME}!\n\n",
        "commit ssl cert": f"Committing {NAME}.\nSuccess!\n\n",
        "show ssl cert": SHOWN.replace(SHA1, "0" * 40),
        "abort ssl cert": "No ongoing transaction!\n\n",
    })
    with pytest.raises(CommandError) as caught:
        api(server).update(PAYLOAD, SHA1)
    assert "reports " + "0" * 40 in caught.value.message


def test_answers_that_quote_key_material_are_withheld(admin) -> None:
    server = admin({"set ssl cert": f"Unexpected: {KEY}\n\n",
                    "abort ssl cert": "No ongoing transaction!\n\n"})
    with pytest.raises(CommandError) as caught:
        api(server).update(PAYLOAD, SHA1)
    assert "PRIVATE KEY" not in caught.value.message
    assert "withheld" in caught.value.message


def test_a_missing_socket_is_named_without_the_payload(tmp_path) -> None:
    missing = haproxy.RuntimeApi(str(tmp_path / "none.sock"), NAME, 1.0)
    with pytest.raises(CommandError) as caught:
        missing.update(PAYLOAD, SHA1)
    message = caught.value.message
    assert f"did not answer `set ssl cert {NAME}`" in message
    assert "PRIVATE KEY" not in message and "MIIB" not in message


def test_a_name_with_white_space_is_refused_before_sending() -> None:
    with pytest.raises(CommandError) as caught:
        haproxy.RuntimeApi("/nonexistent", "/etc/my certs/a.pem", 1.0).update(
            PAYLOAD, SHA1)
    assert "white space" in caught.value.message


def test_payload_loses_blank_lines_that_would_end_it() -> None:
    text = haproxy.pem_payload(b"-----BEGIN X-----\n\nAAAA\n\n-----END X-----\n\n")
    assert text == "-----BEGIN X-----\nAAAA\n-----END X-----"


def test_reload_counts_read_the_master_line(admin) -> None:
    server = admin({"show proc": (
        "#<PID>          <type>          <reloads>       <uptime>        <version>\n"
        "30304           master          3 [failed: 1]   0d00h00m06s     2.6.12\n"
        "# workers\n30305           worker          1               0d00h00m06s\n")})
    assert haproxy.reload_counts(str(server.path), 5.0) == (3, 1)


def test_a_stats_socket_is_no_master_socket(admin) -> None:
    server = admin({"show proc": "Unknown command.\n"})
    with pytest.raises(CommandError) as caught:
        haproxy.reload_counts(str(server.path), 5.0)
    assert "is it the master CLI" in caught.value.message
