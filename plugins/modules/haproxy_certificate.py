#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_certificate
short_description: Deploy a TLS certificate to HAProxy and prove it is served
version_added: 0.1.0
description:
  - Checks the certificate, its chain and its key, writes the file HAProxy
    reads (leaf, chain and key in one PEM, or the certificates with the key in
    a C(.key) sibling) as one transaction, and tests the configuration with
    it before anything is applied.
  - Applies it through HAProxy's runtime API when O(runtime_socket) is given
    (C(set ssl cert), C(commit ssl cert), confirmed with C(show ssl cert); no
    process restarts), and otherwise, or when the runtime API refuses, with a
    reload through the master CLI (O(master_socket)) or O(reload_command).
  - Probes the endpoint with each DNS name of the certificate as SNI (and
    without SNI when asked) until every new connection gets the new
    certificate. Anything that fails puts the previous file back, applies it
    the same way and proves the previous certificate is served.
options:
  cert_path:
    description:
      - The file named by C(crt) on the C(bind) line, or a file in the
        directory named there. It receives the leaf, its chain and the key,
        in that order, or the leaf and chain alone when O(key_path) is given.
      - HAProxy loads every file of a C(crt) directory except hidden ones and
        C(.key), C(.ocsp), C(.issuer) and C(.sctl) files. The module stages
        new files as hidden files beside their destination only for the
        moment of the swap, and keeps backups in O(backup_dir), which may not
        be inside the directory.
    type: path
    required: true
  key_path:
    description:
      - The key in a file of its own, where HAProxy looks for it, that is
        the certificate's path with C(.key) appended, or with its extension
        replaced by C(.key) under C(ssl-load-extra-del-ext). Any other path
        is refused.
      - Without it, the key goes into O(cert_path).
    type: path
  runtime_socket:
    description:
      - Path of HAProxy's stats socket at C(level admin) (C(stats socket ...
        level admin)). When given, the new file is applied through the runtime
        API, without a reload. Every answer is read and checked; a refusal
        aborts the transaction and falls back to a reload.
    type: path
  runtime_cert_name:
    description:
      - The name HAProxy knows the certificate by, when it differs from
        O(cert_path) (a path relative to C(crt-base), say). Defaults to
        O(cert_path).
    type: str
  master_socket:
    description:
      - Path of the master CLI socket (the C(-S) option of a master-worker
        HAProxy). When given and O(reload_command) is not, reloads are sent
        there as C(reload).
      - Either way, every reload is then checked with C(show proc). It is
        over when the master has counted it, and one the master counts as
        failed (the previous workers keep serving) fails the deploy at once.
      - Recommended with a signal-based O(reload_command) such as
        C(systemctl reload haproxy), because HAProxy 2.6 can lose a reload
        signal that arrives while it is still reloading, as a rollback's may.
    type: path
  verify_without_sni:
    description:
      - Also probe without SNI, as clients that send no server name do. Set it
        when this certificate is the default one of its C(bind) line (its
        first C(crt)); otherwise such clients get another certificate and
        the probe would fail.
    type: bool
    default: false
  verify_server_name:
    description:
      - Probe with this name alone. By default every DNS name of the
        certificate is probed as SNI (wildcard names are skipped).
  validate_command:
    description:
      - Defaults to C(haproxy -c -f /etc/haproxy/haproxy.cfg).
  reload_command:
    description:
      - Defaults to C(systemctl reload haproxy), unless O(master_socket) is
        given.
  verify_endpoint:
    description:
      - Defaults to C(127.0.0.1:443).
  verify_settle:
    description:
      - Defaults to V(0.2) seconds after a reload, while the previous workers
        may still accept connections. Nothing is waited for after a runtime
        API update.
  verify_confirm:
    description:
      - Defaults to V(3) handshakes per name, 20 ms apart.
notes:
  - Files get owner and group C(root) and mode V(0600) when they hold the key
    (V(0644) for the certificates alone) unless the files already exist or
    O(owner), O(group), O(cert_mode) or O(key_mode) say otherwise. HAProxy
    reads them as root before it drops privileges, and its master reads them
    again as root on each reload. Every file is created at mode 0600 and given
    its final mode before it is renamed into place, so the key is never
    readable by others, not even for a moment.
  - A runtime API update lives in HAProxy's memory only; the file on disk is
    replaced first, so a later reload or restart loads the same certificate.
  - Tested against HAProxy 2.6 from Debian 12 in master-worker mode, started
    on a loopback port with a configuration of its own.
extends_documentation_fragment:
  - certfleet.deploy.deploy
  - certfleet.deploy.deploy.attributes
author:
  - certfleet.deploy maintainers (!UNKNOWN)
