"""DER templates for the device profile: the constant parts of a TBSCertificate encoded once per CA.

``x509.CertificateBuilder`` rebuilds every object of a certificate for each
device: the issuer name, the algorithm identifiers, the extensions that are
the same for all devices of a CA.  A :class:`DeviceTemplate` encodes those
once; per device it fills in only the serial, the validity, the subject CN,
the SubjectPublicKeyInfo, the SKI and the SANs, has the CA key sign the TBS
(:meth:`Signer.sign_bytes <pki.keys.types.Signer.sign_bytes>`, so a key in a
token signs the same way), and assembles the Certificate DER.  Nothing is
parsed back.

The output is byte-for-byte what :func:`pki.x509.build.build_device_certificate`
makes for the same inputs (tests/test_template.py checks it with hypothesis):
the same extensions in the same order, DER as X.690 section 10 has it, times
as RFC 5280 4.1.2.5 has them.  Extension values that vary per device (the
SAN) are encoded by cryptography itself (``ExtensionType.public_bytes``);
only the length-prefixed framing is written here.  No cryptography is written
here: hashes are hashlib's, signatures the signer's.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..errors import InvalidInput
from .build import _aki, _key_usage
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

__all__ = ["DeviceTemplate", "TemplatedCertificate", "SIGNATURE_ALGORITHMS", "der_to_pem"]

# AlgorithmIdentifier DER per CA key type: RFC 5758 3.2 (ECDSA, parameters absent), RFC 4055 5
# (sha256WithRSAEncryption, parameters NULL), RFC 8410 3 (Ed25519, parameters absent).  The hashes
# are those of pki.keys.types.signature_hash_for, which Signer.sign_bytes uses.
SIGNATURE_ALGORITHMS: dict[str, bytes] = {
    "ec-p256": bytes.fromhex("300a06082a8648ce3d040302"),
    "ec-p384": bytes.fromhex("300a06082a8648ce3d040303"),
    "ec-p521": bytes.fromhex("300a06082a8648ce3d040304"),
    "ed25519": bytes.fromhex("300506032b6570"),
    "rsa": bytes.fromhex("300d06092a864886f70d01010b0500"),
}

_VERSION_V3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2
_CN_PREFIX = bytes.fromhex("0603550403")  # OID 2.5.4.3, commonName
_OID_SAN = bytes.fromhex("0603551d11")
#: Extension { subjectKeyIdentifier, OCTET STRING { OCTET STRING (20 octets of SHA-1) } }.
_SKI_PREFIX = bytes.fromhex("301d0603551d0e04160414")
#: cryptography refuses a longer CN (RFC 5280 ub-common-name, counted in UTF-8 octets); so does the template.
MAX_CN_OCTETS = 64


def _length(n: int) -> bytes:
    """A DER length (X.690 8.1.3): short form below 128, else the minimal long form."""
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:  # the lengths of a certificate's pieces, written without a call: this runs per device
        return bytes((tag, n)) + content
    if n < 0x10000:
        return (bytes((tag, 0x81, n)) if n < 0x100 else bytes((tag, 0x82, n >> 8, n & 0xFF))) + content
    return bytes((tag,)) + _length(n) + content


def _integer(value: int) -> bytes:
    """A positive INTEGER: big-endian, a leading zero octet when the top bit is set (X.690 8.3)."""
    octets = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return bytes((0x02, len(octets))) + octets  # at most 21 octets (159-bit serials)


def _time(value: _dt.datetime) -> bytes:
    """UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5), whole seconds, UTC."""
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(_dt.timezone.utc)
    rest = f"{value.month:02d}{value.day:02d}{value.hour:02d}{value.minute:02d}{value.second:02d}Z"
    if 1950 <= value.year < 2050:
        return b"\x17\x0d" + f"{value.year % 100:02d}{rest}".encode("ascii")
    return b"\x18\x0f" + f"{value.year:04d}{rest}".encode("ascii")


def _extension(oid_der: bytes, value: bytes, *, critical: bool = False) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }."""
    return _tlv(0x30, oid_der + (b"\x01\x01\xff" if critical else b"") + _tlv(0x04, value))


