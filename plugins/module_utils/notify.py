# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deploy and rollback events, shaped the way each notification service wants.

Pure builders turn one ``Event`` into the HTTP request a service documents:
Slack (incoming webhook, or the Web API's ``chat.postMessage``), Microsoft
Teams (a Workflows webhook carrying an Adaptive Card), PagerDuty (Events API
v2), Opsgenie (Alert API) and a generic JSON webhook, optionally signed with
HMAC-SHA256. ``send`` delivers a request within one overall time budget,
retrying 429 and 5xx answers and honouring Retry-After.

Secrets (webhook URLs, tokens, keys) live in the ``Request`` only;
``Request.preview()`` and ``Request.endpoint`` are what may be shown.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit

from ansible.module_utils import urls

from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    NotifyError,
)

EVENTS = ("deployed", "rolled_back", "failed", "rollback_failed")
SERVICES = ("slack", "teams", "pagerduty", "opsgenie", "webhook")
ALERT_ACTIONS = ("auto", "open", "close")
REDACTED = "********"
SOURCE = "certfleet.deploy"
USER_AGENT = "certfleet.deploy-deploy_notify"

SLACK_API = "https://slack.com/api"
PAGERDUTY_API = "https://events.pagerduty.com"
OPSGENIE_API = {"us": "https://api.opsgenie.com", "eu": "https://api.eu.opsgenie.com"}

LABELS = {
    "slack": "Slack",
    "teams": "Microsoft Teams",
    "pagerduty": "PagerDuty",
    "opsgenie": "Opsgenie",
    "webhook": "The webhook",
}
TITLES = {
    "deployed": "Certificate deployed on {host}",
    "rolled_back": "Certificate deploy rolled back on {host}",
    "failed": "Certificate deploy failed on {host}",
    "rollback_failed": "Rollback failed on {host}: restore by hand",
}
PAGERDUTY_SEVERITY = {
    "deployed": "info",
    "rolled_back": "warning",
    "failed": "error",
    "rollback_failed": "critical",
}
OPSGENIE_PRIORITY = {
    "deployed": "P5",
    "rolled_back": "P3",
    "failed": "P2",
    "rollback_failed": "P1",
}
TEAMS_COLOR = {
    "deployed": "Good",
    "rolled_back": "Warning",
    "failed": "Attention",
    "rollback_failed": "Attention",
}
CERTIFICATE_KEYS = ("subject", "sans", "issuer", "not_after", "sha256")

# Limits the services document; longer text is cut, never rejected.
SLACK_HEADER_MAX = 150
SLACK_FIELD_MAX = 2000
SLACK_FIELDS_MAX = 10
SLACK_TEXT_MAX = 3000
PAGERDUTY_SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
OPSGENIE_MESSAGE_MAX = 130
OPSGENIE_DESCRIPTION_MAX = 15000

# Retries: the first wait without a Retry-After, doubled up to the cap.
FIRST_WAIT = 0.5
MAX_WAIT = 8.0
DEFAULT_ATTEMPTS = 5
BODY_LIMIT = 65536
SNIPPET = 300
_TIMEOUTS = (socket.timeout, TimeoutError)


