"""OpenSSL's subject hash: the ``<hash>.N`` / ``<hash>.rN`` names of a hashed CA directory.

OpenSSL (``X509_NAME_hash_ex``, the ``-subject_hash`` of ``openssl x509``)
hashes a *canonical* encoding of the name, not its DER (crypto/x509/x_name.c,
``x509_name_canon`` and ``asn1_string_canon``):

- every string value of a type in ``ASN1_MASK_CANON`` (UTF8String,
  BMPString, UniversalString, PrintableString, T61String, IA5String,
  VisibleString) becomes a UTF8String, with leading and trailing whitespace
  dropped, inner whitespace runs collapsed to one space, and ASCII letters
  lowercased; bytes with the top bit set are copied as they are;
- any other value (NumericString, a non-string) is kept exactly;
- each RDN is re-encoded as a DER SET OF (members sorted by encoding), and
  the RDN encodings are concatenated *without* the outer SEQUENCE header;
- the hash is the first four bytes of the SHA-1 of that, read little-endian.

The name is read with asn1crypto (so that the bytes are exactly those of the
certificate, not cryptography's re-encoding), and the few TLVs are written
here.
"""

from __future__ import annotations

import hashlib

from asn1crypto import core as _core
from asn1crypto import x509 as _ax509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding as _Encoding

__all__ = ["subject_hash", "name_hash", "canonical_name_der"]

_UTF8 = 12
# Tag -> how to decode its contents to text, as ASN1_STRING_to_UTF8 does.
_CANON_TYPES = {
    12: "utf-8",  # UTF8String
    30: "utf-16-be",  # BMPString
    28: "utf-32-be",  # UniversalString
    19: "latin-1",  # PrintableString
    20: "latin-1",  # T61String (OpenSSL reads it as one byte per character)
    22: "latin-1",  # IA5String
    26: "latin-1",  # VisibleString
}
_SPACE = b" \t\n\v\f\r"


def _tlv(tag: int, contents: bytes) -> bytes:
    n = len(contents)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + contents


def _canon_value(raw: bytes) -> bytes:
    value = _core.Asn1Value.load(raw)
    if value.class_ != 0 or value.method != 0 or value.tag not in _CANON_TYPES:
        return raw
    try:
        text = value.contents.decode(_CANON_TYPES[value.tag])
    except UnicodeDecodeError:
        return raw  # OpenSSL would fail the whole hash; keep the bytes as they are
    data = text.encode("utf-8").strip(_SPACE)
    out = bytearray()
    i = 0
    while i < len(data):
        c = data[i]
        if c >= 0x80:
            out.append(c)
            i += 1
        elif c in _SPACE:
            out.append(0x20)
            while i < len(data) and data[i] in _SPACE:
                i += 1
        else:
            out.append(c + 0x20 if 0x41 <= c <= 0x5A else c)
            i += 1
    return _tlv(_UTF8, bytes(out))


def canonical_name_der(name_der: bytes) -> bytes:
    """The canonical encoding OpenSSL hashes, from a Name's DER."""
    name = _ax509.Name.load(name_der)
    out = bytearray()
    for rdn in name.chosen:
        members = []
        for atv in rdn:
            members.append(_tlv(0x30, atv["type"].dump() + _canon_value(atv["value"].dump())))
        out += _tlv(0x31, b"".join(sorted(members)))
    return bytes(out)


def name_hash(name: x509.Name | bytes) -> str:
    """OpenSSL's hash of a name (8 lowercase hex digits)."""
    der = name if isinstance(name, (bytes, bytearray)) else name.public_bytes()
    digest = hashlib.sha1(canonical_name_der(bytes(der))).digest()
    return format(int.from_bytes(digest[:4], "little"), "08x")


def subject_hash(cert: x509.Certificate) -> str:
    """``openssl x509 -subject_hash`` of a certificate, from its own subject bytes."""
    tbs = _ax509.Certificate.load(cert.public_bytes(_Encoding.DER))["tbs_certificate"]
    return name_hash(tbs["subject"].dump())

