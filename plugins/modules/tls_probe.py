#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tls_probe
short_description: Report which certificate a TLS endpoint serves
version_added: 0.1.0
description:
  - Completes a TLS handshake with an endpoint and reports the served leaf's
    SHA-256, subject and expiry, the SHA-256 of every certificate in the served
    chain, and the protocol.
  - With O(expected_sha256), probes with the same backoff as the server
    modules until the endpoint serves that certificate, and fails if it never
    does. Useful through a load balancer, delegated to the controller.
  - Changes nothing.
options:
  endpoint:
    description:
      - C(host:port) to connect to (C([v6addr]:port) for IPv6).
      - May start with the protocol to speak, which then wins over
        O(protocol), for example C(smtp://127.0.0.1:2525) or
        C(tls://127.0.0.1:10993). Without a port, C(smtp://), C(imap://)
        and C(pop3://) mean 25, 143 and 110, and anything else 443.
    type: str
    required: true
  server_name:
    description:
      - Server name (SNI) to send. None is sent when omitted.
    type: str
  protocol:
    description:
      - How to start TLS. V(tls) is implicit TLS; V(smtp), V(imap) and V(pop3)
        speak the protocol and ask for STARTTLS (STLS for POP3) first.
      - V(auto) chooses STARTTLS on ports 25 and 587 (SMTP), 143 (IMAP) and
        110 (POP3), and implicit TLS on every other port (443, 465, 993, 995).
      - A refusal (for example C(454 4.7.0 TLS not available), a missing
        STARTTLS capability or a dropped connection) fails the probe with the
        server's own reply in the message. Implicit TLS sent to a STARTTLS
        port, or STARTTLS to an implicit-TLS port, fails with a hint saying so.
    type: str
    choices: [auto, tls, smtp, imap, pop3]
    default: auto
  expected_sha256:
    description:
      - SHA-256 of the leaf that must be served, hex, with or without colons.
    type: str
  timeout:
    description:
      - Seconds one handshake may take.
    type: float
    default: 5.0
  attempts:
    description:
      - How many times to probe before giving up, with O(expected_sha256).
    type: int
    default: 3
  backoff:
    description:
      - Seconds to wait after the first failed attempt; later waits double.
    type: float
    default: 1.0
  max_backoff:
    description:
      - Longest wait between attempts. Equal to O(backoff) gives a constant
        interval.
    type: float
    default: 16.0
  jitter:
    description:
      - Fraction (0 to 1) by which each wait varies at random.
    type: float
    default: 0.0
  deadline:
    description:
      - Upper bound in seconds on the whole probe; V(0) for none.
    type: float
    default: 0.0
  confirm:
    description:
      - Consecutive matching handshakes that make an attempt a success.
    type: int
    default: 1
attributes:
  check_mode:
    description: Whether a run with C(--check) reports what it would do and
      leaves the host alone.
    support: full
    details:
      - The probe changes nothing, so it runs in check mode too.
  diff_mode:
    description: Whether a run with C(--diff) shows the before and after of
      what it changes.
    support: none
  platform:
    description: The systems the managed host may run.
    support: full
    platforms: posix
notes:
  - The handshake does not check trust or the host name; it reports what was
    sent so that fingerprints can be compared.
  - The whole served chain is reported on Python 3.10 and later; older
    Pythons report the leaf alone.
  - Not in the C(certfleet.deploy.deploy) action group, whose defaults are
    the server modules' options.
author:
  - certfleet.deploy maintainers (!UNKNOWN)
seealso:
  - module: certfleet.deploy.nginx_certificate
"""

EXAMPLES = r"""
- name: See what the load balancer serves, from the controller
  certfleet.deploy.tls_probe:
    endpoint: lb.example.com:443
    server_name: www.example.com
  delegate_to: localhost
  register: probed

- name: Wait until every backend serves the new certificate
  certfleet.deploy.tls_probe:
    endpoint: "{{ inventory_hostname }}:443"
    server_name: www.example.com
    expected_sha256: "{{ deployed.certificate.sha256 }}"
    attempts: 5
    backoff: 2
  delegate_to: localhost

- name: Prove the submission port offers STARTTLS with the new certificate
  certfleet.deploy.tls_probe:
    endpoint: mail.example.com:587
    server_name: mail.example.com
    expected_sha256: "{{ deployed.certificate.sha256 }}"
  delegate_to: localhost

- name: Probe IMAP with STARTTLS on a port of its own
  certfleet.deploy.tls_probe:
    endpoint: imap://127.0.0.1:10143
    server_name: mail.example.com
"""

RETURN = r"""
sha256:
  description: SHA-256 of the served leaf, lowercase hex.
  returned: success
  type: str
chain_sha256:
  description: SHA-256 of every certificate served, leaf first.
  returned: success
  type: list
  elements: str
subject:
  description: Subject of the served leaf, RFC 4514.
  returned: success
  type: str
not_after:
  description: End of the served leaf's validity, ISO 8601 UTC.
  returned: success
  type: str
protocol:
  description: TLS version negotiated.
  returned: success
  type: str
  sample: TLSv1.3
starttls:
  description: The protocol that negotiated STARTTLS, or null for implicit TLS.
  returned: success
  type: str
cipher:
  description: Cipher suite negotiated.
  returned: success
  type: str
endpoint:
  description: The endpoint probed.
  returned: success
  type: str
server_name:
  description: The SNI sent, if any.
  returned: success
  type: str
matched:
  description: Whether the served leaf equals O(expected_sha256).
  returned: when O(expected_sha256) is given
  type: bool
attempts:
  description: Attempts made.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.certfleet.deploy.plugins.module_utils import probe
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)


def run(params: dict) -> dict:
    endpoint = probe.parse_endpoint(params["endpoint"], 443)
    expected = (params["expected_sha256"] or "").replace(":", "").lower()
    if not expected:
        seen = probe.handshake(endpoint, params["server_name"], params["timeout"],
                               params["protocol"])
        return dict(seen.as_dict(), attempts=1)
    backoff = probe.Backoff(
        attempts=params["attempts"], initial=params["backoff"],
        cap=params["max_backoff"], jitter=params["jitter"],
        deadline=params["deadline"],
    )
    confirm = probe.Confirm(handshakes=params["confirm"], interval=0.02)
    verdict = probe.Prober(protocol=params["protocol"]).wait_for(
        endpoint, params["server_name"], expected, backoff, confirm,
        params["timeout"])
    probe.require(verdict, endpoint, expected)
    return dict(verdict.last.as_dict(), attempts=verdict.attempts, matched=True)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            endpoint=dict(type="str", required=True),
            server_name=dict(type="str"),
            protocol=dict(type="str", default="auto", choices=list(probe.PROTOCOLS)),
            expected_sha256=dict(type="str"),
            timeout=dict(type="float", default=5.0),
            attempts=dict(type="int", default=3),
            backoff=dict(type="float", default=1.0),
            max_backoff=dict(type="float", default=16.0),
            jitter=dict(type="float", default=0.0),
            deadline=dict(type="float", default=0.0),
            confirm=dict(type="int", default=1),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module.params)
    except DeployError as exc:
        module.fail_json(msg=exc.message, matched=False, **exc.details)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
