"""What credentials.py and groups.py share: sealing a new secret, and auditing a read of one.

Kept apart so that groups.py (which seals group keys and audits derivations)
and credentials.py (whose activate/deactivate reach group members through
groups.py) need not import each other.
"""

from __future__ import annotations

import logging

from .. import audit
from ..context import Context

log = logging.getLogger("pki.secrets")


def seal(ctx: Context, raw: bytes, access_key_id: str) -> bytes:
    """AES-256-GCM under the master key, with the access key id as associated data."""
    return ctx.keystore.seal_secret(raw, key_id=access_key_id)


def audit_read(ctx: Context, operation: str, client_id: str, **details) -> None:
    """Reading a secret changes nothing, but who saw one belongs on the audit log."""
    with ctx.store.transaction() as session:
        audit.record_change(session, ctx, operation, subject=client_id, **details)
