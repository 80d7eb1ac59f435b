# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an endpoint serves: one TLS handshake, and the loop that waits for it.

The handshake does not judge trust; it reports what was sent (the leaf's
SHA-256 and, where the Python gives it, the whole served chain) so the caller
can compare fingerprints. The loop retries with exponential backoff and
confirms a match with further handshakes, because right after a graceful
reload old workers may still accept connections with the old certificate.
"""

from __future__ import annotations

import hashlib
import random
import socket
import ssl
import time
from dataclasses import dataclass, field

from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    ProbeError,
    VerifyError,
)

try:
    from cryptography import x509
except ImportError:  # reported by the module through missing_required_lib
    x509 = None

IMPLICIT_TLS = "tls"
PROTOCOLS = ("auto", "tls", "smtp", "imap", "pop3")
STARTTLS_PORTS = {25: "smtp", 587: "smtp", 143: "imap", 110: "pop3"}
SCHEME_PORTS = {"smtp": 25, "imap": 143, "pop3": 110}
_LINE_LIMIT = 65536
# OpenSSL's reasons when the first bytes read are not a TLS record.
_PLAIN_TEXT = ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG",
               "HTTP_REQUEST", "RECORD_LAYER_FAILURE")


def protocol_for(port: int, requested: str = "auto") -> str:
    """The handshake to use: STARTTLS on the mail ports, else implicit TLS."""
    if requested and requested != "auto":
        return requested
    return STARTTLS_PORTS.get(port, IMPLICIT_TLS)


@dataclass(frozen=True)
class Endpoint:
    """Where to probe; ``protocol`` set when the endpoint names its own."""

    host: str
    port: int
    protocol: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = f"{self.protocol}://" if self.protocol else ""
        return f"{scheme}{host}:{self.port}"


def _split_scheme(text: str) -> tuple:
    """``smtp://host:port`` to (``smtp``, ``host:port``); no scheme gives None."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return None, text
    scheme = scheme.lower()
    if scheme not in PROTOCOLS or scheme == "auto":
        raise ProbeError(
            f"The endpoint {text!r} names an unknown protocol {scheme!r}: use "
            f"{', '.join(p for p in PROTOCOLS if p != 'auto')}.")
    return scheme, rest


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address.

    Any of them may start with the protocol to speak, ``smtp://``, ``imap://``,
    ``pop3://`` (STARTTLS) or ``tls://`` (implicit TLS), which then wins over
    the choice by port. Without a port, a STARTTLS scheme means its usual port.
    """
    original = text.strip()
    scheme, text = _split_scheme(original)
    if scheme in SCHEME_PORTS:
        default_port = SCHEME_PORTS[scheme]
    endpoint = _parse_address(text, default_port, original)
    return Endpoint(endpoint.host, endpoint.port, scheme)


def _parse_address(text: str, default_port: int, original: str) -> Endpoint:
    """The host and port of an endpoint without its scheme."""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ProbeError(f"The endpoint {original!r} is not of the form "
                             "[address]:port.")
        port = rest[1:] or default_port
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, default_port
    try:
        port = int(port)
    except ValueError:
        raise ProbeError(f"The endpoint {original!r} has no valid port.") from None
    if not host or not 0 < port < 65536:
        raise ProbeError(
            f"The endpoint {original!r} is not of the form host:port.")
    return Endpoint(host, port)


@dataclass
class Handshake:
    """What one handshake saw."""

    endpoint: str
    server_name: str | None
    sha256: str
    chain_sha256: list
    protocol: str
    cipher: str
    subject: str = ""
    not_after: str = ""
    starttls: str | None = None

    def as_dict(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "server_name": self.server_name,
            "sha256": self.sha256,
            "chain_sha256": self.chain_sha256,
            "protocol": self.protocol,
            "cipher": self.cipher,
            "subject": self.subject,
            "not_after": self.not_after,
            "starttls": self.starttls,
        }


def chain_visible() -> bool:
    """Whether this Python reports the whole served chain (3.10 and later)."""
    return hasattr(ssl.SSLSocket, "get_unverified_chain") or hasattr(
        getattr(ssl, "_ssl", None) and ssl._ssl._SSLSocket,
        "get_unverified_chain")


def _served_chain(tls: ssl.SSLSocket, leaf_der: bytes) -> list:
    """SHA-256 of every certificate the peer sent, leaf first.

    Python 3.13 has ``get_unverified_chain``; 3.10 to 3.12 have it on the
    internal SSL object. Older Pythons only give the leaf.
    """
    getter = getattr(tls, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain",
                         None)
    certs = getter() if getter else None
    if not certs:
        return [hashlib.sha256(leaf_der).hexdigest()]
    result = []
    for cert in certs:
        der = cert if isinstance(cert, bytes) else cert.public_bytes(
            ssl._ssl.ENCODING_DER)
        result.append(hashlib.sha256(der).hexdigest())
    return result


class _Lines:
    """Reads CRLF-terminated lines from a plain socket, for STARTTLS."""

    def __init__(self, sock: socket.socket, endpoint: Endpoint) -> None:
        self.sock, self.endpoint, self.buffer = sock, endpoint, b""

    def line(self) -> str:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ProbeError(
                    f"{self.endpoint} closed the connection before STARTTLS"
                    + (f" after: {self.buffer.decode(errors='replace')}"
                       if self.buffer else "."),
                    endpoint=str(self.endpoint))
            self.buffer += chunk
            if len(self.buffer) > _LINE_LIMIT:
                raise ProbeError(f"{self.endpoint} sent an overlong line.",
                                 endpoint=str(self.endpoint))
        line, _newline, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", errors="replace").rstrip("\r")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode("ascii") + b"\r\n")

    def smtp_reply(self) -> list:
        """A whole SMTP reply: lines until one whose fourth character is a space."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return lines

    def refuse(self, protocol: str, reply) -> None:
        text = " | ".join(reply) if isinstance(reply, list) else reply
        raise ProbeError(
            f"{self.endpoint} refused STARTTLS over {protocol.upper()}: {text}",
            endpoint=str(self.endpoint), reply=text)


