"""EST (RFC 7030) through the HTTP layer: enroll with claims or bootstrap certificates, reenroll, refusals.

The TLS client certificate reaches the app in ``scope["extensions"]["tls"]`` (asgiref specs/tls.rst), as
pki.http.tls puts it there after a real handshake (tests/test_est_tls.py does that one, with curl); here a
tiny ASGI wrapper sets it, so every refusal can be checked for its status and an unchanged store.
"""

from __future__ import annotations

import base64
import datetime as _dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from pki.services import devices, enrollment, managed
from tests.support import snapshot
from tests.support.http_app import app_for, plain_client
from tests.support.lint import assert_lint_clean

EST = "/.well-known/est"


def _csr(key, cn: str, *, sans=None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return base64.encodebytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def _client(ctx, cert: x509.Certificate | None = None):
    app = app_for(ctx)
    if cert is None:
        return plain_client(app)
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()

    async def with_tls(scope, receive, send):
        if scope["type"] == "http":
            scope.setdefault("extensions", {})["tls"] = {"client_cert_chain": [pem], "client_cert_error": None}
        await app(scope, receive, send)

    return plain_client(with_tls)


def _post(client, op: str, body: bytes, *, auth=None, label: str | None = None):
    path = f"{EST}/{label}/{op}" if label else f"{EST}/{op}"
    return client.post(path, content=body, auth=auth, headers={"Content-Type": "application/pkcs10"})


def _issued(response) -> x509.Certificate:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/pkcs7-mime")
    certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(response.content))
    assert len(certs) == 1
    return certs[0]


@pytest.fixture
def est_world(ctx):
    ca = managed.create_ca(ctx, name="Fleet Root")
    dev = devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="gw-1")
    return ca.sn, dev


def _refused(ctx, response_fn, status: int, text: str):
    before = snapshot(ctx)
    response = response_fn()
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert text in response.text
    assert snapshot(ctx) == before
    return response


def test_cacerts_and_csrattrs(ctx, est_world):
    ca, _ = est_world
    client = _client(ctx)
    response = client.get(f"{EST}/cacerts")
    assert response.status_code == 200 and response.headers["content-transfer-encoding"] == "base64"
    certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(response.content))
    assert [c.serial_number for c in certs] == [int(ca, 16)]
    assert client.get(f"{EST}/csrattrs").status_code == 204
    _refused(ctx, lambda: client.get(f"{EST}/nolabel/cacerts"), 404, "est_ca_not_found")
    enrollment.update_ca(ctx, ca, est_label="fab")
    assert client.get(f"{EST}/fab/cacerts").status_code == 200


def test_enroll_with_claim_then_refusals(ctx, clock, est_world):
    ca, _ = est_world
    claim = enrollment.create_claim(ctx, ca=ca, uses=2, ttl=_dt.timedelta(hours=1), client_id_prefix="gw-")
    auth = (claim["claim_id"], claim["password"])
    client = _client(ctx)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issued(_post(client, "simpleenroll", _csr(key, "gw-7"), auth=auth))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-7"
    assert_lint_clean(cert.public_bytes(serialization.Encoding.DER))
    row = devices.find_devices(ctx, client_id="gw-7").items[0]
    assert row.status == "ACTIVE"
    # one client id enrolls once per claim
    _refused(ctx, lambda: _post(client, "simpleenroll", _csr(key, "gw-7"), auth=auth), 409, "claim_used")
    _refused(ctx, lambda: _post(client, "simpleenroll", _csr(key, "other-1"), auth=auth), 403,
             "claim_client_id_prefix")
    wrong = _refused(ctx, lambda: _post(client, "simpleenroll", _csr(key, "gw-8"), auth=(auth[0], "wrong")), 401,
                     "claim_invalid")
    assert wrong.headers["www-authenticate"].startswith("Basic")
    _refused(ctx, lambda: _post(client, "simpleenroll", _csr(key, "gw-8")), 401, "est_unauthenticated")
    _refused(ctx, lambda: _post(client, "simpleenroll", b"not base64 !!", auth=auth), 400, "invalid_base64")
    _refused(ctx, lambda: _post(client, "simpleenroll", b"A" * (80 * 1024), auth=auth), 413, "request_too_large")
    _issued(_post(client, "simpleenroll", _csr(key, "gw-8"), auth=auth))
    _refused(ctx, lambda: _post(client, "simpleenroll", _csr(key, "gw-9"), auth=auth), 403, "claim_exhausted")
    late = enrollment.create_claim(ctx, ca=ca, ttl=_dt.timedelta(minutes=5))
    clock.advance(_dt.timedelta(minutes=6))
    _refused(ctx, lambda: _post(client, "simpleenroll", _csr(key, "gw-10"), auth=(late["claim_id"], late["password"])),
             401, "claim_expired")