def _cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters, marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def utc_iso(epoch: float) -> str:
    """An epoch time as ISO 8601 UTC with a Z, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class Event:
    """What happened, to which certificate, on which host."""

    kind: str
    host: str
    server: str = ""
    certificate: dict = field(default_factory=dict)
    message: str = ""
    deployment_id: str = ""
    details: dict = field(default_factory=dict)
    at: str = ""

    @property
    def title(self) -> str:
        title = TITLES[self.kind].format(host=self.host)
        return f"{title} ({self.server})" if self.server else title

    def cert(self) -> dict:
        """The certificate fields a notification carries, when known."""
        return {k: self.certificate[k] for k in CERTIFICATE_KEYS
                if self.certificate.get(k)}

    def facts(self) -> list:
        """(label, value) pairs for cards and message fields, empty ones left out."""
        cert = self.certificate
        pairs = [
            ("Host", self.host),
            ("Server", self.server),
            ("Subject", cert.get("subject")),
            ("SHA-256", cert.get("sha256")),
            ("Not after", cert.get("not_after")),
            ("Deployment", self.deployment_id),
        ]
        return [(label, str(value)) for label, value in pairs if value]

    def as_dict(self) -> dict:
        """The event as plain JSON data (the generic webhook's body)."""
        return {
            "source": SOURCE,
            "event": self.kind,
            "summary": self.title,
            "host": self.host,
            "server": self.server or None,
            "certificate": self.cert(),
            "message": self.message or None,
            "deployment_id": self.deployment_id or None,
            "details": self.details,
            "occurred_at": self.at,
        }


@dataclass
class Request:
    """One HTTP request to a service, with what must never be shown."""

    service: str
    action: str
    url: str
    headers: dict
    payload: dict
    body: bytes
    secrets: tuple = ()
    secret_headers: tuple = ("authorization",)
    url_is_secret: bool = False
    dedup_key: str | None = None
    method: str = "POST"

    @property
    def label(self) -> str:
        return LABELS[self.service]

    @property
    def endpoint(self) -> str:
        """The URL as it may be shown: no credentials, no secret path."""
        return describe_url(self.url, self.url_is_secret)

    def preview(self) -> dict:
        """What check mode reports: the request with every secret masked."""
        headers = {}
        for name, value in self.headers.items():
            if name.lower() in self.secret_headers:
                scheme = value.split(" ", 1)[0] if " " in value else ""
                value = f"{scheme} {REDACTED}".strip()
            headers[name] = value
        return {
            "service": self.service,
            "action": self.action,
            "method": self.method,
            "endpoint": self.endpoint,
            "headers": headers,
            "payload": redact(self.payload, self.secrets),
        }


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    def snippet(self) -> str:
        text = self.body.decode("utf-8", "replace").strip()
        return _cut(" ".join(text.split()), SNIPPET) or "no body"

    def parsed(self) -> object:
        """The body as JSON when it is JSON, else as (shortened) text."""
        text = self.body.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return _cut(text.strip(), SNIPPET)


@dataclass
class Delivery:
    response: Response
    attempts: int
    elapsed_ms: int
    waits: list


def describe_url(url: str, hide_path: bool) -> str:
    """``scheme://host[:port]/path`` without user info; the path hidden if asked."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    path = "/…" if hide_path else (parts.path or "/")
    return f"{parts.scheme}://{host}{path}"


def redact(value: object, secrets: tuple) -> object:
    """A copy of JSON data with every string holding a secret masked."""
    secrets = tuple(s for s in secrets if s)
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str) and any(s in value for s in secrets):
        return REDACTED
    return value


def require_http_url(url: str, what: str) -> str:
    """Refuse anything but an absolute http(s) URL, without echoing it."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        scheme = parts.scheme or "none"
        raise NotifyError(
            f"The {what} is not an http:// or https:// URL (scheme {scheme!r}); "
            "nothing was sent."
        )
    return url


def _json_body(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _json_headers() -> dict:
    return {"Content-Type": "application/json"}


def default_dedup_key(event: Event) -> str:
    """One alert per host and server, so a later deploy can resolve it."""
    key = f"certfleet/{event.host}/{event.server or 'certificate'}"
    return key if len(key) <= DEDUP_KEY_MAX else (
        "certfleet/" + hashlib.sha256(key.encode()).hexdigest())


def alert_opens(event: Event, action: str) -> bool:
    """Whether an alerting service gets an open (else a close) for ``event``."""
    if action == "auto":
        return event.kind != "deployed"
    return action == "open"


# -- Slack --------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as markup; escape them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(event: Event) -> dict:
    """Fallback text plus Block Kit blocks: header, fields, reason."""
    fields = [
        {"type": "mrkdwn",
         "text": _cut(f"*{label}*\n{_slack_escape(value)}", SLACK_FIELD_MAX)}
        for label, value in event.facts()[:SLACK_FIELDS_MAX]
    ]
    blocks = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _cut(event.title, SLACK_HEADER_MAX)}},
        {"type": "section", "fields": fields},
    ]
    if event.message:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn",
            "text": _cut(_slack_escape(event.message), SLACK_TEXT_MAX)}})
    text = event.title + (f": {event.message}" if event.message else "")
    return {"text": _slack_escape(_cut(text, SLACK_TEXT_MAX)), "blocks": blocks}


