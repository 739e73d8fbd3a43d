"""Strict parsing of untrusted bytes and the identifiers users type.

Every refusal is an InvalidInput with a stable ``code``: scripts match on it,
so each test asserts the exact code, not just "it raised".
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import time
import traceback
import types

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import fixture_bytes
from pki.errors import InvalidInput
from pki.ids import (
    decode_cursor,
    encode_cursor,
    parse_duration,
    parse_fingerprint,
    parse_serial,
    validate_name,
)
from pki.x509 import parse
from pki.x509.parse import (
    MAX_BUNDLE_ITEMS,
    MAX_ITEM_BYTES,
    load_certificate,
    load_certificates,
    load_csr,
    load_private_key,
)

CERT_PEM = fixture_bytes("ca_root_ec_p256.pem")
CERT_DER = fixture_bytes("ca_root_ec_p256.der")
SECOND_CERT_PEM = fixture_bytes("ca_second_root_ec_p256.pem")
KEY_PEM = fixture_bytes("ca_root_ec_p256.key.pem")
RSA_KEY_PEM = fixture_bytes("ca_root_rsa2048.key.pem")
CSR_PEM = fixture_bytes("csr_as_certificate.pem")  # a good CSR, offered where a certificate is expected

ALL_LOADERS = [load_certificate, load_certificates, load_csr, load_private_key]


def pem(label: str, der: bytes) -> bytes:
    """Wrap DER in a PEM block the standard way (64-character lines)."""
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join([f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode()]) + b"\n"


def pem_body(data: bytes) -> bytes:
    return b"".join(line for line in data.splitlines() if not line.startswith(b"-----"))


def der_of_pem(data: bytes) -> bytes:
    return base64.b64decode(pem_body(data))


def refused(load, data, **kwargs) -> InvalidInput:
    """The InvalidInput that ``load(data)`` raises (the test fails if it returns)."""
    with pytest.raises(InvalidInput) as err:
        load(data, **kwargs)
    return err.value


def reference_cert(data: bytes = CERT_PEM) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


# --- 1. Empty input, not PEM, corrupted base64, missing END line -----------------


@pytest.mark.parametrize("load", ALL_LOADERS, ids=lambda f: f.__name__)
def test_empty_input_is_refused(load):
    assert refused(load, b"").code == "empty_input"


@pytest.mark.parametrize("load", [load_certificate, load_certificates, load_csr], ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "data",
    [b"hello world\n", b"certificate: yes\n", b"\x00\x01\x02\x03", "Zertifikat \u00e4\u00f6\u00fc".encode()],
    ids=["text", "yaml-ish", "binary", "non-ascii"],
)
def test_not_pem_is_refused(load, data):
    assert refused(load, data).code == "invalid_pem"


def test_not_pem_private_key_is_refused():
    # A key may also be DER, so anything not PEM is tried as DER and fails as a key.
    assert refused(load_private_key, b"hello world\n").code == "invalid_private_key"


@pytest.mark.parametrize("load", [load_certificate, load_certificates], ids=lambda f: f.__name__)
def test_corrupted_base64_is_refused(load):
    assert refused(load, fixture_bytes("corrupted_base64.pem")).code == "invalid_pem"


@pytest.mark.parametrize(
    "body_edit",
    [
        lambda lines: [lines[0], lines[1][:-1] + b"=", *lines[2:]],  # padding in the middle of the body
        lambda lines: [lines[0], lines[1][:-2], *lines[2:]],  # base64 length no longer a multiple of 4
        lambda lines: [lines[0], b"====", *lines[1:]],  # padding only
        lambda lines: [lines[0], b"MIIB zDCC", *lines[1:]],  # space inside a line
    ],
    ids=["padding-mid-body", "bad-length", "padding-only-line", "space-in-line"],
)
def test_malformed_base64_is_refused(body_edit):
    lines = CERT_PEM.splitlines()
    data = b"\n".join(body_edit(lines)) + b"\n"
    assert refused(load_certificate, data).code == "invalid_pem"


def test_empty_pem_block_is_refused():
    assert refused(load_certificate, b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").code == "invalid_pem"


@pytest.mark.parametrize("load", [load_certificate, load_certificates], ids=lambda f: f.__name__)
def test_missing_end_line_is_refused(load):
    assert refused(load, fixture_bytes("missing_end_line.pem")).code == "invalid_pem"


@pytest.mark.parametrize(
    "load, data",
    [(load_csr, CSR_PEM), (load_private_key, KEY_PEM)],
    ids=["csr", "private-key"],
)
def test_missing_end_line_is_refused_for_csr_and_key(load, data):
    truncated = data[: data.index(b"-----END")]
    assert refused(load, truncated).code == "invalid_pem"


def test_end_line_with_another_label_is_refused():
    data = CERT_PEM.replace(b"-----END CERTIFICATE-----", b"-----END PRIVATE KEY-----")
    assert refused(load_certificate, data).code == "invalid_pem"


def test_begin_inside_a_block_is_refused():
    # The first block's END line is missing; the next BEGIN must not be read as body.
    first_without_end = CERT_PEM[: CERT_PEM.index(b"-----END")]
    assert refused(load_certificates, first_without_end + SECOND_CERT_PEM).code == "invalid_pem"


def test_pem_headers_are_refused():
    lines = KEY_PEM.splitlines()
    data = b"\n".join([lines[0], b"Proc-Type: 4,ENCRYPTED", b"", *lines[1:]]) + b"\n"
    assert refused(load_private_key, data).code == "invalid_pem"


# --- 2. Trailing garbage after the END line --------------------------------------


@pytest.mark.parametrize("load", [load_certificate, load_certificates], ids=lambda f: f.__name__)
def test_trailing_garbage_after_end_is_refused(load):
    assert refused(load, fixture_bytes("trailing_garbage.pem")).code == "trailing_data"


@pytest.mark.parametrize(
    "load, data",
    [(load_certificate, CERT_PEM), (load_csr, CSR_PEM), (load_private_key, KEY_PEM)],
    ids=["certificate", "csr", "private-key"],
)
@pytest.mark.parametrize("garbage", [b"garbage\n", b"\x00", b"\n\n  x", b"MIIB\n"], ids=["word", "nul", "after-blank-lines", "base64-ish"])
def test_anything_but_whitespace_after_end_is_refused(load, data, garbage):
    assert refused(load, data + garbage).code == "trailing_data"


# --- 3. Two certificates where one is expected -----------------------------------


def test_two_certificates_where_one_is_expected_are_refused():
    assert refused(load_certificate, fixture_bytes("two_certificates.pem")).code == "multiple_certificates"


def test_the_same_certificate_twice_is_refused_as_multiple():
    assert refused(load_certificate, CERT_PEM + CERT_PEM).code == "multiple_certificates"


# --- 4. Wrong PEM label -----------------------------------------------------------


@pytest.mark.parametrize(
    "load, data",
    [
        (load_certificate, KEY_PEM),
        (load_certificate, RSA_KEY_PEM),
        (load_certificate, CSR_PEM),
        (load_certificates, CSR_PEM),
        (load_certificates, CERT_PEM + KEY_PEM),  # one stray key in a bundle
        (load_csr, CERT_PEM),
        (load_csr, KEY_PEM),
        (load_private_key, CERT_PEM),
        (load_private_key, CSR_PEM),
    ],
    ids=[
        "key-as-certificate",
        "rsa-key-as-certificate",
        "csr-as-certificate",
        "csr-as-bundle",
        "key-inside-bundle",
        "certificate-as-csr",
        "key-as-csr",
        "certificate-as-key",
        "csr-as-key",
    ],
)
def test_wrong_pem_label_is_refused(load, data):
    assert refused(load, data).code == "wrong_pem_label"


def test_certificate_body_under_a_foreign_label_is_refused():
    assert refused(load_certificate, pem("X509 CRL", CERT_DER)).code == "wrong_pem_label"


def test_csr_labelled_as_certificate_is_not_a_certificate():
    relabelled = pem("CERTIFICATE", der_of_pem(CSR_PEM))
    assert refused(load_certificate, relabelled).code == "invalid_certificate"


# --- 5. DER with trailing bytes ---------------------------------------------------


def test_der_with_trailing_bytes_is_refused():
    assert refused(load_certificate, fixture_bytes("der_trailing_bytes.der")).code == "trailing_data"


def test_der_with_trailing_bytes_inside_pem_is_refused():
    data = pem("CERTIFICATE", fixture_bytes("der_trailing_bytes.der"))
    assert refused(load_certificate, data).code == "trailing_data"


@pytest.mark.parametrize("wrap", [False, True], ids=["der", "pem"])
def test_csr_with_trailing_bytes_is_refused(wrap):
    der = der_of_pem(CSR_PEM) + b"\x00"
    data = pem("CERTIFICATE REQUEST", der) if wrap else der
    assert refused(load_csr, data).code == "trailing_data"


def test_private_key_der_with_trailing_bytes_is_refused():
    der = serialization.load_pem_private_key(KEY_PEM, None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert refused(load_private_key, der + b"\x00\x01").code == "invalid_private_key"
    assert refused(load_private_key, pem("PRIVATE KEY", der + b"\x00\x01")).code == "invalid_private_key"


# --- 6. Truncated DER, BER indefinite length --------------------------------------


@pytest.mark.parametrize("name", ["der_truncated.der", "ber_indefinite_length.der"])
@pytest.mark.parametrize("wrap", [False, True], ids=["der", "pem"])
def test_truncated_der_and_ber_are_refused(name, wrap):
    der = fixture_bytes(name)
    data = pem("CERTIFICATE", der) if wrap else der
    assert refused(load_certificate, data).code == "invalid_der"


@pytest.mark.parametrize(
    "der",
    [b"\x30", b"\x30\x82\x01", b"\x30\x85\x00\x00\x00\x00\x01\x00", CERT_DER[:-1]],
    ids=["tag-only", "length-cut", "5-octet-length", "last-byte-missing"],
)
def test_broken_der_framing_is_refused(der):
    assert refused(load_certificate, der).code == "invalid_der"


def test_truncated_csr_is_refused():
    der = der_of_pem(CSR_PEM)
    assert refused(load_csr, der[: len(der) // 2]).code == "invalid_der"


# --- 7. Oversized input: refused before parsing -----------------------------------


@pytest.fixture
def parsing_calls(monkeypatch) -> list[str]:
    """Replace every parsing step of pki.x509.parse by a recorder that fails loudly."""
    calls: list[str] = []

    def recorder(name):
        def called(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called: the input was parsed")

        return called

    for name in ("_pem_blocks", "_ders", "_check_der_framing", "_load_der_certificate"):
        monkeypatch.setattr(parse, name, recorder(name))
    monkeypatch.setattr(
        parse, "x509", types.SimpleNamespace(load_der_x509_certificate=recorder("x509"), load_der_x509_csr=recorder("x509"))
    )
    monkeypatch.setattr(
        parse,
        "serialization",
        types.SimpleNamespace(load_pem_private_key=recorder("serialization"), load_der_private_key=recorder("serialization")),
    )
    return calls


def _pad_to(data: bytes, size: int) -> bytes:
    """Valid PEM followed by blank lines (whitespace only), ``size`` bytes in all."""
    assert len(data) < size
    return data + b"\n" * (size - len(data))


def _base64_block(size: int) -> bytes:
    """A well-formed PEM block of ``size`` bytes whose body is base64 lines."""
    head, tail = b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n"
    line = b"QUFB" * 16 + b"\n"
    body = line * ((size - len(head) - len(tail)) // len(line) + 1)
    data = head + body + tail
    # trim whole lines, then top up with blank lines to hit ``size`` exactly
    while len(data) > size:
        body = body[: -len(line)]
        data = head + body + tail
    return _pad_to(data, size) if len(data) < size else data


@pytest.mark.parametrize(
    "load, data",
    [
        (load_certificate, CERT_PEM),
        (load_csr, CSR_PEM),
        (load_private_key, KEY_PEM),
    ],
    ids=["certificate", "csr", "private-key"],
)
def test_exactly_64_kib_is_still_accepted(load, data):
    # The control for the next test: whitespace padding alone is no reason to refuse.
    load(_pad_to(data, MAX_ITEM_BYTES))


@pytest.mark.parametrize(
    "load, data",
    [
        (load_certificate, _pad_to(CERT_PEM, MAX_ITEM_BYTES + 1)),
        (load_certificate, _base64_block(MAX_ITEM_BYTES + 1)),
        (load_certificate, CERT_DER + b"\x00" * (MAX_ITEM_BYTES + 1 - len(CERT_DER))),
        (load_csr, _pad_to(CSR_PEM, MAX_ITEM_BYTES + 1)),
        (load_private_key, _pad_to(KEY_PEM, MAX_ITEM_BYTES + 1)),
    ],
    ids=["certificate-padded", "certificate-base64-block", "certificate-der", "csr-padded", "key-padded"],
)
def test_oversized_input_is_refused_before_parsing(parsing_calls, load, data):
    assert len(data) == MAX_ITEM_BYTES + 1
    assert refused(load, data).code == "input_too_large"
    assert parsing_calls == []


def test_oversized_bundle_is_refused_before_parsing(parsing_calls):
    data = _pad_to(CERT_PEM, MAX_ITEM_BYTES * MAX_BUNDLE_ITEMS + 1)
    assert refused(load_certificates, data).code == "input_too_large"
    assert parsing_calls == []


def test_one_oversized_certificate_inside_a_bundle_is_refused():
    # Framing is fine (a SEQUENCE with a 3-octet length), only its size is wrong.
    content = b"\x00" * (MAX_ITEM_BYTES + 100)
    der = b"\x30\x83" + len(content).to_bytes(3, "big") + content
    assert refused(load_certificates, pem("CERTIFICATE", der)).code == "input_too_large"


# --- 8. Too many items ------------------------------------------------------------


@pytest.fixture
def certificate_parses(monkeypatch) -> list[bytes]:
    """Count real certificate parses (the parsing still happens)."""
    seen: list[bytes] = []
    original = parse._load_der_certificate

    def counting(der, **kwargs):
        seen.append(der)
        return original(der, **kwargs)

    monkeypatch.setattr(parse, "_load_der_certificate", counting)
    return seen


@pytest.fixture
def base64_decodes(monkeypatch) -> list[int]:
    """Count PEM bodies decoded."""
    seen: list[int] = []

    def counting(data, **kwargs):
        seen.append(len(data))
        return binascii.a2b_base64(data, **kwargs)

    monkeypatch.setattr(parse, "binascii", types.SimpleNamespace(a2b_base64=counting, Error=binascii.Error))
    return seen


def test_a_full_bundle_is_accepted(certificate_parses):
    certs = load_certificates(CERT_PEM * MAX_BUNDLE_ITEMS)
    assert len(certs) == MAX_BUNDLE_ITEMS
    assert len(certificate_parses) == MAX_BUNDLE_ITEMS


def test_one_certificate_over_the_bundle_cap_is_refused(certificate_parses):
    assert refused(load_certificates, CERT_PEM * (MAX_BUNDLE_ITEMS + 1)).code == "too_many_items"
    assert certificate_parses == []


def test_the_caller_cap_is_honoured(certificate_parses):
    assert refused(load_certificates, CERT_PEM * 3, max_items=2).code == "too_many_items"
    assert certificate_parses == []


def test_ten_thousand_certificate_bundle_is_refused_quickly(certificate_parses, base64_decodes):
    data = CERT_PEM * 10_000  # ~6.8 MB: over the bundle's byte cap as well as its count cap
    start = time.perf_counter()
    err = refused(load_certificates, data)
    elapsed = time.perf_counter() - start
    assert err.code == "input_too_large"
    assert certificate_parses == [] and base64_decodes == []
    assert elapsed < 0.5


def test_ten_thousand_small_blocks_are_refused_after_the_cap(certificate_parses, base64_decodes):
    # Tiny blocks fit under the byte cap, so the count cap must stop them,
    # and it must stop reading at the first block over the cap.
    block = b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"
    data = block * 10_000
    assert len(data) < MAX_ITEM_BYTES * MAX_BUNDLE_ITEMS
    start = time.perf_counter()
    err = refused(load_certificates, data)
    elapsed = time.perf_counter() - start
    assert err.code == "too_many_items"
    assert certificate_parses == []
    assert len(base64_decodes) <= MAX_BUNDLE_ITEMS
    assert elapsed < 0.5


@pytest.mark.parametrize("load, data", [(load_csr, CSR_PEM), (load_private_key, KEY_PEM)], ids=["csr", "private-key"])
def test_two_csrs_or_keys_where_one_is_expected_are_refused(load, data):
    assert refused(load, data + data).code == "too_many_items"


# --- 9. Names, CNs and client ids -------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["", "a\x00b", "\x00", "abc\x01", "tab\there", "line\nbreak", "del\x7f", "nel\x85", "c1\x9f", "x" * 65, "\u00e9" * 65],
    ids=["empty", "nul", "only-nul", "x01", "tab", "newline", "x7f", "x85-nel", "x9f", "65-ascii", "65-non-ascii"],
)
def test_bad_names_are_refused(value):
    assert refused(validate_name, value).code == "invalid_name"


def test_a_name_that_is_not_text_is_refused():
    assert refused(validate_name, b"device-1").code == "invalid_name"


@pytest.mark.parametrize(
    "value",
    ["x" * 64, "\u00e9" * 64, "Ger\u00e4t-\u03a9-\u6771\u4eac", "device-0001", "a", " spaced name "],
    ids=["64-ascii", "64-non-ascii", "letters", "plain", "one-char", "spaces"],
)
def test_good_names_pass_unchanged(value):
    assert validate_name(value) == value  # nothing trimmed or folded


def test_name_error_says_what_was_wrong():
    err = refused(validate_name, "x\x01", what="client id")
    assert "client id" in err.message and "U+0001" in err.message


# --- Positive cases: what a user may legitimately hand in -------------------------


def test_pem_certificate_loads():
    assert load_certificate(CERT_PEM) == reference_cert()


def test_der_certificate_loads_equal_to_pem():
    assert load_certificate(CERT_DER) == load_certificate(CERT_PEM)


def test_crlf_line_endings_load():
    assert load_certificate(CERT_PEM.replace(b"\n", b"\r\n")) == reference_cert()


def test_surrounding_whitespace_loads():
    assert load_certificate(b"\n\n  \t" + CERT_PEM + b"\n \t\r\n\n") == reference_cert()


def test_bytearray_and_memoryview_load():
    assert load_certificate(bytearray(CERT_PEM)) == reference_cert()
    assert load_certificate(memoryview(CERT_PEM)) == reference_cert()


def test_two_certificate_bundle_loads_both_in_order():
    certs = load_certificates(fixture_bytes("two_certificates.pem"))
    assert len(certs) == 2
    assert certs == [reference_cert(), reference_cert(SECOND_CERT_PEM)]


def test_one_der_certificate_is_a_bundle_of_one():
    assert load_certificates(CERT_DER) == [reference_cert()]


def test_csr_loads_in_pem_and_der():
    expected = x509.load_pem_x509_csr(CSR_PEM)
    assert load_csr(CSR_PEM) == expected
    assert load_csr(der_of_pem(CSR_PEM)) == expected


def test_csr_with_a_broken_signature_is_refused():
    der = bytearray(der_of_pem(CSR_PEM))
    der[-5] ^= 0x01  # inside the signature's integer s
    assert refused(load_csr, bytes(der)).code in {"csr_bad_signature", "invalid_csr"}


def test_private_key_loads_in_pem_and_der():
    expected = serialization.load_pem_private_key(KEY_PEM, None)
    der = expected.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert load_private_key(KEY_PEM).private_numbers() == expected.private_numbers()
    assert load_private_key(der).private_numbers() == expected.private_numbers()


def test_encrypted_private_key_needs_its_password():
    key = serialization.load_pem_private_key(KEY_PEM, None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    assert refused(load_private_key, encrypted).code == "key_password"
    assert refused(load_private_key, encrypted, password=b"wrong").code == "invalid_private_key"
    assert load_private_key(encrypted, password=b"pw").private_numbers() == key.private_numbers()


# --- Messages echo no key material -------------------------------------------------


def _rsa_key_der() -> bytes:
    return serialization.load_pem_private_key(RSA_KEY_PEM, None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _corrupt_one_line(data: bytes) -> bytes:
    lines = data.splitlines()
    middle = lines[5]
    lines[5] = middle[:10] + (b"A" if middle[10:11] != b"A" else b"B") + middle[11:]
    return b"\n".join(lines) + b"\n"


KEY_LEAKS = [
    ("key-as-certificate", load_certificate, RSA_KEY_PEM),
    ("key-as-bundle", load_certificates, CERT_PEM + RSA_KEY_PEM),
    ("key-as-csr", load_csr, RSA_KEY_PEM),
    ("key-trailing-garbage", load_private_key, RSA_KEY_PEM + b"garbage\n"),
    ("key-corrupted-line", load_private_key, _corrupt_one_line(RSA_KEY_PEM)),
    ("key-missing-end", load_private_key, RSA_KEY_PEM[: RSA_KEY_PEM.index(b"-----END")]),
    ("key-bad-char", load_private_key, RSA_KEY_PEM.replace(b"MII", b"MI!", 1)),
    ("key-der-truncated", load_private_key, _rsa_key_der()[:-40]),
    ("key-der-as-certificate", load_certificate, _rsa_key_der()),
    ("key-der-as-csr", load_csr, _rsa_key_der()),
    ("key-wrong-password", load_private_key, RSA_KEY_PEM),
]


@pytest.mark.parametrize("load, data", [(load, data) for _, load, data in KEY_LEAKS], ids=[i for i, _, _ in KEY_LEAKS])
def test_errors_do_not_echo_key_material(load, data):
    kwargs = {"password": b"secret"} if load is load_private_key and data == RSA_KEY_PEM else {}
    err = refused(load, data, **kwargs)
    # The message, the machine form, and the whole chain of causes a log would show.
    shown = "\n".join([str(err), repr(err.to_dict()), "".join(traceback.format_exception(err))])

    assert "MII" not in shown
    body = pem_body(RSA_KEY_PEM).decode()
    assert not [body[i : i + 16] for i in range(0, len(body) - 16, 8) if body[i : i + 16] in shown]
    der = _rsa_key_der()
    assert not [der[i : i + 16].hex() for i in range(0, len(der) - 16, 16) if der[i : i + 16].hex() in shown]
    assert repr(der[:12])[2:-1] not in shown
    d = serialization.load_pem_private_key(RSA_KEY_PEM, None).private_numbers().d
    assert format(d, "x")[:24] not in shown and str(d)[:24] not in shown


# --- Bugs found while writing these tests, fixed since -------


def _with_version(der: bytes, version: int, *, at: int) -> bytes:
    out = bytearray(der)
    assert out[at - 2 : at] == b"\x02\x01", "not the version INTEGER"
    out[at] = version
    return bytes(out)


@pytest.mark.parametrize("load", [load_certificate, load_certificates], ids=lambda f: f.__name__)
def test_certificate_with_unknown_version_is_refused(load):
    # TBSCertificate starts 30 82 01 72 a0 03 02 01 <version>; 5 is no X.509 version.
    der = _with_version(CERT_DER, 5, at=12)
    assert refused(load, der).code == "invalid_certificate"


def test_csr_with_unknown_version_is_refused():
    # CertificationRequestInfo starts 30 81 9a 02 01 <version>.
    der = _with_version(der_of_pem(CSR_PEM), 7, at=8)
    assert refused(load_csr, der).code == "invalid_csr"


def _with_bad_utf8_in_cn(der: bytes, *, occurrence: int) -> bytes:
    cn = b"Device PKI Test Root CA EC P-256"
    at = der.index(cn)
    if occurrence == 2:
        at = der.index(cn, at + 1)
    out = bytearray(der)
    out[at] = 0xFF  # inside a UTF8String: no longer UTF-8
    return bytes(out)


@pytest.mark.parametrize("occurrence", [1, 2], ids=["issuer", "subject"])
def test_certificate_with_undecodable_name_is_refused(occurrence):
    # cryptography decodes names lazily: without an eager read this loads and
    # the ValueError surfaces later, in the CA checks.
    der = _with_bad_utf8_in_cn(CERT_DER, occurrence=occurrence)
    assert refused(load_certificate, der).code == "invalid_certificate"


# --- Identifiers: serials, fingerprints, cursors, durations -----------------------


@pytest.mark.parametrize(
    "text", ["3A:F1:09", "0x3af109", "003af109", "3af109", "3AF109", " 3a f1 09 ", "0X3AF109", "3a:f1:09"]
)
def test_parse_serial_accepts_the_usual_spellings(text):
    assert parse_serial(text) == "3af109"


def test_parse_serial_accepts_20_octets():
    assert parse_serial("7f" + "ff" * 19) == "7f" + "ff" * 19


@pytest.mark.parametrize(
    "text", ["", "   ", "::", "0x", "xyz", "3g", "-1", "3a-f1", "1" * 43, "0x" + "1" * 43, "\u0663"],
    ids=["empty", "spaces", "colons", "bare-0x", "xyz", "non-hex", "negative", "dashes", "43-digits", "0x-43-digits", "arabic-digit"],
)
def test_parse_serial_refuses(text):
    assert refused(parse_serial, text).code == "invalid_serial"


FP = "ab" * 32


@pytest.mark.parametrize(
    "text",
    [FP, FP.upper(), ":".join(FP[i : i + 2] for i in range(0, 64, 2)), f"  {FP}  "],
    ids=["lower", "upper", "colons", "spaces"],
)
def test_parse_fingerprint_accepts(text):
    assert parse_fingerprint(text) == FP


@pytest.mark.parametrize(
    "text",
    ["sha256:" + FP, "SHA256:" + FP.upper(), "sha256:" + ":".join(FP[i : i + 2] for i in range(0, 64, 2))],
    ids=["lower", "upper", "colons"],
)
def test_parse_fingerprint_accepts_the_sha256_prefix(text):
    assert parse_fingerprint(text) == FP


@pytest.mark.parametrize(
    "text", ["", FP[:-1], FP + "a", "g" * 64, "sha1:" + "ab" * 20, "sha256:", "md5:" + FP],
    ids=["empty", "63-digits", "65-digits", "non-hex", "sha1", "prefix-only", "other-prefix"],
)
def test_parse_fingerprint_refuses(text):
    assert refused(parse_fingerprint, text).code == "invalid_fingerprint"


def test_cursor_round_trips():
    position = {"id": 42, "after": "abc"}
    assert decode_cursor(encode_cursor(position), keys=("id", "after")) == position


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


GOOD_CURSOR = encode_cursor({"id": 42})


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "!!!!",
        "\u00e9t\u00e9",
        "\x00",
        GOOD_CURSOR[:-3],
        GOOD_CURSOR[:-1],
        GOOD_CURSOR[1:],
        _b64(b"not json"),
        _b64(b"\xff\xfe{}"),
        _b64(b"[42]"),
        _b64(b"42"),
        _b64(b'{"id":42,"extra":1}'),
        _b64(b'{"other":42}'),
        _b64(b"{}"),
        _b64(b'{"id":true}'),
        _b64(b'{"id":1.5}'),
        _b64(b'{"id":null}'),
        _b64(b'{"id":[1]}'),
        _b64(b'{"id":{"$gt":0}}'),
        _b64(b'{"id":NaN}'),
        encode_cursor({"id": "x" * 600}),
        "A" * 10_000,
    ],
    ids=[
        "empty", "text", "punctuation", "non-ascii", "nul", "cut-3", "cut-1", "cut-front",
        "not-json", "not-utf8", "list", "number", "extra-key", "other-key", "no-key", "bool", "float",
        "null", "nested-list", "nested-object", "nan", "oversized-valid-encoding", "oversized-garbage",
    ],
)
def test_decode_cursor_refuses(cursor):
    assert refused(decode_cursor, cursor, keys=("id",)).code == "invalid_cursor"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("90s", dt.timedelta(seconds=90)),
        ("15m", dt.timedelta(minutes=15)),
        ("1h", dt.timedelta(hours=1)),
        ("7d", dt.timedelta(days=7)),
        (" 30m ", dt.timedelta(minutes=30)),
    ],
)
def test_parse_duration_accepts(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "7", "d", "7w", "-1h", "1.5h", "1h30m", "1234567890s", "h1", "1 h 2"],
)
def test_parse_duration_refuses(text):
    assert refused(parse_duration, text).code == "invalid_duration"


# --- Smaller findings, fixed ----------------------------------------------------------------


@pytest.mark.parametrize("loader", [load_certificate, load_csr, load_private_key])
def test_whitespace_only_is_empty_input(loader):
    with pytest.raises(InvalidInput) as err:
        loader(b" \n\t\r\n ")
    assert err.value.code == "empty_input"


def test_password_for_an_unencrypted_key_says_so():
    with pytest.raises(InvalidInput) as err:
        load_private_key(fixture_bytes("ca_root_ec_p256.key.pem"), password=b"x")
    assert err.value.code == "key_not_encrypted"


@pytest.mark.parametrize("cursor", [encode_cursor({"id": 5}) + "!!", encode_cursor({"id": 10**40}),
                                    encode_cursor({"id": -1})])
def test_cursor_contents_are_checked(cursor):
    with pytest.raises(InvalidInput) as err:
        decode_cursor(cursor, keys=("id",))
    assert err.value.code == "invalid_cursor"


@pytest.mark.parametrize("name", ["evil\u202egnp", "lone\ud800", "zero\u200bwidth"])
def test_invisible_and_unencodable_characters_refused(name):
    with pytest.raises(InvalidInput) as err:
        validate_name(name)
    assert err.value.code == "invalid_name"


def test_duration_takes_ascii_digits_only():
    with pytest.raises(InvalidInput):
        parse_duration("\u0661h")


def test_parse_time_strict_and_lenient():
    import datetime as dt

    from pki.ids import parse_time

    utc = dt.timezone.utc
    assert parse_time("2027-01-31T18:00:00Z") == dt.datetime(2027, 1, 31, 18, tzinfo=utc)
    assert parse_time("2027-01-31T20:00:00+02:00") == dt.datetime(2027, 1, 31, 18, tzinfo=utc)
    assert parse_time("2027-01-31", naive_is_utc=True) == dt.datetime(2027, 1, 31, tzinfo=utc)
    for bad, lenient in (("2027-01-31", False), ("tomorrow", True), ("", True)):
        with pytest.raises(InvalidInput) as err:
            parse_time(bad, naive_is_utc=lenient)
        assert err.value.code == "invalid_time"