seealso:
  - module: certfleet.deploy.nginx_certificate
  - module: certfleet.deploy.apache_certificate
  - module: certfleet.deploy.tls_probe
"""

EXAMPLES = r"""
- name: Deploy a combined PEM and apply it through the runtime API
  certfleet.deploy.haproxy_certificate:
    cert_src: /etc/pki/incoming/example.com/cert.pem
    chain_src: /etc/pki/incoming/example.com/chain.pem
    key_src: /etc/pki/incoming/example.com/privkey.pem
    cert_path: /etc/haproxy/certs/example.com.pem
    runtime_socket: /run/haproxy/admin.sock
    expected_names:
      - example.com
      - www.example.com

- name: Deploy the certificate with its key beside it, reload through the master CLI
  certfleet.deploy.haproxy_certificate:
    cert_content: "{{ vault_example_cert }}"
    chain_content: "{{ vault_example_chain }}"
    key_content: "{{ vault_example_key }}"
    cert_path: /etc/haproxy/certs/example.com.pem
    key_path: /etc/haproxy/certs/example.com.pem.key
    master_socket: /run/haproxy-master.sock
    verify_without_sni: true

- name: Deploy to an HAProxy with a configuration of its own
  certfleet.deploy.haproxy_certificate:
    cert_src: /srv/certs/site.pem
    key_src: /srv/certs/site.key
    cert_path: /srv/haproxy/certs/site.pem
    validate_command: [haproxy, -c, -f, /srv/haproxy/haproxy.cfg]
    reload_command: [systemctl, reload, haproxy-edge]
    backup_dir: /srv/haproxy-state/certfleet
  register: deployed

- name: Show how the certificate was applied
  ansible.builtin.debug:
    msg: "{{ deployed.served.sha256 }} applied by {{ deployed.applied_by }}"
"""

RETURN = r"""
deployment_id:
  description: Identifier of this run's transaction and of its backup set.
  returned: always
  type: str
  sample: 20261204T161000Z-3fa1c2
files:
  description: Each file HAProxy reads, after the run.
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
      description: SNI of the first probe.
      type: str
    attempts:
      description: Attempts over all endpoints and names.
      type: int
    handshakes:
      description: Handshakes over all endpoints and names.
      type: int
    verified_after_ms:
      description: Milliseconds from applying to the last confirming handshake.
      type: int
    endpoints:
      description: The last handshake for each endpoint and name.
      type: list
      elements: dict
  sample:
    sha256: 9f2c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678
    protocol: TLSv1.3
applied_by:
  description: How HAProxy last took the files, V(runtime_api) or V(reload).
  returned: when HAProxy was told to take new files
  type: str
  sample: runtime_api
applied:
  description:
    - Each attempt to make HAProxy take the files, in order, a rollback's
      included.
  returned: when HAProxy was told to take new files
  type: list
  elements: dict
  contains:
    method:
      description: V(runtime_api) or V(reload).
      type: str
    ok:
      description: Whether it succeeded.
      type: bool
    error:
      description: What HAProxy or the command answered, when it failed.
      type: str
    abort:
      description: HAProxy's answer to C(abort ssl cert) after a failed step.
      type: str
  sample:
    - {method: runtime_api, ok: true}
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
  description: Commands that restore the previous files and reload HAProxy.
  returned: when RV(rollback_failed) is true
  type: list
  elements: str
recovered:
  description: A transaction that a killed run left open, and what was done with it.
  returned: when one was found
  type: dict
reason:
  description: Why an unchanged set of files was still applied again.
  returned: when HAProxy served something other than the files in place
  type: str
timings:
  description: Milliseconds spent per step.
  returned: always
  type: dict
  sample: {material: 4, lock: 0, compare: 1, swap: 3, validate: 25, runtime_api: 6, verify: 40}
"""

from ansible_collections.certfleet.deploy.plugins.module_utils.haproxy import (
    HaproxyDeploy,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    FileRole,
    Server,
    main as deploy_main,
)

HAPROXY = Server(
    name="haproxy",
    files=(
        FileRole("cert_path", "combined", "key_mode", 0o600, secret=True),
        FileRole("key_path", "key", "key_mode", 0o600, secret=True,
                 required=False),
    ),
    validate_command=("haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"),
    reload_command=("systemctl", "reload", "haproxy"),
    port=443,
    users=("root",),
    groups=("root",),
    settle=0.2,
    confirm=3,
    loads_directories=True,
    extra_options={
        "runtime_socket": dict(type="path"),
        "runtime_cert_name": dict(type="str"),
        "master_socket": dict(type="path"),
        "verify_without_sni": dict(type="bool", default=False),
    },
)


def main() -> None:
    deploy_main(HAPROXY, HaproxyDeploy)


if __name__ == "__main__":
    main()