#: The DER of the extension OIDs of the device profile (RFC 5280 4.2.1, 4.2.2.1).
_OID_DER = {
    "2.5.29.19": bytes.fromhex("0603551d13"),  # basicConstraints
    "2.5.29.15": bytes.fromhex("0603551d0f"),  # keyUsage
    "2.5.29.37": bytes.fromhex("0603551d25"),  # extKeyUsage
    "2.5.29.35": bytes.fromhex("0603551d23"),  # authorityKeyIdentifier
    "2.5.29.31": bytes.fromhex("0603551d1f"),  # cRLDistributionPoints
    "1.3.6.1.5.5.7.1.1": bytes.fromhex("06082b06010505070101"),  # authorityInfoAccess
}


def _ext_of(ext: x509.ExtensionType, *, critical: bool = False) -> bytes:
    return _extension(_OID_DER[ext.oid.dotted_string], ext.public_bytes(), critical=critical)


def _spki_key_bits(spki: bytes) -> bytes:
    """The subjectPublicKey BIT STRING's key octets, the input of the SKI (RFC 5280 4.2.1.2 method 1)."""

    def header(at: int) -> tuple[int, int]:  # (content start, content length) of the TLV at ``at``
        first = spki[at + 1]
        if first < 0x80:
            return at + 2, first
        count = first & 0x7F
        return at + 2 + count, int.from_bytes(spki[at + 2: at + 2 + count], "big")

    if spki[:1] != b"\x30":
        raise InvalidInput("public key: its SubjectPublicKeyInfo is not a SEQUENCE", code="invalid_der")
    start, _ = header(0)
    alg_start, alg_len = header(start)
    bits_at = alg_start + alg_len
    if spki[bits_at: bits_at + 1] != b"\x03":
        raise InvalidInput("public key: its SubjectPublicKeyInfo has no BIT STRING", code="invalid_der")
    bits_start, bits_len = header(bits_at)
    return spki[bits_start + 1: bits_start + bits_len]  # past the unused-bits octet


