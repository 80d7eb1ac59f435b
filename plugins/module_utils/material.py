# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate material: parse PEM input, check it, and build server layouts.

Everything here runs before any file is touched. A problem raises
``MaterialError`` with a message that names the input and the cause, so a bad
certificate never reaches a server.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass, field

from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    MaterialError,
)

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.x509.oid import ExtensionOID, NameOID
except ImportError:  # reported by the module through missing_required_lib
    x509 = None

CLOCK_SKEW = datetime.timedelta(minutes=5)

_BOM = b"\xef\xbb\xbf"
_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_CERT_LABELS = (b"CERTIFICATE", b"TRUSTED CERTIFICATE", b"X509 CERTIFICATE")
_KEY_LABELS = (
    b"PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"EC PRIVATE KEY",
    b"ENCRYPTED PRIVATE KEY",
)


def normalize(data: bytes) -> bytes:
    """Strip a UTF-8 BOM and turn CRLF or CR line ends into LF."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


@dataclass
class PemInput:
    """One PEM input as given: its bytes and a name for messages."""

    data: bytes
    source: str


@dataclass
class PemBlock:
    label: bytes
    text: bytes


def split_pem(pem: PemInput) -> list[PemBlock]:
    """Split an input into complete PEM blocks, refusing empty or cut input.

    One pass over the lines, so a large or hostile input costs linear time.
    """
    data = normalize(pem.data)
    if not data.strip():
        raise MaterialError(f"{pem.source} is empty: no PEM data to deploy.")
    blocks, begins, lines, label = [], 0, None, b""
    for line in data.split(b"\n"):
        line = line.strip()
        begin = _BEGIN.fullmatch(line)
        if begin:
            begins += 1
            lines, label = [line], begin.group(1)
        elif lines is not None:
            lines.append(line)
            if line == b"-----END " + label + b"-----":
                blocks.append(PemBlock(label, b"\n".join(lines) + b"\n"))
                lines = None
    if begins > len(blocks):
        raise MaterialError(
            f"{pem.source} is truncated: {begins} PEM BEGIN line(s) but only "
            f"{len(blocks)} complete block(s) with a matching END line."
        )
    if not blocks:
        raise MaterialError(f"{pem.source} holds no PEM data.")
    return blocks


def _load_certificate(block: PemBlock, position: int, source: str):
    try:
        return x509.load_pem_x509_certificate(block.text)
    except ValueError as exc:
        raise MaterialError(
            f"Certificate {position} in {source} cannot be parsed: {exc}"
        ) from None


def _key_is_encrypted(block: PemBlock) -> bool:
    return (
        block.label == b"ENCRYPTED PRIVATE KEY"
        or b"Proc-Type: 4,ENCRYPTED" in block.text
    )


def _load_key(block: PemBlock, source: str, passphrase: bytes | None):
    """Load a private key; an encrypted one needs the passphrase."""
    encrypted = _key_is_encrypted(block)
    if encrypted and not passphrase:
        raise MaterialError(
            f"The private key in {source} is encrypted with a passphrase. "
            "Servers reload without a terminal and cannot read it: give "
            "key_passphrase so it is stored decrypted, or supply an "
            "unencrypted key."
        )
    try:
        return serialization.load_pem_private_key(
            block.text, password=passphrase if encrypted else None
        )
    except (ValueError, TypeError) as exc:
        if encrypted:
            raise MaterialError(
                f"The private key in {source} cannot be decrypted with the "
                "given key_passphrase."
            ) from None
        raise MaterialError(
            f"The private key in {source} cannot be parsed: {exc}"
        ) from None


def describe(cert) -> str:
    """A short name for a certificate in messages: its subject."""
    return cert.subject.rfc4514_string() or "(empty subject)"


def sha256(cert) -> str:
    """Lowercase hex SHA-256 of the certificate's DER encoding."""
    return cert.fingerprint(hashes.SHA256()).hex()


def cert_pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san_values(cert, kind) -> list:
    try:
        ext = cert.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME
        )
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(kind))


def dns_names(cert) -> list[str]:
    return _san_values(cert, x509.DNSName)


def ip_addresses(cert) -> list:
    return _san_values(cert, x509.IPAddress)


def subject_alt_names(cert) -> list[str]:
    """DNS names and IP addresses of the subjectAltName extension."""
    return dns_names(cert) + [str(a) for a in ip_addresses(cert)]


def common_name(cert) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def key_type(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PrivateKey):
        return "Ed448"
    return type(key).__name__