def test_enroll_with_bootstrap_certificate(ctx, est_world):
    ca, _ = est_world
    boot = managed.create_ca(ctx, name="Bootstrap Root")
    enrollment.update_ca(ctx, boot.sn, bootstrap_only=True)
    enrollment.update_ca(ctx, ca, est_default=True)
    factory = devices.issue_device(ctx, ca=boot.sn, generate=True, client_id="gw-20")
    client = _client(ctx, factory.certificate)
    key = ec.generate_private_key(ec.SECP256R1())
    _refused(ctx, lambda: _post(client, "simpleenroll", _csr(key, "gw-21")), 403, "est_wrong_client_id")
    cert = _issued(_post(client, "simpleenroll", _csr(key, "gw-20")))
    assert cert.issuer == x509.load_pem_x509_certificate(
        enrollment.update_ca(ctx, ca)["certificate_pem"].encode()).subject
    # a bootstrap certificate never renews
    _refused(ctx, lambda: _post(client, "simplereenroll", _csr(factory.private_key, "gw-20")), 403,
             "est_bootstrap_only")


def test_reenroll_renew_and_rekey(ctx, est_world):
    ca, dev = est_world
    client = _client(ctx, dev.certificate)
    renewed = _issued(_post(client, "simplereenroll", _csr(dev.private_key, "gw-1")))
    assert renewed.public_key() == dev.certificate.public_key()
    assert_lint_clean(renewed.public_bytes(serialization.Encoding.DER))
    detail = devices.show_device(ctx, ca=ca, sn=dev.device.sn)
    assert detail.status == "ACTIVE"  # superseded after the grace
    # The device lost that answer and asks again: the lost certificate is superseded at once.
    again = _issued(_post(client, "simplereenroll", _csr(dev.private_key, "gw-1")))
    lost = devices.show_device(ctx, ca=ca, sn=format(renewed.serial_number, "x"))
    assert lost.status == "REVOKED" and lost.revocation_reason == "superseded"
    assert devices.show_device(ctx, ca=ca, sn=dev.device.sn).status == "ACTIVE"
    renewed = again
    # the renewed certificate rekeys in turn
    new_key = ec.generate_private_key(ec.SECP256R1())
    rekeyed = _issued(_post(_client(ctx, renewed), "simplereenroll", _csr(new_key, "gw-1")))
    assert rekeyed.public_key() == new_key.public_key()


