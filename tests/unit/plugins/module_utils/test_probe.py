"""The probe's parsing, backoff and verify loop, with time and handshakes faked.

The loop is driven by a fake clock whose ``sleep`` only moves time forward
and records the pause, and by a scripted handshake function, so every test
sees exactly when the loop slept and how often it connected.
"""

from __future__ import annotations

import hashlib
import random
import socket
import ssl
import threading

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import probe
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    ProbeError,
    VerifyError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.probe import (
    Backoff,
    Confirm,
    Endpoint,
    Handshake,
    Prober,
)
from tests.support.pki import PKI, sha256_hex

NEW = "a" * 64
OLD = "b" * 64
ENDPOINT = Endpoint("127.0.0.1", 8443)


# --- parse_endpoint ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:8443", "127.0.0.1", 8443),
        ("www.example.com:443", "www.example.com", 443),
        ("  mail.example.com:993 ", "mail.example.com", 993),
        ("[::1]:8443", "::1", 8443),
        ("[2001:db8::1]:25", "2001:db8::1", 25),
        ("[::1]", "::1", 443),
        ("www.example.com", "www.example.com", 443),
        ("::1", "::1", 443),
    ],
)
def test_parse_endpoint(text: str, host: str, port: int) -> None:
    """host:port, [v6]:port and a bare host (default port) are understood."""
    assert probe.parse_endpoint(text, 443) == Endpoint(host, port)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("example.com:https", "has no valid port"),
        ("example.com:", "has no valid port"),
        ("[::1]:x", "has no valid port"),
        ("example.com:0", "is not of the form host:port"),
        ("example.com:65536", "is not of the form host:port"),
        (":443", "is not of the form host:port"),
        ("", "is not of the form host:port"),
    ],
)
def test_parse_endpoint_refuses_bad_input(text: str, problem: str) -> None:
    """A bad port or a missing host is refused, quoting the input."""
    with pytest.raises(ProbeError) as caught:
        probe.parse_endpoint(text, 443)
    assert caught.value.message == f"The endpoint {text!r} {problem}."


def test_endpoint_text_brackets_ipv6() -> None:
    """Messages show an IPv6 endpoint the way it is typed: [v6]:port."""
    assert str(Endpoint("::1", 443)) == "[::1]:443"
    assert str(Endpoint("example.com", 443)) == "example.com:443"


# --- Backoff ----------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    """Waits double after each failed attempt and stop growing at the cap."""
    backoff = Backoff(initial=1.0, cap=16.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 16, 16]


def test_backoff_with_cap_equal_to_initial_is_constant() -> None:
    """cap == initial is a constant interval."""
    backoff = Backoff(initial=0.5, cap=0.5)
    assert {backoff.delay(n) for n in range(1, 10)} == {0.5}


def test_jitter_stays_within_its_fraction() -> None:
    """Jitter 0.25 keeps every wait within 75 % to 125 % of the plain one."""
    backoff = Backoff(initial=2.0, cap=16.0, jitter=0.25)
    assert backoff.delay(1, rng=lambda: 0.0) == pytest.approx(1.5)
    assert backoff.delay(1, rng=lambda: 0.5) == pytest.approx(2.0)
    assert backoff.delay(1, rng=lambda: 1.0) == pytest.approx(2.5)
    seeded = random.Random(7)
    waits = [backoff.delay(3, rng=seeded.random) for _unused53 in range(500)]
    assert all(6.0 <= w <= 10.0 for w in waits)
    assert max(waits) - min(waits) > 3.0


def test_jitter_never_gives_a_negative_wait() -> None:
    assert Backoff(initial=1.0, jitter=2.0).delay(1, rng=lambda: 0.0) == 0.0


def test_jitter_does_not_push_a_wait_past_the_cap() -> None:
    """max_backoff is the longest wait, jitter or not."""
    backoff = Backoff(initial=1.0, cap=4.0, jitter=0.5)
    assert backoff.delay(5, rng=lambda: 0.999) <= 4.0


def test_many_attempts_at_a_constant_interval() -> None:
    """A long constant-interval probe keeps its interval at attempt 1100."""
    assert Backoff(attempts=2000, initial=1.0, cap=1.0).delay(1100) == 1.0


