"""Key custody: sealing at rest, the master key file, signers."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import os
import pickle
import secrets
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from pki.errors import ConfigError, InvalidInput
from pki.keys import (
    KEY_TYPES,
    MasterKey,
    Signer,
    SoftwareKeystore,
    SoftwareSigner,
    create_master_key_file,
    generate_private_key,
    key_type_of,
    load_master_key,
    new_key_id,
    signature_hash_for,
)

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
MASTER = MasterKey(secrets.token_bytes(32))
KEYSTORE = SoftwareKeystore(MASTER)


@functools.cache
def _key(key_type: str):
    # RSA-4096 generation is slow: one key per type for the whole module.
    return generate_private_key(key_type)


@functools.cache
def _sealed(key_type: str) -> tuple[str, bytes]:
    key_id = new_key_id()
    return key_id, KEYSTORE.seal_private_key(_key(key_type), key_id=key_id)


def _der(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _windows(data: bytes, size: int = 16):
    return {data[i : i + size] for i in range(len(data) - size + 1)}


def _cert_builder(public_key, cn: str = "test CA", *, issuer: x509.Name | None = None):
    """Self-signed unless an issuer is given."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )


# -- sealing -----------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_private_key_round_trip(key_type):
    key_id, blob = _sealed(key_type)
    opened = KEYSTORE.open_private_key(blob, key_id=key_id)
    assert _der(opened) == _der(_key(key_type))
    assert key_type_of(opened) == key_type

    signer = KEYSTORE.signer(blob, key_id=key_id)
    assert isinstance(signer, Signer)
    assert (signer.key_id, signer.key_type) == (key_id, key_type)
    assert _spki(signer.public_key()) == _spki(_key(key_type).public_key())


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_blob_holds_no_trace_of_the_plaintext_key(key_type):
    _, blob = _sealed(key_type)
    der = _der(_key(key_type))
    assert blob[0] == 2 and blob[1:9] == bytes.fromhex(KEYSTORE.master_key_id)
    assert der not in blob
    assert not any(w in blob for w in _windows(der))
    for text in (base64.b64encode(der), der.hex().encode(), der.hex().upper().encode()):
        assert not any(w in blob for w in _windows(text))


def test_each_seal_uses_a_fresh_nonce():
    key = _key("ec-p256")
    a = KEYSTORE.seal_private_key(key, key_id="key_a")
    b = KEYSTORE.seal_private_key(key, key_id="key_a")
    assert a[9:21] != b[9:21]
    assert a != b


def test_opening_with_another_key_id_fails():
    key_id, blob = _sealed("ec-p256")
    with pytest.raises(ConfigError) as info:
        KEYSTORE.open_private_key(blob, key_id=key_id + "x")
    assert info.value.code == "key_unseal_failed"
    assert "master key file" in info.value.message
    with pytest.raises(ConfigError, match="master key"):
        KEYSTORE.signer(blob, key_id=new_key_id())


def test_opening_with_another_master_key_fails():
    key_id, blob = _sealed("ed25519")
    other = SoftwareKeystore(MasterKey(secrets.token_bytes(32)))
    with pytest.raises(ConfigError) as info:
        other.open_private_key(blob, key_id=key_id)
    assert info.value.code == "key_unseal_failed"
    assert blob.hex() not in str(info.value.to_dict())


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_flipping_any_single_byte_fails(data):
    key_id, blob = _sealed("ec-p256")
    index = data.draw(st.integers(0, len(blob) - 1))
    mask = data.draw(st.integers(1, 255))
    tampered = bytearray(blob)
    tampered[index] ^= mask
    with pytest.raises(ConfigError) as info:
        KEYSTORE.open_private_key(bytes(tampered), key_id=key_id)
    assert info.value.code == "key_unseal_failed"


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 200), extra=st.binary(min_size=1, max_size=8))
def test_truncated_or_extended_blobs_fail(cut, extra):
    key_id, blob = _sealed("ec-p256")
    for bad in (blob[: min(cut, len(blob) - 1)], blob + extra):
        with pytest.raises(ConfigError) as info:
            KEYSTORE.open_private_key(bad, key_id=key_id)
        assert info.value.code == "key_unseal_failed"


