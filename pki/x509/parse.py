"""Strict parsing of certificates, CSRs and keys from untrusted bytes.

cryptography is forgiving in ways a PKI must not be: it
ignores what follows a PEM block, returns the first of several certificates,
and reads PEM of any label.  Everything here goes through :func:`_pem_blocks`,
which accepts one layout only: whitespace, BEGIN line, base64 lines, END line,
whitespace; anything else is an error with its own code.
"""

from __future__ import annotations

import binascii
import re
import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import InvalidInput
from .checks import check_signature_algorithm, read_extensions

__all__ = [
    "MAX_ITEM_BYTES",
    "MAX_BUNDLE_ITEMS",
    "PemBlock",
    "load_certificate",
    "load_certificates",
    "load_csr",
    "load_private_key",
]

#: One certificate, CSR or key: real ones are a few KiB; refuse before parsing.
MAX_ITEM_BYTES = 64 * 1024
#: A chain or bundle: far more than any real chain, far less than a DoS.
MAX_BUNDLE_ITEMS = 16

_BEGIN = re.compile(rb"^-----BEGIN ([A-Z0-9 ]+)-----$")
_END = re.compile(rb"^-----END ([A-Z0-9 ]+)-----$")
_B64_LINE = re.compile(rb"^[A-Za-z0-9+/=]+$")


@dataclass(frozen=True)
class PemBlock:
    label: str
    der: bytes


def _bad(code: str, message: str) -> InvalidInput:
    return InvalidInput(message, code=code)


def _is_pem(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN ")


# The common case, one well-formed block, in one C-speed match; anything else
# takes the line-by-line path below, which says precisely what is wrong.
_ONE_BLOCK = re.compile(
    rb"\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n((?:[A-Za-z0-9+/=]+\r?\n)+)-----END \1-----\s*"
)


def _pem_blocks(data: bytes, *, what: str, max_items: int) -> list[PemBlock]:
    m = _ONE_BLOCK.fullmatch(data)
    if m:
        try:
            der = binascii.a2b_base64(m.group(2).replace(b"\r", b"").replace(b"\n", b""), strict_mode=True)
        except binascii.Error:
            der = b""
        if der:
            return [PemBlock(m.group(1).decode("ascii"), der)]
    return _pem_blocks_slow(data, what=what, max_items=max_items)


def _pem_blocks_slow(data: bytes, *, what: str, max_items: int) -> list[PemBlock]:
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    blocks: list[PemBlock] = []
    label: str | None = None
    body: list[bytes] = []
    for raw in lines:
        line = raw.strip()
        if label is None:
            if not line:
                continue
            m = _BEGIN.match(line)
            if not m:
                if blocks:
                    raise _bad(
                        "trailing_data",
                        f"{what}: unexpected data after the END line; the file must hold only the PEM block",
                    )
                raise _bad("invalid_pem", f"{what}: not PEM: expected a '-----BEGIN ...-----' line")
            if len(blocks) >= max_items:
                raise _bad(
                    "too_many_items",
                    f"{what}: more than {max_items} PEM blocks; split the input",
                )
            label = m.group(1).decode("ascii")
            body = []
            continue
        m = _END.match(line)
        if m:
            if m.group(1).decode("ascii") != label:
                raise _bad("invalid_pem", f"{what}: END line does not match BEGIN {label}")
            try:
                der = binascii.a2b_base64(b"".join(body), strict_mode=True)
            except binascii.Error as exc:
                raise _bad("invalid_pem", f"{what}: corrupted base64 in the PEM block") from exc
            if not der:
                raise _bad("invalid_pem", f"{what}: empty PEM block")
            blocks.append(PemBlock(label, der))
            label = None
            continue
        if _BEGIN.match(line):
            raise _bad("invalid_pem", f"{what}: BEGIN inside a PEM block; an END line is missing")
        if line.startswith(b"-----") or b":" in line:
            # Encrypted legacy PEM headers (Proc-Type) and other oddities.
            raise _bad("invalid_pem", f"{what}: PEM headers are not supported; give a plain PEM block")
        if line and not _B64_LINE.match(line):
            raise _bad("invalid_pem", f"{what}: corrupted base64 in the PEM block")
        body.append(line)
    if label is not None:
        raise _bad("invalid_pem", f"{what}: the PEM block has no END line; the file is truncated")
    return blocks


def _check_size(data: bytes, *, what: str, limit: int) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes")
    if len(data) > limit:
        raise _bad(
            "input_too_large",
            f"{what}: {len(data)} bytes is more than the {limit} allowed",
        )
    if not bytes(data).strip():
        raise _bad("empty_input", f"{what}: the input is empty")


def _check_der_framing(der: bytes, *, what: str) -> None:
    """Refuse DER that is truncated, indefinite-length (BER) or has trailing bytes.

    cryptography rejects most of this too, but with one generic message; a
    user deserves to know which, and the check must not depend on a library
    version's leniency.
    """
    if len(der) < 2 or der[0] != 0x30:
        raise _bad("invalid_der", f"{what}: not DER: expected an ASN.1 SEQUENCE")
    first = der[1]
    if first == 0x80:
        raise _bad("invalid_der", f"{what}: BER indefinite length is not DER")
    if first < 0x80:
        length, header = first, 2
    else:
        n = first & 0x7F
        if n > 4 or len(der) < 2 + n:
            raise _bad("invalid_der", f"{what}: truncated DER")
        length = int.from_bytes(der[2 : 2 + n], "big")
        header = 2 + n
    end = header + length
    if len(der) < end:
        raise _bad("invalid_der", f"{what}: truncated DER ({len(der)} of {end} bytes)")
    if len(der) > end:
        raise _bad(
            "trailing_data",
            f"{what}: {len(der) - end} bytes follow the DER structure; give exactly one",
        )


def _ders(data: bytes, *, what: str, labels: tuple[str, ...], max_items: int) -> list[bytes]:
    data = bytes(data)
    if _is_pem(data):
        blocks = _pem_blocks(data, what=what, max_items=max_items)
        for block in blocks:
            if block.label not in labels:
                raise _bad(
                    "wrong_pem_label",
                    f"{what}: got a PEM '{block.label}', expected '{labels[0]}'",
                )
        ders = [b.der for b in blocks]
    else:
        if data.strip() == b"" or data[:1] != b"\x30":
            raise _bad("invalid_pem", f"{what}: neither PEM nor DER")
        ders = [data]
    for der in ders:
        _check_der_framing(der, what=what)
    return ders


# cryptography only warns about a zero or negative serial (and will raise in a
# later release).  The serial is checked below instead; the warning, process
# wide, would only be noise (and catch_warnings is not thread-safe).
warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
# Likewise for a name attribute over its upper bound (a CN over 64 octets, RFC 5280 Appendix A): the
# warning would print the install path before the error.  Names are checked instead, with their own
# codes (pki.ids.validate_name: invalid_name, invalid_client_id).
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)

