"""A small, throw-away PKI for the test suite.

It mirrors what the field cases need (see FIELD_CASES.md): a root CA, an
intermediate CA signed by the root, and leaves for example.com and
www.example.com signed by the intermediate, plus leaves that are expired,
not yet valid, self-signed, signed straight by the root, or issued by an
unrelated CA. Tests should trust only the root when they check what a
server sends.

Generating RSA keys is the slow part, so every key that is not meant to be
fresh is kept in a per-process pool, and the standard leaves of a ``PKI``
are built once per instance (the pytest ``pki`` fixture shares one
instance for the whole session). Works with cryptography 40 and later.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import (
    RSAPrivateKey,
    generate_private_key as generate_rsa_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The class attributes PKI.rsa and PKI.ed25519 would shadow modules of those
# names, hence the direct class imports.
PrivateKey = RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey
KeyType = Literal["rsa", "ecdsa", "ed25519"]
IssuerChoice = Literal["intermediate", "root", "self"]

DEFAULT_NAMES = ("example.com", "www.example.com")
LEAF_LIFETIME = datetime.timedelta(days=90)
BACKDATE = datetime.timedelta(days=1)


def utc_now() -> datetime.datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.datetime.now(datetime.timezone.utc)


def validity(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    """Return (not_before, not_after) of ``cert`` as aware UTC datetimes.

    cryptography 42 added the ``*_utc`` properties and deprecated the naive
    ones; older releases only have the naive ones, so use whichever exists.
    """
    before = getattr(cert, "not_valid_before_utc", None)
    after = getattr(cert, "not_valid_after_utc", None)
    if before is None or after is None:
        before = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
        after = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return before, after


def new_key(key_type: KeyType) -> PrivateKey:
    """Generate a fresh private key: RSA 2048, ECDSA P-256 or Ed25519."""
    if key_type == "rsa":
        return generate_rsa_key(public_exponent=65537, key_size=2048)
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ed25519":
        return Ed25519PrivateKey.generate()
    raise ValueError(f"Unknown key type {key_type!r}: use rsa, ecdsa or ed25519")


@functools.lru_cache(maxsize=None)
def pooled_key(pki_name: str, role: str, key_type: KeyType) -> PrivateKey:
    """Return the process-wide key for one role of one named PKI.

    Keys are the slow part of building a PKI; certificates are cheap to
    sign, so only the keys are pooled.
    """
    return new_key(key_type)


def pem(cert: x509.Certificate) -> bytes:
    """Return ``cert`` PEM-encoded."""
    return cert.public_bytes(serialization.Encoding.PEM)


def sha256_hex(cert: x509.Certificate) -> str:
    """Return the SHA-256 of the certificate's DER as lowercase hex."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _signing_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    """Pick the digest to sign with: none for Ed25519, SHA-256 otherwise."""
    if isinstance(key, Ed25519PrivateKey):
        return None
    return hashes.SHA256()


def _name(common_name: str, organization: str) -> x509.Name:
    """Build a subject or issuer name."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path``, created with ``mode`` from the start.

    The mode is set again afterwards because the umask can only remove bits
    at creation and an existing file keeps its old mode.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(data)


@dataclass
class Issuer:
    """A CA certificate with the key that signs under it."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def ski(self) -> x509.SubjectKeyIdentifier:
        """The CA's subject key identifier, for the AKI of what it signs."""
        ext = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return ext.value


