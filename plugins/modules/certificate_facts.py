#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: certificate_facts
short_description: Report a host's TLS servers and every certificate they use
version_added: 0.1.0
description:
  - Returns, as the fact C(certfleet), what a heartbeat of the host says, that
    is its hostname and FQDN, operating system and version, architecture,
    primary IP address, the version of this collection, the TLS servers
    installed with their versions, and every certificate those servers are
    configured to use.
  - Certificates are found by reading each server's own configuration, with
    C(nginx -T) for nginx, the configuration tree for Apache httpd, C(bind)
    lines for HAProxy, C(postconf) for Postfix, C(doveconf -n) for Dovecot,
    dynamic configuration files for Traefik, and the static configuration
    with its SDS files for Envoy.
  - For each certificate file it reports the path, the leaf's subject,
    subjectAltNames, issuer, expiry, days left and SHA-256, and which server
    and which site (server name, virtual host, frontend, service) use it.
  - A certificate file that cannot be read or parsed, and a configuration that
    cannot be read, is reported where it occurs; it does not fail the module.
  - Changes nothing on the host.
options:
  servers:
    description:
      - Which servers to look for. Each is reported, with
        RV(ansible_facts.certfleet.servers[].installed) telling whether its
        binary was found.
    type: list
    elements: str
    choices: [nginx, apache, haproxy, postfix, dovecot, traefik, envoy]
    default: [nginx, apache, haproxy, postfix, dovecot, traefik, envoy]
  nginx_command:
    description:
      - The command that prints nginx's whole configuration, as a list of
        arguments. It must include C(-T).
      - Defaults to C(nginx -T) when nginx is installed. Give the same
        C(-p), C(-c) and C(-e) flags that the instance runs with, for an nginx
        with its own prefix or configuration file.
    type: list
    elements: str
  apache_config:
    description:
      - The main Apache httpd configuration file.
      - Defaults to the first of C(/etc/apache2/apache2.conf) and
        C(/etc/httpd/conf/httpd.conf) that exists, when Apache is installed.
    type: path
  apache_server_root:
    description:
      - Directory against which relative paths in the Apache configuration
        are resolved. Defaults to the C(ServerRoot) directive, else the
        directory of O(apache_config).
    type: path
  haproxy_config:
    description:
      - HAProxy configuration files, or directories whose C(*.cfg) files are
        read in order.
      - Defaults to C(/etc/haproxy/haproxy.cfg) when it exists and HAProxy is
        installed.
    type: list
    elements: path
  postfix_config_dir:
    description:
      - Postfix configuration directory, given to C(postconf -c).
      - Defaults to C(/etc/postfix) when Postfix is installed and
        C(/etc/postfix/main.cf) exists.
    type: path
  dovecot_config:
    description:
      - Dovecot configuration file, given to C(doveconf -c).
      - Defaults to C(/etc/dovecot/dovecot.conf) when Dovecot is installed
        and that file exists.
    type: path
  traefik_config:
    description:
      - Traefik configuration files or directories (searched recursively for
        YAML, TOML and JSON files). A static configuration leads on to the
        files its file provider names.
      - Defaults to C(/etc/traefik) when it exists and Traefik is installed.
    type: list
    elements: path
  envoy_config:
    description:
      - Envoy configuration files (YAML or JSON). SDS files they point to are
        read too.
      - Defaults to C(/etc/envoy/envoy.yaml) when it exists and Envoy is
        installed.
    type: list
    elements: path
  command_timeout:
    description:
      - Seconds each command (version queries, C(nginx -T), C(postconf),
        C(doveconf)) may take before it is stopped.
    type: int
    default: 30
  fqdn_source:
    description:
      - Where the FQDN comes from. V(hosts) reads the hosts file and asks no
        one; V(resolver) asks the system resolver, which may query DNS.
    type: str
    choices: [hosts, resolver]
    default: hosts
  os_release_path:
    description:
      - The os-release file to read. Defaults to C(/etc/os-release), else
        C(/usr/lib/os-release).
    type: path
  route_table_path:
    description:
      - The IPv4 routing table in the kernel's C(/proc/net/route) format.
      - Only for tests and for reading another network namespace's table; the
        interfaces and their addresses are always this host's.
    type: path
    default: /proc/net/route
  ipv6_route_table_path:
    description:
      - The IPv6 routing table in the kernel's C(/proc/net/ipv6_route)
        format. See O(route_table_path).
    type: path
    default: /proc/net/ipv6_route
attributes:
  action:
    support: full
    details:
      - The action plugin adds the collection version known to the
        controller.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Reads only, so it runs the same in check mode.
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    support: full
    platforms: posix
    details:
      - Linux. The primary address is read from C(/proc/net).