def slack_webhook(event: Event, url: str) -> Request:
    """An incoming webhook: the URL alone authorises, so it is the secret."""
    payload = slack_message(event)
    return Request("slack", "post", require_http_url(url, "Slack webhook URL"),
                   _json_headers(), payload, _json_body(payload),
                   secrets=(url,), url_is_secret=True)


def slack_api(event: Event, token: str, channel: str, api_url: str) -> Request:
    """``chat.postMessage`` of the Web API, with a bot token as bearer."""
    base = require_http_url(api_url or SLACK_API, "Slack API URL").rstrip("/")
    payload = dict(slack_message(event), channel=channel)
    headers = {"Content-Type": "application/json; charset=utf-8",
               "Authorization": f"Bearer {token}"}
    return Request("slack", "post", f"{base}/chat.postMessage", headers,
                   payload, _json_body(payload), secrets=(token,))


# -- Microsoft Teams ----------------------------------------------------------


def adaptive_card(event: Event) -> dict:
    """An Adaptive Card: a coloured title, the facts, then the reason."""
    body = [
        {"type": "TextBlock", "text": event.title, "weight": "Bolder",
         "size": "Medium", "wrap": True, "color": TEAMS_COLOR[event.kind]},
        {"type": "FactSet",
         "facts": [{"title": label, "value": value} for label, value in event.facts()]},
    ]
    if event.message:
        body.append({"type": "TextBlock", "text": event.message, "wrap": True})
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }


def teams(event: Event, url: str) -> Request:
    """A Workflows webhook: a message whose one attachment is the card."""
    payload = {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": adaptive_card(event),
        }],
    }
    return Request("teams", "post", require_http_url(url, "Teams workflow URL"),
                   _json_headers(), payload, _json_body(payload),
                   secrets=(url,), url_is_secret=True)


# -- PagerDuty ----------------------------------------------------------------


def pagerduty(event: Event, routing_key: str, api_url: str, dedup_key: str,
              action: str) -> Request:
    """Events API v2: trigger an alert for a failure, resolve it on success."""
    base = require_http_url(api_url or PAGERDUTY_API, "PagerDuty API URL").rstrip("/")
    if alert_opens(event, action):
        summary = event.title + (f": {event.message}" if event.message else "")
        details = {k: v for k, v in event.as_dict().items()
                   if k not in ("source", "summary", "occurred_at") and v}
        payload = {
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": _cut(summary, PAGERDUTY_SUMMARY_MAX),
                "source": event.host,
                "severity": PAGERDUTY_SEVERITY[event.kind],
                "timestamp": event.at,
                "component": event.server or "certificate",
                "group": SOURCE,
                "class": f"certificate {event.kind.replace('_', ' ')}",
                "custom_details": details,
            },
            "client": SOURCE,
        }
    else:
        payload = {"routing_key": routing_key, "event_action": "resolve",
                   "dedup_key": dedup_key}
    return Request("pagerduty", payload["event_action"], f"{base}/v2/enqueue",
                   _json_headers(), payload, _json_body(payload),
                   secrets=(routing_key,), dedup_key=dedup_key)


# -- Opsgenie -----------------------------------------------------------------


