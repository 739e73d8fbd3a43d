"""Property tests: whatever bytes come in, the parsers either return the right
type or raise a PkiError -- never ValueError, TypeError, UnicodeError,
IndexError or anything else from the libraries underneath.
"""

from __future__ import annotations

import base64
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support import fixture_bytes
from pki.errors import PkiError
from pki.x509 import parse
from pki.x509.parse import MAX_BUNDLE_ITEMS, load_certificate, load_certificates, load_csr, load_private_key

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PRIVATE_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
    x25519.X25519PrivateKey,
    x448.X448PrivateKey,
)


def _pem(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join([f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode()]) + b"\n"


def _key_der(name: str) -> bytes:
    key = serialization.load_pem_private_key(fixture_bytes(name), None)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


CERT_PEM = fixture_bytes("ca_root_ec_p256.pem")
CERT_DER = fixture_bytes("ca_root_ec_p256.der")
CSR_PEM = fixture_bytes("csr_as_certificate.pem")
CSR_DER = x509.load_pem_x509_csr(CSR_PEM).public_bytes(serialization.Encoding.DER)
EC_KEY_DER = _key_der("ca_root_ec_p256.key.pem")
ED_KEY_DER = _key_der("ca_root_ed25519.key.pem")

#: Valid inputs of every kind, PEM and DER; mutations start from these.
PEM_SEEDS = [
    CERT_PEM,
    fixture_bytes("ca_root_rsa2048.pem"),
    fixture_bytes("ca_root_ed25519.pem"),
    fixture_bytes("two_certificates.pem"),
    CSR_PEM,
    fixture_bytes("ca_root_ec_p256.key.pem"),
    fixture_bytes("ca_root_ed25519.key.pem"),
    serialization.load_pem_private_key(fixture_bytes("ca_root_ec_p256.key.pem"), None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ),  # SEC1 "EC PRIVATE KEY"
]
DER_SEEDS = [
    ("CERTIFICATE", CERT_DER),
    ("CERTIFICATE REQUEST", CSR_DER),
    ("PRIVATE KEY", EC_KEY_DER),
    ("PRIVATE KEY", ED_KEY_DER),
]

#: A run this long of base64 characters in a message would be echoed input.
_ECHOED_BODY = re.compile(r"[A-Za-z0-9+/]{20,}")


def _names_are_readable(cert: x509.Certificate) -> None:
    # cryptography decodes names lazily; a loaded certificate must not fail later.
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()


def _check_loader(load, data: bytes) -> None:
    """The contract every parser keeps for any input at all."""
    try:
        result = load(data)
    except PkiError as err:
        event(f"{load.__name__}: {err.code}")
        assert isinstance(err.code, str) and err.code
        assert not _ECHOED_BODY.search(err.message), f"{err.code}: message echoes input: {err.message!r}"
        return
    event(f"{load.__name__}: loaded")
    if load is load_certificate:
        assert isinstance(result, x509.Certificate)
        _names_are_readable(result)
    elif load is load_certificates:
        assert isinstance(result, list) and 1 <= len(result) <= MAX_BUNDLE_ITEMS
        for cert in result:
            assert isinstance(cert, x509.Certificate)
            _names_are_readable(cert)
    elif load is load_csr:
        assert isinstance(result, x509.CertificateSigningRequest)
        assert result.is_signature_valid
        result.subject.rfc4514_string()
    else:
        assert isinstance(result, PRIVATE_KEY_TYPES)


def check_every_loader(data: bytes) -> None:
    # Any other exception propagates and fails the test with the input shrunk.
    for load in (load_certificate, load_certificates, load_csr, load_private_key):
        _check_loader(load, data)


# --- Strategies -------------------------------------------------------------------

_byte_edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(min_value=0), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(min_value=0), st.just(0)),
    st.tuples(st.just("delete"), st.integers(min_value=0), st.integers(1, 16)),
    st.tuples(st.just("insert"), st.integers(min_value=0), st.binary(min_size=1, max_size=8)),
)


