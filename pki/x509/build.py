"""Building certificates: CA and device profiles, the verification certificate."""

from __future__ import annotations

import datetime as _dt
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, ed448, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from ..errors import InvalidInput

__all__ = [
    "build_ca_certificate",
    "build_device_certificate",
    "build_verification_certificate",
    "hash_for_key",
    "random_serial",
]

#: Backdating absorbs clock skew between the signing host and the registry.
BACKDATE = _dt.timedelta(minutes=5)


def random_serial() -> int:
    """159 random bits, positive, at most 20 octets (RFC 5280 4.1.2.2)."""
    return secrets.randbits(159) | 1


def hash_for_key(private_key) -> hashes.HashAlgorithm | None:
    """The signature hash that matches the key's strength; None for EdDSA."""
    if isinstance(private_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(private_key.curve.key_size, hashes.SHA256())
    if isinstance(private_key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    raise InvalidInput("this private key type cannot sign here; use EC, RSA or Ed25519", code="unsupported_key_type")


def build_verification_certificate(
    *,
    ca_cert: x509.Certificate,
    ca_key,
    code: str,
    now: _dt.datetime,
    lifetime: _dt.timedelta = _dt.timedelta(days=1),
) -> x509.Certificate:
    """A certificate with CN = register code, signed by the CA's key.

    Its own key pair is throwaway: only the CA's signature matters.
    """
    if ca_key.public_key() != ca_cert.public_key():
        raise InvalidInput(
            "the CA private key does not belong to the CA certificate; give the matching pair",
            code="key_mismatch",
        )
    subject_key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, code)]))
        .issuer_name(ca_cert.subject)
        .public_key(subject_key.public_key())
        .serial_number(random_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
        .add_extension(_aki(ca_cert), critical=False)
    )
    return builder.sign(ca_key, hash_for_key(ca_key))


def _key_usage(*, digital_signature=False, key_encipherment=False, key_cert_sign=False, crl_sign=False):
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=key_encipherment,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign, crl_sign=crl_sign,
        encipher_only=False, decipher_only=False,
    )


def leaf_builder(*, cn: str, issuer: x509.Certificate, public_key, serial: int, not_before: _dt.datetime,
                 not_after: _dt.datetime) -> x509.CertificateBuilder:
    """What every end-entity certificate issued here starts with: CN, issuer, key, serial, validity, CA:FALSE."""
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI = the issuer's SKI when it has one, so chains built by SKI/AKI match."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())


def build_ca_certificate(
    *,
    subject: x509.Name,
    public_key,
    serial: int,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
    path_length: int | None,
    issuer: x509.Certificate | None = None,
) -> x509.CertificateBuilder:
    """A CA profile: a self-signed root when ``issuer`` is None, else an intermediate."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(_aki(issuer), critical=False)
    return builder


def build_device_certificate(
    *,
    issuer: x509.Certificate,
    public_key,
    client_id: str,
    serial: int,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
    sans: tuple[x509.GeneralName, ...] = (),
    crl_url: str | None = None,
    ocsp_url: str | None = None,
) -> x509.CertificateBuilder:
    """The device profile.  Nothing comes from a CSR but the key (and maybe the CN)."""
    builder = (
        leaf_builder(cn=client_id, issuer=issuer, public_key=public_key, serial=serial, not_before=not_before,
                     not_after=not_after)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=isinstance(public_key, rsa.RSAPublicKey)),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_aki(issuer), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]
            ),
            critical=False,
        )
    if ocsp_url:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]
            ),
            critical=False,
        )
    return builder
