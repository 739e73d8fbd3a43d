"""Fetching certificates back, operator-driven renewal and rekey, supersession after the grace."""

from __future__ import annotations

import datetime as _dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.errors import Conflict, InvalidInput, InvalidState
from pki.services import artifacts, audit, crls, devices, enrollment, managed, renewal
from pki.services.policy import ACTIONS, SYSTEM_POLICIES
from tests.support import snapshot
from tests.support.http_app import app_for, csr_pem, make_user, signed_client
from tests.support.lint import assert_lint_clean, assert_openssl_verifies


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def fleet(ctx):
    ca = managed.create_ca(ctx, name="Fleet Root")
    dev = devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="meter-1", sans=("dns:meter-1.local",))
    return ca.sn, dev


def _refused(ctx, exc_type, code, call):
    before = snapshot(ctx)
    with pytest.raises(exc_type) as info:
        call()
    assert info.value.code == code, info.value
    assert snapshot(ctx) == before
    return info.value


def test_renew_keeps_key_client_id_and_sans_and_records_replaces(ctx, fleet, tmp_path):
    ca, dev = fleet
    renewed = renewal.renew_device(ctx, ca=ca, sn=dev.device.sn)
    new = renewed.issued.certificate
    assert renewed.replaces == dev.device.sn
    assert renewed.issued.device.client_id == "meter-1"
    assert _spki(new) == _spki(dev.certificate)  # renew: the same key
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == \
        dev.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert new.serial_number != dev.certificate.serial_number
    assert_lint_clean(new.public_bytes(serialization.Encoding.DER))
    assert_openssl_verifies(new.public_bytes(serialization.Encoding.PEM),
                            [c.public_bytes(serialization.Encoding.PEM) for c in renewed.issued.chain], tmp_dir=tmp_path)
    old = renewal.device_detail(ctx, ca=ca, sn=dev.device.sn)
    fresh = renewal.device_detail(ctx, ca=ca, sn=renewed.issued.device.sn)
    assert old["replaced_by"] == [fresh["sn"]] and fresh["replaces"] == old["sn"]
    assert old["status"] == "ACTIVE" and old["supersede_after"] is not None  # grace: 24h by default
    assert x509.load_pem_x509_certificate(fresh["certificate_pem"].encode()) == new
    assert x509.load_pem_x509_certificates(fresh["chain_pem"].encode())[0] == renewed.issued.chain[0]


def test_rekey_from_csr_and_generated(ctx, fleet):
    ca, dev = fleet
    csr = csr_pem("ignored-cn").encode()
    rekeyed = renewal.renew_device(ctx, ca=ca, sn=dev.device.sn, csr=csr, supersede_after=_dt.timedelta(0))
    assert _spki(rekeyed.issued.certificate) == _spki(x509.load_pem_x509_csr(csr))
    assert rekeyed.issued.device.client_id == "meter-1"  # only the key comes from the CSR
    assert devices.show_device(ctx, ca=ca, sn=dev.device.sn).revocation_reason == "superseded"
    generated = renewal.renew_device(ctx, ca=ca, sn=rekeyed.issued.device.sn, generate=True)
    assert generated.issued.private_key is not None
    assert _spki(generated.issued.certificate) != _spki(rekeyed.issued.certificate)
    assert "private_key_pem" in generated.as_json()
    assert_lint_clean(generated.issued.certificate.public_bytes(serialization.Encoding.DER))