def opsgenie(event: Event, api_key: str, api_url: str, region: str,
             dedup_key: str, action: str) -> Request:
    """Alert API: create an alert with ``alias`` = dedup key, or close it."""
    base = require_http_url(api_url or OPSGENIE_API[region],
                            "Opsgenie API URL").rstrip("/")
    headers = dict(_json_headers(), Authorization=f"GenieKey {api_key}")
    note = event.message or event.title
    if not alert_opens(event, action):
        payload = {"source": SOURCE, "note": _cut(note, OPSGENIE_DESCRIPTION_MAX)}
        url = (f"{base}/v2/alerts/{quote(dedup_key, safe='')}/close"
               "?identifierType=alias")
        return Request("opsgenie", "close", url, headers, payload,
                       _json_body(payload), secrets=(api_key,), dedup_key=dedup_key)
    lines = [note, ""] + [f"{label}: {value}" for label, value in event.facts()]
    details = {label.lower().replace(" ", "_").replace("-", ""): value
               for label, value in event.facts()}
    details.update({str(k): str(v) for k, v in event.details.items()})
    details["event"] = event.kind
    payload = {
        "message": _cut(event.title, OPSGENIE_MESSAGE_MAX),
        "alias": dedup_key,
        "description": _cut("\n".join(lines), OPSGENIE_DESCRIPTION_MAX),
        "tags": [t for t in ("certfleet", event.kind, event.server) if t],
        "details": details,
        "entity": event.host,
        "source": SOURCE,
        "priority": OPSGENIE_PRIORITY[event.kind],
    }
    return Request("opsgenie", "create", f"{base}/v2/alerts", headers, payload,
                   _json_body(payload), secrets=(api_key,), dedup_key=dedup_key)


# -- generic webhook ----------------------------------------------------------

