"""CRLs: building, re-signing policy, lint, and the offline request / sign / upload cycle of registered CAs."""

from __future__ import annotations

import datetime as _dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.support import snapshot
from tests.support.certs import load_pair, make_root, pem, verification_pem
from tests.support.lint import assert_crl_lint_clean
from pki.ids import format_serial
from pki.errors import InvalidInput, InvalidState, PkiError
from pki.services import cas, codes, crls, devices, managed
from pki.store import DeviceCertificate, repos
from pki.x509 import crl as pcrl

NOW = _dt.datetime(2030, 1, 1, tzinfo=_dt.timezone.utc)


def _code(exc_info) -> str:
    return exc_info.value.code


# -- pure building ------------------------------------------------------------------------


def test_build_crl_entries_reasons_hold_extensions_and_lint():
    ca, key = make_root("CRL Root", now=NOW)
    entries = [
        pcrl.RevokedEntry(5, NOW, "keyCompromise"),
        pcrl.RevokedEntry(7, NOW, "unspecified"),
        pcrl.RevokedEntry(9, NOW, pcrl.HOLD),
    ]
    crl = pcrl.build_crl(issuer=ca, entries=entries, crl_number=3, this_update=NOW,
                         next_update=NOW + _dt.timedelta(days=7)).sign(key, hashes.SHA256())
    assert crl.is_signature_valid(ca.public_key())
    assert pcrl.crl_number_of(crl) == 3
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest

    def reason(serial):
        entry = crl.get_revoked_certificate_by_serial_number(serial)
        try:
            return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            return None

    assert reason(5) == x509.ReasonFlags.key_compromise
    assert reason(7) is None  # RFC 5280: leave it out rather than say "unspecified"
    assert reason(9) == x509.ReasonFlags.certificate_hold
    assert_crl_lint_clean(crl.public_bytes(serialization.Encoding.DER))
    assert pcrl.check_crl(crl, ca=ca, now=NOW) == 3


def test_build_crl_rejects_wrong_arguments():
    ca, _ = make_root("CRL Root")
    with pytest.raises(ValueError):
        pcrl.build_crl(issuer=ca, entries=[], crl_number=1, this_update=NOW, next_update=NOW)
    with pytest.raises(ValueError):
        pcrl.build_crl(issuer=ca, entries=[pcrl.RevokedEntry(1, NOW, "bogus")], crl_number=1, this_update=NOW,
                       next_update=NOW + _dt.timedelta(days=1))
    with pytest.raises(TypeError):
        pcrl.build_crl(issuer="ca", entries=[], crl_number=1, this_update=NOW, next_update=NOW)


@pytest.mark.parametrize("data,code", [
    (b"", "empty_input"),
    (b"hello", "invalid_pem"),
    (b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", "wrong_pem_label"),
    (b"\x30\x03\x02\x01\x01", "invalid_crl"),
    (b"\x30\x80\x00\x00", "invalid_der"),
])
def test_load_crl_refuses_junk(data, code):
    with pytest.raises(InvalidInput) as exc:
        pcrl.load_crl(data)
    assert exc.value.code == code


# -- managed CAs ------------------------------------------------------------------------------


def _state(ctx, ca_sn):
    from pki.store import artifact_repos

    with ctx.store.transaction(readonly=True) as session:
        ca = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca_sn)
        return artifact_repos.get_crl_state(session, ca_id=ca.id)


def test_managed_crl_resigned_only_on_change_or_half_life(ctx, clock):
    root = managed.create_ca(ctx, name="Managed CRL Root")
    d1 = devices.issue_device(ctx, ca=root.sn, generate=True, client_id="d1")
    d2 = devices.issue_device(ctx, ca=root.sn, generate=True, client_id="d2")
    first = crls.current_crl(ctx, ca=root.sn)
    assert first.crl_number == 1 and first.entry_count == 0
    assert crls.current_crl(ctx, ca=root.sn).crl_number == 1  # unchanged: not re-signed
    devices.revoke_device(ctx, ca=root.sn, sn=d1.device.sn, reason="superseded")
    devices.deactivate_device(ctx, ca=root.sn, sn=d2.device.sn)
    second = crls.current_crl(ctx, ca=root.sn)
    assert second.crl_number == 2 and second.entry_count == 2
    crl = x509.load_der_x509_crl(second.der)
    assert_crl_lint_clean(second.der)
    held = crl.get_revoked_certificate_by_serial_number(d2.certificate.serial_number)
    assert held.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.certificate_hold
    devices.activate_device(ctx, ca=root.sn, sn=d2.device.sn)
    third = crls.current_crl(ctx, ca=root.sn)
    assert third.crl_number == 3
    assert x509.load_der_x509_crl(third.der).get_revoked_certificate_by_serial_number(
        d2.certificate.serial_number) is None
    clock.advance(_dt.timedelta(days=3))
    assert crls.current_crl(ctx, ca=root.sn).crl_number == 3  # more than half its life left
    clock.advance(_dt.timedelta(days=1))
    fourth = crls.current_crl(ctx, ca=root.sn)
    assert fourth.crl_number == 4 and fourth.this_update == clock.now().replace(microsecond=0)
    assert fourth.next_update - fourth.this_update == crls.DEFAULT_CRL_LIFETIME


