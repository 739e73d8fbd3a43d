"""Who is calling: signature, replay and rate checks, all against the shared database.

Nothing here lives in one process's memory except what access keys resolve
to (principal, secret, policies), kept by :func:`key_grant` and checked
against the shared access revision on every request: nonces and token
buckets are rows (``pki.store.http_repos``), so any number of ``pki serve``
processes on one PostgreSQL refuse the same replay and share one rate limit
per access key.

A request comes in as plain values (method, path, query, a mapping of
headers, body bytes): the HTTP front end adapts its framework's request
(``pki.http.deps``), so nothing here knows one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from .. import signing
from ..errors import PermissionDenied, RateLimited
from ..store import Status, access_repos, http_repos
from .authorize import Principal, compiled_policies
from .context import Context
from .users import is_access_key_id

__all__ = ["RateLimit", "RateLimited", "check_headers", "verify_signature", "authenticate", "key_grant",
           "known_secret", "resolve_access_key"]

#: A nonce is kept this long after its timestamp: the window plus a margin.
NONCE_TTL = _dt.timedelta(seconds=2 * signing.MAX_SKEW + 60)
#: About one request in this many also deletes expired nonces.
PURGE_ONE_IN = 200
_CAS_ATTEMPTS = 8


@dataclass(frozen=True)
class RateLimit:
    """Token bucket per access key: ``rate`` requests/s sustained, bursts of ``burst``."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1):
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")

    @classmethod
    def parse(cls, text: str, burst: float | None = None) -> "RateLimit":
        """``"50/s"``, ``"600/m"``, ``"20"`` (per second); burst defaults to one second's worth, at least 1."""
        number, _, unit = text.partition("/")
        per = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}.get(unit.strip().lower())
        try:
            rate = float(number) / per  # type: ignore[operator]
        except (TypeError, ValueError):
            raise ValueError(f"rate limit {text!r}: write N/s, N/m or N/h") from None
        return cls(rate=rate, burst=float(burst) if burst else max(1.0, rate))


def _take_token(conn, *, access_key_id: str, limit: RateLimit, now: float) -> float | None:
    """None if a token was taken; else seconds until one will be there."""
    for _ in range(_CAS_ATTEMPTS):
        row = http_repos.get_bucket(conn, access_key_id=access_key_id)
        if row is None:
            if http_repos.create_bucket(conn, access_key_id=access_key_id, tokens=limit.burst - 1, at=now):
                return None
            continue
        elapsed = max(0.0, now - row.updated_at)
        tokens = min(limit.burst, row.tokens + elapsed * limit.rate)
        if tokens < 1:
            return (1 - tokens) / limit.rate
        if http_repos.take_from_bucket(conn, access_key_id=access_key_id, version=row.version, tokens=tokens - 1,
                                       at=max(now, row.updated_at)):
            return None
    # Lost the compare-and-set every time: the bucket is that busy, so refuse.
    return 1.0 / limit.rate


# == what access keys resolve to ==============================================================

_REFUSED_KEY = ("the access key is unknown or disabled: check the access key id and its secret, "
                "or ask the account owner for a new key")


