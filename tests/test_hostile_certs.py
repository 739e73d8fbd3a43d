"""Hostile certificates at registration: each is refused with an invalid_input code, nothing stored.

Malformed extensions (a duplicate, an ediPartyName SAN, a SAN or EKU that is not DER) are built here with
asn1crypto or as raw extension bytes, because cryptography refuses to build them.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import sys
import warnings

import pytest
from asn1crypto import crl as acrl
from asn1crypto import x509 as ax
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from pki.errors import InvalidInput
from pki.services import cas, codes, crls, devices, managed, offline
from pki.x509 import build_crl
from tests.support import refused_unchanged as _refused, snapshot
from tests.support.certs import load_pair, pem, verification_pem
from tests.support.http_app import app_for, make_user, signed_client
from tests.support.lint import assert_openssl_verifies

NOW = _dt.datetime.now(_dt.timezone.utc)
#: GeneralNames holding one ediPartyName ([5], partyName [1] UTF8String "x"): cryptography cannot represent it.
EDI_PARTY_SAN = bytes.fromhex("3007a505a1030c0178")
NOT_DER = bytes.fromhex("30038201")  # a SEQUENCE that claims 3 bytes and holds 2

BAD_EXTENSIONS = {
    "ediPartyName SAN": (ExtensionOID.SUBJECT_ALTERNATIVE_NAME, EDI_PARTY_SAN),
    "malformed SAN": (ExtensionOID.SUBJECT_ALTERNATIVE_NAME, NOT_DER),
    "malformed EKU": (ExtensionOID.EXTENDED_KEY_USAGE, NOT_DER),
}




def _key_usage(**bits):
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: bits.get(n, False) for n in names})


def _cert(subject, *, issuer=None, issuer_key=None, key=None, ca=True, path_length=None, bc_critical=True,
          extra=(), not_after=None, eku=True):
    """A CA (``ca``) or a client leaf, self-signed unless ``issuer``; ``extra`` = (oid, raw value) pairs."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = subject if isinstance(subject, x509.Name) else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer_key = issuer_key or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - _dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + _dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=bc_critical)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True),
                                        critical=True)
    else:
        builder = builder.add_extension(_key_usage(digital_signature=True), critical=True)
        if eku and all(oid != ExtensionOID.EXTENDED_KEY_USAGE for oid, _ in extra):
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    for oid, value in extra:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    return builder.sign(signer_key, hashes.SHA256()), key


def _duplicate_last_extension(cert, signer_key) -> bytes:
    """``cert`` with its last extension twice, signed again (PEM)."""
    parsed = ax.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"]
    tbs["extensions"].append(tbs["extensions"][-1].copy())
    signature = signer_key.sign(tbs.dump(force=True), ec.ECDSA(hashes.SHA256()))
    der = ax.Certificate({"tbs_certificate": tbs, "signature_algorithm": parsed["signature_algorithm"],
                          "signature_value": signature}).dump(force=True)
    return _der_to_pem(der)


def _der_to_pem(der: bytes) -> bytes:
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def _bad_ca_pems():
    """(label, CA PEM, CA key) for each malformed-extension CA."""
    out = []
    for label, extra in BAD_EXTENSIONS.items():
        cert, key = _cert(f"Bad {label}", extra=[extra])
        out.append((label, pem(cert), key, cert))
    cert, key = _cert("Bad duplicate")
    out.append(("duplicate extension", _duplicate_last_extension(cert, key), key, cert))
    return out


@pytest.fixture
def customer(ctx):
    cert, key = load_pair("ca_root_ec_p256")
    row = cas.register_ca(ctx, certificate=pem(cert), verification=verification_pem(cert, key, codes.new_code(ctx).code))
    return row, cert, key


def _bad_leaves(ca_cert, ca_key):
    out = []
    for label, extra in BAD_EXTENSIONS.items():
        leaf, _ = _cert("dev-1", issuer=ca_cert, issuer_key=ca_key, ca=False, extra=[extra])
        out.append((label, pem(leaf)))
    leaf, _ = _cert("dev-1", issuer=ca_cert, issuer_key=ca_key, ca=False)
    out.append(("duplicate extension", _duplicate_last_extension(leaf, ca_key)))
    return out


