#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postfix_certificate
short_description: Deploy a TLS certificate to Postfix and prove it with STARTTLS
version_added: 0.1.0
description:
  - Checks the certificate, its chain and its key, writes the files Postfix
    reads as one transaction, runs C(postfix check), rebuilds the
    C(postmap -F) tables that copy those files, reloads Postfix, and speaks
    SMTP to the endpoint until every new connection gets the new certificate
    after C(STARTTLS) (or, on an implicit-TLS port such as 465, at once).
  - Anything that fails puts the previous files back, rebuilds the tables
    again, reloads and proves the previous certificate is served.
  - A run whose files are already in place still checks what Postfix serves
    and reloads it when it serves something else. Idle C(smtpd) processes
    keep the certificate they loaded until a reload, so files replaced by
    hand are often not served yet.
options:
  cert_path:
    description:
      - The file named by C(smtpd_tls_cert_file). It receives the leaf
        followed by its chain.
      - Requires O(key_path). Either this pair or O(chain_file_path) (or
        both) must be given.
    type: path
  key_path:
    description:
      - The file named by C(smtpd_tls_key_file).
    type: path
  chain_file_path:
    description:
      - A file named by C(smtpd_tls_chain_files), or by a C(postmap -F) SNI
        table. It receives the private key, then the leaf, then the chain,
        the order Postfix requires in a single file. Written with
        O(key_mode), since it holds the key.
    type: path
  config_dir:
    description:
      - Configuration directory of the Postfix instance, for an instance
        other than the one in C(/etc/postfix). The default commands become
        C(postfix -c DIR check), C(postfix -c DIR reload) and
        C(postmap -c DIR -F TABLE).
      - Does not change O(validate_command) or O(reload_command) when they
        are given.
    type: path
  sni_maps:
    description:
      - Tables built with C(postmap -F), such as the one named by
        C(tls_server_sni_maps), as C(type:/path) (for example
        V(hash:/etc/postfix/sni)) or a bare path (Postfix's default table
        type).
      - Such a table holds copies of the files it names. Each table whose
        source names one of the deployed files is rebuilt before every
        reload (including the one of a rollback); the others are left alone,
        with a warning.
    type: list
    elements: str
    default: []
  validate_command:
    description:
      - Defaults to C(postfix check) (with O(config_dir), C(postfix -c DIR
        check)). It checks the configuration and the queue, not the TLS
        files; the handshakes after the reload are what proves them.
  reload_command:
    description:
      - Defaults to C(postfix reload) (with O(config_dir), C(postfix -c DIR
        reload)).
  verify_endpoint:
    description:
      - Defaults to C(127.0.0.1:25), probed with SMTP and C(STARTTLS).
      - List every listener clients use, for example
        V([127.0.0.1:25, 127.0.0.1:465, 127.0.0.1:587]); port 465 is probed
        with implicit TLS. On other ports say which, as in
        V(smtp://127.0.0.1:2525) or V(tls://127.0.0.1:10465).
  verify_settle:
    description:
      - Defaults to V(0.5) seconds. After C(postfix reload), an idle
        C(smtpd) of the previous generation may still accept a connection
        for a few tens of milliseconds and answer it with the old
        certificate.
  verify_confirm:
    description:
      - Defaults to V(3) handshakes, 20 ms apart.
notes:
  - Files get owner and group C(root) and modes V(0644) (certificate) and
    V(0600) (key, chain file) unless the files already exist or O(owner),
    O(group), O(cert_mode) or O(key_mode) say otherwise. C(smtpd) reads them
    as root before it drops privileges.
  - A refusal after the reload, such as C(454 4.7.0 TLS not available due to
    local problem) when smtpd cannot load its key, or a dropped connection on
    an implicit-TLS port, fails the verification with Postfix's reply and
    rolls back. C(postfix check) and C(postfix reload) both succeed in that
    case.
  - A table built from a source whose mode lets others read it gets the same
    mode, and with O(chain_file_path) it holds the private key; the module
    warns about such a source.
  - C(postfix check) needs somewhere to log (syslog, or C(maillog_file)).
    Without one it exits 1 without a message, and the deploy stops before
    any reload with the files put back.
  - Tested against Postfix 3.7 from Debian 12, started on loopback ports
    with a configuration directory of its own.
extends_documentation_fragment:
  - certfleet.deploy.deploy
  - certfleet.deploy.deploy.attributes
author:
  - certfleet.deploy maintainers (!UNKNOWN)
seealso:
  - module: certfleet.deploy.dovecot_certificate
  - module: certfleet.deploy.tls_probe
"""

EXAMPLES = r"""
- name: Deploy the mail certificate to smtpd_tls_cert_file and smtpd_tls_key_file
  certfleet.deploy.postfix_certificate:
    cert_src: /etc/pki/incoming/mail.example.com/cert.pem
    chain_src: /etc/pki/incoming/mail.example.com/chain.pem
    key_src: /etc/pki/incoming/mail.example.com/privkey.pem
    cert_path: /etc/postfix/tls/mail.example.com.fullchain.pem
    key_path: /etc/postfix/tls/mail.example.com.key
    expected_names:
      - mail.example.com
    verify_endpoint:
      - 127.0.0.1:25
      - 127.0.0.1:465
      - 127.0.0.1:587

- name: Deploy one smtpd_tls_chain_files file (key, leaf, chain)
  certfleet.deploy.postfix_certificate:
    cert_content: "{{ vault_mail_cert }}"
    chain_content: "{{ vault_mail_chain }}"
    key_content: "{{ vault_mail_key }}"
    chain_file_path: /etc/postfix/tls/mail.example.com.pem

- name: Deploy the certificate an SNI table names, and rebuild the table
  certfleet.deploy.postfix_certificate:
    cert_src: /etc/pki/incoming/mx2.example.org/fullchain.pem
    key_src: /etc/pki/incoming/mx2.example.org/privkey.pem
    chain_file_path: /etc/postfix/tls/mx2.example.org.pem
    sni_maps:
      - hash:/etc/postfix/sni
    verify_server_name: mx2.example.org

- name: Deploy to a second Postfix instance with its own configuration
  certfleet.deploy.postfix_certificate:
    cert_src: /srv/certs/relay.pem
    key_src: /srv/certs/relay.key
    cert_path: /etc/postfix-relay/tls/relay.pem
    key_path: /etc/postfix-relay/tls/relay.key
    config_dir: /etc/postfix-relay
    backup_dir: /var/lib/certfleet/postfix-relay
    verify_endpoint: smtp://127.0.0.1:2525
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
sni_maps_rebuilt:
  description: The O(sni_maps) tables rebuilt with C(postmap -F), in order.
  returned: when a table was rebuilt
  type: list
  elements: str
  sample: [hash:/etc/postfix/sni]
reason:
  description: Why an unchanged set of files still led to a reload.
  returned: when the server served something other than the files in place
  type: str
timings:
  description: Milliseconds spent per step.
  returned: always
  type: dict
  sample: {material: 4, lock: 0, compare: 1, swap: 3, validate: 180, postmap: 9, reload: 40, verify: 560}
"""

from ansible_collections.certfleet.deploy.plugins.module_utils.postfix import (
    PostfixDeploy,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    FileRole,
    Server,
    main as deploy_main,
)

POSTFIX = Server(
    name="postfix",
    files=(
        FileRole("cert_path", "fullchain", "cert_mode", 0o644, required=False),
        FileRole("key_path", "key", "key_mode", 0o600, secret=True,
                 required=False),
        FileRole("chain_file_path", "key_first", "key_mode", 0o600, secret=True,
                 required=False),
    ),
    validate_command=("postfix", "check"),
    reload_command=("postfix", "reload"),
    port=25,
    settle=0.5,
    confirm=3,
    extra_options={
        "config_dir": dict(type="path"),
        "sni_maps": dict(type="list", elements="str", default=[]),
    },
    required_one_of=(("cert_path", "chain_file_path"),),
    required_together=(("cert_path", "key_path"),),
)


def main() -> None:
    deploy_main(POSTFIX, PostfixDeploy)


if __name__ == "__main__":
    main()
