"""OpenSSL subject hashes computed here equal `openssl x509 -subject_hash`."""

from __future__ import annotations

import datetime as _dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from tests.support import openssl as openssl_tools
from tests.support import FIXTURES
from tests.support.certs import pem
from pki.x509 import name_hash, subject_hash


def _fixture_certs():
    out = []
    for path in sorted(FIXTURES.glob("*.pem")):
        if path.name.endswith(".key.pem"):
            continue
        try:
            certs = x509.load_pem_x509_certificates(path.read_bytes())
        except ValueError:
            continue
        if len(certs) == 1:
            out.append(path)
    return out


@pytest.mark.parametrize("path", _fixture_certs(), ids=lambda p: p.name)
def test_fixture_subject_hashes_match_openssl(path, openssl):
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    assert subject_hash(cert) == openssl_tools.subject_hash(path)


def _cert_with(name: x509.Name):
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.timezone.utc)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + _dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


A = x509.NameAttribute
_NAMES = {
    "case_and_spaces": x509.Name([A(NameOID.COMMON_NAME, "  Fleet    ROOT\tCA  ")]),
    "printable_country_org": x509.Name([A(NameOID.COUNTRY_NAME, "DE"), A(NameOID.ORGANIZATION_NAME, "ACME GmbH")]),
    "bmp_string": x509.Name([A(NameOID.COMMON_NAME, "Bmp Name", _type=_ASN1Type.BMPString)]),
    "universal_string": x509.Name([A(NameOID.COMMON_NAME, "Univ Name", _type=_ASN1Type.UniversalString)]),
    "non_ascii_utf8": x509.Name([A(NameOID.COMMON_NAME, "Größe ÜBER Ünïcode")]),
    "email_ia5": x509.Name([A(NameOID.EMAIL_ADDRESS, "Ops@Example.COM"), A(NameOID.COMMON_NAME, "x")]),
    "multi_valued_rdn": x509.Name([
        x509.RelativeDistinguishedName([A(NameOID.COMMON_NAME, "b"), A(NameOID.ORGANIZATION_NAME, "A")]),
        x509.RelativeDistinguishedName([A(NameOID.COUNTRY_NAME, "US")]),
    ]),
    "serial_number_printable": x509.Name([A(NameOID.SERIAL_NUMBER, "AB 12"), A(NameOID.COMMON_NAME, "dev")]),
    "empty": x509.Name([]),
}


@pytest.mark.parametrize("label", sorted(_NAMES))
def test_tricky_names_match_openssl(label, tmp_path, openssl):
    cert = _cert_with(_NAMES[label])
    path = tmp_path / "cert.pem"
    path.write_bytes(pem(cert))
    assert subject_hash(cert) == openssl_tools.subject_hash(path)
    assert name_hash(cert.subject) == subject_hash(cert)


def test_hash_ignores_case_and_whitespace_like_openssl():
    a = x509.Name([A(NameOID.COMMON_NAME, "Fleet Root")])
    b = x509.Name([A(NameOID.COMMON_NAME, "  fleet   ROOT ")])
    assert name_hash(a) == name_hash(b)
    assert name_hash(a) != name_hash(x509.Name([A(NameOID.COMMON_NAME, "Fleet Root 2")]))