# --- the verify loop, with a fake clock ---------------------------------------------


class FakeTime:
    """A clock that only moves when slept on (or when a handshake takes time)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"negative sleep {seconds}"
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """A handshake function that serves a scripted sequence of results.

    Each item is a SHA-256 to serve or a ProbeError to raise. ``at`` records
    the fake time of every handshake; each takes ``cost`` seconds.
    """

    def __init__(self, time: FakeTime, results: list, cost: float = 0.0) -> None:
        self.time = time
        self.results = list(results)
        self.cost = cost
        self.at: list[float] = []
        self.protocols: list[str] = []

    def __call__(self, endpoint, server_name, timeout, protocol="auto") -> Handshake:
        self.at.append(self.time.now)
        self.protocols.append(protocol)
        self.time.now += self.cost
        result = self.results.pop(0)
        if isinstance(result, ProbeError):
            raise result
        return Handshake(
            endpoint=str(endpoint),
            server_name=server_name,
            sha256=result,
            chain_sha256=[result],
            protocol="TLSv1.3",
            cipher="TLS_AES_256_GCM_SHA384",
            subject=f"CN={result[:4]}",
        )


def run_loop(results, backoff=None, confirm=None, since=None, cost=0.0, rng=None):
    """Run wait_for against a script; return (verdict, fake time, script)."""
    time = FakeTime()
    script = Script(time, results, cost)
    prober = Prober(script, clock=time.clock, sleep=time.sleep,
                    rng=rng or random.random)
    verdict = prober.wait_for(
        ENDPOINT, "example.com", NEW, backoff or Backoff(),
        confirm or Confirm(), timeout=5.0,
        since=None if since is None else time.now + since,
    )
    return verdict, time, script


def refused() -> ProbeError:
    return ProbeError(f"No TLS handshake with {ENDPOINT}: Connection refused")


def test_first_match_stops_without_sleeping() -> None:
    """A match on the first handshake ends the loop at once: no sleep at all."""
    verdict, time, script = run_loop([NEW, NEW, NEW])
    assert verdict.matched and verdict.attempts == 1 and verdict.handshakes == 1
    assert time.sleeps == []
    assert len(script.results) == 2
    assert verdict.last.sha256 == NEW and verdict.error == ""


def test_retries_with_doubling_waits_until_the_match() -> None:
    """Two misses, then a match: waits of 1 s and 2 s, nothing after."""
    verdict, time, _unused19 = run_loop([OLD, OLD, NEW], Backoff(attempts=5))
    assert verdict.matched and verdict.attempts == 3
    assert time.sleeps == [1.0, 2.0]
    assert verdict.seen == [OLD, NEW]
    assert verdict.elapsed_ms == 3000


def test_no_sleep_after_the_last_attempt() -> None:
    """Three misses with three attempts: two waits, then the verdict."""
    verdict, time, _unused19 = run_loop([OLD, OLD, OLD], Backoff(attempts=3))
    assert not verdict.matched and verdict.attempts == 3
    assert time.sleeps == [1.0, 2.0]
    assert verdict.error == f"{ENDPOINT} served {OLD} (CN=bbbb), not {NEW}"


def test_zero_attempts_means_one_attempt_and_no_sleep() -> None:
    """attempts below 1 still probe once, and do not wait afterwards."""
    verdict, time, _unused19 = run_loop([OLD], Backoff(attempts=0))
    assert verdict.attempts == 1
    assert time.sleeps == []


def test_deadline_stops_before_a_sleep_would_cross_it() -> None:
    """With 5 s allowed, waits of 1 s and 2 s happen; a 4 s wait would cross."""
    verdict, time, script = run_loop(
        [OLD] * 10, Backoff(attempts=10, initial=1.0, deadline=5.0)
    )
    assert not verdict.matched and verdict.attempts == 3
    assert time.sleeps == [1.0, 2.0]
    assert script.at == [1000.0, 1001.0, 1003.0]


def test_deadline_counts_the_time_handshakes_take() -> None:
    """Slow handshakes use up the deadline too: fewer attempts fit."""
    verdict, time, _unused19 = run_loop(
        [OLD] * 10, Backoff(attempts=10, initial=1.0, deadline=5.0), cost=1.5
    )
    # 0-1.5 attempt 1, wait 1 -> 2.5, attempt 2 to 4.0, a 2 s wait would cross.
    assert verdict.attempts == 2
    assert time.sleeps == [1.0]
    assert time.now - 1000.0 <= 5.0


def test_settle_delays_the_first_handshake_to_since_plus_settle() -> None:
    """No handshake counts before since + settle (old workers still accept)."""
    verdict, time, script = run_loop([NEW], confirm=Confirm(settle=2.0), since=-0.5)
    assert script.at == [1001.5]
    assert time.sleeps == [1.5]
    assert verdict.matched


def test_settle_already_over_does_not_sleep() -> None:
    """When the apply was long ago, the first handshake is immediate."""
    _unused4, time, script = run_loop([NEW], confirm=Confirm(settle=2.0), since=-10.0)
    assert time.sleeps == [] and script.at == [1000.0]


def test_settle_without_since_counts_from_now() -> None:
    _unused4, time, script = run_loop([NEW], confirm=Confirm(settle=0.25))
    assert script.at == [1000.25] and time.sleeps == [0.25]


def test_confirm_needs_consecutive_matches() -> None:
    """Three confirming handshakes, interval apart, make one successful attempt."""
    verdict, time, script = run_loop(
        [NEW, NEW, NEW], confirm=Confirm(handshakes=3, interval=0.1)
    )
    assert verdict.matched and verdict.attempts == 1 and verdict.handshakes == 3
    assert time.sleeps == [0.1, 0.1]
    assert script.at == pytest.approx([1000.0, 1000.1, 1000.2])


def test_mismatch_inside_the_burst_fails_the_attempt_and_retries() -> None:
    """new, old (an old worker) fails attempt 1; attempt 2 confirms 3 in a row."""
    verdict, time, _unused19 = run_loop(
        [NEW, OLD, NEW, NEW, NEW],
        Backoff(attempts=3, initial=1.0),
        Confirm(handshakes=3, interval=0.1),
    )
    assert verdict.matched and verdict.attempts == 2 and verdict.handshakes == 5
    assert time.sleeps == pytest.approx([0.1, 1.0, 0.1, 0.1])
    assert verdict.seen == [NEW, OLD]


def test_flapping_server_never_confirms() -> None:
    """A server that keeps mixing old and new is not proof of the new one."""
    verdict, _unused13, _unused16 = run_loop(
        [NEW, OLD] * 3, Backoff(attempts=3), Confirm(handshakes=2, interval=0.1)
    )
    assert not verdict.matched and verdict.attempts == 3
    assert f"served {OLD}" in verdict.error


def test_probe_errors_count_as_failed_attempts() -> None:
    """A refused connection is a failed attempt; the loop goes on."""
    verdict, time, _unused19 = run_loop([refused(), NEW], Backoff(attempts=3))
    assert verdict.matched and verdict.attempts == 2 and verdict.handshakes == 2
    assert time.sleeps == [1.0]


def test_only_errors_leave_the_last_error() -> None:
    """When nothing answers, the verdict carries the last connection error."""
    verdict, time, _unused19 = run_loop([refused()] * 3, Backoff(attempts=3))
    assert not verdict.matched and verdict.handshakes == 3
    assert verdict.last is None
    assert "Connection refused" in verdict.error
    assert time.sleeps == [1.0, 2.0]


def test_prober_passes_its_protocol_to_every_handshake() -> None:
    """A Prober made for SMTP asks every handshake of the loop for SMTP."""
    time = FakeTime()
    script = Script(time, [OLD, NEW])
    prober = Prober(script, clock=time.clock, sleep=time.sleep, protocol="smtp")
    prober.wait_for(ENDPOINT, None, NEW, Backoff(), Confirm(), timeout=1.0)
    assert script.protocols == ["smtp", "smtp"]


def test_prober_uses_its_rng_for_jitter() -> None:
    """The injected rng drives the jitter of the loop's waits."""
    _unused4, time, _unused13 = run_loop(
        [OLD, OLD, NEW], Backoff(attempts=3, jitter=0.5), rng=lambda: 0.0
    )
    assert time.sleeps == [0.5, 1.0]


