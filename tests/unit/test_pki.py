"""Tests of the test PKI: the certificates must be what the field cases assume."""

from __future__ import annotations

import datetime
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.pki import PKI, Leaf, utc_now, validity

STANDARD = ("rsa", "ecdsa", "ed25519")
# Far beyond any clock-skew allowance a deploy might grant.
SKEW = datetime.timedelta(days=1)


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:
    """Return the extension of class ``kind``."""
    return cert.extensions.get_extension_for_class(kind)


def _public_der(key: object) -> bytes:
    """Encode a public key, to compare keys by value."""
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _ski(cert: x509.Certificate) -> bytes:
    """The subject key identifier of ``cert``."""
    return _ext(cert, x509.SubjectKeyIdentifier).value.digest


def _aki(cert: x509.Certificate) -> bytes | None:
    """The key identifier in the authority key identifier of ``cert``."""
    return _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier


@pytest.mark.parametrize("kind", STANDARD)
def test_standard_leaf_is_signed_by_the_intermediate(pki: PKI, kind: str) -> None:
    leaf: Leaf = getattr(pki, kind)

    leaf.cert.verify_directly_issued_by(pki.intermediate_cert)
    assert leaf.chain_pem == pki.intermediate_pem
    assert leaf.fullchain_pem == leaf.cert_pem + pki.intermediate_pem
    assert _aki(leaf.cert) == _ski(pki.intermediate_cert)