def _tls_key_types() -> tuple:
    if x509 is None:
        return ()
    return (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
            ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


_TLS_KEYS = _tls_key_types()


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def signed_by(cert, issuer) -> bool:
    """True when ``issuer`` issued ``cert`` (names match, signature holds)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def name_matches(pattern: str, name: str) -> bool:
    """DNS matching with one left-most wildcard label, as TLS clients do."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if not pattern.startswith("*."):
        return False
    head, sep, tail = name.partition(".")
    return bool(sep) and bool(head) and tail == pattern[2:]


def covers(cert, name: str) -> bool:
    """Whether the certificate's SANs cover a DNS name or an IP address.

    An address is only covered by an iPAddress entry, as TLS clients match it;
    a DNS entry that spells an address does not count.
    """
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return any(name_matches(san, name) for san in dns_names(cert))
    return address in ip_addresses(cert)


def not_before(cert) -> datetime.datetime:
    return cert.not_valid_before_utc


def not_after(cert) -> datetime.datetime:
    return cert.not_valid_after_utc


def info(cert) -> dict:
    """What a result or a diff shows of a certificate: never key material."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "subject": describe(cert),
        "sans": subject_alt_names(cert),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": not_before(cert).isoformat(),
        "not_after": not_after(cert).isoformat(),
        "days_left": (not_after(cert) - now).days,
        "sha256": sha256(cert),
    }


@dataclass
class Material:
    """A checked leaf, its chain (issuer first) and the matching key."""

    leaf: object
    chain: list = field(default_factory=list)
    key: object = None
    key_text: bytes = b""
    warnings: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return sha256(self.leaf)

    def layout(self, name: str) -> bytes:
        """The bytes of one file layout a server reads.

        ``cert``: the leaf; ``fullchain``: leaf then chain; ``chain``: the
        chain alone; ``key``: the key; ``combined``: leaf, chain, key (HAProxy);
        ``key_first``: key, leaf, chain (Postfix ``smtpd_tls_chain_files``).
        """
        leaf = cert_pem(self.leaf)
        chain = b"".join(cert_pem(c) for c in self.chain)
        layouts = {
            "cert": leaf,
            "fullchain": leaf + chain,
            "chain": chain,
            "key": self.key_text,
            "combined": leaf + chain + self.key_text,
            "key_first": self.key_text + leaf + chain,
        }
        if name not in layouts:
            raise MaterialError(f"Unknown file layout {name!r}.")
        return layouts[name]

    def summary(self) -> dict:
        result = info(self.leaf)
        result["key_type"] = key_type(self.key)
        result["chain"] = [
            {"subject": describe(c), "sha256": sha256(c)} for c in self.chain
        ]
        return result


@dataclass
class Checks:
    """What the operator asked of the material beyond its own consistency."""

    expected_names: list[str] = field(default_factory=list)
    min_days_valid: int = 0
    allow_expired: bool = False
    require_chain: bool = False
    trust_roots: PemInput | None = None


def load(
    cert: PemInput,
    key: PemInput | None,
    chain: PemInput | None = None,
    passphrase: bytes | None = None,
) -> Material:
    """Parse the inputs into certificates and one key, in the order given.

    The certificate input may carry its chain and even the key (a combined or
    key-first bundle); the key may also come alone.
    """
    certs, keys = [], []
    for pem in [cert, chain, key]:
        if pem is None:
            continue
        for block in split_pem(pem):
            if block.label in _CERT_LABELS:
                certs.append(_load_certificate(block, len(certs) + 1, pem.source))
            elif block.label in _KEY_LABELS:
                keys.append((block, pem.source))
            elif block.label == b"DSA PRIVATE KEY":
                raise MaterialError(
                    f"{pem.source} holds a DSA private key; TLS servers need "
                    "an RSA, ECDSA or Ed25519 key."
                )
            else:
                label = block.label.decode("ascii")
                raise MaterialError(
                    f"{pem.source} holds a PEM block of an unexpected kind "
                    f"({label}); only certificates and private keys are read."
                )
    if not certs:
        raise MaterialError(f"{cert.source} holds no certificate.")
    if not keys:
        where = key.source if key else cert.source
        raise MaterialError(f"{where} holds no private key.")
    if len(keys) > 1:
        sources = ", ".join(source for _block, source in keys)
        raise MaterialError(
            f"More than one private key was given ({sources}); give exactly one."
        )
    block, source = keys[0]
    private_key = _load_key(block, source, passphrase)
    if not isinstance(private_key, _TLS_KEYS):
        raise MaterialError(
            f"{source} holds a {key_type(private_key)} private key; TLS servers "
            "need an RSA, ECDSA, Ed25519 or Ed448 key."
        )
    if _key_is_encrypted(block):
        key_text = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        key_text = block.text
    return Material(leaf=certs[0], chain=certs[1:], key=private_key,
                    key_text=key_text)


def _check_pair(material: Material) -> None:
    """The key must belong to the first certificate (F01, F06, F12)."""
    key_der = _public_der(material.key.public_key())
    if _public_der(material.leaf.public_key()) == key_der:
        return
    for position, cert in enumerate(material.chain, start=2):
        if _public_der(cert.public_key()) == key_der:
            raise MaterialError(
                "The certificates are out of order: the leaf must come first, "
                f"but certificate {position} ({describe(cert)}) is the one that "
                f"matches the private key and certificate 1 "
                f"({describe(material.leaf)}) comes before it."
            )
    raise MaterialError(
        f"The private key ({key_type(material.key)}) does not match the "
        f"certificate {describe(material.leaf)}: their public keys differ. "
        "Deploy the key that was generated with this certificate."
    )


def _check_order(material: Material) -> None:
    """Each certificate must be issued by the one right after it."""
    certs = [material.leaf] + material.chain
    for position in range(1, len(certs)):
        child, issuer = certs[position - 1], certs[position]
        if sha256(child) == sha256(issuer):
            raise MaterialError(
                f"The certificate {describe(child)} is given twice in a row; "
                "remove the duplicate."
            )
        if signed_by(child, issuer):
            continue
        what = "the leaf" if position == 1 else f"chain[{position - 2}]"
        found = [
            f"chain[{i}]" for i, c in enumerate(material.chain)
            if signed_by(child, c)
        ]
        hint = (
            f"; its issuer is {found[0]}: put each issuer right after the "
            "certificate it signed" if found else
            f"; {what} was issued by {child.issuer.rfc4514_string()}"
        )
        raise MaterialError(
            f"The chain is out of order: chain[{position - 1}] "
            f"({describe(issuer)}) does not sign {what} ({describe(child)})"
            f"{hint}."
        )


def _check_window(
    material: Material, checks: Checks, now: datetime.datetime
) -> None:
    """Refuse expired or not yet valid certificates, leaf and chain (F14)."""
    labelled = [("The certificate", material.leaf)] + [
        (f"Chain certificate {i}", c) for i, c in enumerate(material.chain)
    ]
    for label, cert in labelled:
        if not_before(cert) - CLOCK_SKEW > now:
            raise MaterialError(
                f"{label} {describe(cert)} is not yet valid: its validity "
                f"starts {not_before(cert).isoformat()}."
            )
        if not_after(cert) <= now and not checks.allow_expired:
            raise MaterialError(
                f"{label} {describe(cert)} expired on "
                f"{not_after(cert).isoformat()}; set allow_expired to deploy "
                "it anyway."
            )
    days_left = (not_after(material.leaf) - now).days
    if checks.min_days_valid and days_left < checks.min_days_valid:
        if not (checks.allow_expired and days_left < 0):
            raise MaterialError(
                f"The certificate {describe(material.leaf)} has {days_left} "
                f"days left, fewer than min_days_valid ({checks.min_days_valid})."
            )


def _check_names(material: Material, checks: Checks) -> None:
    missing = [n for n in checks.expected_names if not covers(material.leaf, n)]
    if missing:
        sans = ", ".join(subject_alt_names(material.leaf)) or "none"
        raise MaterialError(
            f"The certificate {describe(material.leaf)} does not cover "
            f"{', '.join(missing)}: its subjectAltNames are {sans}."
        )


def _self_issued(cert) -> bool:
    return cert.issuer == cert.subject and signed_by(cert, cert)


def _check_chain(material: Material, checks: Checks) -> None:
    """Warn, or refuse when asked, if the chain cannot reach a root (F02)."""
    top = ([material.leaf] + material.chain)[-1]
    if checks.trust_roots is not None:
        roots = [
            _load_certificate(b, i, checks.trust_roots.source)
            for i, b in enumerate(split_pem(checks.trust_roots), start=1)
            if b.label in _CERT_LABELS
        ]
        if not any(signed_by(top, r) or sha256(top) == sha256(r) for r in roots):
            raise MaterialError(
                f"The chain does not reach a root in "
                f"{checks.trust_roots.source}: its last certificate "
                f"{describe(top)} was issued by {top.issuer.rfc4514_string()}."
            )
        return
    if material.chain or _self_issued(material.leaf):
        return
    message = (
        f"No chain was given: the leaf {describe(material.leaf)} is issued by "
        f"{material.leaf.issuer.rfc4514_string()}, so clients that do not "
        "already hold that intermediate will fail to verify it."
    )
    if checks.require_chain:
        raise MaterialError(message + " Give chain_src or chain_content.")
    material.warnings.append(message)


def check(
    material: Material,
    checks: Checks,
    now: datetime.datetime | None = None,
) -> Material:
    """Run every check; raise on the first problem, collect warnings."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    _check_pair(material)
    _check_order(material)
    _check_window(material, checks, now)
    _check_names(material, checks)
    _check_chain(material, checks)
    return material