# --- require ----------------------------------------------------------------------


def test_require_passes_a_match_through() -> None:
    verdict, _unused13, _unused16 = run_loop([NEW])
    assert probe.require(verdict, ENDPOINT, NEW) is verdict


def test_require_names_endpoint_and_what_was_served() -> None:
    """A failed verdict becomes VerifyError naming endpoint, expected, served."""
    verdict, _unused13, _unused16 = run_loop([OLD] * 3)
    with pytest.raises(VerifyError) as caught:
        probe.require(verdict, ENDPOINT, NEW)
    message = caught.value.message
    assert message.startswith(
        f"127.0.0.1:8443 did not serve the certificate {NEW} after 3 attempt(s)"
    )
    assert f"served {OLD}" in message
    assert caught.value.details == {"endpoint": "127.0.0.1:8443", "served_sha256": OLD}


def test_require_without_any_handshake_says_so() -> None:
    """No handshake at all: the connection error is the reason, nothing served."""
    verdict, _unused13, _unused16 = run_loop([refused()] * 3)
    with pytest.raises(VerifyError) as caught:
        probe.require(verdict, ENDPOINT, NEW)
    assert "Connection refused" in caught.value.message
    assert caught.value.details["served_sha256"] is None


# --- the served chain, on every Python ---------------------------------------------


