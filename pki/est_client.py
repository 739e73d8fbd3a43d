"""The device side of EST (RFC 7030): cacerts, simpleenroll, simplereenroll, and a safe swap of the files.

For Linux gateways (and the tests).  A device's pair is ``<name>.crt.pem``
and ``<name>.key.pem`` in one directory.  A renewal never leaves the device
without a valid pair:

1. the new key (rekey only) and the new certificate are written as
   ``<name>.key.pem.new`` and ``<name>.crt.pem.new``, synced;
2. the new certificate is checked: issued by one of the EST CA certificates
   (``cacerts``, also written as ``ca.pem``), valid now, for the key it pairs
   with, with clientAuth;
3. only then are they renamed into place (the key first, then the
   certificate), and the old pair kept as ``*.old``.

Killed before 3, the old pair is untouched.  Killed between the two renames
of a rekey (microseconds), the next run of :func:`recover` finishes the swap
from the ``.new`` file left, after checking the pair matches.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .durable import fsync_dir, write_new
from .errors import InvalidInput, InvalidState, PermissionDenied, ServerUnreachable, StoreError
from .ids import format_serial

__all__ = ["EstClient", "Pair", "recover", "verify_issued", "PAUSE_ENV"]

#: Test hook: seconds to sleep between writing the .new files and the swap (the kill test uses it).
PAUSE_ENV = "PKI_EST_PAUSE_BEFORE_SWAP"
_MAX_ANSWER = 256 * 1024


@dataclass(frozen=True)
class Pair:
    directory: Path
    name: str

    @property
    def cert(self) -> Path:
        return self.directory / f"{self.name}.crt.pem"

    @property
    def key(self) -> Path:
        return self.directory / f"{self.name}.key.pem"

    def new(self, path: Path) -> Path:
        return path.with_name(path.name + ".new")

    def old(self, path: Path) -> Path:
        return path.with_name(path.name + ".old")


def _est_base(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidInput(f"EST URL {url!r} must be https://HOST:PORT[/label]", code="invalid_request")
    label = parts.path.strip("/")
    if label.startswith(".well-known/est"):
        label = label[len(".well-known/est"):].strip("/")
    return f"{parts.scheme}://{parts.netloc}/.well-known/est" + (f"/{label}" if label else "")


def _certs_from_pkcs7(body: bytes) -> list[x509.Certificate]:
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
        return pkcs7.load_der_pkcs7_certificates(der)
    except (binascii.Error, ValueError):
        raise StoreError("the EST server's answer is not a base64 certs-only PKCS#7",
                         code="bad_server_response") from None


def verify_issued(cert: x509.Certificate, *, cas: list[x509.Certificate], key, now: _dt.datetime) -> None:
    """The checks before a swap: issued by one of ``cas``, valid now, for ``key``'s public key, clientAuth."""
    issuers = [ca for ca in cas if ca.subject == cert.issuer]
    for ca in issuers:
        try:
            cert.verify_directly_issued_by(ca)
            break
        except (InvalidSignature, ValueError, TypeError):  # not this issuer's signature, or not its key type
            continue
    else:
        raise InvalidState("the new certificate is not issued by the EST CA; keeping the old pair",
                           code="est_verify_failed")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise InvalidState("the new certificate is not valid now; keeping the old pair", code="est_verify_failed")
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo) != public:
        raise InvalidState("the new certificate is not for this device's key; keeping the old pair",
                           code="est_verify_failed")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise InvalidState("the new certificate lacks clientAuth; keeping the old pair", code="est_verify_failed")


