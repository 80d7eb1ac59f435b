"""Real handshakes: the probe and the tls_probe module against a real nginx.

The ``nginx_site`` fixture serves ``pki.rsa`` (leaf and intermediate) on a
loopback port. What the probe reports must be exactly what nginx sends.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import probe
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    ProbeError,
)
from tests.support.modules import run_module
from tests.support.nginx import Nginx, free_port
from tests.support.pki import PKI, sha256_hex

pytestmark = pytest.mark.integration

WRONG = "0" * 64


def endpoint_of(server: Nginx) -> probe.Endpoint:
    return probe.Endpoint(server.host, server.port)


@pytest.fixture
def plain_listener() -> Iterator[probe.Endpoint]:
    """A plain-TCP server on 127.0.0.1 that answers like HTTP, without TLS."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def answer() -> None:
        try:
            conn, _unused18 = listener.accept()
        except OSError:
            return  # the test closed the listener first
        with conn:
            conn.settimeout(5)
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nplain text\r\n")
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                return  # the client hung up with our reply unread

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield probe.Endpoint("127.0.0.1", listener.getsockname()[1])
    finally:
        listener.close()
        thread.join(10)


def test_handshake_reports_the_served_leaf_and_chain(
    nginx_site: Nginx, pki: PKI
) -> None:
    """The probe sees nginx's leaf and the intermediate behind it, in order."""
    seen = probe.handshake(endpoint_of(nginx_site), "example.com", 5.0)
    assert seen.sha256 == pki.rsa.sha256
    assert seen.chain_sha256 == [pki.rsa.sha256, sha256_hex(pki.intermediate_cert)]
    assert seen.chain_sha256 == nginx_site.served_chain_sha256()
    assert seen.subject == "CN=example.com,O=Certfleet Test"
    assert seen.not_after == pki.rsa.cert.not_valid_after_utc.isoformat()
    assert seen.protocol in ("TLSv1.2", "TLSv1.3")
    assert seen.starttls is None
    assert seen.endpoint == f"127.0.0.1:{nginx_site.port}"


def test_handshake_without_sni_still_reports_the_default_server(
    nginx_site: Nginx, pki: PKI
) -> None:
    seen = probe.handshake(endpoint_of(nginx_site), None, 5.0)
    assert seen.sha256 == pki.rsa.sha256
    assert seen.server_name is None


def test_closed_port_is_a_probe_error_naming_the_endpoint() -> None:
    """Nothing listening: a ProbeError that says where it tried."""
    port = free_port()
    with pytest.raises(ProbeError) as caught:
        probe.handshake(probe.Endpoint("127.0.0.1", port), "example.com", 2.0)
    assert caught.value.message.startswith(
        f"No TLS handshake with 127.0.0.1:{port} (tls, SNI example.com): "
    )
    assert "refused" in caught.value.message.lower()
    assert caught.value.details == {"endpoint": f"127.0.0.1:{port}"}


def test_plain_tcp_listener_is_a_probe_error(plain_listener: probe.Endpoint) -> None:
    """A port that answers without TLS is no proof of anything: ProbeError."""
    with pytest.raises(ProbeError) as caught:
        probe.handshake(plain_listener, "example.com", 5.0)
    assert f"No TLS handshake with {plain_listener} " in caught.value.message


def test_wait_for_matches_the_served_certificate(nginx_site: Nginx, pki: PKI) -> None:
    """The real loop confirms the served leaf on its first attempt."""
    verdict = probe.Prober().wait_for(
        endpoint_of(nginx_site), "example.com", pki.rsa.sha256,
        probe.Backoff(attempts=3, initial=0.05), probe.Confirm(handshakes=3),
        timeout=5.0,
    )
    assert verdict.matched and verdict.attempts == 1 and verdict.handshakes == 3
    assert verdict.seen == [pki.rsa.sha256]


@pytest.mark.parametrize("check_mode", [False, True])
def test_tls_probe_module_reports_the_served_sha256(
    nginx_site: Nginx, pki: PKI, check_mode: bool
) -> None:
    """The module, run as Ansible runs it, reports what nginx serves."""
    result = run_module(
        "tls_probe",
        {"endpoint": f"127.0.0.1:{nginx_site.port}", "server_name": "example.com"},
        check_mode=check_mode,
    )
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["sha256"] == pki.rsa.sha256
    assert result["chain_sha256"] == [
        pki.rsa.sha256, sha256_hex(pki.intermediate_cert)
    ]
    assert result["attempts"] == 1


def test_tls_probe_module_accepts_a_fingerprint_with_colons(
    nginx_site: Nginx, pki: PKI
) -> None:
    """expected_sha256 as tools print it (upper case, colons) still matches."""
    colons = ":".join(
        pki.rsa.sha256[i:i + 2] for i in range(0, 64, 2)
    ).upper()
    result = run_module(
        "tls_probe",
        {
            "endpoint": f"127.0.0.1:{nginx_site.port}",
            "server_name": "example.com",
            "expected_sha256": colons,
            "backoff": 0.05,
        },
    )
    assert not result.get("failed"), result
    assert result["matched"] is True
    assert result["sha256"] == pki.rsa.sha256


def test_tls_probe_module_fails_when_another_certificate_is_served(
    nginx_site: Nginx, pki: PKI
) -> None:
    """A wrong expected_sha256 fails after every attempt, naming what was seen."""
    result = run_module(
        "tls_probe",
        {
            "endpoint": f"127.0.0.1:{nginx_site.port}",
            "server_name": "example.com",
            "expected_sha256": WRONG,
            "attempts": 3,
            "backoff": 0.05,
        },
    )
    assert result["failed"] is True
    assert result["matched"] is False
    assert result["served_sha256"] == pki.rsa.sha256
    assert result["msg"].startswith(
        f"127.0.0.1:{nginx_site.port} did not serve the certificate {WRONG} "
        "after 3 attempt(s)"
    )
    assert f"served {pki.rsa.sha256}" in result["msg"]


def test_tls_probe_module_fails_on_a_closed_port() -> None:
    """No server: the module fails with the endpoint in its message."""
    port = free_port()
    result = run_module(
        "tls_probe", {"endpoint": f"127.0.0.1:{port}", "timeout": 2}
    )
    assert result["failed"] is True
    assert f"127.0.0.1:{port}" in result["msg"]
    assert result["endpoint"] == f"127.0.0.1:{port}"