def test_supersession_after_grace_reaches_the_next_crl(ctx, clock, fleet):
    ca, dev = fleet
    old_serial = dev.certificate.serial_number
    renewal.renew_device(ctx, ca=ca, sn=dev.device.sn, supersede_after=_dt.timedelta(hours=1))
    crl = x509.load_der_x509_crl(crls.current_crl(ctx, ca=ca).der)
    assert crl.get_revoked_certificate_by_serial_number(old_serial) is None  # still in its grace
    clock.advance(_dt.timedelta(hours=1, seconds=1))
    crl = x509.load_der_x509_crl(crls.current_crl(ctx, ca=ca).der)
    entry = crl.get_revoked_certificate_by_serial_number(old_serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.superseded
    shown = devices.show_device(ctx, ca=ca, sn=dev.device.sn)
    assert shown.status == "REVOKED" and shown.revocation_reason == "superseded"
    records = audit.list_records(ctx).as_json()["items"]
    operations = [r["details"].get("operation") for r in records]
    assert "device.renew" in operations
    assert any(r["details"].get("reason") == "superseded" for r in records)


def test_grace_zero_revokes_at_once(ctx, fleet):
    ca, dev = fleet
    renewal.renew_device(ctx, ca=ca, sn=dev.device.sn, supersede_after=_dt.timedelta(0))
    shown = devices.show_device(ctx, ca=ca, sn=dev.device.sn)
    assert shown.status == "REVOKED" and shown.revocation_reason == "superseded"


def test_renew_refusals_leave_the_store_unchanged(ctx, fleet):
    ca, dev = fleet
    _refused(ctx, InvalidInput, "invalid_grace",
             lambda: renewal.renew_device(ctx, ca=ca, sn=dev.device.sn, supersede_after=_dt.timedelta(days=400)))
    _refused(ctx, InvalidInput, "csr_bad_signature", lambda: renewal.renew_device(
        ctx, ca=ca, sn=dev.device.sn, csr=_bad_signature_csr()))
    _refused(ctx, InvalidInput, "invalid_request",
             lambda: renewal.renew_device(ctx, ca=ca, sn=dev.device.sn, csr=csr_pem("x").encode(), generate=True))
    renewal.renew_device(ctx, ca=ca, sn=dev.device.sn)
    _refused(ctx, Conflict, "device_already_renewed", lambda: renewal.renew_device(ctx, ca=ca, sn=dev.device.sn))
    other = devices.issue_device(ctx, ca=ca, generate=True, client_id="meter-2")
    devices.deactivate_device(ctx, ca=ca, sn=other.device.sn)
    _refused(ctx, InvalidState, "device_inactive", lambda: renewal.renew_device(ctx, ca=ca, sn=other.device.sn))
    devices.revoke_device(ctx, ca=ca, sn=other.device.sn)
    _refused(ctx, InvalidState, "device_revoked", lambda: renewal.renew_device(ctx, ca=ca, sn=other.device.sn))


def _bad_signature_csr() -> bytes:
    der = bytearray(x509.load_pem_x509_csr(csr_pem("meter-1").encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature
    return bytes(der)


def test_cli_fetch_pem_and_renew(pki, ctx, fleet, tmp_path):
    ca, dev = fleet
    code, out, err = pki("ca", "show", ca, "--pem")
    assert code == 0, err
    assert x509.load_pem_x509_certificate(out.encode()).serial_number == int(ca, 16)
    code, out, err = pki("ca", "show", ca, "--json")
    assert code == 0 and "certificate_pem" in json.loads(out) and "chain_pem" in json.loads(out)
    code, out, err = pki("device", "show", dev.device.sn, "--ca", ca, "--pem")
    assert code == 0 and x509.load_pem_x509_certificate(out.encode()) == dev.certificate
    code, out, err = pki("device", "renew", dev.device.sn, "--ca", ca, "--supersede-after", "0", "--json")
    assert code == 0, err
    renewed = json.loads(out)
    assert renewed["replaces"] == dev.device.sn and renewed["client_id"] == "meter-1"
    code, out, err = pki("device", "show", dev.device.sn, "--ca", ca, "--json")
    shown = json.loads(out)
    assert shown["status"] == "REVOKED" and shown["replaced_by"] == [renewed["sn"]]
    before = snapshot(ctx)
    code, out, err = pki("device", "renew", dev.device.sn, "--ca", ca)
    assert code != 0 and "device_revoked" in err and snapshot(ctx) == before


def test_http_pem_routes_and_renew(ctx, fleet):
    ca, dev = fleet
    admin = make_user(ctx, "admin", "PkiAdministratorAccess")
    client = signed_client(app_for(ctx), admin)
    response = client.request("GET", f"/v1/cas/{ca}/certificate.pem")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-pem-file")
    assert x509.load_pem_x509_certificate(response.content).serial_number == int(ca, 16)
    response = client.request("GET", f"/v1/cas/{ca}/devices/{dev.device.sn}/certificate.pem")
    assert x509.load_pem_x509_certificate(response.content) == dev.certificate
    assert "certificate_pem" in client.call("GET", f"/v1/cas/{ca}/devices/{dev.device.sn}")
    assert "certificate_pem" in client.call("GET", f"/v1/cas/{ca}")
    renewed = client.call("POST", f"/v1/cas/{ca}/devices/{dev.device.sn}/renew", json={"supersede_after": "2h"})
    assert renewed["replaces"] == dev.device.sn
    claim = client.call("POST", "/v1/claims", json={"ca": ca, "uses": 3})
    assert set(claim) >= {"claim_id", "password"}
    updated = client.call("PATCH", f"/v1/cas/{ca}", json={"est_label": "fab-1", "renew_after_expiry": "7d"})
    assert updated["est_label"] == "fab-1" and updated["renew_after_expiry_s"] == 7 * 86400
    # Unsigned: refused like every /v1 route.
    assert client.http.get(f"/v1/cas/{ca}/certificate.pem").status_code == 401


def test_new_actions_are_in_the_table_and_policies():
    assert ACTIONS["device.renew"].action == "mq:RenewDeviceCertificate"
    assert ACTIONS["claim.create"].action == "mq:CreateEnrollmentClaim"
    full = SYSTEM_POLICIES["PkiFullAccess"].document["Statement"][0]["Action"]
    assert "mq:RenewDeviceCertificate" in full and "mq:CreateEnrollmentClaim" in full
    factory = SYSTEM_POLICIES["PkiFactoryProvisioner"].document["Statement"][0]["Action"]
    assert "mq:RenewDeviceCertificate" not in factory


def test_bootstrap_only_ca_never_in_the_trust_bundle_or_capath(ctx, tmp_path):
    fleet_ca = managed.create_ca(ctx, name="Fleet Root")
    boot = managed.create_ca(ctx, name="Bootstrap Root")
    enrollment.update_ca(ctx, boot.sn, bootstrap_only=True)
    result = artifacts.publish(ctx, out_dir=tmp_path / "out")
    current = tmp_path / "out" / "current"
    bundle = x509.load_pem_x509_certificates((current / "ca-bundle.pem").read_bytes())
    assert int(fleet_ca.sn, 16) in {c.serial_number for c in bundle}
    assert all(int(boot.sn, 16) != c.serial_number for c in bundle)
    capath = [x509.load_pem_x509_certificate(p.read_bytes()) for p in (current / "capath").iterdir()
              if p.suffix[1:].isdigit()]
    assert capath and all(c.serial_number != int(boot.sn, 16) for c in capath)
    live = x509.load_pem_x509_certificates(artifacts.live_trust_bundle(ctx))
    assert all(c.serial_number != int(boot.sn, 16) for c in live)
    assert result is not None
    _refused(ctx, InvalidState, "ca_bootstrap_only", lambda: enrollment.update_ca(ctx, boot.sn, est_default=True))


def test_ocsp_answers_superseded_once_the_grace_is_over(ctx, clock, fleet):
    from cryptography.x509 import ocsp

    from pki.services import ocsp as ocsp_service
    from tests.test_ocsp import _ca_cert, _request

    ca, dev = fleet
    renewal.renew_device(ctx, ca=ca, sn=dev.device.sn, supersede_after=_dt.timedelta(hours=1))
    request = _request(dev.certificate, _ca_cert(ctx, ca))
    assert ocsp.load_der_ocsp_response(ocsp_service.respond(ctx, request)).certificate_status == \
        ocsp.OCSPCertStatus.GOOD
    clock.advance(_dt.timedelta(hours=1, seconds=1))
    answer = ocsp.load_der_ocsp_response(ocsp_service.respond(ctx, request))  # before any CRL signing swept it
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.superseded