SIGNATURE_HEADER = "X-Certfleet-Signature"
TIMESTAMP_HEADER = "X-Certfleet-Timestamp"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` and the HMAC-SHA256 of ``TIMESTAMP.BODY`` under ``secret``.

    The timestamp is signed too, so a receiver can refuse old replays.
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def webhook(event: Event, url: str, secret: str | None, extra_headers: dict,
            timestamp: int) -> Request:
    """The event as JSON, signed when a secret is given."""
    payload = event.as_dict()
    body = _json_body(payload)
    headers = {str(k): str(v) for k, v in (extra_headers or {}).items()}
    headers.update(_json_headers())
    hidden = ["authorization"] + [k.lower() for k in headers if k != "Content-Type"]
    if secret:
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
        hidden.append(SIGNATURE_HEADER.lower())
    return Request("webhook", "post", require_http_url(url, "webhook URL"),
                   headers, payload, body, secrets=(url, secret or ""),
                   secret_headers=tuple(hidden), url_is_secret=True)


# -- choosing the builder -----------------------------------------------------


def _required(params: dict, name: str, service: str) -> str:
    if not params.get(name):
        raise NotifyError(
            f"{LABELS[service]} needs the {name} option; nothing was sent.")
    return params[name]


def build(service: str, event: Event, params: dict, now: float) -> Request:
    """The request for ``service``, from the module's options."""
    dedup = params.get("dedup_key") or default_dedup_key(event)
    action = params.get("alert_action") or "auto"
    if service == "slack":
        if params.get("token"):
            channel = _required(params, "channel", service)
            return slack_api(event, params["token"], channel, params.get("api_url"))
        return slack_webhook(event, _required(params, "url", service))
    if service == "teams":
        return teams(event, _required(params, "url", service))
    if service == "pagerduty":
        return pagerduty(event, _required(params, "routing_key", service),
                         params.get("api_url"), dedup, action)
    if service == "opsgenie":
        return opsgenie(event, _required(params, "api_key", service),
                        params.get("api_url"), params.get("region") or "us",
                        dedup, action)
    if service == "webhook":
        return webhook(event, _required(params, "url", service), params.get("secret"),
                       params.get("headers") or {}, int(now))
    raise NotifyError(f"Unknown notification service {service!r}.")


# -- delivery -----------------------------------------------------------------


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def retryable(status: int) -> bool:
    """429 (rate limited) and every 5xx are worth another attempt."""
    return status == 429 or 500 <= status <= 599


def _headers(message: object) -> dict:
    return {k.lower(): v for k, v in (message.items() if message else [])}


def _read(handle: object) -> bytes:
    try:
        return handle.read(BODY_LIMIT) or b""
    except (OSError, http.client.HTTPException):
        return b""


def urllib_transport(
        validate_certs: bool = True) -> Callable[[Request, float], Response]:
    """A transport over Ansible's ``open_url``: one attempt, ``timeout`` seconds.

    Redirects are not followed (a POST carrying a secret must not be replayed
    elsewhere) and no netrc credentials are added.
    """
    def transport(request: Request, timeout: float) -> Response:
        where = f"{request.label} at {request.endpoint}"
        try:
            handle = urls.open_url(
                request.url, data=request.body, headers=request.headers,
                method=request.method, timeout=timeout, validate_certs=validate_certs,
                http_agent=USER_AGENT, follow_redirects="none", use_netrc=False)
            with handle:
                return Response(handle.getcode(), _headers(handle.headers),
                                _read(handle))
        except HTTPError as exc:
            return Response(exc.code, _headers(exc.headers), _read(exc))
        except _TIMEOUTS:
            raise _timed_out(where, timeout) from None
        except URLError as exc:
            if isinstance(exc.reason, _TIMEOUTS):
                raise _timed_out(where, timeout) from None
            retry = not isinstance(exc.reason, ssl.SSLError)
            raise NotifyError(f"{where} could not be reached: {exc.reason}.",
                              retryable=retry) from None
        except urls.SSLValidationError as exc:
            raise NotifyError(f"{where} failed TLS validation: {exc}.") from None
        except (OSError, http.client.HTTPException, urls.ConnectionError) as exc:
            raise NotifyError(f"{where} could not be reached: {exc}.",
                              retryable=True) from None
    return transport


def _timed_out(where: str, timeout: float) -> NotifyError:
    return NotifyError(
        f"{where} did not answer within {timeout:.1f} s; the notification may "
        "not have been delivered.", timed_out=True)


def send(request: Request, transport: Callable[[Request, float], Response],
         budget: float, attempts: int = DEFAULT_ATTEMPTS,
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep,
         wall: Callable[[], float] = time.time) -> Delivery:
    """Deliver ``request`` within ``budget`` seconds over all attempts.

    429 and 5xx answers and refused connections are retried after the
    Retry-After the service asked for, else after a doubling wait. A wait
    that would end past the budget is not started: the last answer is
    reported at once. Each attempt may use all the time that is left.
    """
    started = clock()
    deadline = started + budget
    waits: list = []
    backoff = FIRST_WAIT
    attempt = 0
    while True:
        attempt += 1
        try:
            response = transport(request, max(deadline - clock(), 0.001))
        except NotifyError as exc:
            if not exc.details.get("retryable"):
                raise NotifyError(exc.message, attempts=attempt,
                                  **exc.details) from None
            reason, wait, status = exc.message, backoff, None
        else:
            if not retryable(response.status):
                return Delivery(response, attempt,
                                int((clock() - started) * 1000), waits)
            hinted = retry_after(response.headers.get("retry-after"), wall())
            reason = f"HTTP {response.status}: {response.snippet()}"
            wait = backoff if hinted is None else hinted
            status = response.status
        backoff = min(backoff * 2, MAX_WAIT)
        if attempt >= attempts:
            why = f"it gave up after {attempt} attempts"
        elif clock() + wait >= deadline:
            why = (f"the next attempt, due in {wait:.1f} s, would start past the "
                   f"{budget:.1f} s budget")
        else:
            waits.append(wait)
            sleep(wait)
            continue
        raise NotifyError(
            f"{request.label} at {request.endpoint} did not take the {request.action} "
            f"request: last answer {reason}; {why}.",
            status=status, attempts=attempt)


def answer(request: Request, response: Response) -> object:
    """The service's answer, parsed; raise when it refused the request."""
    parsed = response.parsed()
    if not 200 <= response.status <= 299:
        hint = " (a redirect; redirects are not followed)" if (
            300 <= response.status <= 399) else ""
        raise NotifyError(
            f"{request.label} at {request.endpoint} refused the {request.action} "
            f"request: HTTP {response.status}{hint}: {response.snippet()}",
            status=response.status)
    if request.service == "slack" and not request.url_is_secret:
        if not (isinstance(parsed, dict) and parsed.get("ok") is True):
            error = parsed.get("error") if isinstance(parsed, dict) else parsed
            raise NotifyError(
                f"Slack refused chat.postMessage to channel "
                f"{request.payload.get('channel')}: {error or 'no ok in the answer'}.",
                status=response.status)
    return parsed