def test_crl_of_inactive_ca_is_refused(ctx):
    root = managed.create_ca(ctx, name="Inactive Root")
    cas.deactivate_ca(ctx, root.sn)
    with pytest.raises(InvalidState) as exc:
        crls.current_crl(ctx, ca=root.sn)
    assert exc.value.code == "ca_inactive"


# -- registered CAs: request, sign offline, upload ----------------------------------------------


@pytest.fixture
def registered(ctx, clock):
    """A registered CA (key kept by the test, as its owner) with one revoked and one held device."""
    ca_cert, ca_key = make_root("Owner Root", now=clock.now())
    code = codes.new_code(ctx).code
    row = cas.register_ca(ctx, certificate=pem(ca_cert), verification=verification_pem(ca_cert, ca_key, code,
                                                                                       now=clock.now()))
    sns = []
    with ctx.store.transaction() as session:
        ca = repos.get_ca_by_sn(session, instance=ctx.instance, sn=row.sn)
        for i, status in enumerate(("REVOKED", "INACTIVE", "ACTIVE")):
            sn = format_serial(1000 + i)  # the stored form: even-length hex
            sns.append(sn)
            now = clock.now()
            repos.insert_device(session, DeviceCertificate(
                instance=ctx.instance, ca_id=ca.id, sn=sn, client_id=f"owned-{i}", status=status,
                revocation_reason="keyCompromise" if status == "REVOKED" else None,
                revoked_at=now if status == "REVOKED" else None, fingerprint_sha256=f"{i:064x}", key_type="ec-p256",
                not_before=now, not_after=now + _dt.timedelta(days=30), cert_der=b"\x30\x00", created_at=now,
                updated_at=now, status_changed_at=now,
            ))
    return row.sn, ca_cert, ca_key, sns


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _sign(ctx, ca_cert, ca_key, request: dict) -> bytes:
    return crls.sign_crl_request(ca_certificate=pem(ca_cert), ca_private_key=_key_pem(ca_key),
                                 request=json.dumps(request).encode(), clock=ctx.clock)


def test_request_sign_upload_cycle(ctx, registered):
    sn, ca_cert, ca_key, (revoked, held, active) = registered
    request = crls.crl_request(ctx, ca=sn)
    assert request["crl_number"] == "1"
    assert {e["sn"]: e["reason"] for e in request["entries"]} == {revoked: "keyCompromise", held: "certificateHold"}
    crl_pem = _sign(ctx, ca_cert, ca_key, request)
    assert_crl_lint_clean(crl_pem)
    info = crls.upload_crl(ctx, ca=sn, crl=crl_pem)
    assert info.source == "uploaded" and info.crl_number == 1 and info.entry_count == 2
    assert crls.current_crl(ctx, ca=sn).der == info.der
    # The next request asks for a higher number.
    assert crls.crl_request(ctx, ca=sn)["crl_number"] == "2"


def test_managed_ca_has_no_request_or_upload(ctx):
    root = managed.create_ca(ctx, name="Managed")
    with pytest.raises(InvalidState) as exc:
        crls.crl_request(ctx, ca=root.sn)
    assert exc.value.code == "ca_managed_crl"
    ca, key = make_root("x")
    crl = pcrl.build_crl(issuer=ca, entries=[], crl_number=1, this_update=NOW,
                         next_update=NOW + _dt.timedelta(days=1)).sign(key, hashes.SHA256())
    before = snapshot(ctx)
    with pytest.raises(InvalidState) as exc:
        crls.upload_crl(ctx, ca=root.sn, crl=crl.public_bytes(serialization.Encoding.PEM))
    assert exc.value.code == "ca_managed_crl"
    assert snapshot(ctx) == before


