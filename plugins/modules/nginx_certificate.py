#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nginx_certificate
short_description: Deploy a TLS certificate to nginx and prove it is served
version_added: 0.1.0
description:
  - Checks the certificate, its chain and its key, writes the files nginx
    reads as one transaction, tests the configuration with them, reloads
    nginx gracefully, and probes the endpoint until every new connection gets
    the new certificate.
  - Anything that fails puts the previous files back, reloads again and
    proves the previous certificate is served.
  - A run whose files are already in place still checks what nginx serves and
    reloads it when it serves something else.
options:
  cert_path:
    description:
      - The file named by C(ssl_certificate). It receives the leaf followed
        by its chain, or the leaf alone when O(cert_layout=cert).
    type: path
    required: true
  key_path:
    description:
      - The file named by C(ssl_certificate_key).
    type: path
    required: true
  chain_path:
    description:
      - Optional file that receives the chain alone, for example the file
        named by C(ssl_trusted_certificate) for OCSP stapling.
    type: path
  cert_layout:
    description:
      - What O(cert_path) holds. V(fullchain) is what nginx serves to clients;
        V(cert) writes the leaf alone, so nginx sends no intermediates.
    type: str
    choices: [fullchain, cert]
    default: fullchain
notes:
  - Defaults for this server. O(validate_command) is C(nginx -t);
    O(reload_command) is C(nginx -s reload); O(verify_endpoint) is
    C(127.0.0.1:443); O(verify_settle) is V(0.15) seconds, because nginx 1.22
    keeps the previous workers accepting connections, with the old
    certificate, for about 100 ms after a reload; O(verify_confirm) is V(3)
    handshakes, 20 ms apart.
  - Files get owner and group C(root) and modes V(0644) (certificate, chain)
    and V(0600) (key) unless the files already exist or O(owner), O(group),
    O(cert_mode) or O(key_mode) say otherwise. The nginx master reads them as
    root.
  - Tested against nginx 1.22 from Debian 12, started on a loopback port with
    a configuration of its own.
extends_documentation_fragment:
  - certfleet.deploy.deploy
  - certfleet.deploy.deploy.attributes
author:
  - certfleet.deploy maintainers (!UNKNOWN)
seealso:
  - module: certfleet.deploy.tls_probe
"""

EXAMPLES = r"""
- name: Deploy the site certificate from files on the host
  certfleet.deploy.nginx_certificate:
    cert_src: /etc/pki/incoming/example.com/cert.pem
    chain_src: /etc/pki/incoming/example.com/chain.pem
    key_src: /etc/pki/incoming/example.com/privkey.pem
    cert_path: /etc/nginx/tls/example.com.fullchain.pem
    key_path: /etc/nginx/tls/example.com.key
    expected_names:
      - example.com
      - www.example.com

- name: Deploy PEM content from the controller's vault
  certfleet.deploy.nginx_certificate:
    cert_content: "{{ vault_example_cert }}"
    chain_content: "{{ vault_example_chain }}"
    key_content: "{{ vault_example_key }}"
    cert_path: /etc/nginx/tls/example.com.fullchain.pem
    key_path: /etc/nginx/tls/example.com.key
    verify_endpoint: 127.0.0.1:8443
    verify_server_name: www.example.com
    min_days_valid: 14

- name: Deploy to an nginx that runs under its own prefix
  certfleet.deploy.nginx_certificate:
    cert_src: /srv/certs/site.pem
    key_src: /srv/certs/site.key
    cert_path: /srv/nginx/tls/site.pem
    key_path: /srv/nginx/tls/site.key
    validate_command: [nginx, -p, /srv/nginx, -c, conf/nginx.conf, -t]
    reload_command: [nginx, -p, /srv/nginx, -c, conf/nginx.conf, -s, reload]
    backup_dir: /srv/nginx-state/certfleet
  register: deployed

- name: Show what is served now
  ansible.builtin.debug:
    msg: "{{ deployed.served.sha256 }} served since {{ deployed.deployment_id }}"
