#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: envoy_certificate
short_description: Deploy a TLS certificate to Envoy's file-based SDS, proven served
version_added: 0.1.0
description:
  - Checks the certificate, its chain and its key, stages the pair in a new
    versioned directory inside the SDS secret's C(watched_directory), and
    flips one symbolic link there to it by a rename. Envoy reloads a secret
    when something is moved into the directory it watches, and reads the
    certificate and key together.
  - Before anything is moved, checks the SDS resource against Envoy's
    published API definitions when the C(xds-protos) Python package is
    installed, and the staged pair with C(envoy --mode validate) when an
    C(envoy) binary is. RV(checks) says which ran.
  - Probes the endpoint until the new certificate is served; anything that
    fails flips the link back and proves the previous certificate is served
    again.
  - After a verified deploy, versioned directories of this link that no link
    points at any more are copied into the backup set and removed.
  - Files are never rewritten in place, and the link is never replaced above
    the watched directory. Envoy would notice neither.
options:
  cert_path:
    description:
      - The certificate chain file as the SDS resource names it, through the
        link, for example C(/etc/envoy/certs/current/cert.pem). Its directory
        (C(current)) is the link the module flips; that link must sit directly
        inside O(watched_directory).
      - Receives the leaf followed by its chain.
    type: path
    required: true
  key_path:
    description:
      - The private key file as the SDS resource names it, in the same link
        directory as O(cert_path).
    type: path
    required: true
  watched_directory:
    description:
      - The secret's C(watched_directory) path. Default, and the only value
        accepted, is the directory that holds the link. A link one level higher
        or lower would never be noticed.
    type: path
  sds_path:
    description:
      - Also write the SDS resource file (C(.yaml), C(.yml) or C(.json)),
        naming O(secret_name), O(cert_path), O(key_path) and
        O(watched_directory). It is moved into place after the link flip, and
        only when its content changes.
      - Without it, the operator keeps the SDS resource; it must name the same
        paths.
    type: path
  secret_name:
    description:
      - Name of the secret in the SDS resource, the name the listener's
        C(tls_certificate_sds_secret_configs) asks for. Required with
        O(sds_path).
    type: str
  sds_mode:
    description:
      - Mode of O(sds_path), as an octal string. Default is the existing
        file's mode, else V('0644').
    type: raw
  stage_dir:
    description:
      - Directory, on the same filesystem, where the new link is created
        before it is renamed into O(watched_directory). Default is the
        watched directory itself. Creating a link there is no move, so Envoy
        ignores it either way.
    type: path
  envoy_binary:
    description:
      - The Envoy binary used for C(envoy --mode validate) on the staged pair,
        a name looked up on PATH or an absolute path. When it is not found,
        that check is skipped and RV(checks) says so.
    type: str
    default: envoy
  validate_command:
    description:
      - No config test runs by default besides the Envoy check above.
      - A command given here runs once the new files are staged and before the
        link is flipped, because Envoy reads the files as soon as the link
        moves. When it fails, nothing is moved.
  reload_command:
    description:
      - Envoy picks up the link flip by itself, so by default none runs. A
        command given here runs after the flip, and again after a rollback.
  verify_endpoint:
    description:
      - Defaults to C(127.0.0.1:443).
  verify_attempts:
    description:
      - How many times to probe before giving up.
    type: int
    default: 10
  verify_backoff:
    description:
      - Seconds to wait after the first failed attempt; each later wait
        doubles, up to O(verify_max_backoff).
    type: float
    default: 0.1
  verify_max_backoff:
    description:
      - Longest wait between attempts. With the other defaults Envoy gets
        about 6.5 seconds after the flip.
    type: float
    default: 1.0
  verify_settle:
    description:
      - Defaults to V(0.05) seconds after the flip. Envoy's watcher reacts to
        the move at once and swaps the TLS context for new connections.
  verify_confirm:
    description:
      - Defaults to V(2) handshakes, 20 ms apart.
notes:
  - New files get owner and group C(envoy) where that user and group exist,
    else C(root), and modes V(0644) (certificate), V(0600) (key) and V(0755)
    (versioned directory), unless O(owner), O(group), O(cert_mode) or
    O(key_mode) say otherwise. Envoy must be able to read them.
  - What the test suite proved, and against what. Envoy cannot be installed
    on the machines the collection is developed on. The integration tests run
    against a real C(envoy) binary when one is on PATH. Otherwise they run
    against a small TLS server of the test suite that follows Envoy's
    documented watch rules (reload on a move in the watched directory, read
    the certificate and key together and keep the old pair when they do not
    match, ignore files edited in place). The results there prove the
    module's side of the contract, not Envoy's. The SDS resource and the
    validate-mode bootstrap are checked against Envoy's API definitions from
    C(xds-protos) 1.85. C(envoy --mode validate) itself has not been run by
    the suite here.
  - C(xds-protos) pulls in C(protobuf) and C(grpcio) (about 40 MB installed);
    the module only uses it when it is already on the managed host.