# -- 4: malformed extensions --------------------------------------------------------------


def test_malformed_extensions_refused_at_device_registration(ctx, customer):
    _, ca_cert, ca_key = customer
    for label, leaf in _bad_leaves(ca_cert, ca_key):
        err = _refused(ctx, "invalid_extension", lambda: devices.register_device(ctx, certificate=leaf))
        assert "device certificate" in err.message, label


def test_malformed_extensions_refused_at_ca_registration_and_in_a_chain(ctx):
    for label, ca_pem, key, cert in _bad_ca_pems():
        vpem = verification_pem(cert, key, codes.new_code(ctx).code)
        _refused(ctx, "invalid_extension", lambda: cas.register_ca(ctx, certificate=ca_pem, verification=vpem))
    # As a chain element of a good intermediate.
    inter, inter_key = load_pair("ca_intermediate_ec_p256")
    for label, ca_pem, _key, _cert_ in _bad_ca_pems():
        vpem = verification_pem(inter, inter_key, codes.new_code(ctx).code)
        _refused(ctx, "invalid_extension", lambda: cas.register_ca(
            ctx, certificate=pem(inter), verification=vpem, chain=ca_pem))


def test_malformed_extensions_refused_by_the_offline_verification_cert(tmp_path):
    for label, ca_pem, key, _ in _bad_ca_pems():
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        with pytest.raises(InvalidInput) as err:
            offline.make_verification_certificate(ca_certificate=ca_pem, ca_private_key=key_pem, code="a" * 64)
        assert err.value.code == "invalid_extension", label


