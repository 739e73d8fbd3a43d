"""Managed CAs and device certificates: profile, issuance, registration, lifecycle, lookup."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import snapshot
from tests.support.certs import load_pair, pem, verification_pem
from tests.support.lint import assert_lint_clean, assert_openssl_verifies
from pki.errors import Conflict, InvalidInput, InvalidState, NotFound, PkiError, StoreError
from pki.keys import KEY_TYPES
from pki.services import audit, cas, codes, devices, managed


def _csr(key, cn="device-1", *, extensions=()):
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _chain(ctx, ca_sn):
    """The CA certificate and its issuers, PEM, for openssl verify."""
    from pki.store import repos

    with ctx.store.transaction(readonly=True) as session:
        row = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca_sn)
        ca_pem = x509.load_der_x509_certificate(row.cert_der).public_bytes(serialization.Encoding.PEM)
        return [ca_pem] + ([row.chain_pem.encode()] if row.chain_pem else [])


@pytest.fixture
def root(ctx):
    return managed.create_ca(ctx, name="Factory Root")


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_every_key_type_issues_lint_clean_verifiable_certificates(ctx, tmp_path, key_type):
    ca = managed.create_ca(ctx, name=f"Root {key_type}", key_type=key_type)
    assert ca.source == "managed" and ca.key_type == key_type
    sub = managed.create_ca(ctx, name=f"Sub {key_type}", key_type=key_type, parent=ca.sn, days=1000)
    assert sub.issuer == ca.subject
    for issuer in (ca, sub):
        issued = devices.issue_device(ctx, ca=issuer.sn, generate=True, client_id=f"dev-{key_type}", key_type=key_type)
        cert = issued.certificate
        assert_lint_clean(cert.public_bytes(serialization.Encoding.DER))
        assert_openssl_verifies(pem(cert), _chain(ctx, issuer.sn), tmp_dir=tmp_path)
        assert issued.device.client_id == f"dev-{key_type}" and issued.device.status == "ACTIVE"
    # CA certificates themselves lint clean too.
    for ref in (ca.sn, sub.sn):
        assert_lint_clean(_chain(ctx, ref)[0])


def test_profile(ctx, root):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issued = devices.issue_device(ctx, ca=root.sn, csr=_csr(key, "meter-42"), sans=["dns:meter-42.plant.example"])
    cert = issued.certificate
    assert cert.subject.rfc4514_string() == "CN=meter-42"
    assert 0 < cert.serial_number < 2**159 and cert.serial_number.bit_length() > 64
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment  # RSA
    assert not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["meter-42.plant.example"]
    now = ctx.clock.now()
    assert now - _dt.timedelta(minutes=5) <= cert.not_valid_before_utc <= now
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= _dt.timedelta(days=365, minutes=5)


def test_csr_extensions_are_never_copied(ctx, root, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    greedy = _csr(key, "greedy", extensions=[
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.SubjectAlternativeName([x509.DNSName("broker.example")]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING]), False),
    ])
    cert = devices.issue_device(ctx, ca=root.sn, csr=greedy).certificate
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert_lint_clean(cert.public_bytes(serialization.Encoding.DER))
    assert_openssl_verifies(pem(cert), _chain(ctx, root.sn), tmp_dir=tmp_path)


# -- bad device certificates and CSRs: refused, store unchanged ------------------------------


def _refused(ctx, exc_type, code, call):
    before = snapshot(ctx)
    with pytest.raises(exc_type) as err:
        call()
    assert err.value.code == code, err.value
    assert snapshot(ctx) == before
    return err.value


def test_issuing_from_inactive_registered_or_expired_ca_refused(ctx, root, clock):
    cas.deactivate_ca(ctx, root.sn)
    _refused(ctx, InvalidState, "ca_inactive",
             lambda: devices.issue_device(ctx, ca=root.sn, generate=True, client_id="d1"))
    cas.activate_ca(ctx, root.sn)
    cert, key = load_pair("ca_root_ec_p256")
    registered = cas.register_ca(ctx, certificate=pem(cert),
                                 verification=verification_pem(cert, key, codes.new_code(ctx).code))
    _refused(ctx, InvalidState, "ca_not_managed",
             lambda: devices.issue_device(ctx, ca=registered.sn, generate=True, client_id="d1"))
    short = managed.create_ca(ctx, name="Short", days=2)
    clock.advance(_dt.timedelta(days=3))
    _refused(ctx, InvalidState, "ca_expired",
             lambda: devices.issue_device(ctx, ca=short.sn, generate=True, client_id="d1", days=1))


def test_validity_past_ca_or_maximum_refused(ctx):
    ca = managed.create_ca(ctx, name="Two years", days=730)
    _refused(ctx, InvalidInput, "validity_exceeds_ca",
             lambda: devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="d1", days=800))
    _refused(ctx, InvalidInput, "validity_too_long",
             lambda: devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="d1", days=40000))


@pytest.mark.parametrize("make_key,label", [
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "rsa1024"),
    (lambda: ec.generate_private_key(ec.SECP192R1()), "p192"),
    (lambda: dsa.generate_private_key(key_size=2048), "dsa"),
])
def test_weak_csr_keys_refused(ctx, root, make_key, label):
    csr = _csr(make_key(), "weak")
    _refused(ctx, InvalidInput, "weak_key", lambda: devices.issue_device(ctx, ca=root.sn, csr=csr))


def test_bad_csrs_refused(ctx, root):
    good = _csr(ec.generate_private_key(ec.SECP256R1()), "dev")
    der = x509.load_pem_x509_csr(good).public_bytes(serialization.Encoding.DER)
    tampered = bytearray(der)
    tampered[-5] ^= 0x01  # inside the signature
    _refused(ctx, InvalidInput, "csr_bad_signature", lambda: devices.issue_device(ctx, ca=root.sn, csr=bytes(tampered)))
    _refused(ctx, InvalidInput, "trailing_data", lambda: devices.issue_device(ctx, ca=root.sn, csr=der + b"\x00\x00"))
    _refused(ctx, InvalidInput, "trailing_data", lambda: devices.issue_device(ctx, ca=root.sn, csr=good + b"junk\n"))


@pytest.mark.parametrize("client_id", ["", "a" * 65, "dev\x00ice", "dev/1", "dev+1", "dev#", "dév", "dev 1"])
def test_bad_client_ids_refused(ctx, root, client_id):
    with pytest.raises(InvalidInput) as err:
        devices.issue_device(ctx, ca=root.sn, generate=True, client_id=client_id)
    assert err.value.code in ("invalid_client_id", "invalid_name")


def test_store_failure_after_signing_returns_no_certificate(ctx, root, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from pki.store import repos

    def broken(*_a, **_k):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(repos, "insert_device_values", broken)
    err = _refused(ctx, StoreError, "store_unavailable",
                   lambda: devices.issue_device(ctx, ca=root.sn, generate=True, client_id="d1"))
    assert "BEGIN" not in err.message


# -- registration of certificates issued elsewhere ----------------------------------------------


def _leaf(ca_cert, ca_key, *, cn="ext-1", key=None, ca=False, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), serial=None,
          not_after=None):
    now = _dt.datetime.now(_dt.timezone.utc)
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=1))
        .not_valid_after(not_after or now + _dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


@pytest.fixture
def customer_ca(ctx):
    cert, key = load_pair("ca_root_ec_p256")
    row = cas.register_ca(ctx, certificate=pem(cert), verification=verification_pem(cert, key, codes.new_code(ctx).code))
    return row, cert, key


def test_register_external_device(ctx, customer_ca):
    row, cert, key = customer_ca
    leaf = _leaf(cert, key, cn="ext-7")
    device = devices.register_device(ctx, certificate=pem(leaf))
    assert device.ca_sn == row.sn and device.client_id == "ext-7" and device.source == "registered"
    _refused(ctx, Conflict, "device_already_registered", lambda: devices.register_device(ctx, certificate=pem(leaf)))
    twin = _leaf(cert, key, cn="ext-7", serial=leaf.serial_number)
    _refused(ctx, Conflict, "device_serial_clash", lambda: devices.register_device(ctx, certificate=pem(twin)))


def test_register_bad_devices_refused(ctx, customer_ca):
    row, cert, key = customer_ca
    other, other_key = load_pair("ca_second_root_ec_p256")
    _refused(ctx, NotFound, "issuer_not_registered",
             lambda: devices.register_device(ctx, certificate=pem(_leaf(other, other_key))))
    _refused(ctx, InvalidInput, "leaf_is_ca",
             lambda: devices.register_device(ctx, certificate=pem(_leaf(cert, key, ca=True))))
    _refused(ctx, InvalidInput, "leaf_missing_client_auth",
             lambda: devices.register_device(ctx, certificate=pem(_leaf(cert, key, eku=(ExtendedKeyUsageOID.SERVER_AUTH,)))))
    _refused(ctx, InvalidInput, "leaf_missing_client_auth",
             lambda: devices.register_device(ctx, certificate=pem(_leaf(cert, key, eku=()))))
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    _refused(ctx, InvalidInput, "weak_key",
             lambda: devices.register_device(ctx, certificate=pem(_leaf(cert, key, key=weak))))
    p192 = ec.generate_private_key(ec.SECP192R1())
    _refused(ctx, InvalidInput, "weak_key",
             lambda: devices.register_device(ctx, certificate=pem(_leaf(cert, key, key=p192))))
    # Signed by another key under the same issuer name and key identifier: the chain does not verify.
    # Nothing tells this from a damaged signature (test_hostile_registration.py), so it is refused alike.
    forged = _leaf(cert, other_key)
    _refused(ctx, InvalidInput, "certificate_bad_signature",
             lambda: devices.register_device(ctx, certificate=pem(forged)))
    cas.deactivate_ca(ctx, row.sn)
    _refused(ctx, InvalidState, "ca_inactive",
             lambda: devices.register_device(ctx, certificate=pem(_leaf(cert, key))))


# -- lifecycle and lookup ---------------------------------------------------------------


def test_lifecycle(ctx, root, clock):
    d = devices.issue_device(ctx, ca=root.sn, generate=True, client_id="life").device
    clock.advance(_dt.timedelta(seconds=10))
    held = devices.deactivate_device(ctx, ca=root.sn, sn=d.sn)
    assert held.status == "INACTIVE" and held.status_changed_at == clock.now()
    assert devices.activate_device(ctx, ca=root.sn, sn=d.sn.upper()).status == "ACTIVE"
    _refused(ctx, InvalidState, "device_still_valid", lambda: devices.delete_device(ctx, ca=root.sn, sn=d.sn))
    revoked = devices.revoke_device(ctx, ca=root.sn, sn=d.sn, reason="keyCompromise")
    assert revoked.status == "REVOKED" and revoked.revocation_reason == "keyCompromise"
    assert revoked.revoked_at == clock.now()
    _refused(ctx, InvalidState, "device_revoked", lambda: devices.activate_device(ctx, ca=root.sn, sn=d.sn))
    _refused(ctx, InvalidState, "device_revoked", lambda: devices.revoke_device(ctx, ca=root.sn, sn=d.sn))
    with pytest.raises(InvalidInput):
        devices.revoke_device(ctx, ca=root.sn, sn=d.sn, reason="certificateHold")
    clock.advance(_dt.timedelta(days=366))
    assert devices.delete_device(ctx, ca=root.sn, sn=d.sn)["deleted"] is True
    with pytest.raises(NotFound):
        devices.show_device(ctx, ca=root.sn, sn=d.sn)


def test_lookup_and_pagination(ctx, root):
    issued = [devices.issue_device(ctx, ca=root.sn, generate=True, client_id=f"dev-{i}", days=10 + i).device
              for i in range(7)]
    devices.revoke_device(ctx, ca=root.sn, sn=issued[2].sn)
    seen, cursor = [], None
    while True:
        page = devices.list_devices(ctx, ca=root.sn, limit=3, cursor=cursor)
        seen += [d.sn for d in page.items]
        if not (cursor := page.next_cursor):
            break
    assert seen == [d.sn for d in issued]
    assert [d.sn for d in devices.list_devices(ctx, ca=root.sn, status="revoked").items] == [issued[2].sn]
    soon = ctx.clock.now() + _dt.timedelta(days=12, hours=1)
    assert [d.client_id for d in devices.list_devices(ctx, ca=root.sn, expiring_before=soon).items] == [
        "dev-0", "dev-1", "dev-2"
    ]
    by_fp = devices.find_devices(ctx, fingerprint=issued[4].fingerprint_sha256.upper())
    assert [d.sn for d in by_fp.items] == [issued[4].sn]
    assert [d.sn for d in devices.find_devices(ctx, client_id="dev-5").items] == [issued[5].sn]
    assert devices.find_devices(ctx, client_id="DEV-5").items == []  # exact, no case folding
    assert devices.show_device(ctx, ca=root.sn, sn=issued[1].sn).client_id == "dev-1"


def test_show_device_by_any_ca_reference_and_which_part_is_missing(ctx, root):
    d = devices.issue_device(ctx, ca=root.sn, generate=True, client_id="ref-1").device
    ca_fp = cas.show_ca(ctx, root.sn).fingerprint_sha256
    upper_colons = ":".join(root.sn.upper()[i:i + 2] for i in range(0, len(root.sn), 2))
    for ca_ref in (root.sn, upper_colons, ca_fp, "sha256:" + ca_fp.upper()):
        for sn in (d.sn, d.sn.upper()):
            shown = devices.show_device(ctx, ca=ca_ref, sn=sn)
            assert shown == devices.find_devices(ctx, client_id="ref-1").items[0]
            assert shown.ca_sn == root.sn and shown.sn == d.sn
    other = managed.create_ca(ctx, name="Other root")
    _refused(ctx, NotFound, "device_not_found", lambda: devices.show_device(ctx, ca=other.sn, sn=d.sn))
    _refused(ctx, NotFound, "ca_not_found", lambda: devices.show_device(ctx, ca="ab" * 10, sn=d.sn))
    _refused(ctx, InvalidInput, "invalid_serial", lambda: devices.show_device(ctx, ca=root.sn, sn="xyz"))


def test_no_private_key_material_in_the_sqlite_file(sqlite_ctx):
    ctx = sqlite_ctx
    ca = managed.create_ca(ctx, name="Secret keeper")
    issued = devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="d")
    ctx.store.dispose()
    db = Path(ctx.settings.database_url.removeprefix("sqlite:///"))
    blob = db.read_bytes() + b"".join(p.read_bytes() for p in db.parent.glob("pki.db-*"))
    # The managed CA key, unsealed, in its encodings.
    from pki.store import repos

    with ctx.store.transaction(readonly=True) as session:
        row = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca.sn)
        key = ctx.keystore.open_private_key(repos.get_custody_key(session, key_id=row.key_id).sealed, key_id=row.key_id)
    for k in (key, issued.private_key):
        der = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
        scalar = k.private_numbers().private_value.to_bytes(32, "big")
        for needle in (der, scalar, scalar.hex().encode(), devices.private_key_pem(k)):
            assert needle not in blob


# -- bad serials only openssl will make; a deactivation racing a registration -----------------


@pytest.mark.parametrize("serial", ["0", "-5", str(2**168)])
def test_register_refuses_out_of_range_serials(ctx, customer_ca, tmp_path, openssl, serial):
    import subprocess

    _, cert, key = customer_ca
    (tmp_path / "ca.pem").write_bytes(pem(cert))
    (tmp_path / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "leaf.csr").write_bytes(_csr(leaf_key, "odd-serial"))
    (tmp_path / "ext.cnf").write_text("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n")
    subprocess.run(
        ["openssl", "x509", "-req", "-in", tmp_path / "leaf.csr", "-CA", tmp_path / "ca.pem", "-CAkey",
         tmp_path / "ca.key", "-set_serial", serial, "-days", "30", "-sha256", "-extfile", tmp_path / "ext.cnf",
         "-out", tmp_path / "leaf.pem"],
        check=True, capture_output=True, timeout=60,
    )
    _refused(ctx, InvalidInput, "invalid_serial",
             lambda: devices.register_device(ctx, certificate=(tmp_path / "leaf.pem").read_bytes()))


def test_deactivation_racing_registrations_never_lets_one_in_after_it(ctx, customer_ca):
    """Registrations lock the CA row: none commits under a CA whose deactivation committed first."""
    import threading

    row, cert, key = customer_ca
    leaves = [pem(_leaf(cert, key, cn=f"race-{i}")) for i in range(12)]
    start = threading.Barrier(13)
    outcomes: list[str] = []

    def register(leaf: bytes) -> None:
        start.wait()
        try:
            devices.register_device(ctx, certificate=leaf)
            outcomes.append("ok")
        except PkiError as exc:
            outcomes.append(exc.code)

    def deactivate() -> None:
        start.wait()
        cas.deactivate_ca(ctx, row.sn)

    threads = [threading.Thread(target=register, args=(leaf,)) for leaf in leaves]
    threads.append(threading.Thread(target=deactivate))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(outcomes) <= {"ok", "ca_inactive"} and len(outcomes) == 12
    # Every registration that won happened before the deactivation in the audit order.
    records = [r.details for r in audit.list_records(ctx, limit=1000).items]
    ops = [d["operation"] for d in records]
    deactivated_at = ops.index("ca.deactivate")
    assert all(op != "device.register" for op in ops[deactivated_at:])
    assert ops.count("device.register") == outcomes.count("ok")
