"""The lint and verify helpers pass good material and, above all, can fail.

A lint helper that always says "clean" would make every test that uses it
pass for nothing, so each helper is shown here both accepting a proper
certificate or CRL and rejecting a broken one, for a reason we name.
Everything is built with cryptography in this file, independent of the
project's own builders, so these tests say something about the helpers only.
"""

from __future__ import annotations

import datetime
import re
import secrets

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pkilint.validation import ValidationFindingSeverity

from tests.support.lint import (
    assert_crl_lint_clean,
    assert_lint_clean,
    assert_openssl_verifies,
    lint_certificate,
    lint_crl,
    openssl_verify_chain,
)

UTC = datetime.UTC
NOW = datetime.datetime.now(UTC)
# Backdated a little, as the project does, so that openssl (real clock) never
# sees a not-yet-valid certificate.
NOT_BEFORE = NOW - datetime.timedelta(minutes=5)

AKI_ABSENT = "pkix.authority_key_identifier_extension_absent (ERROR)"
KU_NOT_CRITICAL = "pkix.key_usage_extension_not_critical (WARNING)"
CRL_NUMBER_MISSING = "pkix.crl_number_missing (ERROR)"


# --- material -------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _serial() -> int:
    # 159 random bits with the top one set: positive, 20 octets, the RFC 5280
    # maximum, so that the length is always the same.
    return secrets.randbits(159) | (1 << 158) | 1


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_usage(*, digital_signature=False, key_cert_sign=False, crl_sign=False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
        crl_sign=crl_sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _ca(
    cn: str, key, *, issuer: x509.Certificate | None = None, issuer_key=None
) -> x509.Certificate:
    """A root (no issuer) or an intermediate: CA:TRUE critical, keyCertSign+cRLSign critical, SKI."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _leaf(
    issuer: x509.Certificate,
    signing_key,
    *,
    aki: bool = True,
    key_usage_critical: bool = True,
    eku=ExtendedKeyUsageOID.CLIENT_AUTH,
) -> x509.Certificate:
    """The device profile: CA:FALSE critical, digitalSignature critical, clientAuth, SKI, AKI."""
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("device-0001"))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=key_usage_critical)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if aki:
        # From the issuer certificate, not from `signing_key`: the "unrelated
        # key" leaf below must claim the real issuer and fail only on its signature.
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


def _crl(
    issuer: x509.Certificate,
    key,
    *,
    revoked_serials: tuple[int, ...] = (),
    crl_number: bool = True,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(NOT_BEFORE)
        .next_update(NOW + datetime.timedelta(days=7))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()), critical=False
        )
    )
    if crl_number:
        builder = builder.add_extension(x509.CRLNumber(1), critical=False)
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOT_BEFORE)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
    return builder.sign(key, hashes.SHA256())


def _pem(obj) -> bytes:
    return obj.public_bytes(Encoding.PEM)


def _der(obj) -> bytes:
    return obj.public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def root():
    key = _key()
    return _ca("Lint Tools Test Root", key), key


@pytest.fixture(scope="module")
def leaf(root):
    root_cert, root_key = root
    return _leaf(root_cert, root_key)


# --- pkilint: certificates ----------------------------------------------------------


def test_proper_root_and_leaf_lint_clean_as_der_and_pem(root, leaf):
    root_cert, _ = root
    for cert in (root_cert, leaf):
        assert lint_certificate(_der(cert)) == []
        assert lint_certificate(_pem(cert)) == []
        assert_lint_clean(_der(cert))


def test_lint_really_runs_on_a_clean_leaf(leaf):
    # Below the threshold pkilint still has something to say about a good
    # leaf (how its SKI was derived): proof that the validators ran and that
    # the clean result above is the threshold at work, not silence.
    everything = lint_certificate(_der(leaf), fail_at=ValidationFindingSeverity.INFO)
    assert any(f.startswith("pkix.subject_key_identifier_method_1_identified (INFO)") for f in everything)


def test_leaf_without_aki_is_an_error(root):
    root_cert, root_key = root
    bad = _der(_leaf(root_cert, root_key, aki=False))

    findings = lint_certificate(bad)

    assert [f for f in findings if f.startswith(AKI_ABSENT)], findings
    # The string says where and by which validator, for the assertion message.
    assert f"{AKI_ABSENT} at certificate [AuthorityKeyIdentifierPresenceValidator]" in findings
    with pytest.raises(AssertionError, match="authority_key_identifier_extension_absent"):
        assert_lint_clean(bad)


def test_a_warning_counts_too(root):
    # A non-critical keyUsage breaks a SHOULD (RFC 5280 4.2.1.3): WARNING,
    # which is inside what "clean" forbids.
    root_cert, root_key = root
    bad = _pem(_leaf(root_cert, root_key, key_usage_critical=False))

    findings = lint_certificate(bad)

    assert any(f.startswith(KU_NOT_CRITICAL) for f in findings), findings
    assert "extensions.1.extnValue.keyUsage" in findings[0]
    with pytest.raises(AssertionError, match="key_usage_extension_not_critical"):
        assert_lint_clean(bad)


def test_ignore_drops_only_the_named_code(root):
    root_cert, root_key = root
    bad = _der(_leaf(root_cert, root_key, aki=False, key_usage_critical=False))

    findings = lint_certificate(bad, ignore=["pkix.key_usage_extension_not_critical"])

    assert len(findings) == 1 and findings[0].startswith(AKI_ABSENT), findings


def test_undecodable_input_is_a_fatal_finding_not_a_pass(root):
    root_cert, root_key = root
    crl_pem = _pem(_crl(root_cert, root_key))

    leaf_der = _der(_leaf(root_cert, root_key))
    trailing = leaf_der + b"\x00\x00"
    long_length = b"\x30\x83\x00" + leaf_der[2:]  # 30 82 LL LL re-encoded, not minimal: BER, not DER
    assert leaf_der[1] == 0x82
    for junk in (b"not a certificate", b"\x30\x03\x02\x01", trailing, long_length, crl_pem):
        findings = lint_certificate(junk)
        assert len(findings) == 1 and "(FATAL)" in findings[0], findings
        with pytest.raises(AssertionError, match="document_decoding_failed"):
            assert_lint_clean(junk)


def test_a_pem_bundle_is_refused(root, leaf):
    # pkilint's own loader would report a baffling "Incorrect padding".
    with pytest.raises(ValueError, match="more than one PEM block"):
        lint_certificate(_pem(leaf) + _pem(root[0]))


# --- pkilint: CRLs ------------------------------------------------------------------


def test_proper_crl_lints_clean(root, leaf):
    root_cert, root_key = root
    crl = _crl(root_cert, root_key, revoked_serials=(leaf.serial_number,))

    assert lint_crl(_der(crl)) == []
    assert lint_crl(_pem(crl)) == []
    assert_crl_lint_clean(_der(crl))


def test_empty_crl_lints_clean(root):
    # The first CRL a CA publishes revokes nothing.
    root_cert, root_key = root
    assert_crl_lint_clean(_der(_crl(root_cert, root_key)))


def test_crl_without_crl_number_is_an_error(root, leaf):
    root_cert, root_key = root
    bad = _der(_crl(root_cert, root_key, revoked_serials=(leaf.serial_number,), crl_number=False))

    findings = lint_crl(bad)

    assert findings == [f"{CRL_NUMBER_MISSING} at certificateList [CrlNumberPresenceValidator]"]
    with pytest.raises(AssertionError, match="crl_number_missing"):
        assert_crl_lint_clean(bad)


def test_a_certificate_is_not_a_clean_crl(leaf):
    findings = lint_crl(_pem(leaf))
    assert len(findings) == 1 and "(FATAL)" in findings[0], findings


# --- openssl verify -----------------------------------------------------------------


@pytest.mark.openssl
def test_proper_chain_verifies(root, leaf, tmp_path):
    root_pem = _pem(root[0])
    ok, output = openssl_verify_chain(_pem(leaf), [root_pem], tmp_dir=tmp_path)
    assert ok, output
    assert "-purpose sslclient" in output
    # DER in, and OpenSSL's own stricter RFC 5280 checks, pass as well.
    assert_openssl_verifies(_der(leaf), [_der(root[0])], strict=True, tmp_dir=tmp_path)


@pytest.mark.openssl
def test_leaf_signed_by_an_unrelated_key_fails(root, tmp_path):
    root_cert, _ = root
    forged = _leaf(root_cert, _key())  # names the root as issuer, signed by someone else

    ok, output = openssl_verify_chain(_pem(forged), [_pem(root_cert)], tmp_dir=tmp_path)

    assert not ok
    assert "signature failure" in output
    with pytest.raises(AssertionError, match="openssl verify failed"):
        assert_openssl_verifies(_pem(forged), [_pem(root_cert)], tmp_dir=tmp_path)


@pytest.mark.openssl
def test_a_server_only_leaf_fails_purpose_sslclient(root, tmp_path):
    root_cert, root_key = root
    server = _leaf(root_cert, root_key, eku=ExtendedKeyUsageOID.SERVER_AUTH)

    ok, output = openssl_verify_chain(_pem(server), [_pem(root_cert)], tmp_dir=tmp_path)
    # OpenSSL 3 says "unsuitable", 1.1 said "unsupported".
    assert not ok and re.search("(unsuitable|unsupported) certificate purpose", output), output
    # The same leaf is fine when no purpose is asked for: the purpose was the reason.
    assert_openssl_verifies(_pem(server), [_pem(root_cert)], purpose=None, tmp_dir=tmp_path)


@pytest.mark.openssl
def test_an_intermediate_is_passed_as_untrusted(root, tmp_path):
    root_cert, root_key = root
    issuing_key = _key()
    issuing = _ca("Lint Tools Test Issuing CA", issuing_key, issuer=root_cert, issuer_key=root_key)
    leaf = _leaf(issuing, issuing_key)

    ok, output = openssl_verify_chain(
        _pem(leaf), [_pem(issuing) + _pem(root_cert)], strict=True, tmp_dir=tmp_path
    )
    assert ok, output
    assert "-untrusted" in output
    # Without the intermediate there is no path to the root.
    ok, output = openssl_verify_chain(_pem(leaf), [_pem(root_cert)], tmp_dir=tmp_path)
    assert not ok and "unable to get local issuer certificate" in output, output


@pytest.mark.openssl
def test_crl_check_passes_a_good_leaf_and_fails_a_revoked_one(root, leaf, tmp_path):
    root_cert, root_key = root
    other = _leaf(root_cert, root_key)
    crl = _crl(root_cert, root_key, revoked_serials=(other.serial_number,))
    chain = [_pem(root_cert)]

    assert_openssl_verifies(_pem(leaf), chain, crl_pems=[_der(crl)], tmp_dir=tmp_path)
    ok, output = openssl_verify_chain(_pem(other), chain, crl_pems=[_pem(crl)], tmp_dir=tmp_path)
    assert not ok and "certificate revoked" in output, output
    # And the CRL that did it is itself lint clean.
    assert_crl_lint_clean(_pem(crl))


def test_a_chain_without_a_root_is_refused(leaf, tmp_path):
    with pytest.raises(ValueError, match="no self-signed certificate"):
        openssl_verify_chain(_pem(leaf), [], tmp_dir=tmp_path)


def test_missing_openssl_skips_locally(root, leaf, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENSSL", str(tmp_path / "no-such-openssl"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not available"):
        openssl_verify_chain(_pem(leaf), [_pem(root[0])], tmp_dir=tmp_path)


def test_missing_openssl_fails_in_ci(root, leaf, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENSSL", str(tmp_path / "no-such-openssl"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        openssl_verify_chain(_pem(leaf), [_pem(root[0])], tmp_dir=tmp_path)
