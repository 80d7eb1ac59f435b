# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options every server module shares, documented once."""

    DOCUMENTATION = r"""
options:
  cert_content:
    description:
      - "The certificate as PEM text: the leaf first, optionally followed by its
        chain (each certificate issued by the one after it)."
      - May also hold the private key (a combined or key-first bundle).
      - Mutually exclusive with O(cert_src). One of the two is required.
    type: str
  cert_src:
    description:
      - Path on the managed host of a PEM file read like O(cert_content).
    type: path
  chain_content:
    description:
      - Intermediate certificates as PEM text, the leaf's issuer first. The
        root is not needed.
      - Mutually exclusive with O(chain_src).
    type: str
  chain_src:
    description:
      - Path on the managed host of a PEM file read like O(chain_content).
    type: path
  key_content:
    description:
      - The private key as PEM text (RSA, ECDSA, Ed25519 or Ed448).
      - Never logged. Mutually exclusive with O(key_src).
    type: str
  key_src:
    description:
      - Path on the managed host of the PEM private key.
    type: path
  key_passphrase:
    description:
      - Passphrase of an encrypted private key. The key is then written
        decrypted (mode O(key_mode)), because servers reload without a
        terminal and cannot ask for it.
      - Without it, an encrypted key is refused before anything is touched.
    type: str
  owner:
    description:
      - Owner of every deployed file. Default is the existing file's owner,
        else the server's default user (the first of its candidates that
        exists on the host).
    type: str
  group:
    description:
      - Group of every deployed file, chosen like O(owner).
    type: str
  cert_mode:
    description:
      - Mode of certificate and chain files, as an octal string such as
        V('0644'). Default is the existing file's mode, else V('0644').
    type: raw
  key_mode:
    description:
      - Mode of files that hold the private key, as an octal string. Default
        is the existing file's mode, else V('0600').
    type: raw
  follow_symlinks:
    description:
      - When a destination is a symbolic link (for example under
        C(/etc/letsencrypt/live/)), write the file it points to and keep the
        link.
      - When V(false), the link itself is replaced by a regular file.
    type: bool
    default: true
  expected_names:
    description:
      - DNS names or IP addresses the certificate must cover; checked against
        its subjectAltNames (one wildcard label allowed) before anything is
        touched.
    type: list
    elements: str
    default: []
  min_days_valid:
    description:
      - Refuse a certificate with fewer days left than this.
    type: int
    default: 0
  allow_expired:
    description:
      - Deploy an expired certificate anyway. A certificate that is not yet
        valid (beyond five minutes of clock skew) is always refused.
    type: bool
    default: false
  require_chain:
    description:
      - Refuse a certificate issued by a CA when no chain is given. Without
        it, a missing chain only gives a warning.
    type: bool
    default: false
  ca_src:
    description:
      - Path on the managed host of PEM root certificates. When given, the
        chain must end at one of them.
    type: path
  validate_command:
    description:
      - Command that tests the server's configuration with the new files in
        place, before any reload. A list is run as argv; a string is split
        like a shell would, but no shell runs.
      - Defaults to the server's own config test. An empty list skips it.
    type: raw
  reload_command:
    description:
      - Command that makes the server load the new files. Same form as
        O(validate_command). Defaults to the server's graceful reload.
    type: raw
  command_timeout:
    description:
      - Seconds each command may run before it is stopped and the deploy
        rolls back.
    type: int
    default: 60
  backup_dir:
    description:
      - "State directory of this target on the managed host: its lock, its
        journal and its backups. The server must not read it."
      - A directory that holds a deployed file is refused, and so is one
        inside it for servers that load whole directories (HAProxy).
      - Defaults to C(/var/lib/certfleet/SERVER).
    type: path
  backup_retention:
    description:
      - How many backup sets to keep in O(backup_dir).
    type: int
    default: 5
  lock_timeout:
    description:
      - Seconds to wait for another deploy to the same O(backup_dir) to
        finish before failing.
    type: int
    default: 60
  verify:
    description:
      - After the reload, prove with TLS handshakes that every endpoint serves
        the new certificate, and roll back when it does not.
      - Also on runs where the files are already in place, so a server that
        serves something else is reloaded.
      - When V(false), nothing is reported as served.
    type: bool
    default: true
  verify_endpoint:
    description:
      - One or more C(host:port) endpoints to probe (C([v6addr]:port) for
        IPv6). All must serve the new certificate.
      - An endpoint may name the protocol to speak, which wins over
        O(verify_protocol) for it, for example C(smtp://127.0.0.1:2525),
        C(imap://127.0.0.1:10143), C(pop3://[::1]:10110) (STARTTLS) or
        C(tls://127.0.0.1:10465) (implicit TLS). Without a port, C(smtp://),
        C(imap://) and C(pop3://) mean 25, 143 and 110.
      - Defaults to the server's usual local endpoint, C(127.0.0.1) on its
        default port.
    type: list
    elements: str
  verify_server_name:
    description:
      - Server name (SNI) sent in each handshake. Defaults to the first DNS
        name of the certificate (a wildcard's parent name).
    type: str
  verify_protocol:
    description:
      - How each probe starts TLS. V(tls) is implicit TLS; V(smtp), V(imap)
        and V(pop3) ask for STARTTLS first, and a refusal fails the probe with
        the server's own reply.
      - V(auto) chooses by port, for each endpoint. STARTTLS on 25 and 587
        (SMTP), 143 (IMAP) and 110 (POP3); implicit TLS on every other port.
        On other ports, give the protocol here or in the endpoint itself
        (see O(verify_endpoint)).
    type: str
    choices: [auto, tls, smtp, imap, pop3]
    default: auto
  verify_attempts:
    description:
      - How many times to probe before giving up.
    type: int
    default: 3
  verify_backoff:
    description:
      - Seconds to wait after the first failed attempt; each later wait
        doubles, up to O(verify_max_backoff).
    type: float
    default: 1.0
  verify_max_backoff:
    description:
      - Longest wait between attempts. Equal to O(verify_backoff) gives a
        constant interval.
    type: float
    default: 16.0
  verify_jitter:
    description:
      - Fraction (0 to 1) by which each wait varies at random.
    type: float
    default: 0.0
  verify_timeout:
    description:
      - Seconds one handshake may take.
    type: float
    default: 5.0
  verify_deadline:
    description:
      - Upper bound in seconds on the whole verification; no wait crosses
        it. V(0) means only O(verify_attempts) bounds it.
    type: float
    default: 0.0
  verify_settle:
    description:
      - Seconds after the reload during which old and new certificates may
        both be served (old workers still accepting). Handshakes start after
        it. Defaults to the server's own value.
    type: float
  verify_confirm:
    description:
      - Consecutive matching handshakes that make an attempt a success.
        Defaults to the server's own value.
    type: int
notes:
  - The deploy is a transaction. Every destination is compared by SHA-256
    first; unchanged files are not rewritten. Existing files are backed up
    into O(backup_dir) with their owner and mode, new files are written beside
    their destinations at mode 0600, given their final owner and mode, and
    renamed into place together; the config test then runs on the new files.
    Any failure up to the verification puts every file back, reloads, and
    proves the old certificate is served again.
  - A run killed halfway is finished by the next run on the same target,
    which puts the previous files back before it does anything else.
  - Private key bytes never appear in the result, the diff or the journal.
  - The served chain is compared with the deployed one on Python 3.10 and
    later; older Pythons on the managed host only compare the leaf.
requirements:
  - cryptography >= 42 on the managed host
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Whether a run with C(--check) reports what it would do and
      leaves the host alone.
    support: full
    details:
      - Reports what would change, including a server that serves something
        other than the files in place; writes and reloads nothing.
  diff_mode:
    description: Whether a run with C(--diff) shows the before and after of
      what it changes.
    support: full
    details:
      - Shows subjects, subjectAltNames, expiry dates and SHA-256 fingerprints;
        never key bytes.
  platform:
    description: The systems the managed host may run.
    support: full
    platforms: posix
  action_group:
    description: Use C(group/certfleet.deploy.deploy) in C(module_defaults) to
      set defaults for every server module at once.
    support: full
    membership:
      - certfleet.deploy.deploy
"""