notes:
  - The primary IP address is read from the routing tables and the
    interfaces' addresses; no packet is sent and no outside address is
    connected to. It is the address of the interface of the default route
    with the lowest metric (IPv4 before IPv6). A host without a default route
    reports the address of the first interface (by index) that is up and not
    loopback, else its loopback address.
    RV(ansible_facts.certfleet.network.source) says which rule applied.
  - Only the primary IPv4 address of an interface is seen (the one C(ioctl)
    reports); secondary addresses are not considered.
  - The collection version is read on the controller from the installed
    collection's C(MANIFEST.json) (or C(galaxy.yml) in a source tree), found
    from the action plugin's own location. Run without the action plugin,
    the module looks beside its own file and reports V(null) when the
    collection is not there.
  - Certificate files that also hold the private key (an HAProxy combined PEM,
    a Postfix chain file) are read, but only their certificate blocks are
    parsed; no key material is parsed, kept or returned. A file named in a
    Postfix C(*_chain_files) list that holds only a key is skipped.
  - Conditional sections of an Apache configuration (C(<IfModule>),
    C(<IfDefine>)) are treated as active. nginx paths that hold variables are
    reported as problems, not resolved.
  - The same file used by several servers or sites is reported once, with
    every use in C(used_by).
requirements:
  - cryptography on the managed host, to parse certificates
  - PyYAML on the managed host, to read Envoy and Traefik YAML files (Traefik
    falls back to picking C(certFile) values out of the text)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
  - ansible.builtin.action_common_attributes.flow
author:
  - certfleet.deploy maintainers (!UNKNOWN)
seealso:
  - module: certfleet.deploy.tls_probe
  - module: certfleet.deploy.nginx_certificate
"""

EXAMPLES = r"""
- name: Gather certificate facts with the defaults of each server
  certfleet.deploy.certificate_facts:

- name: Show the certificate that expires first
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.certfleet.soonest_expiry.path }} expires in
      {{ ansible_facts.certfleet.soonest_expiry.days_left }} days

- name: Look at an nginx with its own prefix, and at Postfix only besides
  certfleet.deploy.certificate_facts:
    servers: [nginx, postfix]
    nginx_command: [nginx, -p, /srv/nginx, -c, conf/nginx.conf, -T]
    postfix_config_dir: /etc/postfix-outbound

