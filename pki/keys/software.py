"""The software keystore: private keys and device secrets sealed under the master key.

A sealed blob is ``version (1 byte, 2) || master key id (8 bytes) || nonce
(12 bytes) || ciphertext+tag``.  The associated data binds each blob to its
version, to the master key that sealed it, to what it holds (a private key or
a secret) and to its key id, so a blob copied onto another row, or a secret
presented as a key, fails to open instead of being used.  The master key id
in clear is what lets a master-key rotation run in batches and resume: each
row says which key opens it.  Version 1 blobs (no master key id) still open.

Python cannot reliably wipe memory (bytes are immutable and copied freely),
so plaintext is kept in as few places and for as short a time as we can,
and never logged, printed or put in an error.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable

from cryptography import x509
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp

from ..errors import ConfigError, InternalError, InvalidInput
from .master import MasterKey
from .types import PrivateKey, PublicKey, generate_private_key, key_type_of, signature_hash_for

__all__ = ["SoftwareKeystore", "SoftwareSigner", "new_key_id"]

_VERSION_1 = 1
_VERSION = 2
_MKID_SIZE = 8
_NONCE_SIZE = 12
_TAG_SIZE = 16
_AAD_HEADER = b"device-pki keystore v1\x00"
_AAD_HEADER_2 = b"device-pki keystore v2\x00"
# Distinct domains: a sealed secret must never open as a key, nor the reverse.
_DOMAIN_PRIVATE_KEY = b"private-key\x00"
_DOMAIN_SECRET = b"secret\x00"


def new_key_id() -> str:
    """A random key id: ``key_`` and 24 hex digits (96 bits)."""
    return "key_" + secrets.token_hex(12)


class SoftwareSigner:
    """A :class:`~pki.keys.types.Signer` over a private key held in memory."""

    __slots__ = ("key_id", "key_type", "_private_key", "_raw_sign")

    def __init__(self, private_key: PrivateKey, *, key_id: str) -> None:
        _check_key_id(key_id)
        self.key_type = key_type_of(private_key)
        self.key_id = key_id
        self._private_key = private_key
        self._raw_sign = _raw_signing(private_key)

    def __repr__(self) -> str:
        return f"<SoftwareSigner key_id={self.key_id!r} key_type={self.key_type!r}>"

    def public_key(self) -> PublicKey:
        return self._private_key.public_key()

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self._private_key, signature_hash_for(self._private_key))

    # The signatures are the Signer protocol's (pki/keys/types.py), which documents them.
    def sign_crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList:
        return builder.sign(self._private_key, signature_hash_for(self._private_key))

    def sign_ocsp_response(self, builder: ocsp.OCSPResponseBuilder, *, responder_cert: x509.Certificate,
                           encoding: ocsp.OCSPResponderEncoding = ocsp.OCSPResponderEncoding.HASH,
                           ) -> ocsp.OCSPResponse:
        # A response naming another key's certificate verifies nowhere;
        # catch the wiring mistake here rather than in every client.
        if responder_cert.public_key() != self.public_key():
            raise InvalidInput(
                f"the OCSP responder certificate does not belong to key {self.key_id}; "
                "pass the certificate issued for this signing key",
                code="responder_key_mismatch",
                key_id=self.key_id,
            )
        builder = builder.responder_id(encoding, responder_cert)
        return builder.sign(self._private_key, signature_hash_for(self._private_key))

    def sign_bytes(self, data: bytes) -> bytes:
        if self._raw_sign is None:
            raise InternalError(f"key {self.key_id} has no signing algorithm", code="key_cannot_sign")
        return self._raw_sign(data)


def _raw_signing(key):
    """``sign(data)`` with the key's natural algorithm, chosen once: templated issuance calls it per device."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = ec.ECDSA(signature_hash_for(key))
        return lambda data: key.sign(data, algorithm)
    if isinstance(key, rsa.RSAPrivateKey):
        pad, digest = padding.PKCS1v15(), hashes.SHA256()
        return lambda data: key.sign(data, pad, digest)
    return None


