"""CA keys on a PKCS#11 token (SoftHSM2): issuance, CRL, OCSP, provisioning, and the clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from pki.cli.render import EXIT_CODES
from pki.errors import ConfigError, InvalidInput
from pki.keys import KeyHandle, Pkcs11Custody, Pkcs11Location, SignerSpec
from pki.services import cas, crls, custody, devices, managed
from pki.services import ocsp as ocsp_service
from pki.services.provision import provision
from pki.store import CustodyKey, DeviceCertificate
from tests.support import snapshot
from tests.support.lint import assert_crl_lint_clean, assert_lint_clean, assert_openssl_verifies
from tests.support.openssl import require_openssl
from tests.support.softhsm import softhsm  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parent.parent
PEM = serialization.Encoding.PEM


def _on_token(ctx, token, name, **kw):
    return managed.create_ca(ctx, name=name, custody="pkcs11", pkcs11_module=token.module,
                             token_label=token.label, **kw)


def _cert(ctx, sn) -> x509.Certificate:
    with ctx.store.transaction(readonly=True) as session:
        return x509.load_der_x509_certificate(cas.resolve_ca(session, instance=ctx.instance, ref=sn).cert_der)


def _key_row(ctx, sn):
    with ctx.store.transaction(readonly=True) as session:
        ca = cas.resolve_ca(session, instance=ctx.instance, ref=sn)
        return session.scalars(select(CustodyKey).where(CustodyKey.key_id == ca.key_id)).one()


def _csr(cn: str) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256())
    return csr.public_bytes(PEM), key


@pytest.fixture
def hsm_chain(ctx, softhsm):
    root = _on_token(ctx, softhsm, "HSM Root")
    inter = _on_token(ctx, softhsm, "HSM Issuing", parent=root.sn, days=1825)
    return root, inter


def test_root_and_intermediate_on_the_token_issue_verifiable_lint_clean_devices(ctx, softhsm, hsm_chain, tmp_path):
    require_openssl()
    root, inter = hsm_chain
    root_cert, inter_cert = _cert(ctx, root.sn), _cert(ctx, inter.sn)
    inter_cert.verify_directly_issued_by(root_cert)
    csr, _ = _csr("hsm-device-1")
    issued = devices.issue_device(ctx, ca=inter.sn, csr=csr)
    generated = devices.issue_device(ctx, ca=inter.sn, generate=True, client_id="hsm-device-2")
    for leaf in (issued.certificate, generated.certificate):
        leaf.verify_directly_issued_by(inter_cert)
        assert_lint_clean(leaf.public_bytes(serialization.Encoding.DER))
        assert_openssl_verifies(leaf.public_bytes(PEM), [root_cert.public_bytes(PEM), inter_cert.public_bytes(PEM)],
                                tmp_dir=tmp_path, strict=True)

    # The key objects: on the token, sensitive and never extractable; the store holds no key bytes.
    for ca in (root, inter):
        row = _key_row(ctx, ca.sn)
        assert row.custody == "pkcs11" and row.sealed == b""
        assert row.key_ref.startswith(f"pkcs11:token={softhsm.label};object={row.key_id};type=private?")
        assert softhsm.pin not in row.key_ref
        attrs = Pkcs11Custody.for_uri(row.key_ref).attributes(custody.handle_of(row))
        assert attrs == {"extractable": False, "sensitive": True, "never_extractable": True}
    dump = repr(snapshot(ctx)).encode()
    assert softhsm.pin.encode() not in dump


def test_crl_and_ocsp_signed_through_the_token_verify_with_openssl(ctx, softhsm, hsm_chain, tmp_path):
    require_openssl()
    root, inter = hsm_chain
    root_cert, inter_cert = _cert(ctx, root.sn), _cert(ctx, inter.sn)
    good = devices.issue_device(ctx, ca=inter.sn, generate=True, client_id="ocsp-good")
    bad = devices.issue_device(ctx, ca=inter.sn, generate=True, client_id="ocsp-bad")
    devices.revoke_device(ctx, ca=inter.sn, sn=bad.device.sn, reason="keyCompromise")

    crl = crls.current_crl(ctx, ca=inter.sn)
    crl_obj = x509.load_der_x509_crl(crl.der)
    assert crl_obj.is_signature_valid(inter_cert.public_key())
    assert_crl_lint_clean(crl.der)
    chain = [root_cert.public_bytes(PEM), inter_cert.public_bytes(PEM)]
    assert_openssl_verifies(good.certificate.public_bytes(PEM), chain, crl_pems=[crl.pem], tmp_dir=tmp_path)
    from tests.support.lint import openssl_verify_chain

    ok, out = openssl_verify_chain(bad.certificate.public_bytes(PEM), chain, crl_pems=[crl.pem], tmp_dir=tmp_path)
    assert not ok and "revoked" in out

    # OCSP: the responder key lives on the same token as the CA's.
    for issued, status in ((good, "good"), (bad, "revoked")):
        req = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, inter_cert, hashes.SHA1()).build()
        der = ocsp_service.respond(ctx, req.public_bytes(serialization.Encoding.DER))
        (tmp_path / "resp.der").write_bytes(der)
        (tmp_path / "issuer.pem").write_bytes(inter_cert.public_bytes(PEM))
        (tmp_path / "chain.pem").write_bytes(b"".join(chain))
        (tmp_path / "leaf.pem").write_bytes(issued.certificate.public_bytes(PEM))
        run = subprocess.run(["openssl", "ocsp", "-respin", str(tmp_path / "resp.der"), "-issuer",
                              str(tmp_path / "issuer.pem"), "-CAfile", str(tmp_path / "chain.pem"), "-cert",
                              str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
        assert "Response verify OK" in run.stderr + run.stdout, run.stderr + run.stdout
        assert f": {status}" in run.stdout, run.stdout
    keys = {k["key_id"]: k for k in custody.list_keys(ctx)["items"]}
    ocsp_keys = [k for k in keys.values() if any(u["use"] == "ocsp" for u in k["used_by"])]
    assert [k["custody"] for k in ocsp_keys] == ["pkcs11"]


@pytest.mark.slow
def test_provisioning_2000_devices_through_the_token_with_two_workers(ctx, softhsm, hsm_chain, tmp_path):
    require_openssl()
    root, inter = hsm_chain
    ids = [f"hsm-{i:05d}" for i in range(2000)]
    (tmp_path / "m.csv").write_text("client_id\n" + "\n".join(ids) + "\n")
    result = provision(ctx, ca=inter.sn, manifest=tmp_path / "m.csv", out=tmp_path / "out", workers=2)
    assert (result.total, result.issued) == (2000, 2000)
    inter_cert, root_cert = _cert(ctx, inter.sn), _cert(ctx, root.sn)
    with ctx.store.transaction(readonly=True) as session:
        ders = session.scalars(select(DeviceCertificate.cert_der)).all()
    assert len(ders) == 2000
    for der in ders:
        x509.load_der_x509_certificate(der).verify_directly_issued_by(inter_cert)
    sample = (tmp_path / "out" / "devices" / "hsm-01999.crt.pem").read_bytes()
    assert_lint_clean(x509.load_pem_x509_certificate(sample).public_bytes(serialization.Encoding.DER))
    assert_openssl_verifies(sample, [root_cert.public_bytes(PEM), inter_cert.public_bytes(PEM)], tmp_dir=tmp_path)


def test_signer_spec_is_picklable_and_carries_no_pin_or_key(ctx, softhsm, hsm_chain):
    import pickle

    _root, inter = hsm_chain
    row = _key_row(ctx, inter.sn)
    spec = SignerSpec(custody.handle_of(row))
    data = pickle.dumps(spec)
    assert softhsm.pin.encode() not in data
    assert pickle.loads(data).open().public_key() == _cert(ctx, inter.sn).public_key()


def test_keys_list_shows_kind_cas_and_no_secret(ctx, softhsm, hsm_chain, pki):
    root, inter = hsm_chain
    soft = managed.create_ca(ctx, name="Soft Root")
    code, out, err = pki("keys", "list", "--json")
    assert code == 0, err
    items = json.loads(out)["items"]
    by_ca = {u["ca_sn"]: item for item in items for u in item["used_by"] if u["use"] == "ca"}
    assert by_ca[root.sn]["custody"] == by_ca[inter.sn]["custody"] == "pkcs11"
    assert by_ca[soft.sn]["custody"] == "software" and by_ca[soft.sn]["master_key_id"]
    assert all(k["created_at"].endswith("Z") for k in items)
    assert "sealed" not in out and softhsm.pin not in out
    code, out, _ = pki("keys", "list")
    assert code == 0 and "pkcs11" in out and "software" in out


# -- the clear errors, store unchanged ---------------------------------------------------------


def _cli(settings, env, *args):
    return subprocess.run([sys.executable, "-m", "pki.cli.main", "--home", str(settings.home), "--database-url",
                           settings.database_url, *args], capture_output=True, text=True, env=env, cwd=REPO,
                          check=False)


@pytest.mark.parametrize("case", ["wrong_pin", "missing_module", "missing_token", "no_pin"])
def test_bad_token_configuration_is_a_clear_config_error_and_changes_nothing(ctx, settings, softhsm, case):
    env = softhsm.env()
    module, label = softhsm.module, softhsm.label
    if case == "wrong_pin":
        env["PKI_PKCS11_PIN"] = "0000-wrong"
    elif case == "missing_module":
        module = "/nonexistent/libpkcs11.so"
    elif case == "missing_token":
        label = "no-such-token"
    else:
        env.pop("PKI_PKCS11_PIN")
    expected = {"wrong_pin": "pkcs11_pin_incorrect", "missing_module": "pkcs11_module_unavailable",
                "missing_token": "pkcs11_token_missing", "no_pin": "pkcs11_pin_missing"}[case]
    before = snapshot(ctx)
    run = _cli(settings, env, "ca", "create", "--name", "Refused", "--custody", "pkcs11", "--pkcs11-module", module,
               "--token-label", label)
    assert run.returncode == EXIT_CODES["config"]
    assert f"error[{expected}]" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert snapshot(ctx) == before


def test_a_deleted_key_object_is_a_clear_error_and_changes_nothing(ctx, settings, softhsm, hsm_chain):
    _root, inter = hsm_chain
    row = _key_row(ctx, inter.sn)
    Pkcs11Custody.for_uri(row.key_ref).destroy(custody.handle_of(row))
    before = snapshot(ctx)
    run = _cli(settings, softhsm.env(), "device", "issue", "--ca", inter.sn, "--generate", "--client-id", "gone")
    assert "error[pkcs11_key_missing]" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and run.returncode == EXIT_CODES["config"]
    # In this process too (the signer was cached before the key went: a fresh context looks again).
    ctx._signers.clear()
    with pytest.raises(ConfigError) as info:
        devices.issue_device(ctx, ca=inter.sn, generate=True, client_id="gone")
    assert info.value.code == "pkcs11_key_missing"
    assert snapshot(ctx) == before


def test_a_key_deleted_under_a_cached_signer_is_the_same_clear_error(ctx, softhsm, hsm_chain):
    _root, inter = hsm_chain
    devices.issue_device(ctx, ca=inter.sn, generate=True, client_id="warm")  # signer cached, handle looked up
    row = _key_row(ctx, inter.sn)
    Pkcs11Custody.for_uri(row.key_ref).destroy(custody.handle_of(row))
    before = snapshot(ctx)
    with pytest.raises(ConfigError) as info:
        devices.issue_device(ctx, ca=inter.sn, generate=True, client_id="after")
    assert info.value.code == "pkcs11_key_missing"
    assert snapshot(ctx) == before


def test_pin_file_must_be_private(ctx, softhsm, tmp_path):
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin + "\n")
    os.chmod(pin_file, 0o644)
    before = snapshot(ctx)
    with pytest.raises(ConfigError) as info:
        _on_token(ctx, softhsm, "Loose PIN", pin_file=str(pin_file))
    assert info.value.code == "pkcs11_pin_insecure"
    assert snapshot(ctx) == before
    os.chmod(pin_file, 0o600)
    ca = _on_token(ctx, softhsm, "PIN File", pin_file=str(pin_file))
    assert "pin-source=file:" in _key_row(ctx, ca.sn).key_ref


def test_pkcs11_refuses_key_types_it_does_not_make_and_software_refuses_token_options(ctx, softhsm):
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as info:
        _on_token(ctx, softhsm, "RSA on token", key_type="rsa-2048")
    assert info.value.code == "unsupported_key_type"
    with pytest.raises(InvalidInput) as info:
        managed.create_ca(ctx, name="Mixed", token_label="x")
    assert info.value.code == "invalid_custody"
    assert snapshot(ctx) == before


def _token_labels(softhsm) -> set[str]:
    import pkcs11

    session = pkcs11.lib(softhsm.module).get_token(token_label=softhsm.label).open()
    try:
        return {k.label for k in session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PUBLIC_KEY})}
    finally:
        session.close()


def test_refused_intermediate_leaves_no_key_on_the_token(ctx, softhsm):
    Pkcs11Custody(Pkcs11Location(softhsm.module, softhsm.label)).check()  # logged in: private objects visible
    before, labels = snapshot(ctx), _token_labels(softhsm)
    with pytest.raises(Exception) as info:
        _on_token(ctx, softhsm, "Orphan", parent="00ff")
    assert getattr(info.value, "code", None) == "ca_not_found"
    assert snapshot(ctx) == before
    assert _token_labels(softhsm) == labels


def test_uri_round_trip_keeps_module_token_object_and_pin_source():
    loc = Pkcs11Location("/usr/lib/x y/lib.so", "my token;1", pin_env="MY_PIN", object_label="key_0a")
    parsed = Pkcs11Location.parse(loc.uri())
    assert parsed == loc
    assert loc.uri().startswith("pkcs11:token=my%20token%3B1;object=key_0a;type=private?module-path=")
    handle = KeyHandle("pkcs11", "key_0a", "ec-p256", key_ref=loc.uri())
    assert "sealed" not in repr(handle) or "None" in repr(handle)


def test_cli_creates_on_the_token_with_the_pin_from_a_named_variable(ctx, settings, softhsm):
    env = softhsm.env(HSM_PIN=softhsm.pin)
    env.pop("PKI_PKCS11_PIN")
    run = _cli(settings, env, "ca", "create", "--name", "CLI HSM", "--custody", "pkcs11", "--pkcs11-module",
               softhsm.module, "--token-label", softhsm.label, "--pin-env", "HSM_PIN", "--json")
    assert run.returncode == 0, run.stderr
    ca_sn = json.loads(run.stdout)["sn"]
    assert "x-pin-env=HSM_PIN" in _key_row(ctx, ca_sn).key_ref
    run = _cli(settings, env, "device", "issue", "--ca", ca_sn, "--generate", "--client-id", "cli-hsm", "--json")
    assert run.returncode == 0, run.stderr
    leaf = x509.load_pem_x509_certificate(json.loads(run.stdout)["certificate_pem"].encode())
    leaf.verify_directly_issued_by(_cert(ctx, ca_sn))
    # Every process that signs needs the PIN in the variable the key's URI names.
    env.pop("HSM_PIN")
    before = snapshot(ctx)
    run = _cli(settings, env, "device", "issue", "--ca", ca_sn, "--generate", "--client-id", "no-pin")
    assert "error[pkcs11_pin_missing]" in run.stderr and "HSM_PIN" in run.stderr, run.stderr
    assert run.returncode == EXIT_CODES["config"]
    assert snapshot(ctx) == before


def test_both_custodies_implement_the_protocol():
    from pki.keys import KeyCustody, MasterKey, SoftwareCustody, SoftwareKeystore

    assert isinstance(SoftwareCustody(SoftwareKeystore(MasterKey(os.urandom(32)))), KeyCustody)
    assert isinstance(Pkcs11Custody(Pkcs11Location("/nowhere.so", "t")), KeyCustody)
