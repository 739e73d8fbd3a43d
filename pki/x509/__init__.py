"""Pure X.509 logic: bytes in, objects out, the time passed in.

Never imports the store, key custody or a front end.
"""

from .build import build_verification_certificate, hash_for_key, random_serial
from .checks import (
    check_ca_certificate,
    check_chain,
    check_public_key,
    check_serial,
    check_signature_algorithm,
    check_validity,
    check_verification_certificate,
)
from .facts import CertificateFacts, common_names, facts_of, fingerprint_sha256, public_key_type, spki_sha256
from .parse import MAX_BUNDLE_ITEMS, MAX_ITEM_BYTES, load_certificate, load_certificates, load_csr, load_private_key

__all__ = [
    "MAX_BUNDLE_ITEMS",
    "MAX_ITEM_BYTES",
    "CertificateFacts",
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
    "hash_for_key",
    "load_certificate",
    "load_certificates",
    "load_csr",
    "load_private_key",
    "public_key_type",
    "random_serial",
    "spki_sha256",
]