def _load_der_certificate(der: bytes, *, what: str) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        # Names are decoded lazily; read them now so a bad one fails here,
        # as a parse error, and not later in some check.
        cert.subject, cert.issuer  # noqa: B018
        serial = cert.serial_number
    except (ValueError, x509.InvalidVersion) as exc:
        raise _bad("invalid_certificate", f"{what}: not a valid X.509 certificate") from exc
    if serial <= 0:
        raise _bad("invalid_serial", f"{what}: its serial number is not positive (RFC 5280 4.1.2.2)")
    read_extensions(cert, what=what)
    return cert


def load_certificates(
    data: bytes, *, what: str = "certificate", max_items: int = MAX_BUNDLE_ITEMS
) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (or one DER), strictly; at least one."""
    _check_size(data, what=what, limit=MAX_ITEM_BYTES * max_items)
    certs = []
    for der in _ders(data, what=what, labels=("CERTIFICATE",), max_items=max_items):
        if len(der) > MAX_ITEM_BYTES:
            raise _bad("input_too_large", f"{what}: a certificate over {MAX_ITEM_BYTES} bytes")
        certs.append(_load_der_certificate(der, what=what))
    if not certs:
        raise _bad("empty_input", f"{what}: no certificate found")
    return certs


def load_certificate(data: bytes, *, what: str = "certificate") -> x509.Certificate:
    """Exactly one certificate, PEM or DER."""
    _check_size(data, what=what, limit=MAX_ITEM_BYTES)
    certs = load_certificates(data, what=what, max_items=MAX_BUNDLE_ITEMS)
    if len(certs) != 1:
        raise _bad(
            "multiple_certificates",
            f"{what}: the file holds {len(certs)} certificates; give exactly one",
        )
    return certs[0]


def load_csr(data: bytes, *, what: str = "CSR") -> x509.CertificateSigningRequest:
    """Exactly one CSR, PEM or DER; its signature is checked here."""
    _check_size(data, what=what, limit=MAX_ITEM_BYTES)
    ders = _ders(
        data, what=what, labels=("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"), max_items=1
    )
    try:
        csr = x509.load_der_x509_csr(ders[0])
        csr.subject  # noqa: B018 - decoded lazily; fail here on a bad name
    except (ValueError, x509.InvalidVersion) as exc:
        raise _bad("invalid_csr", f"{what}: not a valid PKCS#10 request") from exc
    # Before the signature: cryptography does not verify SHA-1 at all, and the user should hear
    # "weak algorithm", not "bad signature".
    check_signature_algorithm(csr, what=what)
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # unsupported key or algorithm inside the CSR
        raise _bad("invalid_csr", f"{what}: its signature cannot be checked") from exc
    if not valid:
        raise _bad("csr_bad_signature", f"{what}: its signature does not verify; make a new CSR")
    return csr


def load_private_key(data: bytes, *, what: str = "private key", password: bytes | None = None):
    """One private key, PEM (PKCS#8, SEC1, PKCS#1) or DER; error messages never echo it."""
    _check_size(data, what=what, limit=MAX_ITEM_BYTES)
    data = bytes(data)
    try:
        if _is_pem(data):
            blocks = _pem_blocks(data, what=what, max_items=1)
            if not blocks[0].label.endswith("PRIVATE KEY"):
                raise _bad("wrong_pem_label", f"{what}: got a PEM '{blocks[0].label}', expected a PRIVATE KEY")
            return serialization.load_pem_private_key(data, password=password)
        return serialization.load_der_private_key(data, password=password)
    except InvalidInput:
        raise
    except TypeError as exc:
        if password is not None:
            raise _bad("key_not_encrypted", f"{what}: not encrypted, but a password was given; drop it") from exc
        raise _bad("key_password", f"{what}: encrypted; give its password") from exc
    except (ValueError, Exception) as exc:
        raise _bad("invalid_private_key", f"{what}: not a readable private key") from exc
