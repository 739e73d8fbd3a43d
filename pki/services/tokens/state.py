"""What the token checks read, cached per Context and per token revision.

Every change to keys or tokens moves the instance's ``token_revision`` in its own transaction
(pki/store/token_repos.py); a check reads that one counter and reloads what it caches only when it
moved, so a revocation or a rotation made by any process takes effect at the next check.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
import warnings
from typing import Any, Callable, NamedTuple

from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from ...store import TokenKeyStatus
from ...store import token_repos as repos
from ..context import Context

__all__ = ["ALGORITHMS", "KeyEntry", "State", "state", "cached", "public_key_of", "MAX_CACHED"]

#: The JWS algorithms a token may be signed with (RFC 7518 3.4 and 3.3, RFC 8037 3.1), and the key type of
#: pki/keys each needs.  Nothing else is accepted: not ``none``, never an HMAC (``HS256`` with the public
#: key as the secret is the classic confusion), whatever a token's header says.
ALGORITHMS = {"ES256": "ec-p256", "EdDSA": "ed25519", "RS256": "rsa-2048"}
MAX_CACHED = 100_000
# RFC 9864 names Ed25519 signatures "Ed25519" and deprecates the polymorphic "EdDSA"; joserfc warns at
# every use.  "EdDSA" stays the name here: it is the one RFC 8037 brokers and JWT libraries know (PyJWT
# among them), and the key behind it is always Ed25519 (pki/keys), which is what RFC 9864 asks.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
_KEY_CLASSES = {"ES256": ECKey, "EdDSA": OKPKey, "RS256": RSAKey}


def public_key_of(alg: str, public_jwk: dict):
    return _KEY_CLASSES[alg].import_key(public_jwk)


class KeyEntry(NamedTuple):
    kid: str
    alg: str
    status: str
    jwk: dict
    key: Any
    #: None for the CURRENT key; else the latest ``exp`` of an unrevoked token it signed (None if none).
    verify_until: _dt.datetime | None

    def verifies_at(self, now: _dt.datetime) -> bool:
        if self.status == TokenKeyStatus.CURRENT:
            return True
        return self.status == TokenKeyStatus.PREVIOUS and self.verify_until is not None and now < self.verify_until


class State(NamedTuple):
    keys: dict[str, KeyEntry]
    revoked: frozenset[str]
    loaded_at: _dt.datetime


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.revision: int | None = None
        self.values: dict = {}


def _current(ctx: Context) -> int:
    lookup: repos.RevisionLookup = ctx.memo(("tokens", "revision_lookup"),
                                            lambda: repos.RevisionLookup(ctx.store.engine))
    return lookup.revision(ctx.instance)


def cached(ctx: Context) -> dict:
    """This instance's cache dict for the current token revision (emptied when it moved)."""
    cache: _Cache = ctx.memo(("tokens", "cache", ctx.instance), _Cache)
    now = _current(ctx)
    with cache.lock:
        if cache.revision != now or len(cache.values) >= MAX_CACHED:
            cache.values = {}
            cache.revision = now
        return cache.values


def _load(ctx: Context) -> State:
    now = ctx.clock.now()
    with ctx.store.core_transaction(readonly=True) as conn:
        rows = repos.keys_of(conn, instance=ctx.instance)
        latest = repos.last_expiry(conn, instance=ctx.instance)
        revoked = repos.revoked_unexpired(conn, instance=ctx.instance, now=now)
    keys = {}
    for row in rows:
        if row.status == TokenKeyStatus.RETIRED or row.alg not in ALGORITHMS:
            continue
        jwk = json.loads(row.public_jwk)
        until = None if row.status == TokenKeyStatus.CURRENT else latest.get(row.kid)
        keys[row.kid] = KeyEntry(row.kid, row.alg, row.status, jwk, public_key_of(row.alg, jwk), until)
    return State(keys, frozenset(revoked), now)


def state(ctx: Context) -> State:
    """The instance's verifying keys and unexpired revocations, as of the current token revision.

    A revoked token stays in the set until its ``exp`` as of the load; past it, the token is refused as
    expired anyway.
    """
    values = cached(ctx)
    found = values.get("state")
    if found is None:
        found = values["state"] = _load(ctx)
    return found


def memoised(values: dict, key, load: Callable[[], Any]):
    try:
        return values[key]
    except KeyError:
        value = values[key] = load()
        return value
