#!/usr/bin/env python3
"""Write the static certificate fixtures the tests use.

    python scripts/make_fixtures.py [--out fixtures]

Each fixture is named for what it is and, for the bad ones, carries exactly one
defect on top of an otherwise good CA profile, so a test that expects a given
refusal cannot pass because of some other defect. `fixtures/README.md` lists
them with the defect each one carries.

Deterministic enough to regenerate without churn: names, serials and dates are
fixed; EC and Ed25519 keys are derived from the fixture name and ECDSA
signatures are deterministic (RFC 6979), so those files come out byte for byte
the same on every run. RSA and DSA keys are fresh on each run, because
cryptography cannot generate them from a seed.

Everything written here is test material: the private keys are public on
purpose. Never derive a real key the way `_derived_key` does.

What cryptography 50 refuses to make (SHA-1 and MD5 signatures; serials that
are zero, negative or over 20 octets) is made at test time with the openssl CLI
instead, by tests/support/openssl.py.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID

PrivateKey = (
    ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | dsa.DSAPrivateKey | ed25519.Ed25519PrivateKey
)

# Makes the key for the fixture of the given name.
KeyFactory = Callable[[str], PrivateKey]

ORGANIZATION = "Device PKI Test"

# Fixed dates, far enough out that the "good" files never need regenerating.
UTC = datetime.UTC
GOOD_NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=UTC)
GOOD_NOT_AFTER = datetime.datetime(2055, 1, 1, tzinfo=UTC)

# A private-enterprise OID nobody implements, for the unknown critical extension.
UNKNOWN_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")

CA_BASIC_CONSTRAINTS = x509.BasicConstraints(ca=True, path_length=None)


def key_usage(**flags: bool) -> x509.KeyUsage:
    """A KeyUsage with only the named bits set (the constructor wants all nine)."""
    bits = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    unknown = flags.keys() - bits.keys()
    if unknown:
        raise TypeError(f"unknown key usage bits: {sorted(unknown)}")
    bits.update(flags)
    return x509.KeyUsage(**bits)


CA_KEY_USAGE = key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True)


# --- keys -----------------------------------------------------------------


def _seed(name: str, purpose: str, size: int) -> bytes:
    """`size` bytes that depend only on the fixture name and what they are for."""
    return hashlib.shake_256(f"device-pki-fixture/{purpose}/{name}".encode()).digest(size)


def _derived_key(name: str, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    # Any scalar in [1, 2**(n-1)) is below the group order of the NIST prime
    # curves, so truncating the seed to n-1 bits always gives a valid key.
    bits = curve.key_size - 1
    scalar = int.from_bytes(_seed(name, "ec-key", (bits + 7) // 8), "big")
    scalar = scalar % (1 << bits) or 1
    return ec.derive_private_key(scalar, curve)


def ec_key(curve: ec.EllipticCurve) -> KeyFactory:
    return lambda name: _derived_key(name, curve)


def ed25519_key(name: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(_seed(name, "ed25519-key", 32))


def rsa_key(bits: int) -> KeyFactory:
    return lambda name: rsa.generate_private_key(public_exponent=65537, key_size=bits)


def dsa_key(bits: int) -> KeyFactory:
    return lambda name: dsa.generate_private_key(key_size=bits)


def _signature_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None  # EdDSA hashes internally; cryptography wants None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        # Match the hash to the curve strength, as CAs conventionally do.
        if key.curve.key_size > 384:
            return hashes.SHA512()
        if key.curve.key_size > 256:
            return hashes.SHA384()
    return hashes.SHA256()


def _serial(name: str) -> int:
    # 127 bits, positive: well inside the 20-octet limit, and distinct per
    # fixture, since the project names CAs by their serial.
    return int.from_bytes(_seed(name, "serial", 16), "big") >> 1 or 1


# --- certificates -----------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    name: str
    cert: x509.Certificate
    key: PrivateKey


def _subject(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )


def make_cert(
    name: str,
    common_name: str,
    key: PrivateKey,
    *,
    issuer: Issued | None = None,
    not_before: datetime.datetime = GOOD_NOT_BEFORE,
    not_after: datetime.datetime = GOOD_NOT_AFTER,
    basic_constraints: x509.BasicConstraints | None = CA_BASIC_CONSTRAINTS,
    key_usage: x509.KeyUsage | None = CA_KEY_USAGE,
    extra_extensions: Iterable[x509.ExtensionType] = (),
) -> Issued:
    """A certificate with the CA profile, minus or plus what the caller says.

    Self-signed unless `issuer` is given. Passing None for `basic_constraints`
    or `key_usage` leaves that extension out entirely. `extra_extensions` are
    added as critical: the only use is the unknown critical extension.
    """
    subject = _subject(common_name)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(_serial(name))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if basic_constraints is not None:
        builder = builder.add_extension(basic_constraints, critical=True)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    for extension in extra_extensions:
        builder = builder.add_extension(extension, critical=True)
    cert = builder.sign(
        signer_key,
        _signature_hash(signer_key),
        ecdsa_deterministic=True if isinstance(signer_key, ec.EllipticCurvePrivateKey) else None,
    )
    return Issued(name, cert, key)


def corrupt_signature(der: bytes) -> bytes:
    """The same certificate with one bit of its signature flipped.

    The signature BIT STRING is the last field of a Certificate, so the last
    byte of the DER is the last byte of the signature: flipping its low bit
    leaves every length, and so the DER, intact. For ECDSA the flipped byte is
    the end of `s`, so the inner Ecdsa-Sig-Value stays well-formed too and
    the only thing wrong is that the signature does not verify.
    """
    return der[:-1] + bytes([der[-1] ^ 0x01])


def to_indefinite_length(der: bytes) -> bytes:
    """Re-encode the outer SEQUENCE with BER indefinite length (0x80 ... 00 00)."""
    if der[0] != 0x30:
        raise ValueError("expected a DER SEQUENCE")
    first = der[1]
    header = 2 + (first & 0x7F if first & 0x80 else 0)
    return b"\x30\x80" + der[header:] + b"\x00\x00"


# --- output -------------------------------------------------------------------


class FixtureWriter:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[str] = []

    def write(self, filename: str, data: bytes) -> None:
        (self.out / filename).write_bytes(data)
        self.written.append(filename)

    def write_issued(self, issued: Issued) -> None:
        """`<name>.pem` and `<name>.key.pem` (unencrypted PKCS#8)."""
        self.write(f"{issued.name}.pem", pem(issued.cert))
        self.write(
            f"{issued.name}.key.pem",
            issued.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def make_all(out: Path) -> list[str]:
    """Write every fixture into `out`; return the file names written."""
    out.mkdir(parents=True, exist_ok=True)
    w = FixtureWriter(out)

    def ca(name: str, common_name: str, new_key: KeyFactory, **options) -> Issued:
        issued = make_cert(name, common_name, new_key(name), **options)
        w.write_issued(issued)
        return issued

    # Good roots, one per key type the project accepts.
    root_p256 = ca("ca_root_ec_p256", "Device PKI Test Root CA EC P-256", ec_key(ec.SECP256R1()))
    ca("ca_root_ec_p384", "Device PKI Test Root CA EC P-384", ec_key(ec.SECP384R1()))
    ca("ca_root_ec_p521", "Device PKI Test Root CA EC P-521", ec_key(ec.SECP521R1()))
    ca("ca_root_rsa2048", "Device PKI Test Root CA RSA 2048", rsa_key(2048))
    ca("ca_root_ed25519", "Device PKI Test Root CA Ed25519", ed25519_key)
    second_root = ca(
        "ca_second_root_ec_p256", "Device PKI Test Second Root CA EC P-256", ec_key(ec.SECP256R1())
    )
    ca(
        "ca_intermediate_ec_p256",
        "Device PKI Test Intermediate CA EC P-256",
        ec_key(ec.SECP256R1()),
        issuer=root_p256,
        basic_constraints=x509.BasicConstraints(ca=True, path_length=0),
    )
    # The chain from the intermediate up to (and including) its root, for --chain.
    w.write("ca_intermediate_chain.pem", pem(root_p256.cert))

    # Not a CA, or not allowed to sign certificates.
    p256 = ec_key(ec.SECP256R1())
    ca(
        "leaf_no_basic_constraints",
        "Device PKI Test No basicConstraints",
        p256,
        basic_constraints=None,
    )
    ca(
        "cert_ca_false",
        "Device PKI Test CA FALSE",
        p256,
        basic_constraints=x509.BasicConstraints(ca=False, path_length=None),
    )
    ca(
        "ca_no_key_cert_sign",
        "Device PKI Test CA without keyCertSign",
        p256,
        key_usage=key_usage(digital_signature=True, crl_sign=True),
    )
    ca("ca_no_key_usage", "Device PKI Test CA without keyUsage", p256, key_usage=None)
    ca(
        "ca_unknown_critical_extension",
        "Device PKI Test CA with unknown critical extension",
        p256,
        # The value is a DER NULL: the content does not matter, only that no
        # one recognises the OID while it is marked critical.
        extra_extensions=[x509.UnrecognizedExtension(UNKNOWN_EXTENSION_OID, b"\x05\x00")],
    )

    # Outside their validity period.
    ca(
        "ca_expired",
        "Device PKI Test Expired CA",
        p256,
        not_before=datetime.datetime(2010, 1, 1, tzinfo=UTC),
        not_after=datetime.datetime(2011, 1, 1, tzinfo=UTC),
    )
    ca(
        "ca_not_yet_valid",
        "Device PKI Test Not Yet Valid CA",
        p256,
        not_before=datetime.datetime(2090, 1, 1, tzinfo=UTC),
        not_after=datetime.datetime(2091, 1, 1, tzinfo=UTC),
    )

    # Weak keys, each signed with SHA-256 so the key is the only weakness.
    ca("ca_rsa1024", "Device PKI Test CA RSA 1024", rsa_key(1024))
    ca("ca_dsa2048", "Device PKI Test CA DSA 2048", dsa_key(2048))
    ca("ca_ec_p192", "Device PKI Test CA EC P-192", ec_key(ec.SECP192R1()))

    # A self-signature that does not verify.
    name = "ca_bad_self_signature"
    good = make_cert(name, "Device PKI Test CA with bad self-signature", p256(name))
    corrupted = x509.load_der_x509_certificate(corrupt_signature(der(good.cert)))
    w.write_issued(Issued(name, corrupted, good.key))

    # Parsing: the encodings around a good certificate.
    root_pem, root_der = pem(root_p256.cert), der(root_p256.cert)
    w.write("ca_root_ec_p256.der", root_der)
    w.write("two_certificates.pem", root_pem + pem(second_root.cert))
    w.write("trailing_garbage.pem", root_pem + b"garbage\n")
    w.write("der_trailing_bytes.der", root_der + b"\x00\x01\x02")
    w.write("der_truncated.der", root_der[: len(root_der) // 2])
    w.write("ber_indefinite_length.der", to_indefinite_length(root_der))
    w.write("missing_end_line.pem", root_pem[: root_pem.index(b"-----END")])
    w.write("corrupted_base64.pem", _corrupt_base64(root_pem))
    csr_key = p256("csr_as_certificate")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject("Device PKI Test CSR"))
        .sign(csr_key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    w.write("csr_as_certificate.pem", csr.public_bytes(serialization.Encoding.PEM))
    return w.written


def _corrupt_base64(pem_bytes: bytes) -> bytes:
    """Replace three base64 characters of the first body line with '!'.

    Three, not four: a lenient decoder that skips characters outside the
    alphabet is then left with a length that is not a multiple of four, so
    it cannot quietly decode something else either.
    """
    lines = pem_bytes.split(b"\n")
    body = bytearray(lines[1])
    for i in (10, 20, 30):
        body[i] = ord("!")
    lines[1] = bytes(body)
    return b"\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("fixtures"),
        help="directory to write into (default: fixtures)",
    )
    args = parser.parse_args(argv)
    written = make_all(args.out)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