- name: Fail when a certificate has fewer than 14 days left
  ansible.builtin.assert:
    that: item.days_left is none or item.days_left >= 14
    fail_msg: "{{ item.path }} ({{ item.subject }}) has {{ item.days_left }} days left"
    quiet: true
  loop: "{{ ansible_facts.certfleet.certificates }}"
  loop_control:
    label: "{{ item.path }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to the host's facts.
  returned: always
  type: dict
  contains:
    certfleet:
      description: What the host runs, as one fact.
      type: dict
      contains:
        hostname:
          description: The host name as the kernel knows it.
          type: str
          sample: web1
        fqdn:
          description:
            - Fully qualified name (see O(fqdn_source)); the host name when none
              is known.
          type: str
          sample: web1.example.com
        os:
          description: Operating system, from os-release.
          type: dict
          contains:
            id:
              description: C(ID), for example V(debian).
              type: str
            name:
              description: C(NAME).
              type: str
            version:
              description: C(VERSION).
              type: str
            version_id:
              description: C(VERSION_ID).
              type: str
            pretty_name:
              description: C(PRETTY_NAME).
              type: str
            source:
              description: The file read.
              type: str
        architecture:
          description: Machine hardware name.
          type: str
          sample: x86_64
        kernel:
          description: Kernel release.
          type: str
        primary_ip:
          description: The primary IP address (see RV(ansible_facts.certfleet.network)).
          type: str
          sample: 192.0.2.10
        network:
          description: How the primary address was chosen.
          type: dict
          contains:
            address:
              description: The primary address.
              type: str
            interface:
              description: Its interface.
              type: str
            family:
              description: V(ipv4) or V(ipv6).
              type: str
            source:
              description: V(default route), V(first interface up) or V(loopback).
              type: str
        collection:
          description: This collection's name and installed version.
          type: dict
          contains:
            name:
              description: V(certfleet.deploy).
              type: str
            version:
              description: The version, or V(null) when the metadata was not found.
              type: str
            source:
              description: The MANIFEST.json or galaxy.yml read.
              type: str
        servers:
          description:
            - Each server of O(servers), always in the order nginx, apache,
              haproxy, postfix, dovecot, traefik, envoy.
          type: list
          elements: dict
          contains:
            name:
              description: The server, as in O(servers).
              type: str
            installed:
              description: Whether its binary was found.
              type: bool
            binary:
              description: Path of the binary.
              type: str
            version:
              description: Its version, from its own version output.
              type: str
              sample: 1.22.1
            config:
              description:
                - The configuration read (a path or a command), or V(null) when
                  none was found.
              type: str
            certificates:
              description: How many certificate uses the configuration names.
              type: int
            problems:
              description: What could not be read or run, one sentence each.
              type: list
              elements: str
        certificates:
          description:
            - Every certificate file the servers use, soonest expiry first.
            - Files that cannot be used come last, with
              RV(ansible_facts.certfleet.certificates[].error) set.
          type: list
          elements: dict
          contains:
            path:
              description: The file, as the configuration names it (made absolute).
              type: str
            used_by:
              description: Each use of the file.
              type: list
              elements: dict
              contains:
                server:
                  description: The server.
                  type: str
                site:
                  description:
                    - Server names, virtual host, frontend, service or block that
                      uses it.
                  type: str
                directive:
                  description: The directive or setting that names it.
                  type: str
                source:
                  description: Where that is, as C(file:line) when known.
                  type: str
            subject:
              description: The leaf's subject, RFC 4514.
              type: str
            sans:
              description: DNS names and IP addresses of the subjectAltName extension.
              type: list
              elements: str
            issuer:
              description: Issuer, RFC 4514.
              type: str
            serial:
              description: Serial number, hex.
              type: str
            not_before:
              description: Start of validity, ISO 8601 UTC.
              type: str
            not_after:
              description: End of validity, ISO 8601 UTC.
              type: str
            days_left:
              description:
                - Whole days until
                  RV(ansible_facts.certfleet.certificates[].not_after); negative
                  when expired.
              type: int
            sha256:
              description: SHA-256 of the leaf (DER), lowercase hex.
              type: str
            certificates_in_file:
              description: How many certificates the file holds (leaf and chain).
              type: int
            chain:
              description:
                - Subject, expiry and SHA-256 of the other certificates in the
                  file.
              type: list
              elements: dict
            error:
              description: Why the file cannot be used, or V(null).
              type: str
        soonest_expiry:
          description:
            - The certificate that expires first, or V(null) when there is none.
          type: dict
          contains:
            path:
              description: Its file.
              type: str
            subject:
              description: Its subject.
              type: str
            not_after:
              description: End of validity.
              type: str
            days_left:
              description: Days left.
              type: int
            sha256:
              description: SHA-256 of the leaf.
              type: str
        collected_at:
          description: When the facts were collected, ISO 8601 UTC.
          type: str
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.certfleet.deploy.plugins.module_utils import (
    discovery,
    hostinfo,
    network,
)


def gather(module: AnsibleModule) -> dict:
    """The whole fact, in the order a report reads it."""
    params = module.params
    facts = hostinfo.identity(params["fqdn_source"], params["os_release_path"])
    primary = network.primary_address(
        params["route_table_path"], params["ipv6_route_table_path"]
    )
    facts.update(primary_ip=primary["address"], network=primary)
    facts["collection"] = hostinfo.collection_version(__file__)
    facts.update(discovery.Discovery(module, params).run())
    dated = [c for c in facts["certificates"] if c["not_after"]]
    facts["soonest_expiry"] = {
        k: dated[0][k] for k in ("path", "subject", "not_after", "days_left", "sha256")
    } if dated else None
    facts["collected_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    return facts


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            servers=dict(type="list", elements="str",
                         default=list(discovery.SERVER_NAMES),
                         choices=list(discovery.SERVER_NAMES)),
            nginx_command=dict(type="list", elements="str"),
            apache_config=dict(type="path"),
            apache_server_root=dict(type="path"),
            haproxy_config=dict(type="list", elements="path"),
            postfix_config_dir=dict(type="path"),
            dovecot_config=dict(type="path"),
            traefik_config=dict(type="list", elements="path"),
            envoy_config=dict(type="list", elements="path"),
            command_timeout=dict(type="int", default=30),
            fqdn_source=dict(type="str", default="hosts",
                             choices=["hosts", "resolver"]),
            os_release_path=dict(type="path"),
            route_table_path=dict(type="path", default=network.IPV4_ROUTES),
            ipv6_route_table_path=dict(type="path", default=network.IPV6_ROUTES),
        ),
        supports_check_mode=True,
    )
    module.exit_json(changed=False, ansible_facts={"certfleet": gather(module)})


if __name__ == "__main__":
    main()