@dataclass
class Leaf:
    """A server certificate with its key and the chain a server should send."""

    cert_pem: bytes
    key_pem: bytes
    chain_pem: bytes
    fullchain_pem: bytes
    sha256: str
    names: list[str]
    cert: x509.Certificate
    key: PrivateKey = field(repr=False)

    def encrypted_key_pem(self, passphrase: bytes) -> bytes:
        """Return the key as passphrase-encrypted PKCS8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )

    def write(self, directory: Path, prefix: str = "") -> dict[str, Path]:
        """Write the certbot-style file set into ``directory``.

        Files are ``{prefix}cert.pem``, ``chain.pem``, ``fullchain.pem``
        (0644) and ``privkey.pem`` (0600). Returns the paths keyed by
        ``cert``, ``chain``, ``fullchain`` and ``privkey``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        contents = {
            "cert": (self.cert_pem, 0o644),
            "chain": (self.chain_pem, 0o644),
            "fullchain": (self.fullchain_pem, 0o644),
            "privkey": (self.key_pem, 0o600),
        }
        paths: dict[str, Path] = {}
        for stem, (data, mode) in contents.items():
            paths[stem] = directory / f"{prefix}{stem}.pem"
            _write_file(paths[stem], data, mode)
        return paths


class PKI:
    """A root CA, an intermediate under it, and leaves on demand.

    ``name`` goes into every subject and selects the pooled CA keys, so two
    instances with different names are unrelated CAs, while two with the
    same name share keys (and so verify each other's certificates).
    """

    def __init__(self, name: str = "Certfleet Test") -> None:
        self.name = name
        now = utc_now()
        self._root = self._make_ca(
            f"{name} Root CA", None, now + datetime.timedelta(days=3650)
        )
        self._intermediate = self._make_ca(
            f"{name} Intermediate CA", self._root, now + datetime.timedelta(days=1825)
        )
        self.root_cert: x509.Certificate = self._root.cert
        self.intermediate_cert: x509.Certificate = self._intermediate.cert
        self.root_pem: bytes = pem(self.root_cert)
        self.intermediate_pem: bytes = pem(self.intermediate_cert)

    def _make_ca(
        self, common_name: str, parent: Issuer | None, not_after: datetime.datetime
    ) -> Issuer:
        """Sign a CA certificate: the root when ``parent`` is None.

        The root has no path length limit; the intermediate has pathlen 0,
        so it may sign leaves only.
        """
        role = "root" if parent is None else "intermediate"
        key = pooled_key(self.name, role, "rsa")
        subject = _name(common_name, self.name)
        signer = parent.key if parent else key
        cert = (
            _builder(
                subject,
                parent.cert.subject if parent else subject,
                key,
                utc_now() - BACKDATE,
                not_after,
                parent.ski if parent else None,
            )
            .add_extension(
                x509.BasicConstraints(
                    ca=True, path_length=None if parent is None else 0
                ),
                critical=True,
            )
            .add_extension(_key_usage(ca=True), critical=True)
            .sign(signer, _signing_hash(signer))
        )
        return Issuer(cert, key)

    def leaf(
        self,
        names: Sequence[str] = DEFAULT_NAMES,
        key_type: KeyType = "rsa",
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        issuer: IssuerChoice = "intermediate",
    ) -> Leaf:
        """Issue a leaf with a new key of ``key_type`` for ``names``.

        The validity defaults to one day ago until 90 days from now.
        ``issuer`` picks the signer: the intermediate (the normal case, the
        chain is the intermediate), the root (empty chain) or the leaf's own
        key (self-signed, empty chain).
        """
        return self._issue(new_key(key_type), names, not_before, not_after, issuer)

    def _issue(
        self,
        key: PrivateKey,
        names: Sequence[str],
        not_before: datetime.datetime | None,
        not_after: datetime.datetime | None,
        issuer: IssuerChoice,
    ) -> Leaf:
        """Sign a leaf for ``key``; see ``leaf`` for the arguments."""
        if not names:
            raise ValueError("A leaf needs at least one DNS name")
        start = not_before or utc_now() - BACKDATE
        end = not_after or start + LEAF_LIFETIME
        subject = _name(names[0], self.name)
        if issuer == "self":
            signer, issuer_name, aki_source, chain = key, subject, None, []
        elif issuer in ("intermediate", "root"):
            ca = self._intermediate if issuer == "intermediate" else self._root
            signer, issuer_name, aki_source = ca.key, ca.cert.subject, ca.ski
            chain = [ca.cert] if issuer == "intermediate" else []
        else:
            raise ValueError(
                f"Unknown issuer {issuer!r}: use intermediate, root or self"
            )
        usage = _key_usage(
            signing=True, encipherment=isinstance(key, RSAPrivateKey)
        )
        cert = (
            _builder(subject, issuer_name, key, start, end, aki_source)
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .add_extension(usage, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                critical=False,
            )
            .sign(signer, _signing_hash(signer))
        )
        return _make_leaf(cert, key, chain, list(names))

    @functools.cached_property
    def rsa(self) -> Leaf:
        """The standard RSA leaf for example.com and www.example.com."""
        return self._standard("rsa")

    @functools.cached_property
    def ecdsa(self) -> Leaf:
        """The standard ECDSA P-256 leaf for example.com and www.example.com."""
        return self._standard("ecdsa")

    @functools.cached_property
    def ed25519(self) -> Leaf:
        """The standard Ed25519 leaf for example.com and www.example.com."""
        return self._standard("ed25519")

    @functools.cached_property
    def expired(self) -> Leaf:
        """An RSA leaf whose validity ended 30 days ago."""
        now = utc_now()
        return self._standard(
            "rsa",
            "expired",
            now - datetime.timedelta(days=120),
            now - datetime.timedelta(days=30),
        )

    @functools.cached_property
    def not_yet_valid(self) -> Leaf:
        """An RSA leaf that becomes valid in 30 days, far past any skew."""
        now = utc_now()
        return self._standard(
            "rsa",
            "not-yet-valid",
            now + datetime.timedelta(days=30),
            now + datetime.timedelta(days=120),
        )

    def _standard(
        self,
        key_type: KeyType,
        role: str = "standard",
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Leaf:
        """Issue one of the cached leaves, with a pooled key."""
        key = pooled_key(self.name, f"leaf-{role}", key_type)
        return self._issue(key, DEFAULT_NAMES, not_before, not_after, "intermediate")

    @functools.cached_property
    def other_ca(self) -> PKI:
        """An unrelated PKI (own root and intermediate, own keys)."""
        return PKI(name=f"{self.name} Unrelated")

    def other_ca_leaf(
        self, names: Sequence[str] = DEFAULT_NAMES, key_type: KeyType = "rsa"
    ) -> Leaf:
        """Issue a leaf from ``other_ca``; its chain is that CA's intermediate.

        Put it after one of our intermediates (or our leaf before its chain)
        to get a chain whose second certificate does not sign the first.
        """
        return self.other_ca.leaf(names=names, key_type=key_type)

    def write_root(self, path: str | Path) -> Path:
        """Write the root certificate (the trust anchor) as PEM, mode 0644."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_file(path, self.root_pem, 0o644)
        return path


def _key_usage(
    *, signing: bool = False, encipherment: bool = False, ca: bool = False
) -> x509.KeyUsage:
    """keyUsage with the given bits set and every other bit clear.

    Leaves sign (and RSA leaves also encipher, for RSA key exchange); CAs
    sign certificates and CRLs only.
    """
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer_name: x509.Name,
    key: PrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    issuer_ski: x509.SubjectKeyIdentifier | None,
) -> x509.CertificateBuilder:
    """Start a certificate with what every one here has.

    That is names, public key, random serial, validity window, SKI, and an
    AKI taken from ``issuer_ski`` (from the certificate's own SKI when it
    is None: self-signed).
    """
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        issuer_ski or ski
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )


def _make_leaf(
    cert: x509.Certificate,
    key: PrivateKey,
    chain: list[x509.Certificate],
    names: list[str],
) -> Leaf:
    """Bundle a signed leaf with its encodings."""
    cert_pem = pem(cert)
    chain_pem = b"".join(pem(c) for c in chain)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Leaf(
        cert_pem=cert_pem,
        key_pem=key_pem,
        chain_pem=chain_pem,
        fullchain_pem=cert_pem + chain_pem,
        sha256=sha256_hex(cert),
        names=names,
        cert=cert,
        key=key,
    )