class _GrantCache:
    """What access keys resolve to, valid for one access revision (see AccessRevision)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.revision = -1
        self.grants: dict[str, tuple[Principal, bytes]] = {}
        #: Key id -> HMAC key, across revisions: a key's secret never changes (only
        #: active keys get here, so made-up ids cannot grow it).
        self.secrets: dict[str, bytes] = {}


def key_grant(ctx: Context, conn, access_key_id: str) -> tuple[Principal, bytes]:
    """The principal behind an access key (its policies attached) and the HMAC key, in ``conn``'s transaction.

    The principal carries its policies as of this transaction: use it for one
    request, as the HTTP service does.

    Per call this reads one counter (the access revision); the key, the user's
    status and policies are read again only after a change to any user, key,
    policy or attachment, from any process, so a key or user disabled elsewhere
    stops working at the next request.  Unknown key, disabled key and
    disabled user all get the same refusal.
    """
    if not is_access_key_id(access_key_id):
        raise PermissionDenied(_REFUSED_KEY, code="invalid_access_key")
    cache: _GrantCache = ctx.memo(("access_grants",), _GrantCache)
    revision = access_repos.access_revision(conn)
    with cache.lock:
        if cache.revision == revision:
            grant = cache.grants.get(access_key_id)
            if grant is not None:
                return grant
    grant = _load_grant(ctx, conn, access_key_id)
    with cache.lock:
        if cache.revision != revision:
            cache.revision, cache.grants = revision, {}
        # Only keys that exist and are active are kept: unknown ids cannot grow the cache.
        cache.grants[access_key_id] = grant
        cache.secrets[access_key_id] = grant[1]
    return grant


def known_secret(ctx: Context, access_key_id: str) -> bytes | None:
    """The HMAC key of an access key this process has resolved before, without the database
    (whether the key is still active is :func:`key_grant`'s to say)."""
    cache = ctx.peek(("access_grants",))
    return cache.secrets.get(access_key_id) if cache is not None else None


def _load_grant(ctx: Context, conn, access_key_id: str) -> tuple[Principal, bytes]:
    row = access_repos.get_key_with_user(conn, access_key_id=access_key_id)
    if row is None or row.key_status != Status.ACTIVE or row.user_status != Status.ACTIVE:
        raise PermissionDenied(_REFUSED_KEY, code="invalid_access_key")
    sealed = bytes(row.sealed_secret)
    digest = hashlib.sha256(sealed).digest()
    secret = ctx.memo(("access_key_secret", access_key_id, digest),
                      lambda: ctx.keystore.open_secret(sealed, key_id=access_key_id))
    principal = Principal(kind="user", name=row.user_name, user_id=row.user_id, access_key_id=access_key_id,
                          policies=tuple(compiled_policies(ctx, conn, row.user_id)))
    return principal, secret


def resolve_access_key(ctx: Context, access_key_id: str) -> tuple[Principal, bytes]:
    """:func:`key_grant` in a transaction of its own, for a principal kept longer than one request:
    without the policies snapshot, so :func:`pki.services.authorize.authorize` reads the user's status
    and policies each time."""
    with ctx.store.core_transaction(readonly=True) as conn:
        principal, secret = key_grant(ctx, conn, access_key_id)
    return dataclasses.replace(principal, policies=None), secret


# == requests =================================================================================

#: The signing headers by lower-case name: HTTP header names are case-insensitive (RFC 9110, 5.1).
_SIGNING_HEADERS = {name.lower(): name for name in (
    signing.HEADER_ACCESS_KEY, signing.HEADER_TIMESTAMP, signing.HEADER_NONCE, signing.HEADER_SIGNATURE)}


def _signing_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The signing headers of ``headers`` under their canonical names; of a repeated one, the first."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        canonical = _SIGNING_HEADERS.get(name.lower())
        if canonical is not None:
            found.setdefault(canonical, value)
    return found


def check_headers(ctx: Context, headers: Mapping[str, str], *, now: _dt.datetime | None = None
                  ) -> signing.SignedHeaders:
    """The signing headers, well-formed and within the time window at ``now`` (default: the Context's
    clock), or SignatureError; no database work."""
    return signing.parse_headers(_signing_headers(headers), now=(ctx.clock.now() if now is None else now).timestamp())


def verify_signature(ctx: Context, *, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
                     now: _dt.datetime | None = None, confirm_active: bool = False
                     ) -> tuple[signing.SignedHeaders, bytes]:
    """The signing headers and the key's secret if the request is signed with it, or SignatureError.

    The secret is the one this process last read (or read now, in a read-only
    transaction, the first time); whether the key is still active, the nonce
    fresh and the rate limit kept is :func:`authenticate`'s to say.  Writes
    nothing: a front end may call this alone before refusing a request on its
    input, so that only a signed request learns why its input was wrong.

    ``confirm_active`` (for such a front end) also checks, with one read of the access revision, that the
    key is still active: a key disabled elsewhere after this process cached its secret learns nothing either.
    """
    signed = check_headers(ctx, headers, now=now)
    try:
        secret = known_secret(ctx, signed.access_key_id)
        fresh = secret is None
        if fresh:
            secret = resolve_access_key(ctx, signed.access_key_id)[1]
        signing.check_signature(signed, secret=secret, method=method, path=path, query=query, body=body)
        if confirm_active and not fresh:
            resolve_access_key(ctx, signed.access_key_id)
    except PermissionDenied as exc:  # unknown or disabled key
        raise signing.SignatureError(exc.message, code=exc.code) from None
    return signed, secret


def authenticate(ctx: Context, *, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
                 rate_limit: RateLimit | None) -> Principal:
    """The principal that signed this request (its policies attached), or SignatureError / RateLimited.

    The signature is checked before anything is written, with the key's
    secret as this process last read it (or read now, in a read-only
    transaction, the first time): a forged request never takes the write
    lock.  Then one write transaction reads the access revision and, after a
    change, the key, user and policies again, and stores the nonce and takes a
    token; a key disabled meanwhile is refused there.
    """
    now = ctx.clock.now()
    signed, secret = verify_signature(ctx, method=method, path=path, query=query, headers=headers, body=body, now=now)
    retry_after = None
    try:
        # Not durable: a crash can lose only nonces of requests that changed nothing, since
        # the operation's own (durable) commit comes later in the log and carries this one.
        with ctx.store.core_transaction(durable=False) as conn:
            principal, current = key_grant(ctx, conn, signed.access_key_id)
            if current != secret:  # never, while key secrets are immutable; checked all the same
                signing.check_signature(signed, secret=current, method=method, path=path, query=query, body=body)
            fresh = http_repos.remember_nonce(
                conn, access_key_id=signed.access_key_id, nonce=signed.nonce,
                expires_at=_dt.datetime.fromtimestamp(signed.epoch, _dt.timezone.utc) + NONCE_TTL)
            if fresh and rate_limit is not None:
                retry_after = _take_token(conn, access_key_id=signed.access_key_id, limit=rate_limit,
                                          now=now.timestamp())
            if fresh and random.randrange(PURGE_ONE_IN) == 0:
                http_repos.purge_nonces(conn, now=now)
    except PermissionDenied as exc:  # unknown or disabled key
        raise signing.SignatureError(exc.message, code=exc.code) from None
    if not fresh:
        raise signing.SignatureError(
            f"nonce {signed.nonce} was already used with this access key; use a new nonce for every request",
            code="nonce_replayed")
    if retry_after is not None:
        seconds = max(1, math.ceil(retry_after))
        raise RateLimited(
            f"access key {signed.access_key_id} is over its rate limit; retry after {seconds} s",
            code="rate_limited", retry_after=seconds)
    return principal