@pytest.mark.parametrize("kind", STANDARD)
def test_standard_leaf_has_server_extensions(pki: PKI, kind: str) -> None:
    leaf: Leaf = getattr(pki, kind)
    cert = leaf.cert

    assert _ext(cert, x509.BasicConstraints).value.ca is False
    assert _ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    usage = _ext(cert, x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_encipherment is (kind == "rsa")
    assert not usage.key_cert_sign
    sans = _ext(cert, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["example.com", "www.example.com"]
    assert leaf.names == ["example.com", "www.example.com"]
    assert _ski(cert) == x509.SubjectKeyIdentifier.from_public_key(
        cert.public_key()
    ).digest


@pytest.mark.parametrize("kind", STANDARD)
def test_leaf_encodings_agree(pki: PKI, kind: str) -> None:
    leaf: Leaf = getattr(pki, kind)

    assert x509.load_pem_x509_certificate(leaf.cert_pem) == leaf.cert
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    assert leaf.sha256 == hashlib.sha256(der).hexdigest()
    assert leaf.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(leaf.key_pem, password=None)
    assert _public_der(loaded.public_key()) == _public_der(leaf.cert.public_key())


def test_key_types_and_sizes(pki: PKI) -> None:
    rsa_key = serialization.load_pem_private_key(pki.rsa.key_pem, None)
    ecdsa_key = serialization.load_pem_private_key(pki.ecdsa.key_pem, None)
    ed_key = serialization.load_pem_private_key(pki.ed25519.key_pem, None)

    assert isinstance(rsa_key, RSAPrivateKey) and rsa_key.key_size == 2048
    assert isinstance(ecdsa_key, ec.EllipticCurvePrivateKey)
    assert isinstance(ecdsa_key.curve, ec.SECP256R1)
    assert isinstance(ed_key, Ed25519PrivateKey)


def test_intermediate_is_a_leaf_only_ca_under_the_root(pki: PKI) -> None:
    cert = pki.intermediate_cert

    cert.verify_directly_issued_by(pki.root_cert)
    constraints = _ext(cert, x509.BasicConstraints)
    assert constraints.critical
    assert (constraints.value.ca, constraints.value.path_length) == (True, 0)
    usage = _ext(cert, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert _aki(cert) == _ski(pki.root_cert)


def test_root_is_self_signed_ca(pki: PKI) -> None:
    root = pki.root_cert

    root.verify_directly_issued_by(root)
    assert _ext(root, x509.BasicConstraints).value.ca
    assert pki.root_pem == root.public_bytes(serialization.Encoding.PEM)


def test_standard_leaves_are_valid_now(pki: PKI) -> None:
    now = utc_now()

    for kind in STANDARD:
        not_before, not_after = validity(getattr(pki, kind).cert)
        assert not_before < now - datetime.timedelta(hours=1) < now < not_after


def test_expired_leaf_ended_in_the_past(pki: PKI) -> None:
    not_before, not_after = validity(pki.expired.cert)

    assert not_before < not_after < utc_now() - SKEW
    pki.expired.cert.verify_directly_issued_by(pki.intermediate_cert)


def test_not_yet_valid_leaf_starts_in_the_future(pki: PKI) -> None:
    not_before, not_after = validity(pki.not_yet_valid.cert)

    assert utc_now() + SKEW < not_before < not_after
    pki.not_yet_valid.cert.verify_directly_issued_by(pki.intermediate_cert)


def test_encrypted_key_needs_the_passphrase(pki: PKI) -> None:
    encrypted = pki.ecdsa.encrypted_key_pem(b"s3cret")

    assert encrypted.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(encrypted, password=None)
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(encrypted, password=b"wrong")
    key = serialization.load_pem_private_key(encrypted, password=b"s3cret")
    assert _public_der(key.public_key()) == _public_der(pki.ecdsa.cert.public_key())


def test_standard_leaves_are_cached(pki: PKI) -> None:
    assert pki.rsa is pki.rsa
    assert pki.expired is pki.expired


def test_leaf_makes_a_new_key_each_call(pki: PKI) -> None:
    first = pki.leaf(key_type="ecdsa")
    second = pki.leaf(key_type="ecdsa")

    assert first.key_pem != second.key_pem
    assert first.sha256 != second.sha256


def test_leaf_takes_names_and_window(pki: PKI) -> None:
    start = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    end = datetime.datetime(2030, 2, 1, tzinfo=datetime.timezone.utc)

    leaf = pki.leaf(
        names=("mail.example.com",), key_type="ecdsa", not_before=start, not_after=end
    )

    assert leaf.names == ["mail.example.com"]
    assert validity(leaf.cert) == (start, end)


def test_root_signed_leaf_has_no_chain(pki: PKI) -> None:
    leaf = pki.leaf(key_type="ecdsa", issuer="root")

    leaf.cert.verify_directly_issued_by(pki.root_cert)
    assert leaf.chain_pem == b""
    assert leaf.fullchain_pem == leaf.cert_pem


def test_self_signed_leaf_signs_itself(pki: PKI) -> None:
    leaf = pki.leaf(key_type="ed25519", issuer="self")

    leaf.cert.verify_directly_issued_by(leaf.cert)
    assert leaf.cert.subject == leaf.cert.issuer
    assert leaf.chain_pem == b""


def test_unknown_choices_are_refused(pki: PKI) -> None:
    with pytest.raises(ValueError, match="key type"):
        pki.leaf(key_type="dsa")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="issuer"):
        pki.leaf(key_type="ecdsa", issuer="elsewhere")  # type: ignore[arg-type]


def test_other_ca_leaf_is_not_ours(pki: PKI) -> None:
    stranger = pki.other_ca_leaf(key_type="ecdsa")

    stranger.cert.verify_directly_issued_by(pki.other_ca.intermediate_cert)
    with pytest.raises((ValueError, InvalidSignature)):
        stranger.cert.verify_directly_issued_by(pki.intermediate_cert)
    ours = pki.ecdsa.cert
    with pytest.raises((ValueError, InvalidSignature)):
        ours.verify_directly_issued_by(pki.other_ca.intermediate_cert)
    assert stranger.chain_pem == pki.other_ca.intermediate_pem != pki.intermediate_pem


def test_write_sets_contents_and_modes(pki: PKI, tmp_path: Path) -> None:
    old_umask = os.umask(0o077)
    try:
        paths = pki.rsa.write(tmp_path / "live", prefix="site-")
    finally:
        os.umask(old_umask)

    assert {k: p.name for k, p in paths.items()} == {
        "cert": "site-cert.pem",
        "chain": "site-chain.pem",
        "fullchain": "site-fullchain.pem",
        "privkey": "site-privkey.pem",
    }
    assert paths["cert"].read_bytes() == pki.rsa.cert_pem
    assert paths["chain"].read_bytes() == pki.rsa.chain_pem
    assert paths["fullchain"].read_bytes() == pki.rsa.fullchain_pem
    assert paths["privkey"].read_bytes() == pki.rsa.key_pem
    modes = {k: stat.S_IMODE(p.stat().st_mode) for k, p in paths.items()}
    public = {"cert": 0o644, "chain": 0o644, "fullchain": 0o644}
    assert modes == {**public, "privkey": 0o600}


def test_write_tightens_an_existing_key_file(pki: PKI, tmp_path: Path) -> None:
    loose = tmp_path / "privkey.pem"
    loose.write_bytes(b"old")
    loose.chmod(0o644)

    pki.ecdsa.write(tmp_path)

    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert loose.read_bytes() == pki.ecdsa.key_pem


def test_write_root(pki: PKI, tmp_path: Path) -> None:
    path = pki.write_root(tmp_path / "trust" / "root.pem")

    assert path.read_bytes() == pki.root_pem
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