def der_to_pem(der: bytes) -> bytes:
    """PEM of a certificate's DER, as cryptography writes it (64-column base64, RFC 7468)."""
    import base64

    text = base64.b64encode(der)
    lines = [text[i: i + 64] for i in range(0, len(text), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True, slots=True)
class TemplatedCertificate:
    """What issuance needs of a new certificate, without parsing it: its DER and the values put in.

    The times are the certificate's: UTC, whole seconds.
    """

    der: bytes
    serial: int
    not_before: _dt.datetime
    not_after: _dt.datetime

    @property
    def pem(self) -> bytes:
        return der_to_pem(self.der)

    def certificate(self) -> x509.Certificate:
        """The parsed certificate, for callers that want the object (a PKCS#12 bundle, an answer)."""
        return x509.load_der_x509_certificate(self.der)


class DeviceTemplate:
    """The device profile of :func:`~pki.x509.build.build_device_certificate`, for one CA and signer.

    ``issuer`` is the CA certificate; ``signer_key_type`` the CA key's type
    (``ec-p256``, ``rsa-2048``...; the ``key_type`` of a Signer); the URLs
    those of the CRL distribution point and the OCSP responder, or None.
    """

    __slots__ = ("_head_exts", "_aki", "_urls", "_sig_alg", "_issuer", "_validity")

    def __init__(self, *, issuer: x509.Certificate, signer_key_type: str, crl_url: str | None = None,
                 ocsp_url: str | None = None) -> None:
        alg = SIGNATURE_ALGORITHMS.get("rsa" if signer_key_type.startswith("rsa-") else signer_key_type)
        if alg is None:
            raise InvalidInput(f"a CA key of type {signer_key_type} cannot sign here; use EC, RSA or Ed25519",
                               code="unsupported_key_type")
        self._sig_alg = alg
        self._issuer = issuer.subject.public_bytes()
        basic = _ext_of(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        eku = _ext_of(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]))
        # keyEncipherment only for an RSA subject key (build_device_certificate), so two variants.
        self._head_exts = {
            rsa_key: (basic + _ext_of(_key_usage(digital_signature=True, key_encipherment=rsa_key), critical=True)
                      + eku)
            for rsa_key in (False, True)
        }
        self._aki = _ext_of(_aki(issuer))
        urls = b""
        if crl_url:
            urls += _ext_of(x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]))
        if ocsp_url:
            urls += _ext_of(x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]))
        self._urls = urls
        # The last validity asked for, with its DER and its times as the certificate carries them
        # (UTC, whole seconds): a provisioning run, or issuances in the same second, ask for the same.
        self._validity: tuple = (None, None, b"", None, None)

    def _validity_of(self, not_before: _dt.datetime, not_after: _dt.datetime) -> tuple:
        last = self._validity
        if last[0] == not_before and last[1] == not_after:
            return last
        self._validity = (not_before, not_after, _tlv(0x30, _time(not_before) + _time(not_after)),
                          _whole(not_before), _whole(not_after))
        return self._validity

    def tbs(self, *, spki: bytes, client_id: str, serial: int, not_before: _dt.datetime, not_after: _dt.datetime,
            sans: Sequence[x509.GeneralName] = (), rsa_key: bool = False) -> bytes:
        """The TBSCertificate DER for one device; ``spki`` is its SubjectPublicKeyInfo DER."""
        cn = client_id.encode("utf-8")
        if not 1 <= len(cn) <= MAX_CN_OCTETS:
            raise InvalidInput(f"a client id is the certificate's CN: 1 to {MAX_CN_OCTETS} octets of UTF-8",
                               code="invalid_client_id")
        if serial <= 0 or serial.bit_length() > 159:
            raise InvalidInput("a serial number is positive and at most 20 octets (RFC 5280 4.1.2.2)",
                               code="invalid_serial")
        # Name { SET { SEQUENCE { commonName, UTF8String } } }; at most 64 octets, so every length is one octet.
        n = len(cn)
        subject = bytes((0x30, n + 11, 0x31, n + 9, 0x30, n + 7)) + _CN_PREFIX + bytes((0x0C, n)) + cn
        ski = _SKI_PREFIX + hashlib.sha1(_spki_key_bits(spki)).digest()
        san = _extension(_OID_SAN, x509.SubjectAlternativeName(list(sans)).public_bytes()) if sans else b""
        # build_device_certificate's order: BC, KU, EKU, SKI, AKI, SAN, CRL DP, AIA.
        extensions = self._head_exts[rsa_key] + ski + self._aki + san + self._urls
        return _tlv(0x30, b"".join((
            _VERSION_V3, _integer(serial), self._sig_alg, self._issuer,
            self._validity_of(not_before, not_after)[2], subject, spki,
            _tlv(0xA3, _tlv(0x30, extensions)),
        )))

    def assemble(self, tbs: bytes, signature: bytes) -> bytes:
        """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }."""
        return _tlv(0x30, tbs + self._sig_alg + _tlv(0x03, b"\x00" + signature))

    def issue(self, signer, *, public_key, client_id: str, serial: int, not_before: _dt.datetime,
              not_after: _dt.datetime, sans: Sequence[x509.GeneralName] = ()) -> TemplatedCertificate:
        """Fill in, sign with ``signer`` (a :class:`~pki.keys.types.Signer`), assemble."""
        spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        tbs = self.tbs(spki=spki, client_id=client_id, serial=serial, not_before=not_before, not_after=not_after,
                       sans=sans, rsa_key=isinstance(public_key, rsa.RSAPublicKey))
        der = self.assemble(tbs, signer.sign_bytes(tbs))
        validity = self._validity_of(not_before, not_after)
        return TemplatedCertificate(der=der, serial=serial, not_before=validity[3], not_after=validity[4])


def _whole(value: _dt.datetime) -> _dt.datetime:
    """The time as the certificate carries it: UTC, whole seconds (naive means UTC, as for the builder)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return value.astimezone(_dt.timezone.utc).replace(microsecond=0)
