"""Pure X.509 logic: bytes in, objects out, the time passed in.

Never imports the store, key custody or a front end.
"""

from cryptography.hazmat.primitives.serialization import Encoding as _Encoding

from . import build
from .build import (
    build_ca_certificate,
    build_device_certificate,
    build_verification_certificate,
    hash_for_key,
    random_serial,
)
from .checks import (
    check_ca_certificate,
    check_chain,
    check_public_key,
    check_serial,
    check_signature_algorithm,
    check_validity,
    check_verification_certificate,
)
from .facts import (
    CertificateFacts,
    common_names,
    facts_of,
    fingerprint_sha256,
    fingerprint_sha256_der,
    public_key_type,
    spki_sha256,
)
from .parse import MAX_BUNDLE_ITEMS, MAX_ITEM_BYTES, load_certificate, load_certificates, load_csr, load_private_key

#: PEM output encoding, so callers need not import cryptography for it.
PEM = _Encoding.PEM
DER = _Encoding.DER

__all__ = [
    "PEM",
    "DER",
    "build",
    "MAX_BUNDLE_ITEMS",
    "MAX_ITEM_BYTES",
    "CertificateFacts",
    "build_ca_certificate",
    "build_device_certificate",
    "build_verification_certificate",
    "check_ca_certificate",
    "check_chain",
    "check_public_key",
    "check_serial",
    "check_signature_algorithm",
    "check_validity",
    "check_verification_certificate",
    "common_names",
    "facts_of",
    "fingerprint_sha256",
    "fingerprint_sha256_der",
    "hash_for_key",
    "load_certificate",
    "load_certificates",
    "load_csr",
    "load_private_key",
    "public_key_type",
    "random_serial",
    "spki_sha256",
]

# -- CRLs, OCSP and OpenSSL subject-hash names (broker artifacts) --------------------
from . import crl, names, ocsp  # noqa: E402
from .crl import MAX_CRL_NUMBER, RevokedEntry, build_crl, check_crl, load_crl  # noqa: E402
from .names import name_hash, subject_hash  # noqa: E402

__all__ += [
    "crl", "names", "ocsp", "RevokedEntry", "MAX_CRL_NUMBER", "build_crl", "check_crl", "load_crl", "name_hash", "subject_hash",
]

# -- device certificates: SANs as typed, leaves issued elsewhere, key files ----------
from . import bundles, leaf, sans  # noqa: E402
from .bundles import pkcs12_bundle, private_key_pem  # noqa: E402
from .leaf import check_device_certificate, directly_issued_by, verify_device_chain  # noqa: E402
from .sans import parse_sans  # noqa: E402

__all__ += [
    "bundles", "leaf", "sans", "check_device_certificate", "directly_issued_by", "verify_device_chain", "parse_sans",
    "pkcs12_bundle", "private_key_pem",
]
