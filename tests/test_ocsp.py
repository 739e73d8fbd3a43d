"""The OCSP responder and the unauthenticated HTTP paths, against `openssl ocsp` and raw requests."""

from __future__ import annotations

import base64
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient

from tests.support import skip_or_fail, snapshot
from tests.support.certs import load_pair, pem, verification_pem
from pki.http import PUBLIC_PATHS, create_app
from pki.services import cas, codes, devices, managed
from pki.services import ocsp as ocsp_service
from pki.store import repos


def _ca_cert(ctx, sn) -> x509.Certificate:
    with ctx.store.transaction(readonly=True) as session:
        return x509.load_der_x509_certificate(repos.get_ca_by_sn(session, instance=ctx.instance, sn=sn).cert_der)


def _request(cert, issuer, *, nonce: bytes | None = None, algorithm=hashes.SHA1()) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.fixture
def fleet(ctx):
    root = managed.create_ca(ctx, name="OCSP Root")
    good = devices.issue_device(ctx, ca=root.sn, generate=True, client_id="good")
    bad = devices.issue_device(ctx, ca=root.sn, generate=True, client_id="bad")
    held = devices.issue_device(ctx, ca=root.sn, generate=True, client_id="held")
    devices.revoke_device(ctx, ca=root.sn, sn=bad.device.sn, reason="keyCompromise")
    devices.deactivate_device(ctx, ca=root.sn, sn=held.device.sn)
    return root, good, bad, held


def test_responses_good_revoked_hold_unknown_signed_by_delegate(ctx, fleet):
    root, good, bad, held = fleet
    issuer = _ca_cert(ctx, root.sn)
    answers = {}
    for name, issued in (("good", good), ("bad", bad), ("held", held)):
        der = ocsp_service.respond(ctx, _request(issued.certificate, issuer, nonce=b"0123456789abcdef"))
        answers[name] = ocsp.load_der_ocsp_response(der)
    assert answers["good"].certificate_status == ocsp.OCSPCertStatus.GOOD
    assert answers["bad"].certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answers["bad"].revocation_reason == x509.ReasonFlags.key_compromise
    assert answers["held"].revocation_reason == x509.ReasonFlags.certificate_hold
    for resp in answers.values():
        assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"0123456789abcdef"
        responder = resp.certificates[0]
        responder.verify_directly_issued_by(issuer)
        assert x509.ExtendedKeyUsageOID.OCSP_SIGNING in responder.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage).value
        assert responder.public_key() != issuer.public_key()  # delegated: the CA key signs nothing here
    # One delegated certificate, reused.
    assert len({r.certificates[0].serial_number for r in answers.values()}) == 1

    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        answers["good"].issuer_name_hash, answers["good"].issuer_key_hash, 0x1234, hashes.SHA1())
    unknown = ocsp.load_der_ocsp_response(
        ocsp_service.respond(ctx, builder.build().public_bytes(serialization.Encoding.DER)))
    assert unknown.certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    # SHA-256 CertIDs are answered too.
    sha256 = ocsp.load_der_ocsp_response(ocsp_service.respond(ctx, _request(good.certificate, issuer,
                                                                            algorithm=hashes.SHA256())))
    assert sha256.certificate_status == ocsp.OCSPCertStatus.GOOD


def test_bad_requests_get_error_responses_and_change_nothing(ctx, fleet, tmp_path):
    root, good, *_ = fleet
    issuer = _ca_cert(ctx, root.sn)
    ocsp_service.respond(ctx, _request(good.certificate, issuer))  # make the delegate first
    before = snapshot(ctx)
    for junk in (b"", b"\x30\x03\x02\x01\x01", b"not der", b"\x30" * 9000):
        resp = ocsp.load_der_ocsp_response(ocsp_service.respond(ctx, junk))
        assert resp.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # A CA this responder does not answer for: another CA's certificate as issuer.
    stranger, _ = load_pair("ca_root_ec_p256")
    resp = ocsp.load_der_ocsp_response(ocsp_service.respond(ctx, _request(good.certificate, stranger)))
    assert resp.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert snapshot(ctx) == before


