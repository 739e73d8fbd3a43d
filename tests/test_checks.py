"""Fleet audit checks (pki.services.checks): a clean store triggers none, each fixture store one."""

from __future__ import annotations

import datetime as _dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from tests.support import snapshot
from tests.support.certs import make_root, pem, verification_pem
from pki.errors import InvalidInput
from pki.services import artifacts, cas, checks, codes, crls, devices, managed
from pki.services import secrets as secret_service
from pki.x509.der import spki_der


def _sql(ctx, statement: str, **params) -> None:
    with ctx.store.engine.begin() as conn:
        conn.execute(text(statement), params)


def _ids(ctx, **kw) -> set[str]:
    return {f.check_id for f in checks.run_checks(ctx, **kw)}


def _csr(key, cn: str) -> bytes:
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def _root(ctx, name="Plant Root", **kw):
    """A managed CA with a fresh CRL, as a publish leaves it."""
    row = managed.create_ca(ctx, name=name, **kw)
    crls.current_crl(ctx, ca=row.sn)
    return row


@pytest.fixture
def clean(ctx):
    """A healthy fleet: one root with a fresh CRL, devices with keys of their own, an intact audit log."""
    root = _root(ctx)
    for i in range(3):
        devices.issue_device(ctx, ca=root.sn, generate=True, client_id=f"dev-{i}")
    secret_service.register_secret(ctx, client_id="dev-0")
    return root


def test_clean_store_triggers_no_check(ctx, clean):
    before = snapshot(ctx)
    assert checks.run_checks(ctx) == []
    report = checks.fleet_report(ctx)
    assert report.as_json()["findings"] == [] and report.worst() is None
    assert report.counts == {"high": 0, "medium": 0, "low": 0}
    assert snapshot(ctx) == before  # checks only read


def test_an_empty_store_triggers_no_check(ctx):
    assert checks.run_checks(ctx) == []


def test_device_expiring(ctx, clean):
    issued = devices.issue_device(ctx, ca=clean.sn, generate=True, client_id="short-lived", days=10)
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.severity, f.resource) for f in found] == [
        ("device_cert_expiring", "medium", f"device/{clean.sn}/{issued.device.sn}")]
    assert "short-lived" in found[0].message and found[0].remedy
    assert checks.run_checks(ctx, device_days=5) == []  # the horizon is a parameter


def test_revoked_expiring_device_is_not_a_finding(ctx, clean):
    issued = devices.issue_device(ctx, ca=clean.sn, generate=True, client_id="gone", days=10)
    devices.revoke_device(ctx, ca=clean.sn, sn=issued.device.sn)
    crls.current_crl(ctx, ca=clean.sn)
    assert _ids(ctx) == set()


def test_ca_expiring(ctx, clean):
    short = _root(ctx, name="Short Root", days=60)
    found = [f for f in checks.run_checks(ctx) if f.check_id == "ca_cert_expiring"]
    assert [(f.severity, f.resource) for f in found] == [("high", f"ca/{short.sn}")]
    # Deactivated: no longer trusted, so its expiry is nobody's problem.
    cas.deactivate_ca(ctx, short.sn)
    assert _ids(ctx) == set()


def test_ca_without_crl(ctx, clean):
    bare = managed.create_ca(ctx, name="No CRL Root")
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.resource) for f in found] == [("ca_crl_not_valid", f"ca/{bare.sn}")]
    assert "no CRL" in found[0].message


def test_crl_past_half_its_lifetime(ctx, clean, clock):
    clock.advance(_dt.timedelta(days=4))  # the default lifetime is 7 days
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.resource) for f in found] == [("ca_crl_not_valid", f"ca/{clean.sn}")]
    assert "half its lifetime" in found[0].message


def test_crl_of_the_published_generation(ctx, clean, tmp_path):
    out = tmp_path / "artifacts"
    artifacts.publish(ctx, out_dir=out)
    assert _ids(ctx, artifacts_dir=out) == set()
    (out / "current" / "crl" / f"{clean.sn}.pem").unlink()
    found = checks.run_checks(ctx, artifacts_dir=out)
    assert [(f.check_id, f.resource) for f in found] == [("ca_crl_not_valid", f"ca/{clean.sn}")]
    assert "published generation has no CRL" in found[0].message
    # Another CA's CRL in its place does not count.
    other = _root(ctx, name="Other Root")
    (out / "current" / "crl" / f"{clean.sn}.pem").write_bytes(crls.current_crl(ctx, ca=other.sn).pem)
    messages = [f.message for f in checks.run_checks(ctx, artifacts_dir=out) if f.resource == f"ca/{clean.sn}"]
    assert messages and "not signed by this CA" in messages[0]