"""

RETURN = r"""
deployment_id:
  description: Identifier of this run's transaction and of its backup set.
  returned: always
  type: str
  sample: 20261204T161000Z-3fa1c2
files:
  description: Each file the server reads, after the run.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The destination as given.
      type: str
    target:
      description: The file written, when the destination is a symbolic link.
      type: str
      returned: when the destination is a symbolic link that was followed
    sha256:
      description: SHA-256 of the file's content.
      type: str
    mode:
      description: The file's mode, as an octal string.
      type: str
    changed:
      description: Whether this file was (or in check mode would be) written.
      type: bool
    backup:
      description: Where the previous content was kept, if any.
      type: str
certificate:
  description: The certificate deployed. Never holds key material.
  returned: always
  type: dict
  contains:
    subject:
      description: Subject, RFC 4514.
      type: str
    sans:
      description: DNS names and IP addresses of the subjectAltName extension.
      type: list
      elements: str
    issuer:
      description: Issuer, RFC 4514.
      type: str
    not_before:
      description: Start of validity, ISO 8601 UTC.
      type: str
    not_after:
      description: End of validity, ISO 8601 UTC.
      type: str
    days_left:
      description: Whole days until O(ignore:not_after).
      type: int
    sha256:
      description: SHA-256 of the leaf, lowercase hex.
      type: str
    key_type:
      description: Type and size of the key.
      type: str
    chain:
      description: Subject and SHA-256 of each chain certificate.
      type: list
      elements: dict
served:
  description:
    - What the endpoints served when the run ended. Empty when O(verify=false).
  returned: always
  type: dict
  contains:
    sha256:
      description: SHA-256 of the leaf served at the first endpoint.
      type: str
    chain_sha256:
      description: SHA-256 of every certificate served, leaf first.
      type: list
      elements: str
    protocol:
      description: TLS version of the handshake.
      type: str
    server_name:
      description: SNI sent.
      type: str
    attempts:
      description: Attempts over all endpoints.
      type: int
    handshakes:
      description: Handshakes over all endpoints.
      type: int
    verified_after_ms:
      description: Milliseconds from the reload to the last confirming handshake.
      type: int
    endpoints:
      description: The last handshake at each endpoint.
      type: list
      elements: dict
  sample:
    sha256: 9f2c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678
    protocol: TLSv1.3
rolled_back:
  description: Whether a failure put the previous files back and they are served again.
  returned: always
  type: bool
rollback_failed:
  description:
    - Whether putting the previous files back failed too. Then RV(backups) and
      RV(manual_steps) say what to do by hand.
  returned: always
  type: bool
backups:
  description: Backup file for each destination.
  returned: when RV(rollback_failed) is true
  type: list
  elements: dict
manual_steps:
  description: Commands that restore the previous files and reload the server.
  returned: when RV(rollback_failed) is true
  type: list
  elements: str
recovered:
  description: A transaction that a killed run left open, and what was done with it.
  returned: when one was found
  type: dict
reason:
  description: Why an unchanged set of files still led to a reload.
  returned: when the server served something other than the files in place
  type: str
timings:
  description: Milliseconds spent per step.
  returned: always
  type: dict
  sample: {material: 4, lock: 0, compare: 1, swap: 3, validate: 21, reload: 12, verify: 190}
"""

from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    FileRole,
    Server,
    main as deploy_main,
)

NGINX = Server(
    name="nginx",
    files=(
        FileRole("cert_path", "fullchain", "cert_mode", 0o644),
        FileRole("chain_path", "chain", "cert_mode", 0o644, required=False),
        FileRole("key_path", "key", "key_mode", 0o600, secret=True),
    ),
    validate_command=("nginx", "-t"),
    reload_command=("nginx", "-s", "reload"),
    port=443,
    settle=0.15,
    confirm=3,
    extra_options={
        "cert_layout": dict(type="str", choices=["fullchain", "cert"],
                            default="fullchain"),
    },
)


def main() -> None:
    deploy_main(NGINX)


if __name__ == "__main__":
    main()