def _starttls_smtp(lines: _Lines) -> None:
    greeting = lines.smtp_reply()
    if not greeting[0].startswith("220"):
        lines.refuse("smtp", greeting)
    lines.send("EHLO certfleet-probe.invalid")
    ehlo = lines.smtp_reply()
    if not ehlo[0].startswith("250"):
        lines.refuse("smtp", ehlo)
    if not any(line[4:].upper().startswith("STARTTLS") for line in ehlo):
        lines.refuse("smtp", ["no STARTTLS in the EHLO reply"] + ehlo)
    lines.send("STARTTLS")
    reply = lines.smtp_reply()
    if not reply[0].startswith("220"):
        lines.refuse("smtp", reply)


def _starttls_imap(lines: _Lines) -> None:
    greeting = lines.line()
    if not greeting.startswith("* OK"):
        lines.refuse("imap", greeting)
    lines.send("c1 CAPABILITY")
    capabilities = []
    while True:
        line = lines.line()
        if line.startswith("c1 "):
            break
        capabilities.append(line)
    if not any("STARTTLS" in c.upper().split() for c in capabilities):
        lines.refuse("imap", ["no STARTTLS capability"] + capabilities)
    lines.send("c2 STARTTLS")
    reply = lines.line()
    while reply.startswith("* "):
        reply = lines.line()
    if not reply.startswith("c2 OK"):
        lines.refuse("imap", reply)


def _starttls_pop3(lines: _Lines) -> None:
    greeting = lines.line()
    if not greeting.startswith("+OK"):
        lines.refuse("pop3", greeting)
    lines.send("STLS")
    reply = lines.line()
    if not reply.startswith("+OK"):
        lines.refuse("pop3", reply)


_STARTTLS = {"smtp": _starttls_smtp, "imap": _starttls_imap,
             "pop3": _starttls_pop3}


def _hint(protocol: str, stage: str, exc: Exception) -> str:
    """Why a handshake in the wrong protocol fails, as F10 shows it.

    Implicit TLS sent to a STARTTLS port reads the plain-text greeting as a
    TLS record; STARTTLS sent to an implicit-TLS port waits for a greeting
    that never comes, because that server waits for the ClientHello.
    """
    if protocol == IMPLICIT_TLS and getattr(exc, "reason", "") in _PLAIN_TEXT:
        return (" (the server answered in plain text: if it expects STARTTLS, "
                "probe it with smtp, imap or pop3)")
    if stage == "starttls" and isinstance(exc, socket.timeout):
        return (f" (no {protocol.upper()} greeting: a port that expects "
                "implicit TLS waits silently for the handshake; probe it "
                "with tls)")
    return ""


