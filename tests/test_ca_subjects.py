"""Managed CA subjects, intermediates' default validity, and intermediates signed by an outside root."""

from __future__ import annotations

import datetime as _dt
import json
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests.support import refused_unchanged, snapshot
from tests.support.certs import make_root, pem, verification_pem
from tests.support.lint import assert_lint_clean, assert_openssl_verifies
from pki.errors import InvalidInput, NotFound
from pki.services import ca_requests, cas, codes, devices, managed
from pki.x509.subjects import parse_subject


def _cert(row_sn, ctx) -> x509.Certificate:
    from pki.store import repos

    with ctx.store.transaction(readonly=True) as session:
        return x509.load_der_x509_certificate(repos.get_ca_by_sn(session, instance=ctx.instance, sn=row_sn).cert_der)


# -- subjects ----------------------------------------------------------------------------------------------


def test_parse_subject_in_openssl_order():
    name = parse_subject("C=DE,O=Acme,CN=Line 3")
    assert [a.oid for a in name] == [NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME]
    assert name.rfc4514_string() == "CN=Line 3,O=Acme,C=DE"
    assert parse_subject("/C=DE/O=Acme, Inc./CN=Line 3").rfc4514_string() == "CN=Line 3,O=Acme\\, Inc.,C=DE"
    assert parse_subject(r"O=Acme\, Inc.,CN=x").rfc4514_string() == r"CN=x,O=Acme\, Inc."


@pytest.mark.parametrize("text", ["", "   ", "O=Acme", "CN=a,CN=b", "C=DEU,CN=x", "CN=", "FOO=bar,CN=x",
                                  "CN=x\x1b[31m", "O=Ac\u202eme,CN=x", "CN=" + "x" * 65, "C=DE,O=" + "o" * 2000,
                                  "no equals sign"])
def test_bad_subjects_are_refused(ctx, text):
    refused_unchanged(ctx, "invalid_subject" if "\x1b" not in text and "\u202e" not in text else
                      _code_for(text), lambda: managed.create_ca(ctx, subject=text))


def _code_for(text):
    try:
        parse_subject(text)
    except InvalidInput as exc:
        return exc.code
    raise AssertionError("accepted")


def test_create_with_a_full_subject(ctx, tmp_path):
    row = managed.create_ca(ctx, subject="C=DE,O=Acme,CN=Line 3")
    assert row.name == "Line 3" and row.subject == "CN=Line 3,O=Acme,C=DE" and row.issuer == row.subject
    cert = _cert(row.sn, ctx)
    assert [a.oid for a in cert.subject] == [NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME]
    assert_lint_clean(cert.public_bytes(serialization.Encoding.DER))
    # An intermediate under it, and a device under that: the DN chains verify with openssl.
    mid = managed.create_ca(ctx, subject="C=DE,O=Acme,OU=Plant 2,CN=Line 3 Issuing", parent=row.sn,
                            name="Line 3 issuing")
    assert mid.name == "Line 3 issuing" and mid.issuer == "CN=Line 3,O=Acme,C=DE"
    issued = devices.issue_device(ctx, ca=mid.sn, generate=True, client_id="dev-1")
    leaf = issued.certificate.public_bytes(serialization.Encoding.PEM)
    assert_lint_clean(leaf)
    assert_openssl_verifies(leaf, [pem(_cert(mid.sn, ctx)), pem(cert)], tmp_dir=tmp_path)


def test_name_or_subject_is_required(ctx):
    refused_unchanged(ctx, "invalid_name", lambda: managed.create_ca(ctx))


# -- an intermediate's default validity --------------------------------------------------------------------