def test_inactive_or_registered_ca_is_unauthorized(ctx, fleet):
    root, good, *_ = fleet
    issuer = _ca_cert(ctx, root.sn)
    cas.deactivate_ca(ctx, root.sn)
    resp = ocsp.load_der_ocsp_response(ocsp_service.respond(ctx, _request(good.certificate, issuer)))
    assert resp.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    ca_cert, ca_key = load_pair("ca_root_ec_p256")
    code = codes.new_code(ctx).code
    cas.register_ca(ctx, certificate=pem(ca_cert), verification=verification_pem(ca_cert, ca_key, code))
    resp = ocsp.load_der_ocsp_response(ocsp_service.respond(ctx, _request(good.certificate, ca_cert)))
    assert resp.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


# -- HTTP -----------------------------------------------------------------------------------


def test_http_public_paths(ctx, fleet):
    root, good, bad, _ = fleet
    issuer = _ca_cert(ctx, root.sn)
    assert set(PUBLIC_PATHS) == {"/ca-bundle.pem", "/crl/{ca_sn}.pem", "/ocsp", "/ocsp/{request:path}",
                                 "/.well-known/jwks.json"}
    client = TestClient(create_app(lambda: ctx))
    bundle = client.get("/ca-bundle.pem")
    assert bundle.status_code == 200
    assert x509.load_pem_x509_certificates(bundle.content) == [issuer]
    crl_resp = client.get(f"/crl/{root.sn.upper()}.pem")
    assert crl_resp.status_code == 200
    crl = x509.load_pem_x509_crl(crl_resp.content)
    assert crl.is_signature_valid(issuer.public_key())
    assert crl.get_revoked_certificate_by_serial_number(bad.certificate.serial_number) is not None
    missing = client.get("/crl/abcdef.pem")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "ca_not_found"

    req = _request(bad.certificate, issuer)
    post = client.post("/ocsp", content=req, headers={"Content-Type": "application/ocsp-request"})
    assert post.headers["content-type"] == "application/ocsp-response"
    assert ocsp.load_der_ocsp_response(post.content).certificate_status == ocsp.OCSPCertStatus.REVOKED
    get = client.get("/ocsp/" + base64.b64encode(_request(good.certificate, issuer)).decode())
    assert ocsp.load_der_ocsp_response(get.content).certificate_status == ocsp.OCSPCertStatus.GOOD
    assert client.post("/ocsp", content=req, headers={"Content-Type": "text/plain"}).status_code == 415
    big = client.post("/ocsp", content=b"\x30" * 20000, headers={"Content-Type": "application/ocsp-request"})
    assert big.status_code == 413
    junk = client.get("/ocsp/!!!notbase64")
    assert ocsp.load_der_ocsp_response(junk.content).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


# -- openssl ocsp against a live server -------------------------------------------------------


@pytest.fixture
def live_server(sqlite_ctx):
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(lambda: sqlite_ctx), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30  # bound only; nothing asserts on time
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def _openssl_ocsp(url: str, issuer: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "ocsp", "-issuer", str(issuer), "-CAfile", str(issuer), "-url", f"{url}/ocsp", *args],
        capture_output=True, text=True, timeout=60,
    )


def test_openssl_ocsp_good_revoked_unknown(sqlite_ctx, live_server, tmp_path, openssl):
    import shutil

    if shutil.which("openssl") is None:
        skip_or_fail("openssl is not installed")
    ctx = sqlite_ctx
    root = managed.create_ca(ctx, name="OCSP Live Root")
    issuer = tmp_path / "issuer.pem"
    issuer.write_bytes(pem(_ca_cert(ctx, root.sn)))
    files = {}
    for name in ("good", "bad"):
        issued = devices.issue_device(ctx, ca=root.sn, generate=True, client_id=name)
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text(issued.certificate_pem)
        if name == "bad":
            devices.revoke_device(ctx, ca=root.sn, sn=issued.device.sn, reason="keyCompromise")
    result = _openssl_ocsp(live_server, issuer, "-cert", str(files["good"]))
    assert result.returncode == 0, result.stderr
    assert f"{files['good']}: good" in result.stdout
    assert "Response verify OK" in result.stderr
    result = _openssl_ocsp(live_server, issuer, "-cert", str(files["bad"]))
    assert f"{files['bad']}: revoked" in result.stdout and "keyCompromise" in result.stdout
    assert "Response verify OK" in result.stderr
    result = _openssl_ocsp(live_server, issuer, "-serial", "0x1234")
    assert "0x1234: unknown" in result.stdout
    assert "Response verify OK" in result.stderr