def _describe_leaf(der: bytes) -> tuple:
    if x509 is None:
        return "", ""
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.rfc4514_string(), cert.not_valid_after_utc.isoformat()


def handshake(
    endpoint: Endpoint,
    server_name: str | None,
    timeout: float,
    protocol: str = "auto",
) -> Handshake:
    """Connect (STARTTLS first for a mail protocol), shake hands, report.

    ``protocol`` is ``tls`` for implicit TLS, ``smtp``, ``imap`` or ``pop3``
    for STARTTLS, or ``auto`` to choose by port. A protocol the endpoint
    names itself (``smtp://host:port``) wins over both.
    """
    protocol = protocol_for(endpoint.port, endpoint.protocol or protocol)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    stage = "connect"
    try:
        with socket.create_connection((endpoint.host, endpoint.port),
                                      timeout=timeout) as raw:
            if protocol in _STARTTLS:
                stage = "starttls"
                _STARTTLS[protocol](_Lines(raw, endpoint))
            stage = "handshake"
            with context.wrap_socket(raw, server_hostname=server_name or None) \
                    as tls:
                der = tls.getpeercert(binary_form=True)
                chain = _served_chain(tls, der)
                version, cipher = tls.version() or "", tls.cipher()[0]
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ProbeError(
            f"No TLS handshake with {endpoint} ({protocol}, SNI "
            f"{server_name or 'none'}): {exc}{_hint(protocol, stage, exc)}",
            endpoint=str(endpoint),
        ) from None
    subject, not_after = _describe_leaf(der)
    return Handshake(
        endpoint=str(endpoint),
        server_name=server_name,
        sha256=hashlib.sha256(der).hexdigest(),
        chain_sha256=chain,
        protocol=version,
        cipher=cipher,
        starttls=protocol if protocol in _STARTTLS else None,
        subject=subject,
        not_after=not_after,
    )


@dataclass
class Backoff:
    """When to try again: doubling delays between attempts, with a cap.

    A cap equal to the initial delay gives a constant interval. ``jitter`` is a
    fraction (0 to 1) by which each delay varies at random; ``deadline`` (in
    seconds, 0 for none) bounds the whole loop, and no sleep crosses it.
    """

    attempts: int = 3
    initial: float = 1.0
    cap: float = 16.0
    jitter: float = 0.0
    deadline: float = 0.0

    def delay(self, attempt: int, rng=random.random) -> float:
        """The pause after failed attempt number ``attempt`` (from 1)."""
        doublings = min(max(0, attempt - 1), 64)
        base = min(self.cap, self.initial * (2 ** doublings))
        if self.jitter:
            base *= 1 + self.jitter * (2 * rng() - 1)
        return min(self.cap, max(0.0, base))


@dataclass
class Confirm:
    """How a first match is confirmed: more handshakes across a window.

    ``settle`` is how long after the apply step old and new certificates may
    both be served (old workers still accepting); no handshake before it
    counts. Then ``handshakes`` consecutive handshakes, ``interval`` apart,
    must all match.

    ``watch`` (seconds; 0 to just sleep): after an attempt that saw another
    certificate, keep shaking hands every ``watch`` seconds while the backoff
    delay runs. Right after an apply the other certificate is most likely the
    old one on its way out, and a busy machine takes longer than ``settle``
    to drop it. ``handshakes`` matches in a row while watching are the next
    attempt, and a successful one; anything else seen restarts the count, so
    a server still switching between old and new uses up no attempts. With
    ``watch`` equal to ``interval`` the proof is the same as a burst's.
    """

    settle: float = 0.0
    handshakes: int = 1
    interval: float = 0.0
    watch: float = 0.0


@dataclass
class Verdict:
    """Outcome of the loop; ``matched`` tells whether it is proof."""

    matched: bool
    attempts: int
    handshakes: int
    last: Handshake | None = None
    error: str = ""
    seen: list = field(default_factory=list)
    elapsed_ms: int = 0
    # Whether the last failed attempt saw a certificate (not an error).
    mismatched: bool = False