def test_memoryview_blob_from_a_database_driver_opens():
    key_id, blob = _sealed("ec-p256")
    assert _der(KEYSTORE.open_private_key(memoryview(blob), key_id=key_id)) == _der(_key("ec-p256"))


def test_seal_refuses_key_types_we_do_not_support():
    with pytest.raises(InvalidInput) as info:
        KEYSTORE.seal_private_key(dsa.generate_private_key(1024), key_id="key_dsa")
    assert info.value.code == "unsupported_key_type"


def test_new_key_returns_a_signer_and_a_blob_that_opens_to_it():
    key_id = new_key_id()
    signer, blob = KEYSTORE.new_key("ec-p384", key_id=key_id)
    assert isinstance(signer, SoftwareSigner)
    assert (signer.key_id, signer.key_type) == (key_id, "ec-p384")
    reopened = KEYSTORE.signer(blob, key_id=key_id)
    assert _spki(reopened.public_key()) == _spki(signer.public_key())


@pytest.mark.parametrize("bad", ["", b"key_1", None])
def test_key_id_must_be_non_empty_text(bad):
    with pytest.raises((TypeError, ValueError)):
        KEYSTORE.seal_private_key(_key("ed25519"), key_id=bad)


# -- secrets -----------------------------------------------------------------


def test_secret_round_trip_and_binding():
    secret = secrets.token_bytes(32)
    blob = KEYSTORE.seal_secret(secret, key_id="ak_1")
    assert KEYSTORE.open_secret(blob, key_id="ak_1") == secret
    assert secret not in blob
    with pytest.raises(ConfigError, match="master key") as info:
        KEYSTORE.open_secret(blob, key_id="ak_2")
    assert info.value.code == "key_unseal_failed"


def test_secret_must_be_bytes():
    with pytest.raises(TypeError):
        KEYSTORE.seal_secret("hunter2", key_id="ak_1")


def test_secret_and_key_domains_do_not_cross():
    # Same plaintext, same key id: only the domain separates them.
    der = _der(_key("ec-p256"))
    as_secret = KEYSTORE.seal_secret(der, key_id="same")
    as_key = KEYSTORE.seal_private_key(_key("ec-p256"), key_id="same")
    with pytest.raises(ConfigError) as info:
        KEYSTORE.open_private_key(as_secret, key_id="same")
    assert info.value.code == "key_unseal_failed"
    with pytest.raises(ConfigError) as info:
        KEYSTORE.open_secret(as_key, key_id="same")
    assert info.value.code == "key_unseal_failed"
    # ...and each opens in its own domain.
    assert KEYSTORE.open_secret(as_secret, key_id="same") == der
    assert _der(KEYSTORE.open_private_key(as_key, key_id="same")) == der


# -- the master key file ------------------------------------------------------


def test_create_master_key_file(tmp_path):
    path = tmp_path / "secret" / "master.key"
    create_master_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    content = path.read_bytes()
    assert content.endswith(b"\n")
    assert len(base64.b64decode(content.strip(), validate=True)) == 32

    # The key persists: a keystore over the reloaded file opens what the first sealed.
    blob = SoftwareKeystore(load_master_key(path)).seal_secret(b"s", key_id="k")
    assert SoftwareKeystore(load_master_key(str(path))).open_secret(blob, key_id="k") == b"s"


def test_create_master_key_file_is_random(tmp_path):
    create_master_key_file(tmp_path / "a")
    create_master_key_file(tmp_path / "b")
    assert (tmp_path / "a").read_bytes() != (tmp_path / "b").read_bytes()


def test_create_refuses_an_existing_file(tmp_path):
    path = tmp_path / "master.key"
    create_master_key_file(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        create_master_key_file(path)
    assert info.value.code == "master_key_exists"
    assert path.read_bytes() == before


def test_create_refuses_even_a_dangling_symlink(tmp_path):
    path = tmp_path / "master.key"
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError) as info:
        create_master_key_file(path)
    assert info.value.code == "master_key_exists"
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620, 0o602, 0o610, 0o601])
def test_load_refuses_a_file_others_can_reach(tmp_path, mode):
    path = tmp_path / "master.key"
    create_master_key_file(path)
    os.chmod(path, mode)
    with pytest.raises(ConfigError) as info:
        load_master_key(path)
    assert info.value.code == "master_key_insecure"
    assert f"chmod 600 {path}" in info.value.message
    assert info.value.data["mode"] == f"{mode:04o}"
    os.chmod(path, 0o600)
    assert isinstance(load_master_key(path), MasterKey)