def _apply_byte_edit(data: bytes, edit) -> bytes:
    kind, where, arg = edit
    if not data:
        return data
    i = where % len(data)
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ (1 << arg)]) + data[i + 1 :]
    if kind == "set":
        return data[:i] + bytes([arg]) + data[i + 1 :]
    if kind == "truncate":
        return data[:i]
    if kind == "delete":
        return data[:i] + data[i + arg :]
    return data[:i] + arg + data[i:]


@st.composite
def byte_mutants(draw, seeds) -> bytes:
    data = draw(st.sampled_from(seeds))
    for edit in draw(st.lists(_byte_edit, min_size=1, max_size=4)):
        data = _apply_byte_edit(data, edit)
    return data


_line_edit = st.one_of(
    st.tuples(st.just("duplicate"), st.integers(min_value=0), st.just(0)),
    st.tuples(st.just("swap"), st.integers(min_value=0), st.integers(min_value=0)),
    st.tuples(st.just("drop"), st.integers(min_value=0), st.just(0)),
    st.tuples(st.just("replace"), st.integers(min_value=0), st.binary(max_size=80)),
    st.tuples(
        st.just("insert"),
        st.integers(min_value=0),
        st.sampled_from(
            [b"", b"   ", b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----", b"-----BEGIN PRIVATE KEY-----",
             b"Proc-Type: 4,ENCRYPTED", b"====", b"MA==", b"\x00", b"\r", b"\xff\xfe"]
        ),
    ),
    st.tuples(st.just("crlf"), st.integers(min_value=0), st.just(0)),
)


def _apply_line_edit(lines: list[bytes], edit) -> list[bytes]:
    kind, where, arg = edit
    if not lines:
        return lines
    i = where % len(lines)
    if kind == "duplicate":
        return lines[: i + 1] + [lines[i]] + lines[i + 1 :]
    if kind == "swap":
        j = arg % len(lines)
        out = list(lines)
        out[i], out[j] = out[j], out[i]
        return out
    if kind == "drop":
        return lines[:i] + lines[i + 1 :]
    if kind == "replace":
        return lines[:i] + [arg] + lines[i + 1 :]
    if kind == "insert":
        return lines[:i] + [arg] + lines[i:]
    return lines[:i] + [lines[i] + b"\r"] + lines[i + 1 :]


@st.composite
def line_mutants(draw) -> bytes:
    lines = draw(st.sampled_from(PEM_SEEDS)).split(b"\n")
    for edit in draw(st.lists(_line_edit, min_size=1, max_size=4)):
        lines = _apply_line_edit(lines, edit)
    return b"\n".join(lines)


@st.composite
def rewrapped_der_mutants(draw) -> bytes:
    """Mutate the DER inside, then wrap it in a correct PEM block: reaches the ASN.1 parsers."""
    label, der = draw(st.sampled_from(DER_SEEDS))
    for edit in draw(st.lists(_byte_edit, min_size=1, max_size=3)):
        der = _apply_byte_edit(der, edit)
    return _pem(label, der) if draw(st.booleans()) else der


pem_like_text = st.text(
    alphabet=st.sampled_from(list("-BEGINDCRTFAKYPVQU \n\r\t=+/MIAa0:")) | st.characters(),
    max_size=400,
)

der_like_bytes = st.builds(
    lambda tag, length, body: bytes([tag]) + length + body,
    st.sampled_from([0x30, 0x31, 0x02, 0xA0]),
    st.sampled_from([b"\x80", b"\x81\x10", b"\x82\x01\x00", b"\x84\xff\xff\xff\xff", b"\x85\x00\x00\x00\x00\x01", b"\x05", b""]),
    st.binary(max_size=300),
)


# --- Properties -------------------------------------------------------------------


@PROPERTY
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused_cleanly(data):
    check_every_loader(data)


@PROPERTY
@given(st.text(max_size=1000))
def test_random_text_is_refused_cleanly(text):
    check_every_loader(text.encode("utf-8", "surrogatepass"))


@PROPERTY
@given(pem_like_text)
def test_pem_like_text_is_refused_cleanly(text):
    check_every_loader(text.encode("utf-8", "surrogatepass"))