def test_crl_with_a_duplicate_extension_refused_at_upload(ctx, customer):
    row, ca_cert, ca_key = customer
    crl = build_crl(issuer=ca_cert, entries=[], crl_number=5, this_update=NOW.replace(microsecond=0),
                    next_update=NOW + _dt.timedelta(days=1)).sign(ca_key, hashes.SHA256())
    parsed = acrl.CertificateList.load(crl.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_cert_list"]
    tbs["crl_extensions"].append(tbs["crl_extensions"][-1].copy())
    signature = ca_key.sign(tbs.dump(force=True), ec.ECDSA(hashes.SHA256()))
    der = acrl.CertificateList({"tbs_cert_list": tbs, "signature_algorithm": parsed["signature_algorithm"],
                                "signature": signature}).dump(force=True)
    _refused(ctx, "invalid_extension", lambda: crls.upload_crl(ctx, ca=row.sn, crl=der))


def test_malformed_extensions_exit_3_on_the_cli(pki, customer, tmp_path):
    _, ca_cert, ca_key = customer
    for label, leaf in _bad_leaves(ca_cert, ca_key):
        path = tmp_path / "leaf.pem"
        path.write_bytes(leaf)
        code, _, err = pki("device", "register", "--cert", str(path))
        assert code == 3 and "error[invalid_extension]" in err, (label, err)
    for label, ca_pem, key, _ in _bad_ca_pems():
        (tmp_path / "ca.pem").write_bytes(ca_pem)
        (tmp_path / "ca.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        code, _, err = pki("ca", "verification-cert", "--ca-cert", str(tmp_path / "ca.pem"), "--ca-key",
                           str(tmp_path / "ca.key"), "--code", "a" * 64, "--out", str(tmp_path / "v.pem"))
        assert code == 3 and "error[invalid_extension]" in err, (label, err)


def test_malformed_extensions_answer_400_over_http(ctx, customer):
    _, ca_cert, ca_key = customer
    api = signed_client(app_for(ctx), make_user(ctx, "admin", "PkiAdministratorAccess"))
    vpems = [verification_pem(cert, key, codes.new_code(ctx).code) for _, _, key, cert in _bad_ca_pems()]
    before = snapshot(ctx)
    for label, leaf in _bad_leaves(ca_cert, ca_key):
        response = api.request("POST", "/v1/devices/register", json={"certificate_pem": leaf.decode()})
        assert response.status_code == 400 and response.json()["code"] == "invalid_extension", (label, response.text)
    for (label, ca_pem, key, cert), vpem in zip(_bad_ca_pems(), vpems):
        body = {"certificate_pem": ca_pem.decode(), "verification_pem": vpem.decode()}
        response = api.request("POST", "/v1/cas/register", json=body)
        assert response.status_code == 400 and response.json()["code"] == "invalid_extension", (label, response.text)
    after = snapshot(ctx)
    # Each signed request spends a nonce (replay protection); nothing else may change.
    after.pop("http_nonce"), before.pop("http_nonce")
    assert after == before


# -- 15: CA profiles --------------------------------------------------------------------------


def _register(ctx, cert, key, chain=None):
    """A registration, its code made now: call the result (a snapshot taken in between sees the code)."""
    kw = dict(certificate=pem(cert), verification=verification_pem(cert, key, codes.new_code(ctx).code),
              chain=b"".join(pem(c) for c in chain) if chain else None)
    return lambda: cas.register_ca(ctx, **kw)


def test_ca_whose_basic_constraints_is_not_critical_refused(ctx):
    cert, key = _cert("Lax Root", bc_critical=False)
    _refused(ctx, "ca_basic_constraints_not_critical", _register(ctx, cert, key))


def test_chain_over_a_path_length_refused(ctx):
    root, root_key = _cert("Strict Root", path_length=0)
    inter, inter_key = _cert("Too Deep", issuer=root, issuer_key=root_key, path_length=0)
    _refused(ctx, "chain_path_length_exceeded", _register(ctx, inter, inter_key, [root]))
    # Two levels under a root that allows one.
    root1, root1_key = _cert("Root One", path_length=1)
    mid, mid_key = _cert("Mid", issuer=root1, issuer_key=root1_key)
    low, low_key = _cert("Low", issuer=mid, issuer_key=mid_key, path_length=0)
    _refused(ctx, "chain_path_length_exceeded", _register(ctx, low, low_key, [mid, root1]))


def test_chain_within_its_path_length_registers_and_its_leaves_verify(ctx, tmp_path):
    root, root_key = _cert("Roomy Root", path_length=1)
    inter, inter_key = _cert("Plant Issuing", issuer=root, issuer_key=root_key, path_length=0)
    row = _register(ctx, inter, inter_key, [root])()
    leaf, _ = _cert("dev-9", issuer=inter, issuer_key=inter_key, ca=False)
    assert devices.register_device(ctx, certificate=pem(leaf)).ca_sn == row.sn
    assert_openssl_verifies(pem(leaf), [pem(inter), pem(root)], tmp_dir=tmp_path)


def test_chain_root_twice_refused(ctx):
    inter, inter_key = load_pair("ca_intermediate_ec_p256")
    root, _ = load_pair("ca_root_ec_p256")
    _refused(ctx, "chain_repeated_certificate", _register(ctx, inter, inter_key, [root, root]))
    _refused(ctx, "chain_repeated_certificate", _register(ctx, inter, inter_key, [inter, root]))


# -- 16: control characters in subjects --------------------------------------------------------

HOSTILE = ["\x1b[31mred", "nul\x00here", "left\u202eright"]


def _subject(cn, other):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, other), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def test_control_characters_in_subjects_refused(ctx, customer):
    _, ca_cert, ca_key = customer
    for text in HOSTILE:
        cert, key = _cert(_subject("Evil Root", text))
        _refused(ctx, "invalid_name", _register(ctx, cert, key))
        leaf, _ = _cert(_subject("dev-1", text), issuer=ca_cert, issuer_key=ca_key, ca=False)
        _refused(ctx, "invalid_name", lambda: devices.register_device(ctx, certificate=pem(leaf)))
    good, good_key = _cert("Good Root")
    code = codes.new_code(ctx).code
    vkey = ec.generate_private_key(ec.SECP256R1())
    vcert = (x509.CertificateBuilder().subject_name(_subject(code, "x\x1b]0;title\x07"))
             .issuer_name(good.subject).public_key(vkey.public_key()).serial_number(7)
             .not_valid_before(NOW - _dt.timedelta(minutes=5)).not_valid_after(NOW + _dt.timedelta(days=1))
             .sign(good_key, hashes.SHA256()))
    _refused(ctx, "invalid_name", lambda: cas.register_ca(ctx, certificate=pem(good), verification=pem(vcert)))