def test_reenroll_refusals(ctx, clock, est_world):
    ca, dev = est_world
    client = _client(ctx, dev.certificate)
    key = dev.private_key
    _refused(ctx, lambda: _post(client, "simplereenroll", _csr(key, "someone-else")), 400, "est_subject_mismatch")
    _refused(ctx, lambda: _post(client, "simplereenroll", _csr(key, "gw-1", sans=[x509.DNSName("x.example")])), 400,
             "est_subject_mismatch")
    bad = bytearray(base64.b64decode(_csr(key, "gw-1")))
    bad[-3] ^= 1
    _refused(ctx, lambda: _post(client, "simplereenroll", base64.encodebytes(bytes(bad))), 400, "csr_bad_signature")
    _refused(ctx, lambda: _post(client, "simplereenroll", b"%%%"), 400, "invalid_base64")
    _refused(ctx, lambda: _post(_client(ctx), "simplereenroll", _csr(key, "gw-1")), 401, "est_unauthenticated")
    stranger = devices.issue_device(ctx, ca=ca, generate=True, client_id="gw-2")
    foreign = x509.CertificateBuilder().subject_name(stranger.certificate.subject).issuer_name(
        stranger.certificate.subject).public_key(stranger.private_key.public_key()).serial_number(1).not_valid_before(
        clock.now() - _dt.timedelta(days=1)).not_valid_after(clock.now() + _dt.timedelta(days=1)).sign(
        stranger.private_key, hashes.SHA256())
    _refused(ctx, lambda: _post(_client(ctx, foreign), "simplereenroll", _csr(stranger.private_key, "gw-2")), 401,
             "est_certificate_invalid")
    devices.revoke_device(ctx, ca=ca, sn=stranger.device.sn)
    _refused(ctx, lambda: _post(_client(ctx, stranger.certificate), "simplereenroll",
                                _csr(stranger.private_key, "gw-2")), 401, "est_certificate_invalid")
    # expired: refused, unless the CA allows a window after expiry
    clock.set(dev.certificate.not_valid_after_utc + _dt.timedelta(days=1))
    _refused(ctx, lambda: _post(client, "simplereenroll", _csr(key, "gw-1")), 401, "est_certificate_expired")
    enrollment.update_ca(ctx, ca, renew_after_expiry=_dt.timedelta(days=7))
    renewed = _issued(_post(client, "simplereenroll", _csr(key, "gw-1")))
    assert renewed.not_valid_after_utc > clock.now()


def test_never_500_on_garbage(ctx, est_world):
    client = _client(ctx)
    for body in (b"", b"\x00" * 10, base64.encodebytes(b"\x30\x03\x02\x01\x00")):
        response = _post(client, "simpleenroll", body, auth=("clm-x", "y"))
        assert response.status_code in (400, 401), response.text
    response = client.post(f"{EST}/simpleenroll", content=b"x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


def test_client_checks_before_the_swap_and_recovers_a_half_swap(ctx, clock, est_world, tmp_path):
    from pki import est_client
    from pki.errors import InvalidState
    from tests.support.certs import make_root

    ca, dev = est_world
    ca_cert = x509.load_pem_x509_certificate(enrollment.update_ca(ctx, ca)["certificate_pem"].encode())
    pair = est_client.Pair(tmp_path / "device", "gw-1")
    pair.directory.mkdir()
    pair.cert.write_bytes(dev.certificate.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(dev.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    other_root, _ = make_root("Someone Else")
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    for cert, key, cas in ((dev.certificate, dev.private_key, [other_root]),  # not issued by the EST CA
                           (dev.certificate, stranger_key, [ca_cert])):      # not for this key
        before = {p.name: p.read_bytes() for p in pair.directory.iterdir()}
        with pytest.raises(InvalidState) as info:
            est_client.install(pair, cert, new_key=key if key is not dev.private_key else None, cas=cas)
        assert info.value.code == "est_verify_failed"
        assert {p.name: p.read_bytes() for p in pair.directory.iterdir()} == before  # nothing written
    # a rekey killed between its two renames: the key went in, the certificate did not
    new_key = ec.generate_private_key(ec.SECP256R1())
    new = devices.issue_device(ctx, ca=ca, csr=x509.CertificateSigningRequestBuilder().subject_name(
        dev.certificate.subject).sign(new_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    pair.new(pair.cert).write_bytes(new.certificate.public_bytes(serialization.Encoding.PEM))
    est_client.recover(pair)
    assert x509.load_pem_x509_certificate(pair.cert.read_bytes()) == new.certificate
    assert not pair.new(pair.cert).exists()