def _matches(cert_path: Path, key_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def recover(pair: Pair) -> None:
    """Finish a swap a kill interrupted between its two renames; drop .new files that never verified."""
    new_cert, new_key = pair.new(pair.cert), pair.new(pair.key)
    if new_cert.exists() and pair.key.exists() and not _matches(pair.cert, pair.key) \
            and _matches(new_cert, pair.key):
        os.replace(new_cert, pair.cert)  # the key went in, the certificate did not: finish
        fsync_dir(pair.directory)
    for leftover in (new_cert, new_key):
        if leftover.exists():
            leftover.unlink()


class EstClient:
    def __init__(self, url: str, *, ca_bundle: str | None = None, cert: str | None = None, key: str | None = None,
                 timeout: float = 30.0) -> None:
        self.base = _est_base(url)
        context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
        if cert:
            context.load_cert_chain(cert, key)
        self.http = httpx.Client(verify=context, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, op: str, **kw) -> bytes:
        try:
            response = self.http.request(method, f"{self.base}/{op}", **kw)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"no answer from {self.base} ({type(exc).__name__}: {exc})") from None
        if response.status_code >= 400:
            text = response.text.strip()[:500] or f"HTTP {response.status_code}"
            raise PermissionDenied(f"the EST server refused {op} (HTTP {response.status_code}): {text}",
                                   code="est_refused", status=response.status_code)
        if len(response.content) > _MAX_ANSWER:
            raise StoreError("the EST server's answer is too large", code="bad_server_response")
        return response.content

    def cacerts(self) -> list[x509.Certificate]:
        return _certs_from_pkcs7(self._call("GET", "cacerts"))

    def _enroll(self, op: str, csr: x509.CertificateSigningRequest, auth=None) -> x509.Certificate:
        body = base64.encodebytes(csr.public_bytes(serialization.Encoding.DER))
        certs = _certs_from_pkcs7(self._call("POST", op, content=body, auth=auth,
                                             headers={"Content-Type": "application/pkcs10"}))
        if not certs:
            raise StoreError("the EST server answered no certificate", code="bad_server_response")
        return certs[0]

    def simpleenroll(self, csr, *, claim: tuple[str, str] | None = None) -> x509.Certificate:
        return self._enroll("simpleenroll", csr, auth=httpx.BasicAuth(*claim) if claim else None)

    def simplereenroll(self, csr) -> x509.Certificate:
        return self._enroll("simplereenroll", csr)


def make_csr(key, *, subject: x509.Name, sans: list[x509.GeneralName] | None = None):
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    from .x509.build import hash_for_key

    return builder.sign(key, hash_for_key(key))


def cn_name(client_id: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, client_id)])


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def install(pair: Pair, cert: x509.Certificate, *, new_key=None, cas: list[x509.Certificate]) -> dict:
    """Steps 1-3 of the module docstring; ``new_key`` None keeps the current key (a renewal)."""
    pair.directory.mkdir(parents=True, exist_ok=True)
    key = new_key if new_key is not None else serialization.load_pem_private_key(pair.key.read_bytes(), None)
    verify_issued(cert, cas=cas, key=key, now=_dt.datetime.now(_dt.timezone.utc))
    recover(pair)
    new_cert, new_key_path = pair.new(pair.cert), pair.new(pair.key)
    if new_key is not None:
        write_new(new_key_path, _key_pem(new_key), 0o600, sync=True)
    write_new(new_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644, sync=True)
    fsync_dir(pair.directory)
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        time.sleep(float(pause))
    for path in (pair.cert, pair.key):
        if path.exists():
            old = pair.old(path)
            if old.exists():
                old.unlink()
            os.link(path, old)
    if new_key is not None:
        os.replace(new_key_path, pair.key)
    os.replace(new_cert, pair.cert)
    fsync_dir(pair.directory)
    return {"certificate": str(pair.cert), "key": str(pair.key), "sn": format_serial(cert.serial_number),
            "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
            "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(), "rekeyed": new_key is not None}


def write_cas(directory: Path, cas: list[x509.Certificate]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ca.pem"
    tmp = directory / "ca.pem.new"
    if tmp.exists():
        tmp.unlink()
    write_new(tmp, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in cas), 0o644, sync=True)
    os.replace(tmp, path)
    return path