class Prober:
    """Runs the verify loop with injectable time, for tests and for callers."""

    def __init__(self, handshake_fn=handshake, clock=time.monotonic,
                 sleep=time.sleep, rng=random.random,
                 protocol: str = "auto") -> None:
        self.handshake_fn = handshake_fn
        self.protocol = protocol
        self.clock = clock
        self.sleep = sleep
        self.rng = rng

    def _burst(self, endpoint, server_name, timeout, expected, confirm,
               verdict) -> bool:
        """One attempt: handshakes until a mismatch or enough matches."""
        for number in range(max(1, confirm.handshakes)):
            if number:
                self.sleep(confirm.interval)
            try:
                seen = self.handshake_fn(endpoint, server_name, timeout,
                                         self.protocol)
            except ProbeError as exc:
                verdict.error = exc.message
                verdict.handshakes += 1
                verdict.mismatched = False
                return False
            verdict.handshakes += 1
            verdict.last = seen
            if seen.sha256 not in verdict.seen:
                verdict.seen.append(seen.sha256)
            if seen.sha256 != expected:
                verdict.error = (
                    f"{endpoint} served {seen.sha256} ({seen.subject}), "
                    f"not {expected}"
                )
                verdict.mismatched = True
                return False
        return True

    def _pause(self, pause: float, endpoint, server_name, timeout, expected,
               confirm: Confirm, verdict: Verdict) -> bool:
        """Wait ``pause`` seconds before the next attempt; tell whether
        watching meanwhile already proved ``expected`` served.

        Only after a mismatch, and with ``confirm.watch`` set: handshakes
        every ``confirm.watch`` seconds, and ``confirm.handshakes`` matches in
        a row are the proof. A handshake error or another certificate starts
        the count again; neither uses up an attempt.
        """
        if not (confirm.watch and verdict.mismatched):
            self.sleep(pause)
            return False
        until, streak = self.clock() + pause, 0
        while True:
            left = until - self.clock()
            if left <= confirm.watch:
                if left > 0:
                    self.sleep(left)
                return False
            self.sleep(confirm.watch)
            verdict.handshakes += 1
            try:
                seen = self.handshake_fn(endpoint, server_name, timeout,
                                         self.protocol)
            except ProbeError:
                streak = 0
                continue
            if seen.sha256 not in verdict.seen:
                verdict.seen.append(seen.sha256)
            streak = streak + 1 if seen.sha256 == expected else 0
            if streak >= max(1, confirm.handshakes):
                verdict.last = seen
                return True

    def wait_for(self, endpoint: Endpoint, server_name: str | None,
                 expected: str, backoff: Backoff, confirm: Confirm,
                 timeout: float, since: float | None = None) -> Verdict:
        """Probe until ``expected`` is served to every new connection.

        ``since`` is the clock reading when the server was told to apply;
        nothing is probed before ``since + confirm.settle``. No sleep follows
        the last attempt or a success.
        """
        start = self.clock()
        settle_until = (since if since is not None else start) + confirm.settle
        if settle_until > start:
            self.sleep(settle_until - start)
        verdict = Verdict(matched=False, attempts=0, handshakes=0)
        last = max(1, backoff.attempts)
        for attempt in range(1, last + 1):
            verdict.attempts = attempt
            if self._burst(endpoint, server_name, timeout, expected, confirm,
                           verdict):
                verdict.matched = True
                verdict.error = ""
                break
            if attempt == last:
                break
            pause = backoff.delay(attempt, self.rng)
            if backoff.deadline:
                left = start + backoff.deadline - self.clock()
                if pause >= left:
                    break
            if self._pause(pause, endpoint, server_name, timeout, expected,
                           confirm, verdict):
                verdict.attempts = attempt + 1
                verdict.matched = True
                verdict.error = ""
                break
        verdict.elapsed_ms = int((self.clock() - start) * 1000)
        return verdict


def require(verdict: Verdict, endpoint: Endpoint, expected: str) -> Verdict:
    """Turn a failed verdict into ``VerifyError`` naming what was seen."""
    if verdict.matched:
        return verdict
    raise VerifyError(
        f"{endpoint} did not serve the certificate {expected} after "
        f"{verdict.attempts} attempt(s): "
        f"{(verdict.error or 'no handshake').rstrip('.')}.",
        endpoint=str(endpoint),
        served_sha256=verdict.last.sha256 if verdict.last else None,
    )
