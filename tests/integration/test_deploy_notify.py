"""deploy_notify as a real module process against loopback receivers.

Each service's receiver is a mock of its SaaS API (tests/support/receiver.py):
it checks the method, path, headers and body that the service documents and
answers the way the service does (Slack's ``ok``, PagerDuty's and Opsgenie's
202 with a JSON body, ...). Scripted answers test the retries; a receiver
that never answers tests that the module gives up after its timeout. Every
URL given to the module is checked to be on loopback before it runs: no
test ever sends a notification off this machine.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.support.modules import run_module
from tests.support.receiver import Receiver, Reply, SilentReceiver

SECRETS = {
    "url_path": "T0SECRET/B0SECRET/XXSECRETXX",
    "token": "xoxb-111-222-SECRETTOKEN",
    "routing_key": "R0UTINGSECRETKEY0000000000000000",
    "api_key": "og-SECRET-api-key",
    "secret": "hmac-SECRET-shared",
}
CERT = {"subject": "CN=www.example.com", "sha256": "ab" * 32,
        "not_after": "2031-01-01T00:00:00Z", "sans": ["www.example.com"]}
SERVICES = ["slack", "slack_api", "teams", "pagerduty", "opsgenie", "webhook"]
# A bound on hanging, not a speed target: module start-up on a loaded
# machine is included.
HANG_MARGIN = 45.0


def base_args(event: str = "rolled_back") -> dict:
    return {
        "event": event, "host": "web07", "server": "nginx", "certificate": CERT,
        "reason": "The endpoint served the old certificate after the reload.",
        "deployment_id": "20261204T161000Z-3fa1c2",
    }


def service_args(name: str, base: str) -> dict:
    """Module options that point service ``name`` at the receiver ``base``."""
    if name == "slack":
        return {"service": "slack", "url": f"{base}/services/{SECRETS['url_path']}"}
    if name == "slack_api":
        return {"service": "slack", "token": SECRETS["token"], "channel": "C0TEST",
                "api_url": f"{base}/api"}
    if name == "teams":
        return {"service": "teams",
                "url": f"{base}/workflows/{SECRETS['url_path']}/triggers/manual"}
    if name == "pagerduty":
        return {"service": "pagerduty", "routing_key": SECRETS["routing_key"],
                "api_url": base}
    if name == "opsgenie":
        return {"service": "opsgenie", "api_key": SECRETS["api_key"], "region": "eu",
                "api_url": base}
    return {"service": "webhook", "url": f"{base}/hooks/{SECRETS['url_path']}",
            "secret": SECRETS["secret"]}


def success_reply(name: str) -> Reply:
    """What the service answers when it takes the request."""
    if name == "slack":
        return Reply(200, b"ok", {"Content-Type": "text/plain"})
    if name == "slack_api":
        return Reply.json(200, {"ok": True, "channel": "C0TEST", "ts": "1733330000.1"})
    if name == "teams":
        return Reply(202, b"")
    if name == "pagerduty":
        return Reply.json(202, {"status": "success", "message": "Event processed",
                                "dedup_key": "certfleet/web07/nginx"})
    if name == "opsgenie":
        return Reply.json(202, {"result": "Request will be processed", "took": 0.1,
                                "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"})
    return Reply(204, b"")


def notify(args: dict, check_mode: bool = False) -> dict:
    """Run the module, after checking that it can only reach loopback."""
    for key in ("url", "api_url"):
        if args.get(key):
            host = urlsplit(args[key]).hostname
            assert ipaddress.ip_address(host).is_loopback, f"{key} is not loopback"
    assert args.get("url") or args.get("api_url"), "a test must never use a real host"
    return run_module("deploy_notify", args, check_mode=check_mode)


def assert_no_secret(result: dict) -> None:
    shown = json.dumps(result)
    for secret in SECRETS.values():
        assert secret not in shown


def check_documented_request(name: str, seen) -> None:
    """The request carries what the service's documentation asks for."""
    assert seen.method == "POST"
    content_type = seen.header("Content-Type")
    body = seen.json
    if name == "slack":
        assert seen.path == f"/services/{SECRETS['url_path']}"
        assert content_type == "application/json"
        assert body["text"] and body["blocks"][0]["type"] == "header"
    elif name == "slack_api":
        assert seen.path == "/api/chat.postMessage"
        assert content_type == "application/json; charset=utf-8"
        assert seen.header("Authorization") == f"Bearer {SECRETS['token']}"
        assert body["channel"] == "C0TEST" and body["text"] and body["blocks"]
    elif name == "teams":
        assert content_type == "application/json"
        attachment = body["attachments"][0]
        assert body["type"] == "message"
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert attachment["content"]["type"] == "AdaptiveCard"
    elif name == "pagerduty":
        assert seen.path == "/v2/enqueue" and content_type == "application/json"
        assert body["routing_key"] == SECRETS["routing_key"]
        assert body["event_action"] == "trigger"
        assert body["dedup_key"] == "certfleet/web07/nginx"
        assert {"summary", "source", "severity"} <= set(body["payload"])
    elif name == "opsgenie":
        assert seen.path == "/v2/alerts" and content_type == "application/json"
        assert seen.header("Authorization") == f"GenieKey {SECRETS['api_key']}"
        assert body["message"] and body["alias"] == "certfleet/web07/nginx"
    else:
        assert content_type == "application/json"
        stamp = seen.header("X-Certfleet-Timestamp")
        mac = hmac.new(SECRETS["secret"].encode(), f"{stamp}.".encode() + seen.body,
                       hashlib.sha256).hexdigest()
        assert seen.header("X-Certfleet-Signature") == f"sha256={mac}"
        assert body["event"] == "rolled_back" and body["host"] == "web07"


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_gets_its_documented_request(receiver, name) -> None:
    receiver.script(success_reply(name))
    result = notify(dict(base_args(), **service_args(name, receiver.url("").rstrip("/"))))
    assert result.get("failed") is not True, result["msg"]
    assert result["sent"] is True and result["attempts"] == 1
    (seen,) = receiver.requests
    check_documented_request(name, seen)
    body = json.dumps(seen.json)
    assert "web07" in body and "served the old certificate" in body
    assert_no_secret(result)


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_retried_after_503(receiver, name) -> None:
    receiver.script(Reply(503, b"upstream unavailable"), success_reply(name))
    result = notify(dict(base_args(), **service_args(name, receiver.url("").rstrip("/"))))
    assert result["sent"] is True, result.get("msg")
    assert result["attempts"] == 2 and len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_honours_retry_after_on_429(receiver, name) -> None:
    receiver.script(Reply(429, b"rate limited", {"Retry-After": "1"}),
                    success_reply(name))
    result = notify(dict(base_args(), **service_args(name, receiver.url("").rstrip("/"))))
    assert result["sent"] is True, result.get("msg")
    first, second = receiver.requests
    # Sleeping can only take longer than asked, so this lower bound is safe.
    assert second.at - first.at >= 0.95


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_gives_up_on_a_receiver_that_never_answers(name) -> None:
    with SilentReceiver() as silent:
        args = dict(base_args(), timeout=2,
                    **service_args(name, silent.url("").rstrip("/")))
        started = time.monotonic()
        result = notify(args)
        elapsed = time.monotonic() - started
        assert silent.connections, "the module never connected"
    assert result["failed"] is True and result["sent"] is False
    assert "did not answer within" in result["msg"]
    assert result["timed_out"] is True
    assert elapsed < 2 + HANG_MARGIN
    assert_no_secret(result)