class _ChainSocket:
    """Stands in for an SSL socket of Python 3.13: the chain as DER bytes."""

    def __init__(self, chain: list) -> None:
        self._chain = chain

    def get_unverified_chain(self) -> list:
        return self._chain


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_served_chain_from_der_bytes() -> None:
    """Python 3.13 returns DER bytes: hashed leaf first, in the order sent."""
    tls = _ChainSocket([b"leaf", b"intermediate"])
    assert probe._served_chain(tls, b"leaf") == [_sha(b"leaf"), _sha(b"intermediate")]


def test_served_chain_without_chain_support_is_the_leaf() -> None:
    """Pythons without get_unverified_chain report the leaf alone."""
    assert probe._served_chain(object(), b"leaf") == [_sha(b"leaf")]


def test_handshake_as_dict_reports_every_field() -> None:
    seen = Script(FakeTime(), [NEW])(ENDPOINT, "example.com", 1.0)
    assert seen.as_dict() == {
        "endpoint": "127.0.0.1:8443",
        "server_name": "example.com",
        "sha256": NEW,
        "chain_sha256": [NEW],
        "protocol": "TLSv1.3",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "subject": "CN=aaaa",
        "not_after": "",
        "starttls": None,
    }


# --- choosing the handshake by port (F10) ------------------------------------------


@pytest.mark.parametrize(
    ("port", "protocol"),
    [(25, "smtp"), (587, "smtp"), (143, "imap"), (110, "pop3"),
     (465, "tls"), (993, "tls"), (995, "tls"), (443, "tls"), (8443, "tls")],
)
def test_protocol_follows_the_port(port: int, protocol: str) -> None:
    """STARTTLS on 25/587, 143 and 110; implicit TLS everywhere else."""
    assert probe.protocol_for(port) == protocol
    assert probe.protocol_for(port, "auto") == protocol


def test_an_explicit_protocol_wins_over_the_port() -> None:
    assert probe.protocol_for(2525, "smtp") == "smtp"
    assert probe.protocol_for(25, "tls") == "tls"


# --- STARTTLS dialogues against a scripted loopback server --------------------------


def send(text: str) -> tuple:
    return ("send", text.encode())


def expect(prefix: str) -> tuple:
    return ("expect", prefix)


TLS = ("tls", None)
HANG_UP = ("hang_up", None)


