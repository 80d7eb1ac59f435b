#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dovecot_certificate
short_description: Deploy a TLS certificate to Dovecot and prove it is served
version_added: 0.1.0
description:
  - Checks the certificate, its chain and its key, and that Dovecot's
    configuration really reads the destination files with the syntax of the
    installed version; writes the files as one transaction, runs
    C(doveconf -n), reloads with C(doveadm reload), and probes IMAP (implicit
    TLS on 993, or C(STARTTLS) on 143) until every new connection gets the
    new certificate.
  - Anything that fails puts the previous files back, reloads again and
    proves the previous certificate is served.
  - A run whose files are already in place still checks what Dovecot serves
    and reloads it when it serves something else. Dovecot reads the files
    when it starts or reloads, so files replaced by hand are not served yet.
options:
  cert_path:
    description:
      - The file Dovecot reads the certificate from (C(ssl_cert = </path) in
        Dovecot 2.3, C(ssl_server_cert_file = /path) in 2.4). It receives
        the leaf followed by its chain.
      - Must be an absolute path.
    type: path
    required: true
  key_path:
    description:
      - The file Dovecot reads the private key from (C(ssl_key = </path) in
        2.3, C(ssl_server_key_file = /path) in 2.4).
      - Must be an absolute path.
    type: path
    required: true
  config_file:
    description:
      - Configuration file of the Dovecot instance, for an instance other
        than the one of C(/etc/dovecot/dovecot.conf). The default commands
        become C(doveconf -c FILE -n) and C(doveadm -c FILE reload), and the
        settings are read from it.
      - Does not change O(validate_command) or O(reload_command) when they
        are given.
    type: path
  check_settings:
    description:
      - Before anything is touched, ask C(dovecot --version) for the
        installed version and read the configuration with C(doveconf -n),
        and refuse to deploy unless a setting of that version reads
        O(cert_path) and one reads O(key_path) (C(ssl_cert = </path) and
        C(ssl_key = </path) up to 2.3, C(ssl_server_cert_file = /path) and
        C(ssl_server_key_file = /path) from 2.4; symbolic links to the same
        file count).
      - Settings that name an empty or relative path, a 2.3 path without
        C(<) or a 2.4 path with it are refused too, in any block. Dovecot
        starts with them and every handshake fails.
    type: bool
    default: true
  validate_command:
    description:
      - Defaults to C(doveconf -n) (with O(config_file), C(doveconf -c FILE
        -n)).
  reload_command:
    description:
      - Defaults to C(doveadm reload) (with O(config_file), C(doveadm -c FILE
        reload)).
  verify_endpoint:
    description:
      - Defaults to C(127.0.0.1:993), probed with implicit TLS.
      - Port 143 is probed with IMAP and C(STARTTLS), 110 with POP3 and
        C(STLS). On other ports say which, as in V(imap://127.0.0.1:10143)
        or V(tls://127.0.0.1:10993).
  verify_settle:
    description:
      - Defaults to V(0.5) seconds after C(doveadm reload), which returns
        before the new configuration is in force.
  verify_confirm:
    description:
      - Defaults to V(3) handshakes, 20 ms apart.
notes:
  - Files get owner and group C(root) and modes V(0644) (certificate) and
    V(0600) (key) unless the files already exist or O(owner), O(group),
    O(cert_mode) or O(key_mode) say otherwise. Dovecot reads them as root.
  - C(doveconf -n) passes with a key that does not match the certificate and
    with a 2.3 path missing its C(<); the module checks the pair and the
    settings before, and the handshakes after the reload.
  - Settings are read with C(doveconf -n -P), whose output holds secrets of
    the configuration; the module keeps none of it but the certificate and
    key paths.
  - Tested against Dovecot 2.3 from Debian 12, started on loopback ports with
    a configuration of its own. The 2.4 syntax is checked from
    C(doveconf -n) output of the same shape.
extends_documentation_fragment:
  - certfleet.deploy.deploy
  - certfleet.deploy.deploy.attributes
author:
  - certfleet.deploy maintainers (!UNKNOWN)
seealso:
  - module: certfleet.deploy.postfix_certificate
  - module: certfleet.deploy.tls_probe
"""

EXAMPLES = r"""
- name: Deploy the IMAP certificate and prove it on 993 and with STARTTLS on 143
  certfleet.deploy.dovecot_certificate:
    cert_src: /etc/pki/incoming/mail.example.com/cert.pem
    chain_src: /etc/pki/incoming/mail.example.com/chain.pem
    key_src: /etc/pki/incoming/mail.example.com/privkey.pem
    cert_path: /etc/dovecot/private/mail.example.com.pem
    key_path: /etc/dovecot/private/mail.example.com.key
    expected_names:
      - mail.example.com
    verify_endpoint:
      - 127.0.0.1:993
      - 127.0.0.1:143

- name: Deploy to a Dovecot instance with its own configuration file
  certfleet.deploy.dovecot_certificate:
    cert_content: "{{ vault_mail_fullchain }}"
    key_content: "{{ vault_mail_key }}"
    cert_path: /srv/dovecot/tls/mail.pem
    key_path: /srv/dovecot/tls/mail.key
    config_file: /srv/dovecot/dovecot.conf
    backup_dir: /var/lib/certfleet/dovecot-srv
    verify_endpoint:
      - tls://127.0.0.1:10993
      - imap://127.0.0.1:10143
  register: deployed

- name: Show the settings Dovecot reads the files with
  ansible.builtin.debug:
    msg: "Dovecot {{ deployed.dovecot.version }}: {{ deployed.dovecot.cert_setting }}"
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
dovecot:
  description: The installed Dovecot and the settings that read the files.
  returned: when O(check_settings) is true and the files are valid
  type: dict
  contains:
    version:
      description: Output of C(dovecot --version), without the build id.
      type: str
      sample: 2.3.19.1
    cert_setting:
      description: The setting that reads O(cert_path).
      type: str
      sample: ssl_cert = </etc/dovecot/private/mail.example.com.pem
    key_setting:
      description: The setting that reads O(key_path).
      type: str
      sample: ssl_key = </etc/dovecot/private/mail.example.com.key
reason:
  description: Why an unchanged set of files still led to a reload.
  returned: when the server served something other than the files in place
  type: str
timings:
  description: Milliseconds spent per step.
  returned: always
  type: dict
  sample: {material: 4, settings: 60, lock: 0, compare: 1, swap: 3, validate: 30, reload: 10, verify: 540}
"""

from ansible_collections.certfleet.deploy.plugins.module_utils.dovecot import (
    DovecotDeploy,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    FileRole,
    Server,
    main as deploy_main,
)

DOVECOT = Server(
    name="dovecot",
    files=(
        FileRole("cert_path", "fullchain", "cert_mode", 0o644),
        FileRole("key_path", "key", "key_mode", 0o600, secret=True),
    ),
    validate_command=("doveconf", "-n"),
    reload_command=("doveadm", "reload"),
    port=993,
    settle=0.5,
    confirm=3,
    extra_options={
        "config_file": dict(type="path"),
        "check_settings": dict(type="bool", default=True),
    },
)


def main() -> None:
    deploy_main(DOVECOT, DovecotDeploy)


if __name__ == "__main__":
    main()