# -- 18: a leaf that outlives its CA -----------------------------------------------------------


def test_registered_leaf_outliving_its_ca_refused(ctx):
    ca_cert, ca_key = _cert("Short Root", not_after=NOW + _dt.timedelta(days=30))
    _register(ctx, ca_cert, ca_key)()
    leaf, _ = _cert("dev-1", issuer=ca_cert, issuer_key=ca_key, ca=False, not_after=NOW + _dt.timedelta(days=60))
    _refused(ctx, "validity_exceeds_ca", lambda: devices.register_device(ctx, certificate=pem(leaf)))
    inside, _ = _cert("dev-2", issuer=ca_cert, issuer_key=ca_key, ca=False, not_after=NOW + _dt.timedelta(days=29))
    assert devices.register_device(ctx, certificate=pem(inside)).client_id == "dev-2"


# -- 19: codes that say what is wrong ------------------------------------------------------------


def test_leaf_with_a_flipped_signature_byte_is_a_bad_signature(ctx, customer):
    _, ca_cert, ca_key = customer
    leaf, _ = _cert("dev-1", issuer=ca_cert, issuer_key=ca_key, ca=False)
    parsed = ax.Certificate.load(leaf.public_bytes(serialization.Encoding.DER))
    signature = bytearray(parsed["signature_value"].native)
    signature[-1] ^= 0x01  # the end of ECDSA s: the DER stays well-formed
    parsed["signature_value"] = bytes(signature)
    damaged = _der_to_pem(parsed.dump(force=True))
    _refused(ctx, "certificate_bad_signature", lambda: devices.register_device(ctx, certificate=damaged))


@pytest.mark.openssl
def test_sha1_csr_is_a_weak_signature_algorithm(ctx, openssl, tmp_path):
    row = managed.create_ca(ctx, name="Issuing")
    key = tmp_path / "k.pem"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    key.write_bytes(ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    csr = subprocess.run(["openssl", "req", "-new", "-sha1", "-key", str(key), "-subj", "/CN=dev-1"],
                         capture_output=True, check=True).stdout
    assert b"BEGIN CERTIFICATE REQUEST" in csr
    _refused(ctx, "weak_signature_algorithm", lambda: devices.issue_device(ctx, ca=row.sn, csr=csr))


# -- 20: a CN over 64 characters: the clean error, no warning ----------------------------------------


@pytest.mark.slow
def test_long_cn_gives_the_clean_error_and_no_warning(tmp_path):
    with warnings.catch_warnings():  # building the over-long CN here warns too; the point is what pki prints
        warnings.simplefilter("ignore")
        cert, key = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "R" * 70, _validate=False)]))
        leaf_ca, leaf_ca_key = load_pair("ca_root_ec_p256")
        leaf, _ = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d" * 70, _validate=False)]),
                        issuer=leaf_ca, issuer_key=leaf_ca_key, ca=False)
        (tmp_path / "v.pem").write_bytes(verification_pem(cert, key, "a" * 64))
    (tmp_path / "ca.pem").write_bytes(pem(cert))
    (tmp_path / "leaf.pem").write_bytes(pem(leaf))
    env = {**os.environ, "PKI_HOME": str(tmp_path / "h")}
    env.pop("PKI_DATABASE_URL", None)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "pki", *args], env=env, capture_output=True, text=True)

    assert run("init").returncode == 0
    registered = run("ca", "register", "--cert", str(tmp_path / "ca.pem"), "--verification", str(tmp_path / "v.pem"))
    assert registered.returncode == 3 and registered.stderr.startswith("error[invalid_name]"), registered.stderr
    device = run("device", "register", "--cert", str(tmp_path / "leaf.pem"))
    assert device.returncode == 3 and device.stderr.startswith("error[invalid_name]"), device.stderr
    assert "Warning" not in device.stderr
    assert "Warning" not in registered.stderr and "site-packages" not in registered.stderr
