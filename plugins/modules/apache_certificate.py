#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: apache_certificate
short_description: Deploy a TLS certificate to Apache httpd and prove it is served
version_added: 0.1.0
description:
  - Checks the certificate, its chain and its key, writes the files Apache
    reads as one transaction, tests the configuration with them, restarts
    Apache gracefully, and probes the endpoint until every new connection
    gets the new certificate.
  - A graceful restart that exits 0 can still stop Apache when the new files
    do not load (for example a key that does not match the certificate Apache
    pairs it with). The probe then finds no server; the previous files are put
    back, Apache is started again by the graceful restart, and the previous
    certificate is proven served.
  - A run whose files are already in place still checks what Apache serves
    and restarts it gracefully when it serves something else.
options:
  cert_path:
    description:
      - The file named by C(SSLCertificateFile). It receives the leaf followed
        by its chain (Apache 2.4.8 and later send all of it), or the leaf
        alone when O(chain_path) is given or O(cert_layout=cert).
    type: path
    required: true
  key_path:
    description:
      - The file named by C(SSLCertificateKeyFile).
    type: path
    required: true
  chain_path:
    description:
      - The file named by C(SSLCertificateChainFile), for setups that still use
        it. It receives the chain alone, and O(cert_path) then receives the
        leaf alone, because Apache sends both files and no certificate may
        be sent twice.
    type: path
  cert_layout:
    description:
      - What O(cert_path) holds. V(fullchain) is the leaf and its chain;
        V(cert) is the leaf alone, so Apache sends no intermediates unless
        O(chain_path) names them.
      - Defaults to V(cert) with O(chain_path), else V(fullchain).
        V(fullchain) together with O(chain_path) is refused.
    type: str
    choices: [fullchain, cert]
  validate_command:
    description:
      - Defaults to C(apachectl configtest), or C(apache2ctl configtest) where
        only Debian's name exists; the first found on C(PATH) is run.
  reload_command:
    description:
      - Defaults to C(apachectl graceful) (or C(apache2ctl graceful)).
      - It must start Apache when Apache is not running, as C(apachectl
        graceful) does, so that a rollback brings back a server that the new
        files stopped. Under systemd, C(systemctl reload-or-restart apache2)
        does; C(systemctl reload apache2) does not.
  verify_endpoint:
    description:
      - Defaults to C(127.0.0.1:443).
  verify_settle:
    description:
      - Defaults to V(0.2) seconds. Children of the previous generation finish
        their connections after a graceful restart; until they have stopped
        accepting, a new connection may still get the old certificate.
  verify_confirm:
    description:
      - Defaults to V(3) handshakes, 20 ms apart.
notes:
  - Files get owner and group C(root) and modes V(0644) (certificate, chain)
    and V(0600) (key) unless the files already exist or O(owner), O(group),
    O(cert_mode) or O(key_mode) say otherwise. The Apache parent process
    reads them as root before its children switch to the unprivileged user
    (C(www-data) on Debian, C(apache) on RHEL and Alpine), which must not be
    able to read the key.
  - Apache's own config test does not load the key, so a key that does not
    match its certificate passes it. The module checks the pair it deploys;
    the probe after the restart catches what it cannot see, such as a key
    file at another path than the one C(SSLCertificateKeyFile) names.
  - Tested against Apache 2.4 from Debian 12, started on a loopback port with
    a configuration of its own.
extends_documentation_fragment:
  - certfleet.deploy.deploy
  - certfleet.deploy.deploy.attributes
author:
  - certfleet.deploy maintainers (!UNKNOWN)
seealso:
  - module: certfleet.deploy.nginx_certificate
  - module: certfleet.deploy.haproxy_certificate
  - module: certfleet.deploy.tls_probe
"""

EXAMPLES = r"""
- name: Deploy the site certificate with its chain in one file
  certfleet.deploy.apache_certificate:
    cert_src: /etc/pki/incoming/example.com/cert.pem
    chain_src: /etc/pki/incoming/example.com/chain.pem
    key_src: /etc/pki/incoming/example.com/privkey.pem
    cert_path: /etc/apache2/tls/example.com.pem
    key_path: /etc/apache2/tls/example.com.key
    expected_names:
      - example.com
      - www.example.com

- name: Deploy to a setup that still names SSLCertificateChainFile
  certfleet.deploy.apache_certificate:
    cert_content: "{{ vault_example_cert }}"
    chain_content: "{{ vault_example_chain }}"
    key_content: "{{ vault_example_key }}"
    cert_path: /etc/httpd/tls/example.com.crt
    chain_path: /etc/httpd/tls/example.com.chain.crt
    key_path: /etc/httpd/tls/example.com.key
    verify_endpoint: 127.0.0.1:8443

- name: Deploy to an Apache managed by systemd
  certfleet.deploy.apache_certificate:
    cert_src: /srv/certs/site.pem
    key_src: /srv/certs/site.key
    cert_path: /etc/apache2/tls/site.pem
    key_path: /etc/apache2/tls/site.key
    reload_command: [systemctl, reload-or-restart, apache2]
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
  description: Each file Apache reads, after the run.
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
      description: Milliseconds from the restart to the last confirming handshake.
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
  description: Commands that restore the previous files and restart Apache.
  returned: when RV(rollback_failed) is true
  type: list
  elements: str
recovered:
  description: A transaction that a killed run left open, and what was done with it.
  returned: when one was found
  type: dict
reason:
  description: Why an unchanged set of files still led to a graceful restart.
  returned: when Apache served something other than the files in place
  type: str
timings:
  description: Milliseconds spent per step.
  returned: always
  type: dict
  sample: {material: 4, lock: 0, compare: 1, swap: 3, validate: 40, reload: 30, verify: 260}
"""

from ansible_collections.certfleet.deploy.plugins.module_utils.apache import (
    ApacheDeploy,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    FileRole,
    Server,
    main as deploy_main,
)

# Debian names its control script apache2ctl (apachectl is a link to it on
# Debian 12); RHEL and Alpine name it apachectl.
APACHECTL = ("apachectl", "apache2ctl")

APACHE = Server(
    name="apache",
    files=(
        FileRole("cert_path", "fullchain", "cert_mode", 0o644),
        FileRole("chain_path", "chain", "cert_mode", 0o644, required=False),
        FileRole("key_path", "key", "key_mode", 0o600, secret=True),
    ),
    validate_command=(APACHECTL, "configtest"),
    reload_command=(APACHECTL, "graceful"),
    port=443,
    users=("root",),
    groups=("root",),
    settle=0.2,
    confirm=3,
    extra_options={
        "cert_layout": dict(type="str", choices=["fullchain", "cert"]),
    },
)


def main() -> None:
    deploy_main(APACHE, ApacheDeploy)


if __name__ == "__main__":
    main()