def test_devices_sharing_a_key(ctx, clean):
    key = ec.generate_private_key(ec.SECP256R1())
    a = devices.issue_device(ctx, ca=clean.sn, csr=_csr(key, "twin-a"))
    b = devices.issue_device(ctx, ca=clean.sn, csr=_csr(key, "twin-b"))
    found = checks.run_checks(ctx)
    assert {(f.check_id, f.resource) for f in found} == {
        ("device_key_shared", f"device/{clean.sn}/{a.device.sn}"),
        ("device_key_shared", f"device/{clean.sn}/{b.device.sn}")}
    # Revoking one leaves a single live holder of the key.
    devices.revoke_device(ctx, ca=clean.sn, sn=b.device.sn, reason="keyCompromise")
    crls.current_crl(ctx, ca=clean.sn)
    assert _ids(ctx) == set()


def test_weak_key(ctx, clean):
    issued = devices.issue_device(ctx, ca=clean.sn, generate=True, client_id="legacy")
    # A row from before the key policy was raised: registration would refuse it today.
    _sql(ctx, "UPDATE device_certificate SET key_type = 'rsa-1024' WHERE sn = :sn", sn=issued.device.sn)
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.severity, f.resource) for f in found] == [
        ("weak_key", "high", f"device/{clean.sn}/{issued.device.sn}")]
    assert "rsa-1024" in found[0].message


@pytest.mark.parametrize("key_type,weak", [("rsa-1024", True), ("rsa-2048", False), ("rsa-4096", False),
                                           ("ec-p256", False), ("ec-secp256k1", True), ("ed25519", False),
                                           ("ed448", True), ("dsa-2048", True), ("unknown", True),
                                           ("rsa-x", True)])
def test_weak_key_types(key_type, weak):
    assert checks.is_weak_key_type(key_type) is weak


def test_client_id_under_two_cas(ctx, clean):
    other = _root(ctx, name="Second Root")
    devices.issue_device(ctx, ca=other.sn, generate=True, client_id="dev-1")
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.resource) for f in found] == [("client_id_multiple_cas", "client-id/dev-1")]
    assert clean.sn in found[0].message and other.sn in found[0].message


def test_revoked_device_with_active_secret(ctx, clean):
    issued = devices.issue_device(ctx, ca=clean.sn, generate=True, client_id="stolen")
    secret_service.register_secret(ctx, client_id="stolen")
    devices.revoke_device(ctx, ca=clean.sn, sn=issued.device.sn, reason="keyCompromise")
    crls.current_crl(ctx, ca=clean.sn)
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.resource) for f in found] == [("revoked_device_active_secret", "client-id/stolen")]
    secret_service.deactivate_secret(ctx, client_id="stolen")
    assert _ids(ctx) == set()


def test_revoked_and_renewed_device_with_secret_is_fine(ctx, clean):
    """A revoked certificate beside an ACTIVE one of the same client id: the device was re-issued."""
    old = devices.issue_device(ctx, ca=clean.sn, generate=True, client_id="dev-0")
    devices.revoke_device(ctx, ca=clean.sn, sn=old.device.sn)
    crls.current_crl(ctx, ca=clean.sn)
    assert _ids(ctx) == set()


def _registered(ctx, clock):
    ca_cert, ca_key = make_root("Owner Root", now=clock.now())
    code = codes.new_code(ctx).code
    row = cas.register_ca(ctx, certificate=pem(ca_cert),
                          verification=verification_pem(ca_cert, ca_key, code, now=clock.now()))
    request = crls.crl_request(ctx, ca=row.sn, lifetime=_dt.timedelta(days=2))
    key_pem = ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    crl_pem = crls.sign_crl_request(ca_certificate=pem(ca_cert), ca_private_key=key_pem,
                                    request=json.dumps(request).encode(), clock=ctx.clock)
    crls.upload_crl(ctx, ca=row.sn, crl=crl_pem)
    return row


def test_registered_ca_crl_upload_stale(ctx, clock):
    row = _registered(ctx, clock)
    assert _ids(ctx) == set()
    clock.advance(_dt.timedelta(days=3))
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.resource) for f in found] == [("registered_crl_stale", f"ca/{row.sn}")]


def test_registered_ca_without_upload(ctx, clock):
    ca_cert, ca_key = make_root("Owner Root", now=clock.now())
    code = codes.new_code(ctx).code
    row = cas.register_ca(ctx, certificate=pem(ca_cert),
                          verification=verification_pem(ca_cert, ca_key, code, now=clock.now()))
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.resource) for f in found] == [("ca_crl_not_valid", f"ca/{row.sn}")]


