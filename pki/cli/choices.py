"""The fixed value lists click offers as choices, without importing what defines them.

pki.keys and pki.x509 import cryptography, which a command's start-up should not pay for just to
build its --help (pki/cli/main.py LAZY_COMMANDS).  tests/test_cli_startup.py checks these against
pki.keys.KEY_TYPES, pki.x509.crl.REVOCATION_REASONS and pki.store.DeviceStatus.
"""

KEY_TYPES = ("ec-p256", "ec-p384", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096")
REVOCATION_REASONS = ("unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
                      "cessationOfOperation", "privilegeWithdrawn", "aACompromise")
DEVICE_STATUSES = ("ACTIVE", "INACTIVE", "REVOKED")
