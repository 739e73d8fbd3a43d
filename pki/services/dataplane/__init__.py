"""The broker data plane's management side: identities, permission rules and the instance's default, the
connect blocklist, hook tokens (one module each), and the checks the broker hooks call.

Each public function is one transaction, audited (:func:`pki.services.audit.record_change`) when it
changes something.  Every change also moves the instance's data-plane revision, in the same transaction,
so that the checks' caches (common.py) are dropped at the next check, in every process.
"""

from . import blocklist, hook_tokens, identities, permissions

__all__ = ["identities", "permissions", "blocklist", "hook_tokens"]