class ScriptedServer:
    """Serves one connection on 127.0.0.1 by a script, then maybe TLS.

    Steps: ``send`` bytes, ``expect`` a line starting with a prefix, ``tls``
    (complete a TLS handshake with the given files), ``hang_up`` (close at
    once). After the last step it reads until the client closes, so no reply
    is lost to a reset.
    """

    def __init__(self, steps: list, files: dict | None = None) -> None:
        self.steps = steps
        self.files = files
        self.received: list[str] = []
        self.error: BaseException | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.endpoint = Endpoint("127.0.0.1", self.listener.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.thread.join(10)
        self.listener.close()
        assert not self.thread.is_alive(), "the scripted server did not finish"
        if self.error is not None:
            raise AssertionError(f"scripted server: {self.error!r}")

    def _serve(self) -> None:
        try:
            conn, _unused18 = self.listener.accept()
            with conn:
                conn.settimeout(5)
                self._run(conn)
        except Exception as exc:  # reported by __exit__ in the test's thread
            self.error = exc

    def _run(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        for step, value in self.steps:
            if step == "send":
                conn.sendall(value)
            elif step == "expect":
                line = reader.readline().decode().rstrip("\r\n")
                self.received.append(line)
                if not line.startswith(value):
                    raise AssertionError(f"expected {value!r}, got {line!r}")
            elif step == "hang_up":
                return
            elif step == "tls":
                self._tls(conn)
                return
        try:
            while conn.recv(4096):
                pass
        except ConnectionResetError:
            return  # the probe gave up with bytes of ours unread

    def _tls(self, conn: socket.socket) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.files["fullchain"], self.files["privkey"])
        with context.wrap_socket(conn, server_side=True) as tls:
            try:
                tls.recv(1)
            except (ssl.SSLError, ConnectionError):
                return  # the probe hangs up without close_notify


@pytest.fixture(scope="module")
def served_files(pki: PKI, tmp_path_factory) -> dict:
    """pki.rsa written as fullchain.pem and privkey.pem, for the TLS step."""
    paths = pki.rsa.write(tmp_path_factory.mktemp("starttls"))
    return {name: str(path) for name, path in paths.items()}


SMTP_OK = [
    send("220-mail.example.com ESMTP\r\n220 no UCE\r\n"),
    expect("EHLO "),
    send("250-mail.example.com\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n"),
    expect("STARTTLS"),
    send("220 2.0.0 Ready to start TLS\r\n"),
    TLS,
]
IMAP_OK = [
    send("* OK [CAPABILITY IMAP4rev1] ready\r\n"),
    expect("c1 CAPABILITY"),
    send("* CAPABILITY IMAP4rev1 SASL-IR STARTTLS LOGINDISABLED\r\n"
         "c1 OK Pre-login capabilities listed\r\n"),
    expect("c2 STARTTLS"),
    send("* OK still here\r\nc2 OK Begin TLS negotiation now.\r\n"),
    TLS,
]
POP3_OK = [
    send("+OK Dovecot ready.\r\n"),
    expect("STLS"),
    send("+OK Begin TLS negotiation now.\r\n"),
    TLS,
]


@pytest.mark.parametrize(
    ("protocol", "steps", "commands"),
    [
        ("smtp", SMTP_OK, ["EHLO certfleet-probe.invalid", "STARTTLS"]),
        ("imap", IMAP_OK, ["c1 CAPABILITY", "c2 STARTTLS"]),
        ("pop3", POP3_OK, ["STLS"]),
    ],
)
def test_starttls_reaches_the_certificate(
    pki: PKI, served_files: dict, protocol: str, steps: list, commands: list
) -> None:
    """F09/F10: the protocol is spoken, STARTTLS asked, the new leaf seen."""
    with ScriptedServer(steps, served_files) as server:
        seen = probe.handshake(server.endpoint, "example.com", 5.0, protocol)
    assert server.received == commands
    assert seen.starttls == protocol
    assert seen.sha256 == pki.rsa.sha256
    assert seen.chain_sha256 == [pki.rsa.sha256, sha256_hex(pki.intermediate_cert)]
    assert seen.protocol.startswith("TLSv1.")


SMTP_454 = [
    send("220 mail.example.com ESMTP\r\n"),
    expect("EHLO "),
    send("250-mail.example.com\r\n250 STARTTLS\r\n"),
    expect("STARTTLS"),
    send("454 4.7.0 TLS not available due to local problem\r\n"),
]


@pytest.mark.parametrize(
    ("protocol", "steps", "reason"),
    [
        ("smtp", SMTP_454,
         "refused STARTTLS over SMTP: 454 4.7.0 TLS not available"),
        ("smtp", [send("554 5.3.2 no service\r\n")],
         "refused STARTTLS over SMTP: 554 5.3.2 no service"),
        ("smtp", [send("220 hi\r\n"), expect("EHLO "),
                  send("502 5.5.2 command not recognized\r\n")],
         "refused STARTTLS over SMTP: 502 5.5.2"),
        ("smtp", [send("220 hi\r\n"), expect("EHLO "),
                  send("250-mail.example.com\r\n250 SIZE 1000\r\n")],
         "no STARTTLS in the EHLO reply | 250-mail.example.com | 250 SIZE"),
        ("imap", [send("* BYE too busy\r\n")],
         "refused STARTTLS over IMAP: * BYE too busy"),
        ("imap", [send("* OK hi\r\n"), expect("c1 CAPABILITY"),
                  send("* CAPABILITY IMAP4rev1 STARTTLSX\r\nc1 OK\r\n")],
         "no STARTTLS capability"),
        ("imap", [send("* OK hi\r\n"), expect("c1 CAPABILITY"),
                  send("* CAPABILITY IMAP4rev1 STARTTLS\r\nc1 OK\r\n"),
                  expect("c2 STARTTLS"), send("c2 NO [UNAVAILABLE] no TLS\r\n")],
         "refused STARTTLS over IMAP: c2 NO [UNAVAILABLE] no TLS"),
        ("pop3", [send("-ERR go away\r\n")],
         "refused STARTTLS over POP3: -ERR go away"),
        ("pop3", [send("+OK hi\r\n"), expect("STLS"),
                  send("-ERR command not permitted\r\n")],
         "refused STARTTLS over POP3: -ERR command not permitted"),
    ],
)
def test_starttls_refusal_is_reported_with_the_reply(
    protocol: str, steps: list, reason: str
) -> None:
    """A server that will not start TLS fails the probe, quoting its reply."""
    with ScriptedServer(steps) as server:
        with pytest.raises(ProbeError) as caught:
            probe.handshake(server.endpoint, "example.com", 5.0, protocol)
    assert caught.value.message.startswith(f"{server.endpoint} ")
    assert reason in caught.value.message
    assert caught.value.details["endpoint"] == str(server.endpoint)


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([HANG_UP], "closed the connection before STARTTLS."),
        ([send("220 mail.exa"), HANG_UP],
         "closed the connection before STARTTLS after: 220 mail.exa"),
    ],
)
def test_hang_up_before_starttls_is_a_probe_error(steps: list, reason: str) -> None:
    """A server that drops the line mid-greeting fails the probe, by endpoint."""
    with ScriptedServer(steps) as server:
        with pytest.raises(ProbeError) as caught:
            probe.handshake(server.endpoint, None, 5.0, "smtp")
    assert caught.value.message == f"{server.endpoint} {reason}"


def test_endless_greeting_line_is_cut_off() -> None:
    """A peer that never ends its line cannot make the probe buffer forever."""
    with ScriptedServer([send("220 " + "x" * 70000)]) as server:
        with pytest.raises(ProbeError) as caught:
            probe.handshake(server.endpoint, None, 5.0, "smtp")
    assert caught.value.message == f"{server.endpoint} sent an overlong line."


def test_implicit_tls_against_a_starttls_server_fails(served_files: dict) -> None:
    """F10: implicit TLS to an SMTP port gets a greeting, not a handshake."""
    with ScriptedServer([send("220 mail.example.com ESMTP\r\n")]) as server:
        with pytest.raises(ProbeError) as caught:
            probe.handshake(server.endpoint, "example.com", 5.0, "tls")
    assert caught.value.message.startswith(
        f"No TLS handshake with {server.endpoint} (tls, SNI example.com): "
    )


@pytest.mark.parametrize("text", ["[::1", "[::1]443", "[::1]x:443"])
def test_malformed_bracketed_endpoint_is_refused(text: str) -> None:
    """An IPv6 endpoint needs its closing bracket and a colon before the port."""
    with pytest.raises(ProbeError, match=r"\[address\]:port"):
        probe.parse_endpoint(text, 443)