extends_documentation_fragment:
  - certfleet.deploy.deploy
  - certfleet.deploy.deploy.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
author:
  - certfleet.deploy maintainers (!UNKNOWN)
seealso:
  - module: certfleet.deploy.tls_probe
  - module: certfleet.deploy.traefik_certificate
"""

EXAMPLES = r"""
- name: Deploy the edge certificate to Envoy, writing the SDS resource too
  certfleet.deploy.envoy_certificate:
    cert_src: /etc/pki/incoming/example.com/cert.pem
    chain_src: /etc/pki/incoming/example.com/chain.pem
    key_src: /etc/pki/incoming/example.com/privkey.pem
    cert_path: /etc/envoy/certs/current/cert.pem
    key_path: /etc/envoy/certs/current/key.pem
    sds_path: /etc/envoy/sds/edge-cert.yaml
    secret_name: edge_cert
    verify_endpoint: 127.0.0.1:8443

- name: Deploy from the vault; the SDS resource is managed elsewhere
  certfleet.deploy.envoy_certificate:
    cert_content: "{{ vault_example_cert }}"
    chain_content: "{{ vault_example_chain }}"
    key_content: "{{ vault_example_key }}"
    cert_path: /etc/envoy/certs/current/cert.pem
    key_path: /etc/envoy/certs/current/key.pem
    envoy_binary: /usr/local/bin/envoy
  register: deployed

- name: Show which checks ran before the flip
  ansible.builtin.debug:
    var: deployed.checks
"""

RETURN = r"""
deployment_id:
  description: Identifier of this run's transaction and of its backup set.
  returned: always
  type: str
  sample: 20261204T161000Z-3fa1c2
files:
  description:
    - The versioned directory, the certificate and key files in it, the link
      and, when given, O(sds_path), after the run.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
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
      description: Whole days until the end of validity.
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
      description: Milliseconds from the link flip to the last confirming handshake.
      type: int
    endpoints:
      description: The last handshake at each endpoint.
      type: list
      elements: dict
retired:
  description:
    - Versioned directories of this link that no link pointed at any more;
      each was copied into this deployment's backup set, then removed.
  returned: when any were retired
  type: list
  elements: str
nudged:
  description:
    - The link flipped again, to the same directory, because nothing else was
      renamed in this run but Envoy did not serve the files in place.
  returned: when that happened
  type: str
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
  description: Commands that restore the previous files.
  returned: when RV(rollback_failed) is true
  type: list
  elements: str
recovered:
  description: A transaction that a killed run left open, and what was done with it.
  returned: when one was found
  type: dict
reason:
  description: Why an unchanged set of files still led to a new rename.
  returned: when Envoy served something other than the files in place
  type: str
checks:
  description:
    - Checks run before anything was moved, besides the material checks, and
      their outcome, C(passed) with what checked or C(skipped) with the
      reason.
  returned: always
  type: dict
  contains:
    sds_resource:
      description: The SDS resource parsed with Envoy's API definitions.
      type: str
    envoy_validate:
      description: C(envoy --mode validate) on the staged pair.
      type: str
  sample:
    sds_resource: passed (xds-protos)
    envoy_validate: "skipped: no envoy binary on this host"
timings:
  description: Milliseconds spent per step.
  returned: always
  type: dict
  sample: {material: 4, lock: 0, compare: 1, swap: 3, verify: 60}
"""

from ansible_collections.certfleet.deploy.plugins.module_utils.envoy import (
    EnvoyDeploy,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    Server,
    main as deploy_main,
)

ENVOY = Server(
    name="envoy",
    files=(),
    port=443,
    users=("envoy", "root"),
    groups=("envoy", "root"),
    settle=0.05,
    confirm=2,
    extra_options={
        "cert_path": dict(type="path", required=True),
        "key_path": dict(type="path", required=True),
        "watched_directory": dict(type="path"),
        "sds_path": dict(type="path"),
        "secret_name": dict(type="str"),
        "sds_mode": dict(type="raw"),
        "stage_dir": dict(type="path"),
        "envoy_binary": dict(type="str", default="envoy"),
        "verify_attempts": dict(type="int", default=10),
        "verify_backoff": dict(type="float", default=0.1),
        "verify_max_backoff": dict(type="float", default=1.0),
    },
)


def main() -> None:
    deploy_main(ENVOY, EnvoyDeploy)


if __name__ == "__main__":
    main()