def test_load_refuses_a_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_master_key(tmp_path / "nope.key")
    assert info.value.code == "master_key_missing"
    assert "initialise the store" in info.value.message and info.value.data["path"].endswith("nope.key")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n",
        b"not base64 at all!\n",
        base64.b64encode(b"k" * 31) + b"\n",
        base64.b64encode(b"k" * 33) + b"\n",
        base64.b64encode(b"k" * 32).hex().encode(),
        base64.b64encode(b"k" * 32)[:-2] + b"\n",
        b"\xff\xfe" * 30,
        base64.b64encode(b"k" * 32) + b"\n" + b" " * 2000,
    ],
)
def test_load_refuses_garbage(tmp_path, content):
    path = tmp_path / "master.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as info:
        load_master_key(path)
    assert info.value.code == "master_key_invalid"
    if content.strip():
        assert content.strip().decode("latin-1") not in info.value.message


def test_load_refuses_a_directory(tmp_path):
    path = tmp_path / "master.key"
    path.mkdir(mode=0o700)
    with pytest.raises(ConfigError) as info:
        load_master_key(path)
    assert info.value.code == "master_key_invalid"


def test_load_accepts_surrounding_whitespace(tmp_path):
    path = tmp_path / "master.key"
    key = secrets.token_bytes(32)
    path.write_bytes(b"  " + base64.b64encode(key) + b"\r\n")
    os.chmod(path, 0o600)
    sealed = SoftwareKeystore(MasterKey(key)).seal_secret(b"x", key_id="k")
    assert SoftwareKeystore(load_master_key(path)).open_secret(sealed, key_id="k") == b"x"


def test_load_refuses_an_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "master.key"
    create_master_key_file(path)
    real_open = os.open

    # Root reads any file, and CI runs as root: simulate the permission error.
    def denied(file, flags, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(ConfigError) as info:
        load_master_key(path)
    assert info.value.code == "master_key_unreadable"


def test_master_key_constructor_checks_its_input():
    with pytest.raises(ValueError):
        MasterKey(b"short")
    with pytest.raises(TypeError):
        MasterKey("k" * 32)
    with pytest.raises(TypeError):
        SoftwareKeystore(b"k" * 32)


# -- nothing shows ------------------------------------------------------------


def test_reprs_show_no_key_material(tmp_path):
    raw = secrets.token_bytes(32)
    master = MasterKey(raw)
    signer, _ = SoftwareKeystore(master).new_key("ec-p256", key_id="key_r")
    der = _der(signer._private_key)
    scalar = format(signer._private_key.private_numbers().private_value, "x")
    shown = " ".join(
        [repr(master), str(master), repr(SoftwareKeystore(master)), repr(signer), str(signer)]
    )
    for secret in (raw, der):
        assert secret.hex() not in shown.lower()
        assert base64.b64encode(secret).decode() not in shown
    assert scalar not in shown.lower()
    assert "key_r" in repr(signer) and "ec-p256" in repr(signer)
    assert not hasattr(master, "__dict__")


def test_master_key_cannot_be_pickled():
    with pytest.raises(TypeError):
        pickle.dumps(MASTER)


def test_keys_package_stays_in_its_layer():
    code = (
        "import sys, pki.keys; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('click', 'fastapi', 'sqlmodel', 'sqlalchemy') "
        "or m.startswith(('pki.store', 'pki.x509', 'pki.services', 'pki.cli', 'pki.http'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- signing ------------------------------------------------------------------


def _signer(key_type: str) -> SoftwareSigner:
    key_id, blob = _sealed(key_type)
    return KEYSTORE.signer(blob, key_id=key_id)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_sign_certificate_verifies(key_type):
    signer = _signer(key_type)
    cert = signer.sign_certificate(_cert_builder(signer.public_key()))
    cert.verify_directly_issued_by(cert)
    expected = signature_hash_for(signer.public_key())
    assert type(cert.signature_hash_algorithm) is type(expected)

    # ...and the check has teeth: a certificate signed by another key does not.
    other = _signer("ec-p256" if key_type != "ec-p256" else "ed25519")
    forged = other.sign_certificate(_cert_builder(signer.public_key()))
    with pytest.raises((InvalidSignature, ValueError, TypeError)):
        forged.verify_directly_issued_by(cert)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_sign_crl_verifies(key_type):
    signer = _signer(key_type)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1))
    )
    crl = signer.sign_crl(builder)
    assert crl.is_signature_valid(signer.public_key())
    other = _signer("ed25519" if key_type != "ed25519" else "ec-p256")
    assert not crl.is_signature_valid(other.public_key())


