"""The material checks: every bad input is refused, named, before a file moves.

Each test feeds PEM the way an operator would give it (content with a source
name) and asserts what the operator reads: which problem, on which input or
certificate. Good input must come out as the exact bytes a server reads.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import json
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448
from cryptography.x509.oid import NameOID

from ansible_collections.certfleet.deploy.plugins.module_utils import material
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    MaterialError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.material import (
    Checks,
    PemInput,
)
from tests.support.pki import PKI, Leaf, sha256_hex, utc_now

DAY = datetime.timedelta(days=1)
PASSPHRASE = b"correct horse battery staple"
LABELS = re.compile(rb"-----BEGIN ([A-Z ]+)-----")
LEAF = "CN=example.com,O=Certfleet Test"
ROOT = "CN=Certfleet Test Root CA,O=Certfleet Test"
INTER = "CN=Certfleet Test Intermediate CA,O=Certfleet Test"
OTHER_ROOT = "CN=Certfleet Test Unrelated Root CA,O=Certfleet Test Unrelated"
OTHER_INTER = (
    "CN=Certfleet Test Unrelated Intermediate CA,O=Certfleet Test Unrelated"
)


def cert_in(data: bytes, source: str = "cert.pem") -> PemInput:
    return PemInput(data, source)


def key_in(data: bytes, source: str = "key.pem") -> PemInput:
    return PemInput(data, source)


def chain_in(data: bytes, source: str = "chain.pem") -> PemInput:
    return PemInput(data, source)


def load_leaf(leaf: Leaf, with_chain: bool = True) -> material.Material:
    """Load a test leaf as cert + key (+ chain) inputs."""
    chain = chain_in(leaf.chain_pem) if with_chain else None
    return material.load(cert_in(leaf.cert_pem), key_in(leaf.key_pem), chain)


def checked(leaf: Leaf, checks: Checks | None = None, **kw) -> material.Material:
    """Load and check a test leaf with its chain."""
    return material.check(load_leaf(leaf), checks or Checks(), **kw)


def refusal(func, *args, **kwargs) -> str:
    """Call ``func``, which must raise MaterialError; return its message."""
    with pytest.raises(MaterialError) as caught:
        func(*args, **kwargs)
    return caught.value.message


def labels(data: bytes) -> list[bytes]:
    return LABELS.findall(data)


# --- a small extra CA for what the shared PKI cannot issue ------------------
# IP address SANs, certificates without SANs and chain certificates outside
# their validity window.


@functools.lru_cache(maxsize=None)
def ec_key(role: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sign(
    common_name: str,
    key,
    issuer: tuple | None = None,
    *,
    ca: bool = False,
    sans: tuple = (),
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    """Issue a certificate for ``key``; ``issuer`` is (cert, key), None: self."""
    now = utc_now()
    name = subject or x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start or now - DAY)
        .not_valid_after(end or now + 90 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(sans)), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def self_signed(sans: tuple, common_name: str = "host.example.com") -> tuple:
    """A self-signed leaf (no chain needed) and its key PEM."""
    key = ec_key("self-signed")
    return pem(sign(common_name, key, sans=sans)), key_pem(key)


def mini_chain(
    inter_start: datetime.datetime | None = None,
    inter_end: datetime.datetime | None = None,
) -> tuple:
    """Leaf PEM, chain PEM (intermediate) and key PEM under a mini root."""
    root_key, inter_key, leaf_key = ec_key("root"), ec_key("inter"), ec_key("leaf")
    root = sign("Mini Root", root_key, ca=True)
    inter = sign(
        "Mini Intermediate", inter_key, (root, root_key), ca=True,
        start=inter_start, end=inter_end,
    )
    leaf = sign(
        "mini.example.com", leaf_key, (inter, inter_key),
        sans=(x509.DNSName("mini.example.com"),),
    )
    return pem(leaf), pem(inter), key_pem(leaf_key)


# --- F04: empty, partial or foreign PEM ---------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  "], ids=["empty", "blank"])
@pytest.mark.parametrize("which", ["cert", "key"])
def test_empty_input_is_refused_naming_the_input(pki: PKI, data, which) -> None:
    """An empty or whitespace-only certificate or key is refused by name."""
    cert = cert_in(data if which == "cert" else pki.rsa.fullchain_pem)
    key = key_in(data if which == "key" else pki.rsa.key_pem)
    message = refusal(material.load, cert, key)
    assert f"{which}.pem is empty" in message


def test_truncated_certificate_is_refused(pki: PKI) -> None:
    """A certificate cut off before its END line is refused as truncated."""
    cut = pki.rsa.cert_pem[: len(pki.rsa.cert_pem) // 2]
    message = refusal(material.load, cert_in(cut), key_in(pki.rsa.key_pem))
    assert "cert.pem is truncated" in message
    assert "END" in message


def test_truncated_last_block_of_a_bundle_is_refused(pki: PKI) -> None:
    """A fullchain whose last block lost its END line is not read as a leaf."""
    cut = pki.rsa.fullchain_pem.rsplit(b"-----END", 1)[0]
    message = refusal(
        material.load, cert_in(cut, "fullchain.pem"), key_in(pki.rsa.key_pem)
    )
    assert "fullchain.pem is truncated" in message
    assert "2 PEM BEGIN line(s) but only 1 complete block(s)" in message


def test_truncated_key_is_refused(pki: PKI) -> None:
    """A key cut in the middle is refused before it is parsed."""
    cut = pki.rsa.key_pem[:200]
    message = refusal(material.load, cert_in(pki.rsa.cert_pem), key_in(cut))
    assert "key.pem is truncated" in message


def test_garbage_is_refused(pki: PKI) -> None:
    """Text without any PEM block is refused, naming the input."""
    garbage = b"this is not a certificate\n\x00\x01binary junk\n"
    message = refusal(material.load, cert_in(garbage), key_in(pki.rsa.key_pem))
    assert message == "cert.pem holds no PEM data."


@pytest.mark.parametrize(
    "label", ["CERTIFICATE REQUEST", "X509 CRL", "PUBLIC KEY", "DH PARAMETERS"]
)
def test_pem_block_of_another_kind_is_refused(pki: PKI, label: str) -> None:
    """A CSR, CRL, public key or DH parameters is refused, naming its kind."""
    block = f"-----BEGIN {label}-----\nMIIBAA==\n-----END {label}-----\n"
    message = refusal(
        material.load,
        cert_in(pki.rsa.cert_pem),
        key_in(pki.rsa.key_pem),
        chain_in(block.encode()),
    )
    assert "chain.pem holds a PEM block of an unexpected kind" in message
    assert f"({label})" in message


def test_corrupt_certificate_body_is_refused_with_its_position(pki: PKI) -> None:
    """A certificate block whose body is not a certificate is named by number."""
    bad = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    message = refusal(
        material.load,
        cert_in(pki.rsa.cert_pem + bad, "fullchain.pem"),
        key_in(pki.rsa.key_pem),
    )
    assert message.startswith("Certificate 2 in fullchain.pem cannot be parsed")


def test_corrupt_key_body_is_refused(pki: PKI) -> None:
    """A key block that is not a key is refused as unparsable, by source."""
    bad = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    message = refusal(material.load, cert_in(pki.rsa.cert_pem), key_in(bad))
    assert message.startswith("The private key in key.pem cannot be parsed")


def test_input_without_certificate_is_refused(pki: PKI) -> None:
    """A certificate input that holds only a key is refused."""
    message = refusal(material.load, cert_in(pki.rsa.key_pem), None)
    assert message == "cert.pem holds no certificate."


def test_missing_key_is_refused_naming_the_key_input(pki: PKI) -> None:
    """A key input that holds a certificate instead is named as keyless."""
    message = refusal(
        material.load, cert_in(pki.rsa.cert_pem), key_in(pki.rsa.cert_pem)
    )
    assert message == "key.pem holds no private key."


def test_missing_key_without_key_input_names_the_certificate(pki: PKI) -> None:
    """With no key input, the certificate input is the one said to lack it."""
    message = refusal(material.load, cert_in(pki.rsa.fullchain_pem), None)
    assert message == "cert.pem holds no private key."


def test_two_keys_are_refused_naming_both_sources(pki: PKI) -> None:
    """A bundle with a key plus a separate key is ambiguous and refused."""
    bundle = pki.rsa.key_pem + pki.rsa.fullchain_pem
    message = refusal(
        material.load, cert_in(bundle, "bundle.pem"), key_in(pki.rsa.key_pem)
    )
    assert "More than one private key" in message
    assert "bundle.pem, key.pem" in message


def test_trailing_spaces_after_begin_line_are_accepted(pki: PKI) -> None:
    """Trailing blanks on a BEGIN line, as pasted from editors, are harmless."""
    spaced = pki.rsa.cert_pem.replace(
        b"-----BEGIN CERTIFICATE-----\n", b"-----BEGIN CERTIFICATE-----  \t\n"
    )
    loaded = material.load(
        cert_in(spaced), key_in(pki.rsa.key_pem), chain_in(pki.rsa.chain_pem)
    )
    assert loaded.layout("cert") == pki.rsa.cert_pem


# --- F03: encrypted keys ---------------------------------------------------------


def test_encrypted_key_without_passphrase_is_refused(pki: PKI) -> None:
    """A passphrase-protected key is refused up front, pointing to the fix."""
    encrypted = pki.rsa.encrypted_key_pem(PASSPHRASE)
    message = refusal(
        material.load, cert_in(pki.rsa.fullchain_pem), key_in(encrypted)
    )
    assert "The private key in key.pem is encrypted" in message
    assert "key_passphrase" in message


def test_encrypted_key_with_right_passphrase_is_stored_decrypted(pki: PKI) -> None:
    """The right passphrase gives an unencrypted key layout of the same key."""
    encrypted = pki.ecdsa.encrypted_key_pem(PASSPHRASE)
    loaded = material.load(
        cert_in(pki.ecdsa.fullchain_pem), key_in(encrypted), passphrase=PASSPHRASE
    )
    material.check(loaded, Checks())
    key_bytes = loaded.layout("key")
    assert labels(key_bytes) == [b"PRIVATE KEY"]
    assert b"ENCRYPTED" not in key_bytes
    assert PASSPHRASE not in key_bytes
    restored = serialization.load_pem_private_key(key_bytes, password=None)
    assert restored.private_numbers() == pki.ecdsa.key.private_numbers()


def test_traditional_encrypted_rsa_key_is_detected_and_decrypted(pki: PKI) -> None:
    """An OpenSSL 'Proc-Type: 4,ENCRYPTED' key is encrypted too: same rules."""
    legacy = pki.rsa.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(PASSPHRASE),
    )
    assert b"Proc-Type: 4,ENCRYPTED" in legacy
    message = refusal(material.load, cert_in(pki.rsa.fullchain_pem), key_in(legacy))
    assert "is encrypted" in message
    loaded = material.load(
        cert_in(pki.rsa.fullchain_pem), key_in(legacy), passphrase=PASSPHRASE
    )
    restored = serialization.load_pem_private_key(loaded.layout("key"), None)
    assert restored.private_numbers() == pki.rsa.key.private_numbers()


def test_encrypted_key_with_wrong_passphrase_is_refused(pki: PKI) -> None:
    """A wrong passphrase is reported as such, not as a broken key."""
    encrypted = pki.rsa.encrypted_key_pem(PASSPHRASE)
    message = refusal(
        material.load,
        cert_in(pki.rsa.fullchain_pem),
        key_in(encrypted),
        passphrase=b"wrong",
    )
    assert message == (
        "The private key in key.pem cannot be decrypted with the given "
        "key_passphrase."
    )


def test_passphrase_for_an_unencrypted_key_is_ignored(pki: PKI) -> None:
    """A passphrase given for a plain key does not break it; bytes unchanged."""
    loaded = material.load(
        cert_in(pki.rsa.fullchain_pem), key_in(pki.rsa.key_pem), passphrase=b"x"
    )
    assert loaded.layout("key") == pki.rsa.key_pem


# --- F01, F06, F12: order and pairing ---------------------------------------------


def test_intermediate_before_leaf_is_refused_naming_the_order(pki: PKI) -> None:
    """F01: the leaf second in the file is named as an order problem."""
    swapped = pki.rsa.chain_pem + pki.rsa.cert_pem
    loaded = material.load(cert_in(swapped), key_in(pki.rsa.key_pem))
    message = refusal(material.check, loaded, Checks())
    assert message.startswith("The certificates are out of order")
    assert "leaf must come first" in message
    assert f"certificate 2 ({LEAF}) is the one that matches" in message
    assert f"certificate 1 ({INTER}) comes before it" in message


@pytest.mark.parametrize("other", ["ecdsa", "ed25519", "expired"])
def test_key_of_another_certificate_is_refused(pki: PKI, other: str) -> None:
    """F06/F12: a key from another generation does not pass as the pair."""
    wrong = getattr(pki, other)
    loaded = material.load(cert_in(pki.rsa.fullchain_pem), key_in(wrong.key_pem))
    message = refusal(material.check, loaded, Checks())
    assert "does not match the certificate" in message
    assert f"the certificate {LEAF}" in message
    expected_type = {"ecdsa": "ECDSA", "ed25519": "Ed25519", "expired": "RSA"}
    assert f"({expected_type[other]}" in message


def test_chain_out_of_order_names_the_link_and_the_issuer(pki: PKI) -> None:
    """Root before intermediate: chain[0] does not sign the leaf; chain[1] does."""
    chain = pki.root_pem + pki.intermediate_pem
    loaded = material.load(
        cert_in(pki.rsa.cert_pem), key_in(pki.rsa.key_pem), chain_in(chain)
    )
    message = refusal(material.check, loaded, Checks())
    assert f"chain[0] ({ROOT}) does not sign the leaf ({LEAF})" in message
    assert "its issuer is chain[1]" in message


def test_chain_from_unrelated_ca_is_refused(pki: PKI) -> None:
    """An intermediate of another CA does not sign our leaf; the issuer is named."""
    other = pki.other_ca_leaf()
    loaded = material.load(
        cert_in(pki.rsa.cert_pem), key_in(pki.rsa.key_pem), chain_in(other.chain_pem)
    )
    message = refusal(material.check, loaded, Checks())
    assert f"chain[0] ({OTHER_INTER}) does not sign the leaf ({LEAF})" in message
    assert f"the leaf was issued by {INTER}" in message


def test_broken_second_link_names_both_chain_positions(pki: PKI) -> None:
    """A wrong root after the right intermediate: chain[1] does not sign chain[0]."""
    chain = pki.intermediate_pem + pki.other_ca.root_pem
    loaded = material.load(
        cert_in(pki.rsa.cert_pem), key_in(pki.rsa.key_pem), chain_in(chain)
    )
    message = refusal(material.check, loaded, Checks())
    assert f"chain[1] ({OTHER_ROOT}) does not sign chain[0] ({INTER})" in message


def test_full_chain_up_to_the_root_passes(pki: PKI) -> None:
    """Leaf, intermediate and root in order is a valid chain."""
    loaded = material.load(
        cert_in(pki.rsa.fullchain_pem + pki.root_pem), key_in(pki.rsa.key_pem)
    )
    material.check(loaded, Checks())
    assert [material.sha256(c) for c in loaded.chain] == [
        sha256_hex(pki.intermediate_cert),
        sha256_hex(pki.root_cert),
    ]


# --- F14: validity window ---------------------------------------------------------


def test_expired_certificate_is_refused(pki: PKI) -> None:
    """An expired leaf is refused, naming it, its end date and the override."""
    message = refusal(checked, pki.expired)
    assert message.startswith(f"The certificate {LEAF} expired")
    assert f"expired on {pki.expired.cert.not_valid_after_utc.isoformat()}" in message
    assert "allow_expired" in message


def test_expired_certificate_passes_with_allow_expired(pki: PKI) -> None:
    """allow_expired lets an operator deploy an expired certificate on purpose."""
    loaded = checked(pki.expired, Checks(allow_expired=True))
    assert loaded.sha256 == pki.expired.sha256
    assert loaded.summary()["days_left"] < 0


def test_not_yet_valid_is_refused_even_with_allow_expired(pki: PKI) -> None:
    """A certificate from the future is refused; allow_expired does not cover it."""
    message = refusal(checked, pki.not_yet_valid, Checks(allow_expired=True))
    start = pki.not_yet_valid.cert.not_valid_before_utc.isoformat()
    assert "is not yet valid" in message
    assert f"starts {start}" in message


def test_two_minutes_in_the_future_is_within_clock_skew(pki: PKI) -> None:
    """A certificate issued 'just now' by a fast clock is accepted."""
    now = utc_now()
    leaf = pki.leaf(key_type="ecdsa", not_before=now + datetime.timedelta(minutes=2))
    assert checked(leaf, now=now).sha256 == leaf.sha256


def test_ten_minutes_in_the_future_is_past_clock_skew(pki: PKI) -> None:
    """The skew allowance is small: ten minutes ahead is not yet valid."""
    now = utc_now()
    leaf = pki.leaf(key_type="ecdsa", not_before=now + datetime.timedelta(minutes=10))
    assert "is not yet valid" in refusal(checked, leaf, now=now)


def test_expired_chain_certificate_is_refused_by_position() -> None:
    """An intermediate past its end date is named as chain certificate 0."""
    now = utc_now()
    leaf, inter, key = mini_chain(now - 400 * DAY, now - 10 * DAY)
    loaded = material.load(cert_in(leaf), key_in(key), chain_in(inter))
    message = refusal(material.check, loaded, Checks())
    assert message.startswith("Chain certificate 0 CN=Mini Intermediate expired on")


def test_not_yet_valid_chain_certificate_is_refused_by_position() -> None:
    """An intermediate whose validity starts next week is refused."""
    now = utc_now()
    leaf, inter, key = mini_chain(now + 7 * DAY, now + 400 * DAY)
    loaded = material.load(cert_in(leaf), key_in(key), chain_in(inter))
    message = refusal(material.check, loaded, Checks())
    assert message.startswith("Chain certificate 0 CN=Mini Intermediate is not yet")


def test_min_days_valid(pki: PKI) -> None:
    """min_days_valid passes with enough days left and refuses with too few."""
    now = pki.rsa.cert.not_valid_before_utc + DAY  # 89 days left
    assert checked(pki.rsa, Checks(min_days_valid=89), now=now).warnings == []
    message = refusal(checked, pki.rsa, Checks(min_days_valid=90), now=now)
    assert "has 89 days left, fewer than min_days_valid (90)" in message


def test_min_days_valid_does_not_block_a_forced_expired_deploy(pki: PKI) -> None:
    """With allow_expired, an expired leaf is not refused again for its days."""
    forced = Checks(allow_expired=True, min_days_valid=30)
    assert checked(pki.expired, forced).sha256 == pki.expired.sha256


# --- expected names ------------------------------------------------------------


def test_expected_names_covered_by_the_sans(pki: PKI) -> None:
    """Every expected name in the SANs passes, whatever its case or final dot."""
    names = ["example.com", "WWW.Example.COM."]
    assert checked(pki.rsa, Checks(expected_names=names)).sha256 == pki.rsa.sha256


def test_missing_expected_name_is_refused_listing_the_sans(pki: PKI) -> None:
    """A name the certificate does not cover is named with the SANs it has."""
    names = ["example.com", "mail.example.com"]
    message = refusal(checked, pki.rsa, Checks(expected_names=names))
    assert "does not cover mail.example.com:" in message
    assert "subjectAltNames are example.com, www.example.com" in message


@pytest.mark.parametrize(
    ("name", "covered"),
    [
        ("www.example.com", True),
        ("API.example.com", True),
        ("example.com", False),
        ("a.b.example.com", False),
        ("wwwexample.com", False),
        ("www.example.org", False),
    ],
)
def test_wildcard_covers_exactly_one_leftmost_label(
    pki: PKI, name: str, covered: bool
) -> None:
    """``*.example.com`` covers one label only: not the apex, not two levels."""
    leaf = pki.leaf(names=["*.example.com"], key_type="ecdsa")
    checks = Checks(expected_names=[name])
    if covered:
        assert checked(leaf, checks).sha256 == leaf.sha256
    else:
        assert f"does not cover {name}" in refusal(checked, leaf, checks)


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ("*.example.com", ".example.com"),
        ("w*.example.com", "www.example.com"),
        ("www.*.com", "www.example.com"),
        ("*.*.example.com", "a.b.example.com"),
    ],
)
def test_only_a_whole_leftmost_wildcard_label_matches(pattern, name) -> None:
    """Partial, inner or double wildcards never match."""
    assert not material.name_matches(pattern, name)


def test_ip_addresses_match_ip_sans() -> None:
    """IPv4 and IPv6 expected names match IP SANs, in any spelling."""
    sans = (
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    )
    cert, key = self_signed(sans)
    loaded = material.load(cert_in(cert), key_in(key))
    names = ["localhost", "127.0.0.1", "::1", "0:0:0:0:0:0:0:1"]
    assert material.check(loaded, Checks(expected_names=names)).warnings == []
    message = refusal(material.check, loaded, Checks(expected_names=["127.0.0.2"]))
    assert "does not cover 127.0.0.2" in message
    assert "localhost, 127.0.0.1, ::1" in message


def test_ip_address_in_a_dns_san_does_not_cover_that_ip() -> None:
    """DNS:10.0.0.1 does not let clients connect to 10.0.0.1; refuse it."""
    cert, key = self_signed((x509.DNSName("10.0.0.1"),))
    loaded = material.load(cert_in(cert), key_in(key))
    message = refusal(material.check, loaded, Checks(expected_names=["10.0.0.1"]))
    assert "does not cover 10.0.0.1: its subjectAltNames are 10.0.0.1" in message


def test_common_name_alone_does_not_cover_a_name() -> None:
    """Without a SAN extension, the CN does not count (clients ignore it)."""
    cert, key = self_signed((), common_name="legacy.example.com")
    loaded = material.load(cert_in(cert), key_in(key))
    checks = Checks(expected_names=["legacy.example.com"])
    message = refusal(material.check, loaded, checks)
    assert "its subjectAltNames are none" in message


# --- F02: chain completeness and trust ---------------------------------------------


def test_leaf_without_chain_gives_a_warning(pki: PKI) -> None:
    """F02: a lone leaf is deployable but the operator is told why it may fail."""
    loaded = material.check(load_leaf(pki.rsa, with_chain=False), Checks())
    assert len(loaded.warnings) == 1
    assert "No chain was given" in loaded.warnings[0]
    assert f"leaf {LEAF} is issued by {INTER}" in loaded.warnings[0]


def test_leaf_with_chain_gives_no_warning(pki: PKI) -> None:
    assert checked(pki.rsa).warnings == []


def test_leaf_without_chain_is_refused_with_require_chain(pki: PKI) -> None:
    """require_chain turns the missing-chain warning into a refusal."""
    loaded = load_leaf(pki.rsa, with_chain=False)
    message = refusal(material.check, loaded, Checks(require_chain=True))
    assert "No chain was given" in message
    assert "Give chain_src or chain_content." in message


def test_self_signed_leaf_needs_no_chain(pki: PKI) -> None:
    """A self-signed certificate has no chain to give: no warning."""
    leaf = pki.leaf(key_type="ecdsa", issuer="self")
    loaded = material.check(
        load_leaf(leaf, with_chain=False), Checks(require_chain=True)
    )
    assert loaded.warnings == []


def test_trust_roots_accept_the_right_chain(pki: PKI) -> None:
    """The chain reaches the given root: accepted, with or without the root."""
    roots = Checks(trust_roots=PemInput(pki.root_pem, "root.pem"))
    assert checked(pki.rsa, roots).warnings == []
    with_root = material.load(
        cert_in(pki.rsa.fullchain_pem + pki.root_pem), key_in(pki.rsa.key_pem)
    )
    assert material.check(with_root, roots).warnings == []


def test_trust_roots_refuse_another_ca(pki: PKI) -> None:
    """A complete chain of another CA does not reach our root: refused."""
    other = pki.other_ca_leaf(key_type="ecdsa")
    roots = Checks(trust_roots=PemInput(pki.root_pem, "root.pem"))
    message = refusal(checked, other, roots)
    assert message.startswith("The chain does not reach a root in root.pem")
    assert f"last certificate {OTHER_INTER} was issued by {OTHER_ROOT}" in message


def test_trust_roots_refuse_a_leaf_without_its_intermediate(pki: PKI) -> None:
    """With trust roots, a lone leaf under an intermediate cannot reach them."""
    roots = Checks(trust_roots=PemInput(pki.root_pem, "root.pem"))
    loaded = load_leaf(pki.rsa, with_chain=False)
    message = refusal(material.check, loaded, roots)
    assert "does not reach a root in root.pem" in message


# --- key types, layouts, normalisation ------------------------------------------


@pytest.mark.parametrize(
    ("kind", "key_type"),
    [("rsa", "RSA 2048"), ("ecdsa", "ECDSA secp256r1"), ("ed25519", "Ed25519")],
)
def test_every_key_type_passes(pki: PKI, kind: str, key_type: str) -> None:
    """RSA, ECDSA and Ed25519 leaves with their keys pass every check."""
    leaf = getattr(pki, kind)
    names = Checks(expected_names=["example.com", "www.example.com"])
    loaded = checked(leaf, names)
    assert loaded.sha256 == leaf.sha256
    assert loaded.summary()["key_type"] == key_type
    assert loaded.layout("key") == leaf.key_pem


def test_key_type_names_ed448_and_any_other_kind() -> None:
    """Messages name every key kind: Ed448, and others by their class."""
    assert material.key_type(ed448.Ed448PrivateKey.generate()) == "Ed448"
    assert material.key_type(dsa.generate_private_key(1024)) == "DSAPrivateKey"


def test_common_name_is_read_from_the_subject(pki: PKI) -> None:
    """The CN (used as the default SNI) is read; no CN gives None."""
    assert material.common_name(pki.rsa.cert) == "example.com"
    assert material.common_name(pki.root_cert) == "Certfleet Test Root CA"
    no_cn = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "No CN")])
    cert = sign("unused", ec_key("no-cn"), subject=no_cn)
    assert material.common_name(cert) is None


@pytest.mark.parametrize(
    ("layout", "parts"),
    [
        ("cert", ["cert"]),
        ("fullchain", ["cert", "chain"]),
        ("chain", ["chain"]),
        ("key", ["key"]),
        ("combined", ["cert", "chain", "key"]),
        ("key_first", ["key", "cert", "chain"]),
    ],
)
def test_layouts_hold_the_right_blocks_in_order(pki: PKI, layout, parts) -> None:
    """Each server layout is exactly its blocks, in the order the server wants."""
    pieces = {
        "cert": pki.rsa.cert_pem,
        "chain": pki.rsa.chain_pem,
        "key": pki.rsa.key_pem,
    }
    data = checked(pki.rsa).layout(layout)
    assert data == b"".join(pieces[p] for p in parts)
    kinds = {"cert": [b"CERTIFICATE"], "chain": [b"CERTIFICATE"],
             "key": [b"PRIVATE KEY"]}
    assert labels(data) == [k for p in parts for k in kinds[p]]


def test_unknown_layout_is_an_error(pki: PKI) -> None:
    message = refusal(checked(pki.rsa).layout, "pkcs12")
    assert message == "Unknown file layout 'pkcs12'."


def _dirty(data: bytes, newline: bytes) -> bytes:
    """The same PEM with a BOM, other line ends and extra blank lines."""
    return b"\xef\xbb\xbf" + data.replace(b"\n", newline) + newline * 3


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"], ids=["crlf", "cr"])
def test_normalisation_gives_the_same_bytes_as_clean_input(
    pki: PKI, newline: bytes
) -> None:
    """BOM, CRLF or CR line ends and trailing blank lines leave no trace."""
    clean = checked(pki.rsa)
    dirty = material.check(
        material.load(
            cert_in(_dirty(pki.rsa.cert_pem, newline)),
            key_in(_dirty(pki.rsa.key_pem, newline)),
            chain_in(_dirty(pki.rsa.chain_pem, newline)),
        ),
        Checks(),
    )
    for name in ("cert", "fullchain", "chain", "key", "combined", "key_first"):
        data = dirty.layout(name)
        assert data == clean.layout(name), name
        assert b"\r" not in data and not data.startswith(b"\xef")
        assert data.endswith(b"-----\n")


def test_key_without_final_newline_gets_one(pki: PKI) -> None:
    """A key pasted without its last newline is written with exactly one."""
    loaded = material.load(
        cert_in(pki.rsa.fullchain_pem), key_in(pki.rsa.key_pem.rstrip(b"\n"))
    )
    assert loaded.layout("key") == pki.rsa.key_pem


@pytest.mark.parametrize(
    "order", [("key", "cert", "chain"), ("cert", "chain", "key")],
    ids=["key_first", "combined"],
)
def test_bundle_with_key_loads_from_the_cert_input(pki: PKI, order) -> None:
    """F07: a key-first or combined bundle given as the only input loads."""
    pieces = {
        "cert": pki.rsa.cert_pem,
        "chain": pki.rsa.chain_pem,
        "key": pki.rsa.key_pem,
    }
    bundle = b"".join(pieces[p] for p in order)
    loaded = material.check(material.load(cert_in(bundle), None), Checks())
    assert loaded.sha256 == pki.rsa.sha256
    assert [material.sha256(c) for c in loaded.chain] == [
        sha256_hex(pki.intermediate_cert)
    ]
    assert loaded.layout("combined") == (
        pki.rsa.cert_pem + pki.rsa.chain_pem + pki.rsa.key_pem
    )


# --- what results and diffs may show ---------------------------------------------


def _key_body_lines(key: bytes) -> list[str]:
    return [
        line for line in key.decode().splitlines() if not line.startswith("-----")
    ]


def test_summary_and_info_never_hold_key_bytes(pki: PKI) -> None:
    """The summary names the certificate and key type, never the key itself."""
    encrypted = pki.rsa.encrypted_key_pem(PASSPHRASE)
    loaded = material.check(
        material.load(
            cert_in(pki.rsa.fullchain_pem), key_in(encrypted), passphrase=PASSPHRASE
        ),
        Checks(),
    )
    summary = loaded.summary()
    text = json.dumps(summary) + json.dumps(material.info(loaded.leaf))
    for secret in _key_body_lines(pki.rsa.key_pem) + _key_body_lines(encrypted):
        assert secret not in text
    assert "PRIVATE KEY" not in text
    assert PASSPHRASE.decode() not in text
    assert summary["subject"] == LEAF
    assert summary["sans"] == ["example.com", "www.example.com"]
    assert summary["sha256"] == pki.rsa.sha256
    assert summary["issuer"] == INTER
    assert summary["chain"] == [
        {"subject": INTER, "sha256": sha256_hex(pki.intermediate_cert)}
    ]
    assert summary["not_after"] == pki.rsa.cert.not_valid_after_utc.isoformat()
    assert summary["days_left"] in (88, 89)


def test_dsa_key_is_refused_by_name(pki: PKI) -> None:
    """A traditional DSA key block gets a message about DSA, not 'unexpected kind'."""
    key = dsa.generate_private_key(2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    with pytest.raises(MaterialError, match="DSA private key"):
        material.load(cert_in(pki.rsa.fullchain_pem), key_in(key))


def test_many_begin_lines_are_read_in_one_pass() -> None:
    """A hostile input of 2 MB of BEGIN lines is refused, not chewed on.

    The old scan was quadratic: 224 KB took 47 s. This asserts the outcome;
    the input size is what would hang a quadratic parser.
    """
    data = b"-----BEGIN CERTIFICATE-----\n" * 80000
    with pytest.raises(MaterialError, match="truncated: 80000 PEM BEGIN"):
        material.split_pem(PemInput(data, "cert_src big.pem"))


def test_duplicate_certificate_is_named_as_such(pki: PKI) -> None:
    doubled = pki.rsa.cert_pem + pki.rsa.cert_pem + pki.rsa.chain_pem
    with pytest.raises(MaterialError, match="given twice in a row"):
        material.check(material.load(cert_in(doubled), key_in(pki.rsa.key_pem)),
                       Checks())


def test_dsa_key_in_pkcs8_form_is_refused(pki: PKI) -> None:
    key = dsa.generate_private_key(2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(MaterialError, match="TLS servers need"):
        material.load(cert_in(pki.rsa.fullchain_pem), key_in(key))
