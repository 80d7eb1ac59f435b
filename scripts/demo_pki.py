"""Issue the certificates for `make demo` from a throw-away local CA.

Writes into OUT_DIR (created if needed), all PEM:

  ca.crt                      the demo root CA (self-signed)
  intermediate.crt            an intermediate CA signed by the root
  initial.crt, initial.key    the leaf nginx starts with
  new.crt, new.key            the fresh leaf the playbook deploys
  initial-fullchain.crt       initial leaf followed by the intermediate

Both leaves are issued by the intermediate for NAME (default
demo.example.com). Keys are EC P-256, so issuing is instant. Nothing here is
meant to outlive the demo's temporary directory.

Usage: python demo_pki.py OUT_DIR [NAME]
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


def new_key() -> Key:
    """Return a fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def issue(
    subject: str,
    key: Key,
    issuer: x509.Certificate | None,
    issuer_key: Key,
    *,
    ca: bool,
    days: int,
) -> x509.Certificate:
    """Sign a certificate for `subject`; a CA when `ca`, else a TLS server leaf."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if ca:
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM bytes of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: Key) -> bytes:
    """Unencrypted PKCS#8 PEM bytes of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` with `mode`, replacing any earlier file."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, 'wb') as handle:
        handle.write(data)


def main(argv: list[str]) -> int:
    """Build the demo CA, intermediate and two leaves under argv[1]."""
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = Path(argv[1])
    name = argv[2] if len(argv) == 3 else 'demo.example.com'
    out.mkdir(parents=True, exist_ok=True)

    root_key = new_key()
    root = issue('certfleet demo root CA', root_key, None, root_key, ca=True, days=30)
    inter_key = new_key()
    inter = issue('certfleet demo intermediate CA', inter_key, root, root_key, ca=True, days=30)
    write(out / 'ca.crt', cert_pem(root))
    write(out / 'intermediate.crt', cert_pem(inter))

    for label in ('initial', 'new'):
        leaf_key = new_key()
        leaf = issue(name, leaf_key, inter, inter_key, ca=False, days=7)
        write(out / f'{label}.crt', cert_pem(leaf))
        write(out / f'{label}.key', key_pem(leaf_key), 0o600)
    write(out / 'initial-fullchain.crt', (out / 'initial.crt').read_bytes() + cert_pem(inter))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