def _verify(public_key, signature: bytes, data: bytes) -> None:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(signature_hash_for(public_key)))
    else:
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_sign_bytes_verifies(key_type):
    signer = _signer(key_type)
    signature = signer.sign_bytes(b"proof of possession")
    _verify(signer.public_key(), signature, b"proof of possession")
    with pytest.raises(InvalidSignature):
        _verify(signer.public_key(), signature, b"proof of something else")


@pytest.mark.parametrize("key_type", ["ec-p256", "ed25519", "rsa-2048"])
def test_sign_ocsp_response_verifies_and_names_the_responder(key_type):
    signer = _signer(key_type)
    ca = signer.sign_certificate(_cert_builder(signer.public_key()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())  # not any signer's key
    leaf = signer.sign_certificate(
        _cert_builder(leaf_key.public_key(), cn="device", issuer=ca.subject)
    )
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=leaf,
        issuer=ca,
        algorithm=hashes.SHA256(),
        cert_status=ocsp.OCSPCertStatus.GOOD,
        this_update=NOW,
        next_update=NOW + dt.timedelta(hours=1),
        revocation_time=None,
        revocation_reason=None,
    )
    response = signer.sign_ocsp_response(builder, responder_cert=ca)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        signer.public_key()
    ).digest
    _verify(signer.public_key(), response.signature, response.tbs_response_bytes)

    # The wrong responder certificate is refused before anything is signed.
    with pytest.raises(InvalidInput) as info:
        signer.sign_ocsp_response(builder, responder_cert=leaf)
    assert info.value.code == "responder_key_mismatch"


# -- key types ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "hash_cls"),
    [
        ("ec-p256", hashes.SHA256),
        ("ec-p384", hashes.SHA384),
        ("ed25519", type(None)),
        ("rsa-2048", hashes.SHA256),
        ("rsa-3072", hashes.SHA256),
        ("rsa-4096", hashes.SHA256),
    ],
)
def test_generate_and_name_every_key_type(key_type, hash_cls):
    key = _key(key_type)
    assert key_type_of(key) == key_type
    assert key_type_of(key.public_key()) == key_type
    assert isinstance(signature_hash_for(key), hash_cls)
    assert isinstance(signature_hash_for(key.public_key()), hash_cls)


def test_key_type_of_names_keys_we_do_not_generate():
    p521 = ec.generate_private_key(ec.SECP521R1())
    assert key_type_of(p521.public_key()) == "ec-p521"
    assert isinstance(signature_hash_for(p521), hashes.SHA512)
    assert key_type_of(rsa.generate_private_key(public_exponent=65537, key_size=1024)) == "rsa-1024"


@pytest.mark.parametrize(
    "make",
    [
        lambda: dsa.generate_private_key(1024).public_key(),
        lambda: ec.generate_private_key(ec.SECP256K1()).public_key(),
        lambda: ed448.Ed448PrivateKey.generate().public_key(),
    ],
    ids=["dsa", "secp256k1", "ed448"],
)
def test_key_type_of_refuses_other_keys(make):
    key = make()
    for fn in (key_type_of, signature_hash_for):
        with pytest.raises(InvalidInput) as info:
            fn(key)
        assert info.value.code == "unsupported_key_type"


@pytest.mark.parametrize("bad", ["ec-p521", "rsa-1024", "RSA-2048", "dsa", ""])
def test_generate_refuses_other_types_and_names_the_allowed(bad):
    with pytest.raises(InvalidInput) as info:
        generate_private_key(bad)
    assert info.value.code == "unsupported_key_type"
    for name in KEY_TYPES:
        assert name in info.value.message


def test_new_key_id():
    ids = {new_key_id() for _ in range(100)}
    assert len(ids) == 100
    for key_id in ids:
        assert key_id.startswith("key_") and len(key_id) == 28
        int(key_id[4:], 16)