class SoftwareKeystore:
    """Seals and opens private keys and secrets under one :class:`MasterKey`.

    Holds no keys itself: each opened key lives only in the signer made for
    it, so dropping the signer drops the key.
    """

    __slots__ = ("_aead", "_mkid", "_keys", "_resolve")

    def __init__(self, master_key: MasterKey, *, others: Iterable[MasterKey] = (),
                 resolve: Callable[[str], MasterKey | None] | None = None) -> None:
        """Seal under ``master_key``; open blobs sealed under it or any of ``others``.

        ``resolve(master_key_id)`` may find a key this process was not given
        (a rotation in progress elsewhere moved the row to the new key).
        """
        if not isinstance(master_key, MasterKey):
            raise TypeError("master_key must be a MasterKey")
        self._aead = master_key._aead
        self._mkid = bytes.fromhex(master_key.key_id)
        self._keys = {self._mkid: master_key._aead}
        for other in others:
            if not isinstance(other, MasterKey):
                raise TypeError("others must be MasterKeys")
            self._keys.setdefault(bytes.fromhex(other.key_id), other._aead)
        self._resolve = resolve

    def __repr__(self) -> str:
        return f"<SoftwareKeystore sealing under {self._mkid.hex()}>"

    @property
    def master_key_id(self) -> str:
        """The id of the master key new blobs are sealed under."""
        return self._mkid.hex()

    @staticmethod
    def sealed_by(blob: bytes) -> str | None:
        """The id of the master key that sealed ``blob``; None for a version 1 blob (no id in it)."""
        blob = bytes(blob)
        if len(blob) > 1 + _MKID_SIZE and blob[0] == _VERSION:
            return blob[1 : 1 + _MKID_SIZE].hex()
        return None

    def reseal_private_key(self, blob: bytes, *, key_id: str) -> bytes:
        """The same private key, sealed under this keystore's master key (for a rotation)."""
        return self._seal(self._open(blob, domain=_DOMAIN_PRIVATE_KEY, key_id=key_id),
                          domain=_DOMAIN_PRIVATE_KEY, key_id=key_id)

    def reseal_secret(self, blob: bytes, *, key_id: str) -> bytes:
        """The same secret, sealed under this keystore's master key (for a rotation)."""
        return self._seal(self._open(blob, domain=_DOMAIN_SECRET, key_id=key_id), domain=_DOMAIN_SECRET,
                          key_id=key_id)

    # -- private keys ---------------------------------------------------------

    def seal_private_key(self, private_key: PrivateKey, *, key_id: str) -> bytes:
        key_type_of(private_key)  # refuse DSA, Ed448, odd curves before storing them
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return self._seal(der, domain=_DOMAIN_PRIVATE_KEY, key_id=key_id)

    def open_private_key(self, blob: bytes, *, key_id: str) -> PrivateKey:
        der = self._open(blob, domain=_DOMAIN_PRIVATE_KEY, key_id=key_id)
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # Authentic but unparseable: we sealed something wrong, a bug.
            raise InternalError(
                f"stored key {key_id} decrypted but is not a private key; report this as a bug",
                code="key_corrupt",
                key_id=key_id,
            ) from None
        key_type_of(key)
        return key

    def signer(self, blob: bytes, *, key_id: str) -> SoftwareSigner:
        return SoftwareSigner(self.open_private_key(blob, key_id=key_id), key_id=key_id)

    def new_key(self, key_type: str, *, key_id: str) -> tuple[SoftwareSigner, bytes]:
        """Generate a key of ``key_type``; return its signer and sealed blob to store."""
        _check_key_id(key_id)
        private_key = generate_private_key(key_type)
        blob = self.seal_private_key(private_key, key_id=key_id)
        return SoftwareSigner(private_key, key_id=key_id), blob

    # -- device secrets -------------------------------------------------------

    def seal_secret(self, secret: bytes, *, key_id: str) -> bytes:
        if not isinstance(secret, (bytes, bytearray, memoryview)):
            raise TypeError("secret must be bytes; encode text secrets first")
        return self._seal(secret, domain=_DOMAIN_SECRET, key_id=key_id)

    def open_secret(self, blob: bytes, *, key_id: str) -> bytes:
        return self._open(blob, domain=_DOMAIN_SECRET, key_id=key_id)

    # -- the envelope ---------------------------------------------------------

    def _seal(self, plaintext, *, domain: bytes, key_id: str) -> bytes:
        header = bytes([_VERSION]) + self._mkid
        aad = _AAD_HEADER_2 + header + domain + _check_key_id(key_id)
        # Random 96-bit nonces are safe far beyond the number of keys and
        # secrets one master key will ever seal (NIST SP 800-38D: 2**32).
        nonce = os.urandom(_NONCE_SIZE)
        return header + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def _open(self, blob: bytes, *, domain: bytes, key_id: str) -> bytes:
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TypeError("blob must be bytes")
        blob = bytes(blob)  # database drivers may hand back memoryview
        if len(blob) >= 1 + _MKID_SIZE + _NONCE_SIZE + _TAG_SIZE and blob[0] == _VERSION:
            header, body = blob[: 1 + _MKID_SIZE], blob[1 + _MKID_SIZE :]
            aead = self._key_for(header[1:], key_id)
            candidates = [(aead, _AAD_HEADER_2 + header + domain + _check_key_id(key_id))]
        elif len(blob) >= 1 + _NONCE_SIZE + _TAG_SIZE and blob[0] == _VERSION_1:
            # No master key id in a version 1 blob: any key we hold may have sealed it.
            body = blob[1:]
            candidates = [(aead, _aad(domain, key_id)) for aead in self._keys.values()]
        else:
            raise _unseal_failed(key_id)
        nonce, sealed = body[:_NONCE_SIZE], body[_NONCE_SIZE:]
        for aead, aad in candidates:
            try:
                return aead.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
        raise _unseal_failed(key_id)

    def _key_for(self, mkid: bytes, key_id: str):
        aead = self._keys.get(mkid)
        if aead is None and self._resolve is not None:
            found = self._resolve(mkid.hex())
            if found is not None and found.key_id == mkid.hex():
                aead = self._keys[mkid] = found._aead
        if aead is None:
            # The same code as any other failure to open (see _unseal_failed); the id is in clear in
            # the blob anyway, and naming it tells the operator which key file is missing.
            raise ConfigError(
                f"cannot unseal stored key {key_id}: it is sealed under master key {mkid.hex()}, which this "
                "process does not hold; point PKI_MASTER_KEY_FILE at that key's file (a master-key rotation "
                "may have moved it), or the stored data was altered",
                code="key_unseal_failed", key_id=key_id, master_key_id=mkid.hex(),
            )
        return aead


def _check_key_id(key_id: str) -> bytes:
    if not isinstance(key_id, str):
        raise TypeError("key_id must be a str")
    if not key_id:
        raise ValueError("key_id must not be empty")
    try:
        return key_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("key_id must be valid Unicode text") from None


def _aad(domain: bytes, key_id: str) -> bytes:
    return _AAD_HEADER + domain + _check_key_id(key_id)


def _unseal_failed(key_id: str) -> ConfigError:
    # Same error for every cause: telling a tampered blob from a wrong key
    # would help nobody but someone probing the store.
    return ConfigError(
        f"cannot unseal stored key {key_id}: the master key file may not match this store "
        "(check PKI_MASTER_KEY_FILE), or the stored data was altered",
        code="key_unseal_failed",
        key_id=key_id,
    )
