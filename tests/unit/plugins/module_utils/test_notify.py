"""Notification payloads and delivery: the pure half of deploy_notify.

The builders are checked against what each service documents (fields,
headers, limits); ``send`` runs against scripted transports and a fake
clock, so every retry decision is checked without waiting. The real HTTP
path is tested in tests/integration/test_deploy_notify.py.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import notify
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    NotifyError,
)

CERT = {
    "subject": "CN=www.example.com",
    "sans": ["www.example.com"],
    "sha256": "ab" * 32,
    "not_after": "2031-01-01T00:00:00Z",
    "issuer": "CN=Test CA",
    "key_type": "RSA 2048",
}
WEBHOOK_URL = "https://hooks.example.invalid/services/T000/B000/SeCrEt"


def event(kind: str = "rolled_back", **overrides) -> notify.Event:
    fields = dict(kind=kind, host="web01", server="nginx", certificate=CERT,
                  message="The reload failed: `nginx -s reload` exited 1.",
                  deployment_id="20261204T161000Z-3fa1c2", at="2026-12-04T16:10:00Z")
    fields.update(overrides)
    return notify.Event(**fields)


# --- the event ----------------------------------------------------------------


@pytest.mark.parametrize("kind, words", [
    ("deployed", "Certificate deployed on web01 (nginx)"),
    ("rolled_back", "Certificate deploy rolled back on web01 (nginx)"),
    ("failed", "Certificate deploy failed on web01 (nginx)"),
    ("rollback_failed", "Rollback failed on web01: restore by hand (nginx)"),
])
def test_title_names_the_event_host_and_server(kind, words) -> None:
    assert event(kind).title == words


def test_facts_leave_out_what_is_unknown_and_never_key_material() -> None:
    facts = dict(event(certificate={"sha256": "cd" * 32}, deployment_id="").facts())
    assert facts == {"Host": "web01", "Server": "nginx", "SHA-256": "cd" * 32}


def test_certificate_keeps_only_the_documented_fields() -> None:
    assert set(event().cert()) == {"subject", "sans", "issuer", "not_after", "sha256"}


# --- Slack --------------------------------------------------------------------


def test_slack_webhook_posts_blocks_with_fallback_text() -> None:
    request = notify.slack_webhook(event(), WEBHOOK_URL)
    body = json.loads(request.body)
    assert request.url == WEBHOOK_URL and request.method == "POST"
    assert request.headers == {"Content-Type": "application/json"}
    assert body["text"].startswith("Certificate deploy rolled back on web01")
    header, fields, reason = body["blocks"]
    assert header == {"type": "header", "text": {
        "type": "plain_text", "text": "Certificate deploy rolled back on web01 (nginx)"}}
    assert {"type": "mrkdwn", "text": "*Host*\nweb01"} in fields["fields"]
    assert reason["text"]["type"] == "mrkdwn"
    assert "`nginx -s reload` exited 1" in reason["text"]["text"]


def test_slack_escapes_markup_characters() -> None:
    body = notify.slack_message(event(message="a <b> & c"))
    assert body["blocks"][2]["text"]["text"] == "a &lt;b&gt; &amp; c"
    assert "&lt;b&gt;" in body["text"]


def test_slack_respects_block_limits() -> None:
    long = event(host="h" * 400, message="m" * 5000)
    body = notify.slack_message(long)
    assert len(body["blocks"][0]["text"]["text"]) == notify.SLACK_HEADER_MAX
    assert len(body["blocks"][2]["text"]["text"]) == notify.SLACK_TEXT_MAX
    assert len(body["blocks"][1]["fields"]) <= notify.SLACK_FIELDS_MAX
    assert all(len(f["text"]) <= notify.SLACK_FIELD_MAX for f in body["blocks"][1]["fields"])


def test_slack_api_sends_the_token_as_bearer_to_chat_post_message() -> None:
    request = notify.slack_api(event(), "xoxb-123-secret", "C0123", None)
    assert request.url == "https://slack.com/api/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-123-secret"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    body = json.loads(request.body)
    assert body["channel"] == "C0123" and body["blocks"] and body["text"]


def test_slack_api_base_url_is_overridable() -> None:
    request = notify.slack_api(event(), "xoxb-1", "C1", "http://127.0.0.1:9/api/")
    assert request.url == "http://127.0.0.1:9/api/chat.postMessage"


# --- Teams --------------------------------------------------------------------


def test_teams_sends_one_adaptive_card_attachment() -> None:
    body = json.loads(notify.teams(event("failed"), WEBHOOK_URL).body)
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    title, facts, reason = card["body"]
    assert title["color"] == "Attention" and title["wrap"] is True
    assert {"title": "Subject", "value": "CN=www.example.com"} in facts["facts"]
    assert reason["text"] == event().message
    assert "@type" not in body and "MessageCard" not in json.dumps(body)


# --- PagerDuty ----------------------------------------------------------------


def test_pagerduty_triggers_a_failure_with_severity_and_dedup_key() -> None:
    request = notify.pagerduty(event("rollback_failed"), "R0UTINGKEY", None,
                               "certfleet/web01/nginx", "auto")
    body = json.loads(request.body)
    assert request.url == "https://events.pagerduty.com/v2/enqueue"
    assert request.action == "trigger"
    assert body["routing_key"] == "R0UTINGKEY"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "certfleet/web01/nginx"
    payload = body["payload"]
    assert payload["severity"] == "critical"
    assert payload["source"] == "web01" and payload["component"] == "nginx"
    assert payload["summary"].startswith("Rollback failed on web01")
    assert payload["timestamp"] == "2026-12-04T16:10:00Z"
    assert payload["custom_details"]["certificate"]["sha256"] == "ab" * 32


@pytest.mark.parametrize("kind, severity", [
    ("rolled_back", "warning"), ("failed", "error"), ("rollback_failed", "critical"),
])
def test_pagerduty_severity_follows_the_event(kind, severity) -> None:
    request = notify.pagerduty(event(kind), "k", None, "d", "auto")
    assert json.loads(request.body)["payload"]["severity"] == severity


def test_pagerduty_resolves_on_deployed_with_only_the_documented_fields() -> None:
    request = notify.pagerduty(event("deployed"), "K", "http://127.0.0.1:9", "d1", "auto")
    assert request.url == "http://127.0.0.1:9/v2/enqueue"
    assert json.loads(request.body) == {
        "routing_key": "K", "event_action": "resolve", "dedup_key": "d1"}


def test_pagerduty_summary_is_cut_to_its_limit() -> None:
    request = notify.pagerduty(event(message="x" * 3000), "k", None, "d", "open")
    summary = json.loads(request.body)["payload"]["summary"]
    assert len(summary) == notify.PAGERDUTY_SUMMARY_MAX


def test_alert_action_overrides_the_automatic_choice() -> None:
    assert notify.pagerduty(event("deployed"), "k", None, "d", "open").action == "trigger"
    assert notify.pagerduty(event("failed"), "k", None, "d", "close").action == "resolve"


# --- Opsgenie -----------------------------------------------------------------


def test_opsgenie_creates_an_alert_with_alias_priority_and_genie_key() -> None:
    request = notify.opsgenie(event("failed"), "og-key", None, "us",
                              "certfleet/web01/nginx", "auto")
    body = json.loads(request.body)
    assert request.url == "https://api.opsgenie.com/v2/alerts"
    assert request.headers["Authorization"] == "GenieKey og-key"
    assert body["alias"] == "certfleet/web01/nginx"
    assert body["priority"] == "P2" and body["entity"] == "web01"
    assert body["source"] == "certfleet.deploy"
    assert len(body["message"]) <= notify.OPSGENIE_MESSAGE_MAX
    assert "nginx -s reload" in body["description"]
    assert all(isinstance(v, str) for v in body["details"].values())
    assert body["tags"] == ["certfleet", "failed", "nginx"]


def test_opsgenie_eu_region_uses_the_eu_host() -> None:
    request = notify.opsgenie(event(), "k", None, "eu", "d", "auto")
    assert request.url == "https://api.eu.opsgenie.com/v2/alerts"


def test_opsgenie_closes_the_alert_by_alias_on_deployed() -> None:
    request = notify.opsgenie(event("deployed"), "k", "http://127.0.0.1:9/", "us",
                              "certfleet/web 01/nginx", "auto")
    assert request.action == "close"
    assert request.url == ("http://127.0.0.1:9/v2/alerts/certfleet%2Fweb%2001%2Fnginx"
                           "/close?identifierType=alias")
    body = json.loads(request.body)
    assert body["source"] == "certfleet.deploy" and body["note"]


def test_opsgenie_message_is_cut_to_130_characters() -> None:
    body = json.loads(notify.opsgenie(event(host="h" * 300), "k", None, "us", "d",
                                      "auto").body)
    assert len(body["message"]) == notify.OPSGENIE_MESSAGE_MAX


# --- generic webhook ----------------------------------------------------------


def test_webhook_signs_timestamp_and_body_with_hmac_sha256() -> None:
    request = notify.webhook(event(), WEBHOOK_URL, "s3cret", {}, 1796400000)
    expected = hmac.new(b"s3cret", b"1796400000." + request.body,
                        hashlib.sha256).hexdigest()
    assert request.headers["X-Certfleet-Timestamp"] == "1796400000"
    assert request.headers["X-Certfleet-Signature"] == f"sha256={expected}"
    body = json.loads(request.body)
    assert body["event"] == "rolled_back" and body["host"] == "web01"
    assert body["message"] == event().message
    assert body["certificate"]["sha256"] == "ab" * 32


def test_webhook_without_secret_is_unsigned_and_keeps_extra_headers() -> None:
    request = notify.webhook(event(), WEBHOOK_URL, None, {"X-Token": "t0k"}, 1)
    assert "X-Certfleet-Signature" not in request.headers
    assert request.headers["X-Token"] == "t0k"
    assert request.preview()["headers"]["X-Token"] == notify.REDACTED


# --- what may be shown --------------------------------------------------------


@pytest.mark.parametrize("build, secret", [
    (lambda: notify.slack_webhook(event(), WEBHOOK_URL), "SeCrEt"),
    (lambda: notify.teams(event(), WEBHOOK_URL), "SeCrEt"),
    (lambda: notify.slack_api(event(), "xoxb-SeCrEt", "C1", None), "SeCrEt"),
    (lambda: notify.pagerduty(event(), "SeCrEtKey", None, "d", "auto"), "SeCrEt"),
    (lambda: notify.opsgenie(event(), "SeCrEtKey", None, "us", "d", "auto"), "SeCrEt"),
    (lambda: notify.webhook(event(), WEBHOOK_URL, "SeCrEt2", {}, 1), "SeCrEt"),
])
def test_preview_and_endpoint_hold_no_secret(build, secret) -> None:
    request = build()
    shown = json.dumps(request.preview()) + request.endpoint
    assert secret not in shown
    assert notify.REDACTED in shown or request.endpoint.endswith("/…")


def test_endpoint_drops_user_info_and_hides_webhook_paths() -> None:
    assert notify.describe_url("https://u:p@proxy.example:8443/api/x?y=1", False) == (
        "https://proxy.example:8443/api/x")
    assert notify.describe_url(WEBHOOK_URL, True) == "https://hooks.example.invalid/…"
    assert notify.describe_url("http://[::1]:80/x", True) == "http://[::1]:80/…"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/x", "hooks/x", ""])
def test_only_http_urls_are_accepted_and_never_echoed(url) -> None:
    with pytest.raises(NotifyError) as caught:
        notify.slack_webhook(event(), url)
    assert "not an http:// or https:// URL" in caught.value.message
    assert (url or "@@") not in caught.value.message.split("scheme")[0]


# --- choosing the builder -----------------------------------------------------


def test_build_picks_the_slack_api_when_a_token_is_given() -> None:
    request = notify.build("slack", event(), {"token": "xoxb-1", "channel": "C1"}, 0)
    assert request.url.endswith("/chat.postMessage")


def test_build_names_a_missing_option() -> None:
    with pytest.raises(NotifyError, match="PagerDuty needs the routing_key option"):
        notify.build("pagerduty", event(), {}, 0)
    with pytest.raises(NotifyError, match="Slack needs the channel option"):
        notify.build("slack", event(), {"token": "x"}, 0)


def test_build_defaults_the_dedup_key_to_host_and_server() -> None:
    request = notify.build("pagerduty", event(), {"routing_key": "k"}, 0)
    assert request.dedup_key == "certfleet/web01/nginx"
    long = notify.default_dedup_key(event(host="h" * 300))
    assert len(long) <= notify.DEDUP_KEY_MAX and long.startswith("certfleet/")


def test_build_webhook_uses_the_given_time_for_the_signature() -> None:
    request = notify.build("webhook", event(), {"url": WEBHOOK_URL, "secret": "s"},
                           1796400000.7)
    assert request.headers["X-Certfleet-Timestamp"] == "1796400000"


# --- Retry-After ----------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert notify.retry_after("7", 0) == 7.0
    date = email.utils.formatdate(1000.0 + 30, usegmt=True)
    assert notify.retry_after(date, 1000.0) == pytest.approx(30.0)
    assert notify.retry_after(email.utils.formatdate(10.0, usegmt=True), 1000.0) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "1.5"])
def test_retry_after_ignores_what_it_cannot_read(value) -> None:
    assert notify.retry_after(value, 0) is None


# --- send: retries within the budget ------------------------------------------


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps or waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Script:
    """A transport that answers from a list: Responses, or errors to raise."""

    def __init__(self, clock: FakeClock, *answers, cost: float = 0.1) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.timeouts: list[float] = []
        self.cost = cost

    def __call__(self, request, timeout):
        self.timeouts.append(timeout)
        answer = self.answers.pop(0)
        if isinstance(answer, NotifyError):
            self.clock.now += timeout if answer.details.get("timed_out") else self.cost
            raise answer
        self.clock.now += self.cost
        return answer


def reply(status: int, body: bytes = b"", **headers: str) -> notify.Response:
    return notify.Response(status, {k.lower().replace("_", "-"): v
                                    for k, v in headers.items()}, body)


def deliver(clock, transport, budget=10.0, attempts=5) -> notify.Delivery:
    request = notify.slack_webhook(event(), WEBHOOK_URL)
    return notify.send(request, transport, budget, attempts, clock=clock,
                       sleep=clock.sleep, wall=lambda: 1000.0)


def test_send_returns_at_once_on_success() -> None:
    clock = FakeClock()
    delivery = deliver(clock, Script(clock, reply(200, b"ok")))
    assert (delivery.attempts, delivery.waits, clock.slept) == (1, [], [])
    assert delivery.response.status == 200


def test_send_honours_retry_after_on_429() -> None:
    clock = FakeClock()
    transport = Script(clock, reply(429, Retry_After="3"), reply(200))
    delivery = deliver(clock, transport)
    assert clock.slept == [3.0]
    assert delivery.attempts == 2
    assert transport.timeouts[1] == pytest.approx(10.0 - 0.1 - 3.0)


def test_send_backs_off_doubling_on_5xx_without_retry_after() -> None:
    clock = FakeClock()
    delivery = deliver(clock, Script(clock, reply(503), reply(502), reply(500),
                                     reply(202)))
    assert clock.slept == [0.5, 1.0, 2.0]
    assert delivery.attempts == 4 and delivery.response.status == 202


def test_send_does_not_start_a_wait_that_passes_the_budget() -> None:
    clock = FakeClock()
    with pytest.raises(NotifyError) as caught:
        deliver(clock, Script(clock, reply(429, b"slow down", Retry_After="60")))
    assert clock.slept == []
    assert "last answer HTTP 429: slow down" in caught.value.message
    assert "would start past the 10.0 s budget" in caught.value.message
    assert caught.value.details == {"status": 429, "attempts": 1}


def test_send_stops_after_the_last_attempt() -> None:
    clock = FakeClock()
    with pytest.raises(NotifyError, match="gave up after 2 attempts"):
        deliver(clock, Script(clock, reply(503), reply(503)), attempts=2)
    assert clock.slept == [0.5]


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_send_does_not_retry_a_client_error(status) -> None:
    clock = FakeClock()
    delivery = deliver(clock, Script(clock, reply(status, b"invalid_payload")))
    assert delivery.attempts == 1 and delivery.response.status == status


def test_send_retries_a_refused_connection() -> None:
    clock = FakeClock()
    refused = NotifyError("Slack at x could not be reached: refused.", retryable=True)
    delivery = deliver(clock, Script(clock, refused, reply(200)))
    assert delivery.attempts == 2 and clock.slept == [0.5]


def test_send_gives_up_when_an_attempt_times_out() -> None:
    clock = FakeClock()
    timed_out = NotifyError("Slack at x did not answer within 10.0 s.", timed_out=True)
    with pytest.raises(NotifyError) as caught:
        deliver(clock, Script(clock, timed_out))
    assert caught.value.details == {"attempts": 1, "timed_out": True}
    assert clock.now == pytest.approx(10.0)


# --- the answer -----------------------------------------------------------------


def test_answer_parses_json_and_accepts_2xx() -> None:
    request = notify.pagerduty(event(), "k", None, "d", "auto")
    body = b'{"status":"success","message":"Event processed","dedup_key":"d"}'
    assert notify.answer(request, reply(202, body))["dedup_key"] == "d"


def test_answer_names_service_status_and_body_of_a_refusal() -> None:
    request = notify.slack_webhook(event(), WEBHOOK_URL)
    with pytest.raises(NotifyError) as caught:
        notify.answer(request, reply(404, b"channel_not_found"))
    message = caught.value.message
    assert message == ("Slack at https://hooks.example.invalid/… refused the post "
                       "request: HTTP 404: channel_not_found")
    assert "SeCrEt" not in message


def test_answer_reports_a_redirect_as_not_followed() -> None:
    request = notify.teams(event(), WEBHOOK_URL)
    with pytest.raises(NotifyError, match="redirects are not followed"):
        notify.answer(request, reply(302))


def test_answer_checks_ok_of_the_slack_web_api() -> None:
    request = notify.slack_api(event(), "xoxb-1", "C1", None)
    assert notify.answer(request, reply(200, b'{"ok":true,"ts":"1.2"}'))["ts"] == "1.2"
    with pytest.raises(NotifyError, match="to channel C1: channel_not_found"):
        notify.answer(request, reply(200, b'{"ok":false,"error":"channel_not_found"}'))
