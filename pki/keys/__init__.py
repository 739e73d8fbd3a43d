"""Key custody: private keys and device secrets, sealed at rest, behind ``Signer``.

This package must not import ``pki.store``, ``pki.x509``, ``pki.services`` or
any front end: services read blobs from the store and hand them here.
"""

from __future__ import annotations

from .custody import CUSTODIES, KeyCustody, KeyHandle, SignerSpec, SoftwareCustody
from .master import MASTER_KEY_SIZE, MasterKey, create_master_key_file, load_master_key
from .pkcs11 import DEFAULT_PIN_ENV, Pkcs11Custody, Pkcs11Location
from .software import SoftwareKeystore, SoftwareSigner, new_key_id
from .types import (
    KEY_TYPES,
    PrivateKey,
    PublicKey,
    Signer,
    generate_private_key,
    key_type_of,
    signature_hash_for,
)

__all__ = [
    "CUSTODIES",
    "DEFAULT_PIN_ENV",
    "KeyCustody",
    "KeyHandle",
    "Pkcs11Custody",
    "Pkcs11Location",
    "SignerSpec",
    "SoftwareCustody",
    "KEY_TYPES",
    "MASTER_KEY_SIZE",
    "MasterKey",
    "PrivateKey",
    "PublicKey",
    "Signer",
    "SoftwareKeystore",
    "SoftwareSigner",
    "create_master_key_file",
    "generate_private_key",
    "key_type_of",
    "load_master_key",
    "new_key_id",
    "signature_hash_for",
]