def test_a_retry_after_beyond_the_budget_fails_at_once(receiver) -> None:
    receiver.script(Reply(429, b"slow down", {"Retry-After": "120"}))
    target = service_args("webhook", receiver.url(""))
    result = notify(dict(base_args(), timeout=5, **target))
    assert result["failed"] is True and len(receiver.requests) == 1
    assert "HTTP 429" in result["msg"] and "budget" in result["msg"]
    assert result["status"] == 429


def test_a_refusal_fails_with_the_answer_and_no_secret(receiver) -> None:
    receiver.script(Reply(404, b"no_team"))
    result = notify(dict(base_args(), **service_args("slack", receiver.url(""))))
    assert result["failed"] is True and result["status"] == 404
    assert "refused the post request: HTTP 404: no_team" in result["msg"]
    assert len(receiver.requests) == 1
    assert_no_secret(result)


def test_slack_api_ok_false_fails(receiver) -> None:
    receiver.script(Reply.json(200, {"ok": False, "error": "not_in_channel"}))
    result = notify(dict(base_args(), **service_args("slack_api", receiver.url(""))))
    assert result["failed"] is True
    assert "channel C0TEST: not_in_channel" in result["msg"]
    assert_no_secret(result)


def test_pagerduty_resolves_with_the_same_dedup_key(receiver) -> None:
    base = receiver.url("").rstrip("/")
    for event in ("failed", "deployed"):
        receiver.script(success_reply("pagerduty"))
        result = notify(dict(base_args(event), **service_args("pagerduty", base)))
        assert result["sent"] is True
    trigger, resolve = (r.json for r in receiver.requests)
    assert trigger["event_action"] == "trigger"
    assert resolve == {"routing_key": SECRETS["routing_key"],
                       "event_action": "resolve", "dedup_key": trigger["dedup_key"]}


def test_opsgenie_closes_the_alert_it_created(receiver) -> None:
    base = receiver.url("").rstrip("/")
    for event in ("rollback_failed", "deployed"):
        receiver.script(success_reply("opsgenie"))
        result = notify(dict(base_args(event), dedup_key="web07 nginx",
                             **service_args("opsgenie", base)))
        assert result["sent"] is True
    create, close = receiver.requests
    assert create.json["priority"] == "P1" and create.json["alias"] == "web07 nginx"
    assert close.path == "/v2/alerts/web07%20nginx/close"
    assert close.query == {"identifierType": "alias"}
    assert close.header("Authorization") == f"GenieKey {SECRETS['api_key']}"
    assert result["response"]["requestId"]


@pytest.mark.parametrize("name", SERVICES)
def test_check_mode_sends_nothing_and_shows_no_secret(receiver, name) -> None:
    result = notify(dict(base_args(), **service_args(name, receiver.url("").rstrip("/"))),
                    check_mode=True)
    assert result.get("failed") is not True, result.get("msg")
    assert result["sent"] is False and result["changed"] is True
    assert result["request"]["payload"]
    time.sleep(0.2)
    assert receiver.requests == []
    assert_no_secret(result)


def test_a_non_http_url_is_refused_before_sending() -> None:
    # A file: URL reaches no network, so the loopback guard is not needed.
    result = run_module("deploy_notify", {**base_args(), "service": "webhook",
                                          "url": "file:///etc/passwd"})
    assert result["failed"] is True
    assert "not an http:// or https:// URL" in result["msg"]
    assert "/etc/passwd" not in json.dumps(result)


def test_a_refused_connection_is_retried_then_reported() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    # Nothing listens on the port any more: every attempt is refused.
    result = notify(dict(base_args(), timeout=3,
                         **service_args("pagerduty", f"http://127.0.0.1:{port}")))
    assert result["failed"] is True and result["sent"] is False
    assert "could not be reached" in result["msg"]
    assert result["attempts"] >= 2
    assert_no_secret(result)
