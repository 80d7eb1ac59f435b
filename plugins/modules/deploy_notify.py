#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_notify
short_description: Tell people about a certificate deploy or rollback
version_added: 0.1.0
description:
  - Sends one deploy event (deployed, rolled back, failed, rollback failed) to
    Slack, Microsoft Teams, PagerDuty, Opsgenie or a generic JSON webhook,
    in the form each service documents.
  - Slack gets Block Kit blocks through an incoming webhook (O(url)) or the
    Web API's C(chat.postMessage) with a bot token (O(token) and O(channel)).
  - Microsoft Teams gets an Adaptive Card through a Workflows webhook
    (O(url)). The retired Office 365 connector cards are not sent.
  - PagerDuty gets an Events API v2 event, C(trigger) for a problem and
    C(resolve) after a successful deploy, tied together by O(dedup_key).
  - Opsgenie gets an Alert API request authorised by C(GenieKey), which
    creates an alert with O(dedup_key) as its alias, or closes that alert.
  - The generic webhook gets the event as JSON, signed with HMAC-SHA256 when
    O(secret) is set.
  - Usually runs on the controller, delegated to C(localhost).
options:
  service:
    description:
      - Where the event goes.
    type: str
    required: true
    choices: [slack, teams, pagerduty, opsgenie, webhook]
  event:
    description:
      - What happened. V(deployed) opens nothing and closes the alert of an
        earlier failure on PagerDuty and Opsgenie (see O(alert_action)).
    type: str
    required: true
    choices: [deployed, rolled_back, failed, rollback_failed]
  host:
    description:
      - The host the event is about, usually C(inventory_hostname).
    type: str
    required: true
  server:
    description:
      - The TLS server on that host, for example V(nginx).
    type: str
  certificate:
    description:
      - The certificate concerned. The C(certificate) key of a server
        module's result fits as it is; V(subject), V(sha256), V(not_after),
        V(sans) and V(issuer) are used, other keys are ignored. Never key
        material.
    type: dict
    default: {}
  reason:
    description:
      - What happened in a sentence, for example the failed module's C(msg).
    type: str
  deployment_id:
    description:
      - The server module's C(deployment_id), so the event can be matched
        with the backups on the host.
    type: str
  details:
    description:
      - Further fields to carry (playbook, change ticket, ...). Opsgenie gets
        them as strings; the webhook and PagerDuty as given.
    type: dict
    default: {}
  url:
    description:
      - The webhook URL of a Slack incoming webhook, a Teams workflow or the
        generic webhook. It authorises by itself, so it is never logged.
      - Required for O(service=teams) and O(service=webhook); for
        O(service=slack) either this or O(token).
    type: str
  token:
    description:
      - Slack bot token (C(xoxb-...)) with the C(chat:write) scope, sent as
        a bearer token to C(chat.postMessage). Never logged.
    type: str
  channel:
    description:
      - Slack channel ID or name for O(token).
    type: str
  routing_key:
    description:
      - PagerDuty integration (routing) key of an Events API v2 integration.
        Never logged.
    type: str
  api_key:
    description:
      - Opsgenie API integration key, sent as C(GenieKey). Never logged.
    type: str
  region:
    description:
      - Opsgenie instance. V(us) is C(https://api.opsgenie.com), V(eu) is
        C(https://api.eu.opsgenie.com).
    type: str
    choices: [us, eu]
    default: us
  api_url:
    description:
      - Base URL of the service's API, instead of the public one, for a proxy
        or a regional endpoint. Defaults to C(https://slack.com/api) (Slack
        with O(token)), C(https://events.pagerduty.com) (PagerDuty) and the
        O(region) host (Opsgenie). Paths such as C(/v2/enqueue) are appended.
    type: str
  secret:
    description:
      - Shared secret of the generic webhook. The request then carries
        C(X-Certfleet-Timestamp) and C(X-Certfleet-Signature), which is
        C(sha256=) followed by the hex HMAC-SHA256 of the timestamp, a dot
        and the body. Never logged.
    type: str
  headers:
    description:
      - Extra request headers for the generic webhook, for example an
        C(Authorization) the receiver wants. Their values are never logged.
    type: dict
  dedup_key:
    description:
      - Key that ties the alerts of one target together, PagerDuty's
        C(dedup_key) and Opsgenie's C(alias). A later V(deployed) event with
        the same key resolves the alert.
      - Defaults to C(certfleet/HOST/SERVER).
    type: str
  alert_action:
    description:
      - For PagerDuty and Opsgenie, whether to open (trigger, create) or close
        (resolve) the alert. V(auto) closes it for V(deployed) and opens it
        for every other event. Other services ignore it.
    type: str
    choices: [auto, open, close]
    default: auto
  timeout:
    description:
      - Seconds the whole delivery may take, retries and their waits
        included. Each attempt may use what is left of it.
    type: float
    default: 10
  attempts:
    description:
      - Most attempts to make when the service answers 429 or 5xx or refuses
        the connection. Waits follow C(Retry-After) when the service sends
        it, else start at half a second and double. A wait that would pass
        O(timeout) is not started.
    type: int
    default: 5
  validate_certs:
    description:
      - Check the service's TLS certificate. Only turn this off for a test
        receiver.
    type: bool
    default: true
notes:
  - Redirects are not followed, so a request that carries a secret is never
    replayed to another address; a 3xx answer fails the task.
  - O(timeout) bounds connecting and each read. A name that takes long to
    resolve in DNS is not bounded by it.
  - Proxies follow the usual C(https_proxy) and C(no_proxy) environment
    variables.
attributes:
  check_mode:
    support: full
    details:
      - Sends nothing and returns RV(request), what would be sent, with every
        secret masked.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
author:
  - certfleet.deploy maintainers (!UNKNOWN)
seealso:
  - module: certfleet.deploy.nginx_certificate
"""

EXAMPLES = r"""
- name: Tell Slack that the certificate was rolled back
  certfleet.deploy.deploy_notify:
    service: slack
    url: "{{ vault_slack_webhook_url }}"
    event: rolled_back
    host: "{{ inventory_hostname }}"
    server: nginx
    certificate: "{{ deployed.certificate }}"
    reason: "{{ deployed.msg }}"
    deployment_id: "{{ deployed.deployment_id }}"
  delegate_to: localhost

- name: Post to a channel with a bot token
  certfleet.deploy.deploy_notify:
    service: slack
    token: "{{ vault_slack_bot_token }}"
    channel: C0123456789
    event: deployed
    host: "{{ inventory_hostname }}"
  delegate_to: localhost

- name: Page the on-call engineer when the rollback failed too
  certfleet.deploy.deploy_notify:
    service: pagerduty
    routing_key: "{{ vault_pagerduty_routing_key }}"
    event: rollback_failed
    host: "{{ inventory_hostname }}"
    server: nginx
    reason: "{{ deployed.msg }}"
  delegate_to: localhost

- name: Close the Opsgenie alert of an earlier failure (EU instance)
  certfleet.deploy.deploy_notify:
    service: opsgenie
    api_key: "{{ vault_opsgenie_key }}"
    region: eu
    event: deployed
    host: "{{ inventory_hostname }}"
    server: nginx
  delegate_to: localhost

- name: Post a card to a Teams channel through a workflow
  certfleet.deploy.deploy_notify:
    service: teams
    url: "{{ vault_teams_workflow_url }}"
    event: failed
    host: "{{ inventory_hostname }}"
    reason: The config test failed.
  delegate_to: localhost

- name: Send the event, signed, to an in-house receiver
  certfleet.deploy.deploy_notify:
    service: webhook
    url: https://hooks.internal.example.com/certfleet
    secret: "{{ vault_hook_secret }}"
    event: deployed
    host: "{{ inventory_hostname }}"
    timeout: 5
  delegate_to: localhost
"""

RETURN = r"""
sent:
  description: Whether the service accepted the request. False in check mode.
  returned: always
  type: bool
service:
  description: The service addressed.
  returned: always
  type: str
action:
  description:
    - What was asked of the service. V(post) for Slack, Teams and the
      webhook; V(trigger) or V(resolve) for PagerDuty; V(create) or V(close)
      for Opsgenie.
  returned: always
  type: str
  sample: trigger
dedup_key:
  description: The key that ties this alert to later ones.
  returned: for PagerDuty and Opsgenie
  type: str
  sample: certfleet/web01/nginx
request:
  description:
    - The request, as it may be shown. Secrets are masked, and the path of a
      webhook URL is replaced by an ellipsis.
  returned: always
  type: dict
  contains:
    method:
      description: HTTP method.
      type: str
    endpoint:
      description: Where the request goes, without secrets.
      type: str
    headers:
      description: Request headers, secret values masked.
      type: dict
    payload:
      description: The JSON body, secret values masked.
      type: dict
status:
  description: HTTP status of the last answer.
  returned: when a request was sent
  type: int
  sample: 202
attempts:
  description: Requests made, retries included.
  returned: when a request was sent
  type: int
elapsed_ms:
  description: Milliseconds the delivery took, waits included.
  returned: when the service accepted the request
  type: int
response:
  description: The service's answer, parsed when it is JSON.
  returned: when the service accepted the request
  type: raw
  sample: {status: success, message: Event processed, dedup_key: certfleet/web01/nginx}
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.certfleet.deploy.plugins.module_utils import notify
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    NotifyError,
)

ARGUMENT_SPEC = dict(
    service=dict(type="str", required=True, choices=list(notify.SERVICES)),
    event=dict(type="str", required=True, choices=list(notify.EVENTS)),
    host=dict(type="str", required=True),
    server=dict(type="str"),
    certificate=dict(type="dict", default={}),
    reason=dict(type="str"),
    deployment_id=dict(type="str"),
    details=dict(type="dict", default={}),
    url=dict(type="str", no_log=True),
    token=dict(type="str", no_log=True),
    channel=dict(type="str"),
    routing_key=dict(type="str", no_log=True),
    api_key=dict(type="str", no_log=True),
    region=dict(type="str", default="us", choices=["us", "eu"]),
    api_url=dict(type="str"),
    secret=dict(type="str", no_log=True),
    headers=dict(type="dict", no_log=True),
    dedup_key=dict(type="str", no_log=False),
    alert_action=dict(type="str", default="auto", choices=list(notify.ALERT_ACTIONS)),
    timeout=dict(type="float", default=10.0),
    attempts=dict(type="int", default=notify.DEFAULT_ATTEMPTS),
    validate_certs=dict(type="bool", default=True),
)


def event_from(params: dict, now: float) -> notify.Event:
    return notify.Event(
        kind=params["event"], host=params["host"], server=params["server"] or "",
        certificate=params["certificate"] or {}, message=params["reason"] or "",
        deployment_id=params["deployment_id"] or "",
        details=params["details"] or {}, at=notify.utc_iso(now),
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[
            ("service", "slack", ("url", "token"), True),
            ("service", "teams", ("url",)),
            ("service", "webhook", ("url",)),
            ("service", "pagerduty", ("routing_key",)),
            ("service", "opsgenie", ("api_key",)),
        ],
        mutually_exclusive=[("url", "token")],
        required_by={"token": "channel"},
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] <= 0 or p["attempts"] < 1:
        module.fail_json(msg="timeout must be above 0 and attempts at least 1.")
    now = time.time()
    try:
        request = notify.build(p["service"], event_from(p, now), p, now)
    except NotifyError as exc:
        module.fail_json(msg=exc.message, sent=False, **exc.details)
    result = dict(changed=True, sent=False, service=p["service"],
                  action=request.action, request=request.preview())
    if request.dedup_key:
        result["dedup_key"] = request.dedup_key
    if module.check_mode:
        module.exit_json(**result)
    transport = notify.urllib_transport(p["validate_certs"])
    try:
        delivery = notify.send(request, transport, p["timeout"], p["attempts"])
        result.update(status=delivery.response.status, attempts=delivery.attempts)
        result["response"] = notify.answer(request, delivery.response)
    except NotifyError as exc:
        result.update(exc.details, changed=False)
        module.fail_json(msg=exc.message, **result)
    result.update(sent=True, elapsed_ms=delivery.elapsed_ms)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
