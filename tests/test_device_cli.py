"""`pki ca create` and `pki device ...` as a factory operator runs them."""

from __future__ import annotations

import json
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.support.lint import assert_lint_clean, assert_openssl_verifies
from pki.cli.main import main
from pki.cli.render import EXIT_CODES


@pytest.fixture
def pki(settings, ctx, capsys):
    base = ["--home", str(settings.home), "--database-url", settings.database_url]

    def run(*args: str, ok: bool = True):
        code = main([*base, *args])
        out, err = capsys.readouterr()
        if ok:
            assert code == 0, err
            return json.loads(out) if "--json" in args else out
        return code, out, err

    return run


def test_create_issue_find_revoke(pki, tmp_path, monkeypatch):
    root = pki("ca", "create", "--name", "Plant Root", "--json")
    sub = pki("ca", "create", "--name", "Line 3", "--parent", root["sn"], "--days", "1000", "--json")
    assert root["source"] == sub["source"] == "managed" and sub["issuer"] == root["subject"]
    assert {c["sn"] for c in pki("ca", "list", "--json")["items"]} == {root["sn"], sub["sn"]}

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-1")]))
           .sign(key, hashes.SHA256()))
    csr_path = tmp_path / "sensor-1.csr"
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    from_csr = pki("device", "issue", "--ca", sub["sn"], "--csr", str(csr_path), "--json")
    assert from_csr["client_id"] == "sensor-1" and "private_key_pem" not in from_csr
    cert_pem = from_csr["certificate_pem"].encode()
    assert_lint_clean(cert_pem)
    assert_openssl_verifies(cert_pem, [from_csr["chain_pem"].encode()], tmp_dir=tmp_path)

    generated = pki("device", "issue", "--ca", sub["sn"], "--generate", "--client-id", "sensor-2", "--json")
    key2 = serialization.load_pem_private_key(generated["private_key_pem"].encode(), None)
    cert2 = x509.load_pem_x509_certificate(generated["certificate_pem"].encode())
    assert key2.public_key() == cert2.public_key()

    out_dir = tmp_path / "out"
    written = pki("device", "issue", "--ca", sub["sn"], "--generate", "--client-id", "sensor-3",
                  "--out", str(out_dir), "--json")
    assert "private_key_pem" not in written
    key_file = out_dir / "sensor-3.key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    monkeypatch.setenv("P12_PASS", "factory-secret")
    pki("device", "issue", "--ca", sub["sn"], "--generate", "--client-id", "sensor-4", "--out", str(out_dir),
        "--format", "p12", "--p12-password-env", "P12_PASS", "--json")
    p12_key, p12_cert, p12_cas = pkcs12.load_key_and_certificates(
        (out_dir / "sensor-4.p12").read_bytes(), b"factory-secret"
    )
    assert p12_key.public_key() == p12_cert.public_key() and len(p12_cas) == 2

    by_fp = pki("device", "show", "--fingerprint", generated["fingerprint_sha256"], "--json")
    assert by_fp["sn"] == generated["sn"]
    by_client = pki("device", "show", "--client-id", "sensor-1", "--json")
    assert by_client["sn"] == from_csr["sn"]
    shown = pki("device", "show", from_csr["sn"].upper(), "--ca", sub["sn"], "--json")
    assert shown["status"] == "ACTIVE" and shown["ca_sn"] == sub["sn"]

    revoked = pki("device", "revoke", from_csr["sn"], "--ca", sub["sn"], "--reason", "keyCompromise", "--json")
    assert revoked["status"] == "REVOKED" and revoked["revocation_reason"] == "keyCompromise"
    listed = pki("device", "list", "--ca", sub["sn"], "--status", "REVOKED", "--json")
    assert [d["sn"] for d in listed["items"]] == [from_csr["sn"]]
    code, _, err = pki("device", "activate", from_csr["sn"], "--ca", sub["sn"], ok=False)
    assert code == EXIT_CODES["invalid_state"] and err.startswith("error[device_revoked]: ")


def test_issue_errors(pki):
    root = pki("ca", "create", "--name", "Root", "--json")
    code, _, err = pki("device", "issue", "--ca", root["sn"], "--generate", "--client-id", "bad/id", ok=False)
    assert code == EXIT_CODES["invalid_input"] and err.startswith("error[invalid_client_id]: ")
    code, _, err = pki("device", "issue", "--ca", root["sn"], "--generate", ok=False)
    assert err.startswith("error[missing_client_id]: ")
    code, _, err = pki("device", "issue", "--ca", "abc", "--generate", "--client-id", "x", ok=False)
    assert code == EXIT_CODES["not_found"]
    code, _, err = pki("device", "issue", "--ca", root["sn"], "--generate", "--client-id", "x", "--format", "p12",
                       ok=False)
    assert code == 2  # usage: p12 needs --out and a password


def test_expiring_before_filter_through_the_cli(pki):
    root = pki("ca", "create", "--name", "Root", "--json")
    pki("device", "issue", "--ca", root["sn"], "--generate", "--client-id", "short", "--days", "10", "--json")
    pki("device", "issue", "--ca", root["sn"], "--generate", "--client-id", "long", "--days", "300", "--json")
    page = pki("device", "list", "--ca", root["sn"], "--expiring-before", "2099-01-01", "--json")
    assert {d["client_id"] for d in page["items"]} == {"short", "long"}
    import datetime as dt

    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    page = pki("device", "list", "--ca", root["sn"], "--expiring-before", soon, "--json")
    assert [d["client_id"] for d in page["items"]] == ["short"]
    code, _, err = pki("device", "list", "--ca", root["sn"], "--expiring-before", "soon", ok=False)
    assert code == EXIT_CODES["invalid_input"] and err.startswith("error[invalid_time]: ")