def test_intermediate_default_never_outlives_its_parent(ctx, clock):
    root = managed.create_ca(ctx, name="Short Root", days=100)
    mid = managed.create_ca(ctx, name="Line 3", parent=root.sn)
    assert mid.not_after == root.not_after
    long_root = managed.create_ca(ctx, name="Long Root", days=20000)
    mid2 = managed.create_ca(ctx, name="Line 4", parent=long_root.sn)
    assert mid2.not_after - clock.now() <= _dt.timedelta(days=managed.DEFAULT_CA_DAYS)
    assert mid2.not_after < long_root.not_after
    # Asked for explicitly, a longer validity is still refused.
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as err:
        managed.create_ca(ctx, name="Line 5", parent=root.sn, days=101)
    assert err.value.code == "validity_exceeds_ca" and snapshot(ctx) == before


def test_readme_parent_example_works_as_written(pki):
    code, out, err = pki("ca", "create", "--name", "Plant Root", "--json")
    assert code == 0, err
    root = json.loads(out)
    code, out, err = pki("ca", "create", "--name", "Line 3", "--parent", root["sn"], "--path-length", "0", "--json")
    assert code == 0, err
    assert json.loads(out)["not_after"] <= root["not_after"]
    code, out, err = pki("ca", "create", "--subject", "C=DE,O=Acme,CN=Line 4", "--parent", root["sn"], "--json")
    assert code == 0, err
    assert json.loads(out)["subject"] == "CN=Line 4,O=Acme,C=DE"


# -- an intermediate signed by an outside root -------------------------------------------------------------


