"""Token signing keys: one CURRENT key per instance signs; the keys it replaced verify until the last
token they signed has expired, then they retire and leave the published key set.

A key's private half is sealed in custody like every other key here (``SoftwareKeystore.new_key``,
stored as a ``custody_key`` row, its key id the JWT ``kid``); its public JWK is stored beside it, so
that :func:`jwks` never opens a sealed key.  The first token an instance applies makes its first key
(ES256) when it has none.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from joserfc.jwk import ECKey, OKPKey, RSAKey

from ...errors import InvalidInput
from ...keys import new_key_id
from ...store import TokenKeyStatus
from ...store import token_repos as repos
from .. import audit
from ..context import Context
from ..dataplane.common import Public, log
from ..schemas import Page, UtcTime
from . import state as token_state
from .state import ALGORITHMS

__all__ = ["DEFAULT_ALGORITHM", "KeyPublic", "rotate", "list_keys", "jwks", "signing_key", "ensure_current"]

DEFAULT_ALGORITHM = "ES256"
_PRIVATE_CLASSES = {"ES256": ECKey, "EdDSA": OKPKey, "RS256": RSAKey}


class KeyPublic(Public):
    kid: str
    alg: str
    #: CURRENT (signs), PREVIOUS (verifies until ``verify_until``) or RETIRED.
    status: str
    instance: str
    created_at: UtcTime
    superseded_at: UtcTime | None
    verify_until: UtcTime | None
    public_jwk: dict[str, Any]


def _algorithm(alg: str | None) -> str:
    alg = alg or DEFAULT_ALGORITHM
    if alg not in ALGORITHMS:
        raise InvalidInput(f"the algorithm {str(alg)[:20]!r} is not one of {', '.join(ALGORITHMS)}",
                           code="invalid_token_algorithm", field="alg")
    return alg


def _new_key(ctx: Context, conn, alg: str, *, now) -> str:
    kid = new_key_id()
    signer, sealed = ctx.keystore.new_key(ALGORITHMS[alg], key_id=kid)
    jwk = _PRIVATE_CLASSES[alg].import_key(signer.public_key()).as_dict(private=False)
    jwk.update(kid=kid, alg=alg, use="sig")
    repos.insert_key(conn, instance=ctx.instance, kid=kid, key_type=ALGORITHMS[alg], sealed=sealed, alg=alg,
                     public_jwk=json.dumps(jwk, sort_keys=True), now=now)
    return kid


def _retire_done(ctx: Context, conn, *, now) -> None:
    """PREVIOUS keys whose last token has expired become RETIRED (for good)."""
    latest = repos.last_expiry(conn, instance=ctx.instance)
    for row in repos.keys_of(conn, instance=ctx.instance):
        if row.status == TokenKeyStatus.PREVIOUS and (latest.get(row.kid) is None or latest[row.kid] <= now):
            repos.set_key_status(conn, instance=ctx.instance, kid=row.kid, status=TokenKeyStatus.RETIRED,
                                 retired_at=now)


def ensure_current(ctx: Context, conn, *, now):
    """The CURRENT key's (kid, alg, sealed), made first if the instance has none.

    The revision row is moved first: it locks, so two processes making a first key wait for each other
    and the second finds the first's key.
    """
    found = repos.current_key(conn, instance=ctx.instance)
    if found is not None:
        return found
    repos.bump_revision(conn, ctx.instance)
    found = repos.current_key(conn, instance=ctx.instance)
    if found is None:
        _new_key(ctx, conn, DEFAULT_ALGORITHM, now=now)
        found = repos.current_key(conn, instance=ctx.instance)
    return found


def signing_key(ctx: Context, *, kid: str, alg: str, sealed: bytes):
    """The joserfc private key of ``kid``, opened from custody once per Context (a key never changes)."""
    return ctx.memo(("tokens", "signing_key", kid),
                    lambda: _PRIVATE_CLASSES[alg].import_key(ctx.keystore.open_private_key(sealed, key_id=kid)))


def rotate(ctx: Context, *, alg: str | None = None) -> KeyPublic:
    """A new CURRENT key; the one it replaces becomes PREVIOUS (it verifies what it signed until that expires)."""
    alg = _algorithm(alg)
    now = ctx.clock.now()
    with ctx.store.core_transaction() as conn:
        repos.bump_revision(conn, ctx.instance)  # serialises rotations (see ensure_current)
        old = repos.current_key(conn, instance=ctx.instance)
        if old is not None:
            repos.set_key_status(conn, instance=ctx.instance, kid=old.kid, status=TokenKeyStatus.PREVIOUS,
                                 superseded_at=now)
        _retire_done(ctx, conn, now=now)
        kid = _new_key(ctx, conn, alg, now=now)
        audit.record_change(conn, ctx, "token.key.rotate", subject=kid, alg=alg,
                            previous=old.kid if old is not None else None)
    log.info("token signing key rotated: instance=%s kid=%s alg=%s", ctx.instance, kid, alg)
    return next(k for k in list_keys(ctx).items if k.kid == kid)


def list_keys(ctx: Context) -> Page:
    """Every key of the instance, newest first, with its state now (a page of one: keys are few)."""
    now = ctx.clock.now()
    with ctx.store.core_transaction(readonly=True) as conn:
        rows = repos.keys_of(conn, instance=ctx.instance)
        latest = repos.last_expiry(conn, instance=ctx.instance)
    items = []
    for row in reversed(rows):
        until = None if row.status == TokenKeyStatus.CURRENT else latest.get(row.kid)
        status = row.status
        if status == TokenKeyStatus.PREVIOUS and (until is None or until <= now):
            status = TokenKeyStatus.RETIRED
        items.append(KeyPublic(kid=row.kid, alg=row.alg, status=status, instance=row.instance,
                               created_at=row.created_at, superseded_at=row.superseded_at,
                               verify_until=until if status == TokenKeyStatus.PREVIOUS else None,
                               public_jwk=json.loads(row.public_jwk)))
    return Page(items=items, next_cursor=None)


def jwks(ctx: Context) -> tuple[bytes, str]:
    """The published key set (RFC 7517 section 5): the CURRENT key and the PREVIOUS ones still verifying;
    with its ETag (a digest of the body, so every process of a deployment answers the same one)."""
    current = token_state.state(ctx)
    now = ctx.clock.now()
    keys = [entry.jwk for entry in current.keys.values() if entry.verifies_at(now)]
    body = json.dumps({"keys": keys}, sort_keys=True, separators=(",", ":")).encode()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