def test_ca_near_its_validity_limit(ctx, clean):
    near = _root(ctx, name="Ageing Root", days=200)  # more than 90 days left, fewer than a device's 365
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.severity, f.resource) for f in found] == [("ca_issuance_limit", "medium", f"ca/{near.sn}")]


def test_root_with_path_length_zero(ctx, clean):
    flat = _root(ctx, name="Flat Root", path_length=0)
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.resource) for f in found] == [("ca_issuance_limit", f"ca/{flat.sn}")]
    assert "path length 0" in found[0].message


def test_audit_chain_broken(ctx, clean):
    _sql(ctx, "UPDATE audit_record SET principal = 'mallory' WHERE seq = 2")
    found = checks.run_checks(ctx)
    assert [(f.check_id, f.severity, f.resource) for f in found] == [("audit_chain_broken", "high", "audit-log")]


def test_every_check_has_a_fixture_here():
    """Keeps this file honest: a new check needs a test that triggers it."""
    source = open(__file__).read()
    for check_id in checks.CHECKS:
        assert f'"{check_id}"' in source.replace(f'CHECKS["{check_id}"]', ""), check_id


def test_findings_sorted_and_capped(ctx, clean):
    for i in range(3):
        devices.issue_device(ctx, ca=clean.sn, generate=True, client_id=f"soon-{i}", days=5)
    _sql(ctx, "UPDATE audit_record SET principal = 'mallory' WHERE seq = 2")
    found = checks.run_checks(ctx)
    assert [f.severity for f in found] == ["high", "medium", "medium", "medium"]
    report = checks.fleet_report(ctx, per_check=2)
    body = report.as_json()
    assert len(body["findings"]) == 3 and body["omitted"] == {"device_cert_expiring": 1}
    assert body["counts"] == {"high": 1, "medium": 3, "low": 0} and report.worst() == "high"


@pytest.mark.parametrize("kw", [{"device_days": -1}, {"ca_days": 3651}, {"device_days": True},
                                {"per_check": 0}])
def test_bad_parameters_are_refused(ctx, clean, kw):
    before = snapshot(ctx)
    with pytest.raises(InvalidInput):
        checks.fleet_report(ctx, **kw)
    assert snapshot(ctx) == before


def test_spki_der_matches_cryptography(ctx, clean):
    issued = devices.issue_device(ctx, ca=clean.sn, generate=True, client_id="spki", key_type="rsa-2048")
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    expected = issued.certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki_der(der) == expected
    assert spki_der(b"\x30\x00") is None and spki_der(b"") is None and spki_der(der[:40]) is None


# -- front ends ------------------------------------------------------------------------------------


def test_cli_check_run(pki, ctx, clean):
    code, out, err = pki("check", "run")
    assert code == 0, err
    assert "no findings" in out
    code, out, _ = pki("check", "run", "--json", "--fail-on", "low")
    assert code == 0 and json.loads(out)["findings"] == []
    devices.issue_device(ctx, ca=clean.sn, generate=True, client_id="soon", days=5)
    code, out, _ = pki("check", "run")
    assert code == 0 and "MEDIUM  device_cert_expiring" in out and "fix: " in out
    code, _, _ = pki("check", "run", "--fail-on", "high")
    assert code == 0  # medium is below high
    code, out, _ = pki("check", "run", "--fail-on", "medium", "--json")
    assert code == 12
    assert json.loads(out)["counts"]["medium"] == 1
    code, _, err = pki("check", "run", "--device-days", "-3")
    assert code == 3 and "invalid_duration" in err


def test_http_checks(ctx, clean):
    from tests.support.http_app import app_for, make_user, signed_client

    app = app_for(ctx)
    reader = signed_client(app, make_user(ctx, "reader", "PkiReadOnlyAccess"))
    nobody = signed_client(app, make_user(ctx, "nobody"))
    devices.issue_device(ctx, ca=clean.sn, generate=True, client_id="soon", days=5)
    body = reader.call("GET", "/v1/checks")
    assert [f["check_id"] for f in body["findings"]] == ["device_cert_expiring"]
    assert reader.call("GET", "/v1/checks", params={"device_days": 1})["findings"] == []
    from pki.client import ApiError

    with pytest.raises(ApiError) as denied:
        nobody.call("GET", "/v1/checks")
    assert denied.value.status == 403


def test_policy_action():
    from pki.services.policy import ACTIONS, SYSTEM_POLICIES

    op = ACTIONS["check.run"]
    assert op.action == "mq:RunFleetChecks" and op.access == "get"
    read_only = SYSTEM_POLICIES["PkiReadOnlyAccess"].document["Statement"][0]["Action"]
    assert "mq:RunFleetChecks" in read_only
    assert "mq:RunFleetChecks" not in SYSTEM_POLICIES["PkiFactoryProvisioner"].document["Statement"][0]["Action"]