def _sign_csr(csr_pem: bytes, root_cert, root_key, *, now, ca=True, days=730, path_length=0):
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    key_usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                              encipher_only=False, decipher_only=False)
    return (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(root_cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
            .add_extension(key_usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))


def test_csr_only_then_install_signed(ctx, clock, tmp_path):
    request = ca_requests.request_ca(ctx, subject="C=DE,O=Acme,CN=Line 3", key_type="ec-p384")
    assert request.status == "PENDING" and request.ref.startswith("req-")
    csr_pem = request.csr_pem.encode()
    (tmp_path / "ca.csr").write_bytes(csr_pem)
    verified = subprocess.run(["openssl", "req", "-in", str(tmp_path / "ca.csr"), "-noout", "-verify"],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    assert cas.list_cas(ctx).as_json()["items"] == []  # pending: not a CA yet, so in no bundle
    root_cert, root_key = make_root("Offline Root", now=clock.now())
    signed = _sign_csr(csr_pem, root_cert, root_key, now=clock.now())
    row = ca_requests.install_signed(ctx, ref=request.ref, certificate=pem(signed), chain=pem(root_cert))
    assert row.status == "ACTIVE" and row.source == "managed" and row.subject == "CN=Line 3,O=Acme,C=DE"
    assert row.has_chain and row.key_type == "ec-p384"
    issued = devices.issue_device(ctx, ca=row.sn, generate=True, client_id="dev-1")
    leaf = issued.certificate.public_bytes(serialization.Encoding.PEM)
    assert_lint_clean(leaf)
    assert_openssl_verifies(leaf, [pem(signed), pem(root_cert)], tmp_dir=tmp_path)
    # Installed once: the request is gone.
    with pytest.raises(NotFound):
        ca_requests.install_signed(ctx, ref=request.ref, certificate=pem(signed))


def test_install_under_a_registered_root_takes_its_chain(ctx, clock):
    root_cert, root_key = make_root("Owner Root", now=clock.now())
    code = codes.new_code(ctx).code
    cas.register_ca(ctx, certificate=pem(root_cert),
                    verification=verification_pem(root_cert, root_key, code, now=clock.now()))
    request = ca_requests.request_ca(ctx, name="Line 7")
    signed = _sign_csr(request.csr_pem.encode(), root_cert, root_key, now=clock.now())
    row = ca_requests.install_signed(ctx, certificate=pem(signed))  # found by its key
    assert row.name == "Line 7" and row.has_chain and not row.warnings


def test_install_without_known_issuer_warns(ctx, clock):
    root_cert, root_key = make_root("Unknown Root", now=clock.now())
    request = ca_requests.request_ca(ctx, name="Line 8")
    row = ca_requests.install_signed(ctx, certificate=pem(_sign_csr(request.csr_pem.encode(), root_cert,
                                                                    root_key, now=clock.now())))
    assert not row.has_chain and any("no chain" in w for w in row.warnings)


def test_install_refusals_leave_the_store_unchanged(ctx, clock):
    root_cert, root_key = make_root("Offline Root", now=clock.now())
    request = ca_requests.request_ca(ctx, name="Line 9")
    other = ca_requests.request_ca(ctx, name="Line 10")
    for_other = pem(_sign_csr(other.csr_pem.encode(), root_cert, root_key, now=clock.now()))
    refused_unchanged(ctx, "key_mismatch",
                      lambda: ca_requests.install_signed(ctx, ref=request.ref, certificate=for_other))
    leaf = pem(_sign_csr(request.csr_pem.encode(), root_cert, root_key, now=clock.now(), ca=False))
    refused_unchanged(ctx, "not_a_ca", lambda: ca_requests.install_signed(ctx, ref=request.ref, certificate=leaf))
    refused_unchanged(ctx, "chain_unexpected",
                      lambda: ca_requests.install_signed(ctx, ref=request.ref, certificate=pem(root_cert)))
    before = snapshot(ctx)
    with pytest.raises(NotFound) as err:
        ca_requests.install_signed(ctx, certificate=pem(_sign_csr(_foreign_csr(), root_cert, root_key,
                                                                  now=clock.now())))
    assert err.value.code == "ca_request_not_found" and snapshot(ctx) == before
    wrong_chain = pem(make_root("Not The Issuer", now=clock.now())[0])
    refused_unchanged(ctx, "chain_broken", lambda: ca_requests.install_signed(
        ctx, ref=request.ref, certificate=pem(_sign_csr(request.csr_pem.encode(), root_cert, root_key,
                                                         now=clock.now())), chain=wrong_chain))


def _foreign_csr() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Foreign")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def test_cli_csr_only_and_install_signed(pki, ctx, clock, tmp_path):
    out = tmp_path / "ca.csr"
    code, stdout, err = pki("ca", "create", "--subject", "C=DE,O=Acme,CN=Line 3", "--csr-only", "--out", str(out),
                            "--json")
    assert code == 0, err
    ref = json.loads(stdout)["ref"]
    assert "install-signed" in err and out.read_bytes().startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    code, _, err = pki("ca", "create", "--name", "x", "--csr-only", "--days", "3")
    assert code == 2 and "--days" in err
    root_cert, root_key = make_root("Offline Root", now=clock.now())
    (tmp_path / "ca.pem").write_bytes(pem(_sign_csr(out.read_bytes(), root_cert, root_key, now=clock.now())))
    (tmp_path / "root.pem").write_bytes(pem(root_cert))
    code, stdout, err = pki("ca", "install-signed", ref, "--cert", str(tmp_path / "ca.pem"), "--chain",
                            str(tmp_path / "root.pem"), "--json")
    assert code == 0, err
    assert json.loads(stdout)["status"] == "ACTIVE"


def test_http_csr_only_and_install_signed(ctx, clock):
    from tests.support.http_app import app_for, make_user, signed_client

    admin = signed_client(app_for(ctx), make_user(ctx, "admin", "PkiFullAccess"))
    request = admin.call("POST", "/v1/cas/requests", json={"subject": "C=DE,O=Acme,CN=Line 3"})
    assert request["status"] == "PENDING"
    root_cert, root_key = make_root("Offline Root", now=clock.now())
    signed = _sign_csr(request["csr_pem"].encode(), root_cert, root_key, now=clock.now(), path_length=1)
    row = admin.call("POST", "/v1/cas/install-signed", json={
        "ref": request["ref"], "certificate_pem": pem(signed).decode(), "chain_pem": pem(root_cert).decode()})
    assert row["status"] == "ACTIVE" and row["subject"] == "CN=Line 3,O=Acme,C=DE"
    created = admin.call("POST", "/v1/cas", json={"subject": "C=DE,O=Acme,CN=Line 4", "parent": row["sn"]})
    assert created["not_after"] <= row["not_after"]
