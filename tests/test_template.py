"""DER templates (pki/x509/template.py) against cryptography's CertificateBuilder.

For any client id, key type, SAN set, validity and serial, the template's TBSCertificate is byte for
byte the builder's; the signature (randomised for ECDSA, so not compared) verifies under the CA; the
certificate passes pkilint and `openssl verify` for every CA key type.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pki.errors import InvalidInput
from pki.keys import SoftwareSigner
from pki.x509 import build
from pki.x509.template import DeviceTemplate, der_to_pem
from tests.support.lint import assert_lint_clean, assert_openssl_verifies

UTC = _dt.timezone.utc
NOW = _dt.datetime.now(UTC).replace(microsecond=0)

CA_KEYS = {
    "rsa-2048": lambda: rsa.generate_private_key(65537, 2048),
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ec-p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


def _ca(key_type: str):
    key = CA_KEYS[key_type]()
    signer = SoftwareSigner(key, key_id=f"key_{key_type}")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Template CA {key_type}")])
    cert = signer.sign_certificate(build.build_ca_certificate(
        subject=name, public_key=key.public_key(), serial=build.random_serial(), not_before=NOW - _dt.timedelta(days=1),
        not_after=NOW + _dt.timedelta(days=3650), path_length=None))
    return signer, cert


CAS = {key_type: _ca(key_type) for key_type in CA_KEYS}
DEVICE_KEYS = [
    ec.generate_private_key(ec.SECP256R1()).public_key(),
    ec.generate_private_key(ec.SECP384R1()).public_key(),
    rsa.generate_private_key(65537, 2048).public_key(),
    ed25519.Ed25519PrivateKey.generate().public_key(),
]

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_sans = st.lists(st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(lambda labels: x509.DNSName(".".join(labels))),
    st.ip_addresses().map(x509.IPAddress),
    st.from_regex(r"urn:example:[a-z0-9]{1,30}", fullmatch=True).map(x509.UniformResourceIdentifier),
), max_size=6).map(tuple)
_client_ids = st.text(min_size=1, max_size=64).filter(lambda t: len(t.encode("utf-8")) <= 64)
_times = st.datetimes(min_value=_dt.datetime(1950, 1, 1), max_value=_dt.datetime(9990, 1, 1), timezones=st.just(UTC))
_urls = st.one_of(st.none(), st.from_regex(r"https?://[a-z]{1,12}\.example/[a-z0-9/]{0,20}", fullmatch=True))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ca_type=st.sampled_from(sorted(CAS)), device_key=st.sampled_from(DEVICE_KEYS), client_id=_client_ids,
       sans=_sans, not_before=_times, days=st.integers(min_value=0, max_value=40000),
       seconds=st.integers(min_value=1, max_value=86400), serial=st.integers(min_value=1, max_value=2**159 - 1),
       crl_url=_urls, ocsp_url=_urls)
def test_template_tbs_is_the_builders(ca_type, device_key, client_id, sans, not_before, days, seconds, serial,
                                      crl_url, ocsp_url):
    signer, ca_cert = CAS[ca_type]
    not_after = min(not_before + _dt.timedelta(days=days, seconds=seconds), _dt.datetime(9999, 12, 31, tzinfo=UTC))
    reference = signer.sign_certificate(build.build_device_certificate(
        issuer=ca_cert, public_key=device_key, client_id=client_id, serial=serial, not_before=not_before,
        not_after=not_after, sans=sans, crl_url=crl_url, ocsp_url=ocsp_url))
    template = DeviceTemplate(issuer=ca_cert, signer_key_type=signer.key_type, crl_url=crl_url, ocsp_url=ocsp_url)
    issued = template.issue(signer, public_key=device_key, client_id=client_id, serial=serial, not_before=not_before,
                            not_after=not_after, sans=sans)
    cert = x509.load_der_x509_certificate(issued.der)
    assert cert.tbs_certificate_bytes == reference.tbs_certificate_bytes
    assert cert.signature_algorithm_oid == reference.signature_algorithm_oid
    cert.verify_directly_issued_by(ca_cert)  # raises unless the CA's key signed exactly these TBS bytes
    assert (issued.serial, issued.not_before, issued.not_after) == (
        reference.serial_number, reference.not_valid_before_utc, reference.not_valid_after_utc)
    assert issued.pem == cert.public_bytes(Encoding.PEM)


@pytest.mark.parametrize("ca_type", sorted(CAS))
def test_templated_certificates_lint_clean_and_verify_with_openssl(ca_type, tmp_path):
    signer, ca_cert = CAS[ca_type]
    template = DeviceTemplate(issuer=ca_cert, signer_key_type=signer.key_type, crl_url="http://crl.example/ca.crl",
                              ocsp_url="http://ocsp.example/")
    ca_pem = der_to_pem(ca_cert.public_bytes(Encoding.DER))
    for device_key in DEVICE_KEYS:
        issued = template.issue(
            signer, public_key=device_key, client_id="sensor-0042", serial=build.random_serial(),
            not_before=NOW - build.BACKDATE, not_after=NOW + _dt.timedelta(days=365),
            sans=(x509.DNSName("sensor-0042.example"), x509.IPAddress(ipaddress.ip_address("192.0.2.7"))))
        assert_lint_clean(issued.der)
        assert_openssl_verifies(issued.pem, [ca_pem], tmp_dir=tmp_path)


def _template(ca_type="ec-p256"):
    signer, ca_cert = CAS[ca_type]
    return signer, DeviceTemplate(issuer=ca_cert, signer_key_type=signer.key_type)


@pytest.mark.parametrize("client_id", ["", "x" * 65, "é" * 33])
def test_a_cn_the_builder_refuses_is_refused(client_id):
    signer, template = _template()
    with pytest.raises(InvalidInput) as caught:
        template.issue(signer, public_key=DEVICE_KEYS[0], client_id=client_id, serial=5, not_before=NOW,
                       not_after=NOW + _dt.timedelta(days=1))
    assert caught.value.code == "invalid_client_id"


@pytest.mark.parametrize("serial", [0, -1, 2**159])
def test_a_serial_outside_rfc5280_is_refused(serial):
    signer, template = _template()
    with pytest.raises(InvalidInput) as caught:
        template.issue(signer, public_key=DEVICE_KEYS[0], client_id="d", serial=serial, not_before=NOW,
                       not_after=NOW + _dt.timedelta(days=1))
    assert caught.value.code == "invalid_serial"


def test_a_ca_key_type_with_no_signature_algorithm_is_refused():
    with pytest.raises(InvalidInput) as caught:
        DeviceTemplate(issuer=CAS["ec-p256"][1], signer_key_type="ed448")
    assert caught.value.code == "unsupported_key_type"