def _crl(ca_cert, key, *, serials=(), number=1, this_update, lifetime=_dt.timedelta(days=7), issuer=None,
         hold=()):
    entries = [pcrl.RevokedEntry(s, this_update, "keyCompromise") for s in serials]
    entries += [pcrl.RevokedEntry(s, this_update, pcrl.HOLD) for s in hold]
    builder = pcrl.build_crl(issuer=issuer or ca_cert, entries=entries, crl_number=number, this_update=this_update,
                             next_update=this_update + lifetime)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_bad_uploads_are_refused_with_codes_and_change_nothing(ctx, clock, registered):
    sn, ca_cert, ca_key, (revoked, held, _active) = registered
    now = clock.now()
    r, h = int(revoked, 16), int(held, 16)
    other_cert, other_key = make_root("Owner Root", now=now)  # same name, other key
    stranger, stranger_key = load_pair("ca_root_ec_p256")
    cases = {
        "crl_wrong_issuer": _crl(stranger, stranger_key, serials=[r], hold=[h], this_update=now),
        "crl_bad_signature": _crl(ca_cert, other_key, serials=[r], hold=[h], this_update=now),
        "crl_stale": _crl(ca_cert, ca_key, serials=[r], hold=[h], this_update=now - _dt.timedelta(days=8)),
        "crl_not_yet_valid": _crl(ca_cert, ca_key, serials=[r], hold=[h], this_update=now + _dt.timedelta(days=1)),
        "crl_missing_entries": _crl(ca_cert, ca_key, serials=[r], this_update=now),
        "wrong_pem_label": pem(ca_cert),
        "invalid_pem": b"garbage",
    }
    before = snapshot(ctx)
    for code, data in cases.items():
        with pytest.raises(PkiError) as exc:
            crls.upload_crl(ctx, ca=sn, crl=data)
        assert exc.value.code == code, (code, exc.value.message)
    assert snapshot(ctx) == before
    # A good one goes in; replaying it (or an older number) is refused.
    good = _crl(ca_cert, ca_key, serials=[r], hold=[h], number=5, this_update=now)
    crls.upload_crl(ctx, ca=sn, crl=good)
    after_good = snapshot(ctx)
    for data in (good, _crl(ca_cert, ca_key, serials=[r], hold=[h], number=4, this_update=now)):
        with pytest.raises(InvalidInput) as exc:
            crls.upload_crl(ctx, ca=sn, crl=data)
        assert exc.value.code == "crl_number_not_increasing"
    assert snapshot(ctx) == after_good


def test_sign_request_refuses_wrong_ca_and_bad_documents(ctx, registered):
    sn, ca_cert, ca_key, _ = registered
    request = crls.crl_request(ctx, ca=sn)
    other_cert, other_key = make_root("Other")
    with pytest.raises(InvalidInput) as exc:
        _sign(ctx, other_cert, other_key, request)
    assert exc.value.code == "crl_request_wrong_ca"
    with pytest.raises(InvalidInput) as exc:
        crls.sign_crl_request(ca_certificate=pem(ca_cert), ca_private_key=_key_pem(other_key),
                              request=json.dumps(request).encode())
    assert exc.value.code == "key_mismatch"
    for broken in (b"not json", b"[]", json.dumps({**request, "format": "x"}).encode(),
                   json.dumps({**request, "entries": [{"sn": "zz", "reason": "keyCompromise",
                                                        "revoked_at": "2030-01-01T00:00:00Z"}]}).encode(),
                   json.dumps({**request, "entries": [{"sn": "1", "reason": "nope",
                                                        "revoked_at": "2030-01-01T00:00:00Z"}]}).encode(),
                   json.dumps({**request, "lifetime_seconds": 10}).encode()):
        with pytest.raises(InvalidInput) as exc:
            crls.sign_crl_request(ca_certificate=pem(ca_cert), ca_private_key=_key_pem(ca_key), request=broken)
        assert exc.value.code in ("invalid_crl_request", "invalid_serial", "invalid_crl_lifetime")


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_request_sign_upload(tmp_path, registered, ctx, monkeypatch):
    from pki.cli.main import main

    sn, ca_cert, ca_key, _ = registered
    monkeypatch.setenv("PKI_HOME", str(ctx.settings.home))
    monkeypatch.setenv("PKI_DATABASE_URL", ctx.settings.database_url)
    (tmp_path / "ca.pem").write_bytes(pem(ca_cert))
    (tmp_path / "ca.key").write_bytes(_key_pem(ca_key))
    assert main(["crl", "request", "--ca", sn.upper(), "--out", str(tmp_path / "req.json")]) == 0
    assert main(["crl", "sign", "--ca-cert", str(tmp_path / "ca.pem"), "--ca-key", str(tmp_path / "ca.key"),
                 "--request", str(tmp_path / "req.json"), "--out", str(tmp_path / "crl.pem")]) == 0
    assert main(["crl", "upload", "--ca", sn, str(tmp_path / "crl.pem"), "--json"]) == 0
    # Uploading it again: a stable error code and exit code 3 (invalid input).
    assert main(["crl", "upload", "--ca", sn, str(tmp_path / "crl.pem")]) == 3
