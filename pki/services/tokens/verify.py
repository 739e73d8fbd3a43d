"""The broker hooks' token checks: a token as a client's password (:func:`authenticate`), and its ``acl``
applied to the client's publishes and subscriptions (:func:`authorize`).

Verification is joserfc's (``jws.extract_compact`` and ``jws.validate_compact``), under a registry that
knows only the key's own algorithm: the ``kid`` must name a key of this instance that still verifies,
and the header's ``alg`` must be that key's.  ``none``, any HMAC and any other algorithm are refused
before a signature is looked at.  The claims are checked against the Context's clock: ``exp`` and
``nbf`` (no leeway: the tokens are made here, on this clock), ``iss``, ``jti`` not revoked, and
``clientid`` (and ``username``, when the token names one) equal to the connecting client's.

Why authorization looks the grants up by client id: a broker's authorization call carries the client
id and username, never the password, so the token a client connected with is not in it.  Remembering
it per connection in process memory would break as soon as ``pki serve`` runs more than one process
(the authorization call may reach another one) or restarts.  So :func:`authorize` reads the client id's
valid tokens (ACTIVE, unexpired, and naming this username if they name one) from the store, cached per
token revision: their ``acl`` decides, and a client id that has such a token is held to it (a request
no rule allows is denied, not passed on to the permission rules).  A client id with two valid tokens
gets what either allows: both were applied for it.  EMQX 5.8 and later also get the connecting token's
own ``acl`` in the authentication answer and enforce it per connection before any authorizer.

A password the checks have verified once is remembered (its digest, with its claims) so a reconnect or
a second broker node does not pay for the signature again; revocation, expiry and the key's state are
still checked at every call.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import threading
from typing import Any, NamedTuple

from joserfc import jws
from joserfc.errors import JoseError

from ...dataplane import token_acl
from ...store import token_repos as repos
from ..context import Context
from . import state as token_state
from .issue import issuer

__all__ = ["Verdict", "looks_like_jwt", "authenticate", "authorize", "MAX_TOKEN_CHARS"]

#: Longest password taken for a token: a token made here is well under it (pki/dataplane/token_acl.py
#: bounds its topics); anything longer is refused before it is decoded.
MAX_TOKEN_CHARS = 16_384
_MAX_VERIFIED = 50_000
_REGISTRIES = {alg: jws.construct_registry([alg]) for alg in token_state.ALGORITHMS}


class Verdict(NamedTuple):
    result: str
    superuser: bool
    reason: str
    acl: list | None = None
    expire_at: int | None = None


def _deny(reason: str) -> Verdict:
    return Verdict("deny", False, reason)


def looks_like_jwt(password: str | None) -> bool:
    """A JWS compact serialization's shape: three dot-separated parts, a JSON header (base64url ``{"``)."""
    return isinstance(password, str) and password.startswith("eyJ") and password.count(".") == 2


class _Verified:
    """Digest of a verified token -> (kid, claims), bounded; shared by the threads of a process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[bytes, tuple[str, dict]] = {}

    def get(self, digest: bytes):
        return self.values.get(digest)

    def put(self, digest: bytes, value) -> None:
        with self.lock:
            if len(self.values) >= _MAX_VERIFIED:
                self.values.clear()
            self.values[digest] = value


def _signature(ctx: Context, token: str, state: token_state.State) -> tuple[str, dict] | str:
    """(kid, claims) of a token whose signature verifies under a key of ``state``; else the refusal reason."""
    try:
        obj = jws.extract_compact(token.encode("ascii"))
    except (JoseError, ValueError, TypeError, UnicodeError):
        return "token_malformed"
    header = obj.headers()
    kid, alg = header.get("kid"), header.get("alg")
    entry = state.keys.get(kid) if isinstance(kid, str) else None
    if entry is None:
        return "token_unknown_kid"
    if alg != entry.alg:
        return "token_wrong_algorithm"
    try:
        if not jws.validate_compact(obj, entry.key, registry=_REGISTRIES[entry.alg]):
            return "token_bad_signature"
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, TypeError):
        return "token_bad_signature"
    if not isinstance(claims, dict):
        return "token_malformed"
    return kid, claims


def _int(value) -> int | None:
    return value if type(value) is int else None


def authenticate(ctx: Context, *, token: str, client_id: str | None, username: str | None) -> Verdict:
    """Whether ``token`` lets ``client_id`` (with ``username``) connect now: allow or deny, never ignore."""
    if len(token) > MAX_TOKEN_CHARS:
        return _deny("token_oversized")
    state = token_state.state(ctx)
    verified: _Verified = ctx.memo(("tokens", "verified"), _Verified)
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    found = verified.get(digest)
    if found is None or found[0] not in state.keys:
        found = _signature(ctx, token, state)
        if isinstance(found, str):
            return _deny(found)
        verified.put(digest, found)
    kid, claims = found
    now = ctx.clock.now()
    if not state.keys[kid].verifies_at(now):
        return _deny("token_key_retired")
    stamp = int(now.timestamp())
    exp, nbf = _int(claims.get("exp")), _int(claims.get("nbf"))
    if exp is None or nbf is None or _int(claims.get("iat")) is None or not isinstance(claims.get("jti"), str):
        return _deny("token_claims_missing")
    if stamp >= exp:
        return _deny("token_expired")
    if stamp < nbf:
        return _deny("token_not_yet_valid")
    if claims.get("iss") != issuer(ctx):
        return _deny("token_wrong_issuer")
    if claims["jti"] in state.revoked:
        return _deny("token_revoked")
    if not client_id or claims.get("clientid") != client_id:
        return _deny("token_client_id_mismatch")
    if "username" in claims and claims["username"] != username:
        return _deny("token_username_mismatch")
    superuser = claims.get("is_superuser") is True
    return Verdict("allow", superuser, "token", claims.get("acl"), exp)


class _Grant(NamedTuple):
    username: str | None
    superuser: bool
    expires_at: _dt.datetime
    grant: token_acl.Grant


def _grants(ctx: Context, client_id: str) -> tuple[_Grant, ...]:
    now = ctx.clock.now()
    with ctx.store.core_transaction(readonly=True) as conn:
        rows = repos.valid_tokens_of_client(conn, instance=ctx.instance, client_id=client_id, now=now)
    return tuple(_Grant(row.username, row.superuser, row.expires_at,
                        token_acl.compile_acl(json.loads(row.claims).get("acl"))) for row in rows)


def authorize(ctx: Context, *, username: str | None, client_id: str | None, action: str,
              topic: str) -> tuple[bool, str] | None:
    """(allowed, reason) when ``client_id`` holds a valid token; None when it holds none (the permission
    rules decide then)."""
    if not client_id:
        return None
    values = token_state.cached(ctx)
    grants: Any = values.get(("client", client_id))
    if grants is None:
        grants = values[("client", client_id)] = _grants(ctx, client_id)
    if not grants:
        return None
    now = ctx.clock.now()
    live = [g for g in grants if g.expires_at > now and (g.username is None or g.username == username)]
    if not live:
        return None
    if any(g.superuser for g in live):
        return True, "token_superuser"
    for g in live:
        if g.grant.decide(action=action, topic=topic, client_id=client_id, username=username) is True:
            return True, "token_acl"
    return False, "token_acl_denied"
