"""Each fixture is what its name says, and so is what openssl_tools makes.

If these pass, a test elsewhere that feeds `ca_expired.pem` to the registry and
gets a refusal knows the refusal was about expiry and not some accident of how
the file was made.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from tests.support import openssl as openssl_tools
from tests.support.openssl import OpensslError

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
SCRIPT = REPO / "scripts" / "make_fixtures.py"

UTC = datetime.UTC
GOOD_NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=UTC)
GOOD_NOT_AFTER = datetime.datetime(2055, 1, 1, tzinfo=UTC)
UNKNOWN_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
CODE = "0123456789abcdef" * 4  # the shape of a register code: 64 hex chars

GOOD_ROOTS = [
    "ca_root_ec_p256",
    "ca_root_ec_p384",
    "ca_root_ec_p521",
    "ca_root_rsa2048",
    "ca_root_ed25519",
    "ca_second_root_ec_p256",
]
GOOD_CAS = [*GOOD_ROOTS, "ca_intermediate_ec_p256"]
# Self-signed certificates with exactly one defect besides the good CA
# profile; their self-signature must verify so it is not a second defect.
SINGLE_DEFECT = [
    "leaf_no_basic_constraints",
    "cert_ca_false",
    "ca_no_key_cert_sign",
    "ca_no_key_usage",
    "ca_expired",
    "ca_not_yet_valid",
    "ca_rsa1024",
    "ca_dsa2048",
    "ca_ec_p192",
    "ca_unknown_critical_extension",
]


def cert(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((FIXTURES / f"{name}.pem").read_bytes())


def private_key(name: str):
    return serialization.load_pem_private_key((FIXTURES / f"{name}.key.pem").read_bytes(), None)


def extension(certificate: x509.Certificate, cls):
    """The extension of type `cls`, or None if the certificate has none."""
    try:
        return certificate.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def spki(key) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def asn1_cert(path: Path) -> asn1_x509.Certificate:
    """Parsed with asn1crypto, which (unlike cryptography) takes serial 0 without a warning."""
    data = path.read_bytes()
    if asn1_pem.detect(data):
        _, _, data = asn1_pem.unarmor(data)
    return asn1_x509.Certificate.load(data, strict=True)


# --- good CAs ---------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD_CAS)
def test_good_ca_has_the_ca_profile(name):
    c = cert(name)
    bc = extension(c, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = extension(c, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    ski = extension(c, x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(c.public_key())
    assert (c.not_valid_before_utc, c.not_valid_after_utc) == (GOOD_NOT_BEFORE, GOOD_NOT_AFTER)
    assert c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Device PKI Test"
    assert GOOD_NOT_BEFORE < now() < GOOD_NOT_AFTER


@pytest.mark.parametrize("name", [*GOOD_CAS, *SINGLE_DEFECT, "ca_bad_self_signature"])
def test_key_file_is_unencrypted_pkcs8_and_matches_the_cert(name):
    assert (FIXTURES / f"{name}.key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert spki(private_key(name).public_key()) == spki(cert(name).public_key())


@pytest.mark.parametrize(
    ("name", "key_type", "size", "signature_oid"),
    [
        (
            "ca_root_ec_p256",
            ec.EllipticCurvePublicKey,
            256,
            SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        ),
        (
            "ca_root_ec_p384",
            ec.EllipticCurvePublicKey,
            384,
            SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        ),
        (
            "ca_root_ec_p521",
            ec.EllipticCurvePublicKey,
            521,
            SignatureAlgorithmOID.ECDSA_WITH_SHA512,
        ),
        ("ca_root_rsa2048", rsa.RSAPublicKey, 2048, SignatureAlgorithmOID.RSA_WITH_SHA256),
        ("ca_root_ed25519", ed25519.Ed25519PublicKey, None, SignatureAlgorithmOID.ED25519),
        ("ca_rsa1024", rsa.RSAPublicKey, 1024, SignatureAlgorithmOID.RSA_WITH_SHA256),
        ("ca_dsa2048", dsa.DSAPublicKey, 2048, SignatureAlgorithmOID.DSA_WITH_SHA256),
        ("ca_ec_p192", ec.EllipticCurvePublicKey, 192, SignatureAlgorithmOID.ECDSA_WITH_SHA256),
    ],
)
def test_key_type_and_signature_algorithm(name, key_type, size, signature_oid):
    c = cert(name)
    assert isinstance(c.public_key(), key_type)
    if size is not None:
        assert c.public_key().key_size == size
    assert c.signature_algorithm_oid == signature_oid


@pytest.mark.parametrize("name", [*GOOD_ROOTS, *SINGLE_DEFECT])
def test_self_signature_verifies(name):
    c = cert(name)
    assert c.issuer == c.subject
    c.verify_directly_issued_by(c)


def test_intermediate_is_issued_by_the_p256_root_with_path_length_0():
    root, intermediate = cert("ca_root_ec_p256"), cert("ca_intermediate_ec_p256")
    intermediate.verify_directly_issued_by(root)
    assert extension(intermediate, x509.BasicConstraints).value.path_length == 0
    aki = extension(intermediate, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == extension(root, x509.SubjectKeyIdentifier).value.digest


def test_intermediate_chain_is_exactly_the_root():
    chain = x509.load_pem_x509_certificates((FIXTURES / "ca_intermediate_chain.pem").read_bytes())
    assert chain == [cert("ca_root_ec_p256")]


def test_second_root_is_another_key_and_subject():
    first, second = cert("ca_root_ec_p256"), cert("ca_second_root_ec_p256")
    assert spki(first.public_key()) != spki(second.public_key())
    assert first.subject != second.subject


def test_fixture_serials_are_distinct_and_at_most_20_octets():
    names = [*GOOD_CAS, *SINGLE_DEFECT, "ca_bad_self_signature"]
    serials = [cert(name).serial_number for name in names]
    assert len(set(serials)) == len(serials)
    assert all(0 < s < 2**159 for s in serials)


# --- one defect each --------------------------------------------------------------


def test_leaf_no_basic_constraints_has_no_basic_constraints():
    assert extension(cert("leaf_no_basic_constraints"), x509.BasicConstraints) is None


def test_cert_ca_false_says_ca_false():
    assert extension(cert("cert_ca_false"), x509.BasicConstraints).value.ca is False


def test_ca_no_key_cert_sign_lacks_only_key_cert_sign():
    c = cert("ca_no_key_cert_sign")
    assert extension(c, x509.BasicConstraints).value.ca
    ku = extension(c, x509.KeyUsage).value
    assert not ku.key_cert_sign
    assert ku.digital_signature and ku.crl_sign


def test_ca_no_key_usage_has_no_key_usage():
    c = cert("ca_no_key_usage")
    assert extension(c, x509.BasicConstraints).value.ca
    assert extension(c, x509.KeyUsage) is None


def test_ca_expired_is_expired():
    c = cert("ca_expired")
    assert c.not_valid_before_utc == datetime.datetime(2010, 1, 1, tzinfo=UTC)
    assert c.not_valid_after_utc == datetime.datetime(2011, 1, 1, tzinfo=UTC) < now()


def test_ca_not_yet_valid_is_not_yet_valid():
    c = cert("ca_not_yet_valid")
    assert now() < c.not_valid_before_utc == datetime.datetime(2090, 1, 1, tzinfo=UTC)


def test_ca_bad_self_signature_parses_but_does_not_verify():
    path = FIXTURES / "ca_bad_self_signature.pem"
    c = cert("ca_bad_self_signature")
    # Well-formed DER: strict asn1crypto takes it and cryptography re-encodes it unchanged.
    asn1_cert(path)
    assert c.public_bytes(serialization.Encoding.PEM) == path.read_bytes()
    assert extension(c, x509.BasicConstraints).value.ca
    with pytest.raises(InvalidSignature):
        c.verify_directly_issued_by(c)


def test_ca_unknown_critical_extension_is_unknown_and_critical():
    ext = cert("ca_unknown_critical_extension").extensions.get_extension_for_oid(
        UNKNOWN_EXTENSION_OID
    )
    assert ext.critical
    assert isinstance(ext.value, x509.UnrecognizedExtension)


# --- parsing fixtures ---------------------------------------------------------


def root_pem() -> bytes:
    return (FIXTURES / "ca_root_ec_p256.pem").read_bytes()


def root_der() -> bytes:
    return (FIXTURES / "ca_root_ec_p256.der").read_bytes()


def test_der_form_is_the_p256_root():
    assert x509.load_der_x509_certificate(root_der()) == cert("ca_root_ec_p256")


def test_two_certificates_holds_two_and_cryptography_silently_takes_the_first():
    data = (FIXTURES / "two_certificates.pem").read_bytes()
    assert x509.load_pem_x509_certificates(data) == [
        cert("ca_root_ec_p256"),
        cert("ca_second_root_ec_p256"),
    ]
    assert x509.load_pem_x509_certificate(data) == cert("ca_root_ec_p256")


def test_trailing_garbage_is_a_good_pem_then_garbage_which_cryptography_ignores():
    data = (FIXTURES / "trailing_garbage.pem").read_bytes()
    assert data == root_pem() + b"garbage\n"
    assert x509.load_pem_x509_certificate(data) == cert("ca_root_ec_p256")


def test_der_trailing_bytes_passes_lenient_asn1crypto_only():
    data = (FIXTURES / "der_trailing_bytes.der").read_bytes()
    assert data[:-3] == root_der() and len(data) == len(root_der()) + 3
    asn1_x509.Certificate.load(data).native  # lenient: accepted  # noqa: B018
    with pytest.raises(ValueError):
        asn1_x509.Certificate.load(data, strict=True)


def test_der_truncated_is_half_a_certificate():
    data = (FIXTURES / "der_truncated.der").read_bytes()
    assert root_der().startswith(data) and len(data) == len(root_der()) // 2
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(data)


def test_ber_indefinite_length_is_the_root_in_ber_and_not_der():
    data = (FIXTURES / "ber_indefinite_length.der").read_bytes()
    assert data.startswith(b"\x30\x80") and data.endswith(b"\x00\x00")
    assert root_der().endswith(data[2:-2])
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(data)


def test_csr_as_certificate_is_a_csr():
    data = (FIXTURES / "csr_as_certificate.pem").read_bytes()
    assert data.startswith(b"-----BEGIN CERTIFICATE REQUEST-----\n")
    assert x509.load_pem_x509_csr(data).is_signature_valid
    with pytest.raises(ValueError):
        x509.load_pem_x509_certificate(data)


def test_corrupted_base64_does_not_load():
    data = (FIXTURES / "corrupted_base64.pem").read_bytes()
    assert data.count(b"!") == 3
    assert len(data) == len(root_pem())
    with pytest.raises(ValueError):
        x509.load_pem_x509_certificate(data)


def test_missing_end_line_does_not_load():
    data = (FIXTURES / "missing_end_line.pem").read_bytes()
    assert b"-----BEGIN CERTIFICATE-----" in data and b"-----END" not in data
    with pytest.raises(ValueError):
        x509.load_pem_x509_certificate(data)


# --- the script and the committed files agree -------------------------------------


def test_script_regenerates_the_committed_fixtures(tmp_path):
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # secret_vectors.json has its own generator (scripts/make_secret_vectors.py --check).
    committed = {p.name for p in FIXTURES.iterdir()} - {"README.md", "secret_vectors.json"}
    assert {p.name for p in tmp_path.iterdir()} == committed
    for name in sorted(committed):
        if (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes():
            continue
        # Only RSA and DSA keys are fresh on each run; everything else is
        # reproducible, so any other difference means fixtures/ is stale.
        stem = name.removesuffix(".pem").removesuffix(".key")
        assert isinstance(private_key(stem), rsa.RSAPrivateKey | dsa.DSAPrivateKey), name
        if name.endswith(".key.pem"):
            continue
        old = cert(stem)
        new = x509.load_pem_x509_certificate((tmp_path / name).read_bytes())
        assert (new.subject, new.issuer, new.serial_number, new.signature_algorithm_oid) == (
            old.subject, old.issuer, old.serial_number, old.signature_algorithm_oid
        ), name  # fmt: skip
        assert (new.not_valid_before_utc, new.not_valid_after_utc) == (
            old.not_valid_before_utc, old.not_valid_after_utc
        ), name  # fmt: skip
        assert [e.oid for e in new.extensions] == [e.oid for e in old.extensions], name


# --- openssl_tools --------------------------------------------------------------


def test_openssl_available_is_false_for_a_missing_binary(monkeypatch):
    monkeypatch.setenv("OPENSSL", "/nonexistent/openssl")
    assert openssl_tools.openssl_available() is False


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), (None, pytest.skip.Exception)]
)
def test_require_openssl_fails_under_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    monkeypatch.setenv("OPENSSL", "/nonexistent/openssl")
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome):
        openssl_tools.require_openssl()


@pytest.mark.openssl
class TestOpensslTools:
    @pytest.fixture(autouse=True)
    def _needs_openssl(self):
        openssl_tools.require_openssl()

    @pytest.mark.parametrize(
        ("key", "digest", "algorithm"),
        [
            ("ec:prime256v1", "sha1", "ecdsa-with-SHA1"),
            ("rsa:2048", "sha1", "sha1WithRSAEncryption"),
            ("rsa:2048", "md5", "md5WithRSAEncryption"),
            ("ec:prime256v1", "sha256", "ecdsa-with-SHA256"),
        ],
    )
    def test_make_ca_signs_with_the_digest_asked_for(self, tmp_path, key, digest, algorithm):
        ca_cert, _ = openssl_tools.make_ca(tmp_path, "ca", key=key, digest=digest)
        assert openssl_tools.signature_algorithm(ca_cert) == algorithm

    def test_make_ca_default_profile(self, tmp_path):
        ca_cert, ca_key = openssl_tools.make_ca(tmp_path, "ca")
        c = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        assert (
            extension(c, x509.BasicConstraints).critical
            and extension(c, x509.BasicConstraints).value.ca
        )
        ku = extension(c, x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
        assert isinstance(c.public_key(), ec.EllipticCurvePublicKey)
        assert spki(
            serialization.load_pem_private_key(ca_key.read_bytes(), None).public_key()
        ) == spki(c.public_key())
        assert openssl_tools.verify(ca_cert, ca_cert, check_ss_sig=True)[0]

    def test_make_ca_can_leave_extensions_out(self, tmp_path):
        ca_cert, _ = openssl_tools.make_ca(tmp_path, "ca", key_usage=None, basic_constraints=None)
        c = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        assert extension(c, x509.BasicConstraints) is None
        assert extension(c, x509.KeyUsage) is None

    def test_make_ca_rsa1024(self, tmp_path):
        ca_cert, _ = openssl_tools.make_ca(tmp_path, "ca", key="rsa:1024")
        assert x509.load_pem_x509_certificate(ca_cert.read_bytes()).public_key().key_size == 1024

    @pytest.mark.parametrize(("serial", "octets"), [(0, 1), (-5, 1), (2**160, 21)])
    def test_make_ca_serial(self, tmp_path, serial, octets):
        ca_cert, _ = openssl_tools.make_ca(tmp_path, "ca", serial=serial)
        tbs = asn1_cert(ca_cert)["tbs_certificate"]
        assert tbs["serial_number"].native == serial
        assert len(tbs["serial_number"].contents) == octets

    def test_ecdsa_with_md5_is_refused_with_the_command_in_the_error(self, tmp_path):
        with pytest.raises(OpensslError, match=r"(?s)exited with status .*command: openssl req"):
            openssl_tools.make_ca(tmp_path, "ca", key="ec:prime256v1", digest="md5")

    def test_unknown_key_spec_is_a_value_error(self, tmp_path):
        with pytest.raises(ValueError, match="unsupported key spec"):
            openssl_tools.make_ca(tmp_path, "ca", key="dsa:2048")

    def test_verification_cert_is_signed_by_the_ca_with_the_code_as_cn(self, tmp_path):
        ca_cert, ca_key = openssl_tools.make_ca(tmp_path, "ca")
        path = openssl_tools.make_verification_cert(
            tmp_path, ca_cert=ca_cert, ca_key=ca_key, code=CODE
        )
        v = x509.load_pem_x509_certificate(path.read_bytes())
        assert v.subject.rfc4514_string() == f"CN={CODE}"
        assert v.issuer == x509.load_pem_x509_certificate(ca_cert.read_bytes()).subject
        assert v.not_valid_before_utc <= now() < v.not_valid_after_utc
        # What a customer gets from OpenSSL 3.0 `x509 -req`: a v1 certificate.
        assert v.version == x509.Version.v1
        assert openssl_tools.verify(ca_cert, path) == (True, f"{path}: OK\n")
        ok, output = openssl_tools.verify(FIXTURES / "ca_second_root_ec_p256.pem", path)
        assert not ok and "unable to get local issuer certificate" in output

    def test_verification_cert_with_sha1(self, tmp_path):
        ca_cert, ca_key = openssl_tools.make_ca(tmp_path, "ca", key="rsa:2048")
        path = openssl_tools.make_verification_cert(
            tmp_path, ca_cert=ca_cert, ca_key=ca_key, code=CODE, digest="sha1"
        )
        assert openssl_tools.signature_algorithm(path) == "sha1WithRSAEncryption"

    def test_verification_cert_under_a_committed_fixture_writes_nothing_next_to_it(self, tmp_path):
        before = sorted(FIXTURES.iterdir())
        openssl_tools.make_verification_cert(
            tmp_path,
            ca_cert=FIXTURES / "ca_root_ec_p256.pem",
            ca_key=FIXTURES / "ca_root_ec_p256.key.pem",
            code=CODE,
        )
        assert sorted(FIXTURES.iterdir()) == before

    def test_expired_verification_cert(self, tmp_path):
        ca_cert, ca_key = openssl_tools.make_ca(tmp_path, "ca")
        path = openssl_tools.make_expired_verification_cert(
            tmp_path, ca_cert=ca_cert, ca_key=ca_key, code=CODE
        )
        v = x509.load_pem_x509_certificate(path.read_bytes())
        assert v.not_valid_after_utc < now()
        assert v.subject.rfc4514_string() == f"CN={CODE}"
        assert v.version == x509.Version.v1  # same shape as the x509 -req path
        ok, output = openssl_tools.verify(ca_cert, path)
        assert not ok and "certificate has expired" in output

    def test_not_yet_valid_verification_cert(self, tmp_path):
        ca_cert, ca_key = openssl_tools.make_ca(tmp_path, "ca")
        path = openssl_tools.make_verification_cert(
            tmp_path,
            ca_cert=ca_cert,
            ca_key=ca_key,
            code=CODE,
            not_before_offset=datetime.timedelta(days=1),
        )
        assert now() < x509.load_pem_x509_certificate(path.read_bytes()).not_valid_before_utc
        ok, output = openssl_tools.verify(ca_cert, path)
        assert not ok and "certificate is not yet valid" in output

    def test_verify_through_an_untrusted_intermediate(self, tmp_path):
        path = openssl_tools.make_verification_cert(
            tmp_path,
            ca_cert=FIXTURES / "ca_intermediate_ec_p256.pem",
            ca_key=FIXTURES / "ca_intermediate_ec_p256.key.pem",
            code=CODE,
        )
        root, intermediate = (
            FIXTURES / "ca_root_ec_p256.pem",
            FIXTURES / "ca_intermediate_ec_p256.pem",
        )
        assert openssl_tools.verify(root, path, untrusted=intermediate)[0]
        assert not openssl_tools.verify(root, path)[0]

    def test_verify_checks_the_crl(self, tmp_path):
        ca_cert, ca_key = openssl_tools.make_ca(tmp_path, "ca")
        path = openssl_tools.make_verification_cert(
            tmp_path, ca_cert=ca_cert, ca_key=ca_key, code=CODE
        )
        serial = x509.load_pem_x509_certificate(path.read_bytes()).serial_number

        def crl(revoked: list[int]) -> Path:
            issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
            builder = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(issuer.subject)
                .last_update(now() - datetime.timedelta(minutes=1))
                .next_update(now() + datetime.timedelta(days=1))
            )
            for sn in revoked:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(sn)
                    .revocation_date(now())
                    .build()
                )
            signed = builder.sign(
                serialization.load_pem_private_key(ca_key.read_bytes(), None), hashes.SHA256()
            )
            out = tmp_path / f"crl-{len(revoked)}.pem"
            out.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
            return out

        assert openssl_tools.verify(ca_cert, path, crlfile=crl([]))[0]
        ok, output = openssl_tools.verify(ca_cert, path, crlfile=crl([serial]))
        assert not ok and "certificate revoked" in output

    def test_verify_passes_the_purpose(self, tmp_path):
        ca_cert, ca_key = openssl_tools.make_ca(tmp_path, "ca")
        path = openssl_tools.make_verification_cert(
            tmp_path, ca_cert=ca_cert, ca_key=ca_key, code=CODE
        )
        assert openssl_tools.verify(ca_cert, path, purpose="sslclient")[0]
        ok, output = openssl_tools.verify(ca_cert, path, purpose="no-such-purpose")
        assert not ok and "purpose" in output.lower()

    def test_openssl_checks_the_bad_self_signature_only_when_asked(self):
        # Worth knowing: a broker trusting this anchor would not notice, so
        # the registry has to.
        path = FIXTURES / "ca_bad_self_signature.pem"
        assert openssl_tools.verify(path, path)[0]
        ok, output = openssl_tools.verify(path, path, check_ss_sig=True)
        assert not ok and "certificate signature failure" in output

    def test_openssl_refuses_the_unknown_critical_extension(self):
        path = FIXTURES / "ca_unknown_critical_extension.pem"
        ok, output = openssl_tools.verify(path, path)
        assert not ok and "unhandled critical extension" in output

    def test_subject_hash(self):
        root = openssl_tools.subject_hash(FIXTURES / "ca_root_ec_p256.pem")
        assert len(root) == 8 and int(root, 16) >= 0 and root == root.lower()
        assert openssl_tools.subject_hash(FIXTURES / "ca_intermediate_chain.pem") == root
        assert openssl_tools.subject_hash(FIXTURES / "ca_second_root_ec_p256.pem") != root
