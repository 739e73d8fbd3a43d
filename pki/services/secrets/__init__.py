"""Device secrets: one device, one secret; enrollment groups; the broker's password check.

Two parts:

- *The formulas* (pure, no store; formulas.py): :func:`password_for`,
  :func:`sas_token`, :func:`derive_secret`, :func:`check_password`.  A
  device, a factory line or a test can compute what the broker will accept
  with nothing but these.
- *The service*: register, show, refresh, unregister, activate, deactivate,
  list (credentials.py); enrollment groups (groups.py); and :func:`verify`,
  the check a broker calls (verify.py).  The shapes they return are in
  public.py.

Secrets never touch the store in clear: each is sealed by the keystore
(AES-256-GCM under the master key) with its access key id as associated
data.  Nothing here logs, prints or puts a secret or a password into an
error; a refused check tells its caller only "refused", and the reason goes
to the ``pki.secrets`` logger.

The check is on the broker's connect path, so it must be cheap: see
:func:`verify` for what is cached and what is read on every check.
"""

from __future__ import annotations

from .credentials import (
    DEFAULT_GRACE,
    MAX_GRACE,
    activate_secret,
    deactivate_secret,
    list_secrets,
    refresh_secret,
    register_secret,
    show_secret,
    unregister_secret,
)
from .formulas import (
    DEFAULT_CLOCK_SKEW,
    SAS_PREFIX,
    SECRET_BYTES,
    USERNAME_PREFIX,
    check_password,
    derive_secret,
    hmac_sha256,
    new_secret,
    password_for,
    sas_token,
    username_for,
)
from .groups import create_group, derive_member_secret, disable_group, enable_group, list_groups, show_group
from .public import GroupPublic, MemberPublic, SecretPublic
from .verify import MAX_CLOCK_SKEW, authenticate, verify

__all__ = [
    # the formulas
    "USERNAME_PREFIX",
    "SAS_PREFIX",
    "SECRET_BYTES",
    "new_secret",
    "username_for",
    "password_for",
    "sas_token",
    "derive_secret",
    "hmac_sha256",
    "check_password",
    # the service
    "DEFAULT_GRACE",
    "MAX_GRACE",
    "DEFAULT_CLOCK_SKEW",
    "MAX_CLOCK_SKEW",
    "SecretPublic",
    "GroupPublic",
    "MemberPublic",
    "register_secret",
    "show_secret",
    "refresh_secret",
    "unregister_secret",
    "activate_secret",
    "deactivate_secret",
    "list_secrets",
    "create_group",
    "show_group",
    "list_groups",
    "enable_group",
    "disable_group",
    "derive_member_secret",
    "verify",
    "authenticate",
]