_LABELS = st.sampled_from(["CERTIFICATE", "CERTIFICATE REQUEST", "PRIVATE KEY", "EC PRIVATE KEY", "X"])
_B64_TEXT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n \t"


@st.composite
def well_framed_pem(draw) -> bytes:
    """BEGIN, a base64-looking body, END: gets past the framing into base64 and DER."""
    label = draw(_LABELS)
    end = draw(st.one_of(st.just(label), _LABELS))
    body = draw(
        st.one_of(
            st.binary(max_size=400).map(base64.b64encode),
            der_like_bytes.map(base64.b64encode),
            st.text(alphabet=_B64_TEXT, max_size=600).map(str.encode),
        )
    )
    width = draw(st.integers(1, 80))
    lines = [body[i : i + width] for i in range(0, len(body), width)]
    return b"\n".join([f"-----BEGIN {label}-----".encode(), *lines, f"-----END {end}-----".encode()]) + b"\n"


@PROPERTY
@given(well_framed_pem())
def test_well_framed_pem_with_random_base64_is_handled(data):
    check_every_loader(data)


@PROPERTY
@given(der_like_bytes)
def test_der_like_bytes_are_handled(data):
    check_every_loader(data)


@PROPERTY
@given(byte_mutants(PEM_SEEDS + [der for _, der in DER_SEEDS]))
def test_byte_mutations_of_valid_inputs_are_handled(data):
    check_every_loader(data)


@PROPERTY
@given(line_mutants())
def test_line_mutations_of_valid_pem_are_handled(data):
    check_every_loader(data)


@PROPERTY
@given(rewrapped_der_mutants())
def test_der_mutations_are_handled(data):
    check_every_loader(data)


# --- The one-block fast path agrees with the line-by-line parser ------------------


def _blocks_or_code(split, data: bytes):
    try:
        return [(b.label, b.der) for b in split(data, what="input", max_items=MAX_BUNDLE_ITEMS)]
    except PkiError as err:
        return err.code


@PROPERTY
@given(
    st.one_of(
        line_mutants(),
        byte_mutants(PEM_SEEDS),
        well_framed_pem(),
        st.builds(lambda a, pem, b: a + pem + b, st.sampled_from([b"", b" ", b"\n", b"\r\n", b"\t\n "]),
                  st.sampled_from(PEM_SEEDS), st.sampled_from([b"", b" ", b"\n", b"\r\n", b"\n\x0b", b"\x00"])),
    )
)
def test_fast_and_slow_pem_paths_agree(data):
    event("one-block regex matches" if parse._ONE_BLOCK.fullmatch(data) else "line by line only")
    assert _blocks_or_code(parse._pem_blocks, data) == _blocks_or_code(parse._pem_blocks_slow, data)


# --- Round trip: surrounding whitespace never changes what loads ------------------

CERT_SEEDS = [CERT_PEM, fixture_bytes("ca_root_rsa2048.pem"), fixture_bytes("ca_root_ed25519.pem")]
_space = st.text(alphabet=" \t\r\n\x0b\x0c", max_size=40).map(str.encode)


@PROPERTY
@given(
    cert_pem=st.sampled_from(CERT_SEEDS),
    before=_space,
    after=_space,
    line_end=st.sampled_from([b"\n", b"\r\n"]),
    line_padding=st.lists(st.sampled_from([b"", b" ", b"\t", b"  \t"]), min_size=40, max_size=40),
)
def test_whitespace_variations_load_the_same_certificate(cert_pem, before, after, line_end, line_padding):
    expected = x509.load_pem_x509_certificate(cert_pem)
    lines = cert_pem.strip().split(b"\n")
    padded = [line_padding[i % len(line_padding)] + line + line_padding[-1 - i % len(line_padding)] for i, line in enumerate(lines)]
    data = before + line_end.join(padded) + after

    cert = load_certificate(data)
    assert cert == expected
    assert cert.public_bytes(serialization.Encoding.DER) == expected.public_bytes(serialization.Encoding.DER)
    assert load_certificates(data) == [expected]
