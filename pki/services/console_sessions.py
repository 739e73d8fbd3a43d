"""Sign-in sessions of the browser console (``/console``).

An operator signs in with an access key id and its secret (the same key the
API signs requests with, :mod:`pki.services.users`) and gets a random session
token, kept by the browser as a cookie; only its SHA-256 is stored.  A session
ends after :data:`IDLE_TIMEOUT` without a request, after :data:`MAX_AGE` in
any case, at sign-out, and as soon as its key or user is disabled (every
request reads both, and the user's policies, again).

The CSRF token of a session is an HMAC of the session token: nothing more to
store, and it is worthless without the cookie, which a page of another site
cannot read (HttpOnly) nor send (SameSite=Strict).

Failed sign-ins are throttled per source address and per access key id
(:data:`MAX_FAILURES` in :data:`FAILURE_WINDOW`), and every sign-in, failed or
not, is on the audit log.  Sign-in is authentication, like the API's
signature check: no policy is needed to sign in, only to act afterwards.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets as _secrets
from dataclasses import dataclass

from ..errors import PermissionDenied, RateLimited, Unauthenticated
from ..store import Status, access_repos, console_repos
from ..store.console_models import ConsoleSession
from . import audit
from . import policy as policy_engine
from .authn import resolve_access_key
from .authorize import Principal, compiled_policies
from .context import Context
from .users import is_access_key_id

__all__ = ["IDLE_TIMEOUT", "MAX_AGE", "MAX_FAILURES", "FAILURE_WINDOW", "SIGN_IN_ACTION", "SIGN_OUT_ACTION",
           "SignedIn", "Session", "sign_in", "resume", "sign_out", "csrf_token", "check_csrf", "check_pre_token"]

IDLE_TIMEOUT = _dt.timedelta(minutes=15)
MAX_AGE = _dt.timedelta(hours=12)
MAX_FAILURES = 5
FAILURE_WINDOW = _dt.timedelta(minutes=15)
#: A session's last use is written at most this often: not one write per page.
TOUCH_EVERY = _dt.timedelta(seconds=30)
#: On the audit log; not policy actions (nothing authorizes a sign-in but the key itself).
SIGN_IN_ACTION = "console:SignIn"
SIGN_OUT_ACTION = "console:SignOut"
MAX_SECRET_CHARS = 256

_REFUSED = "the access key id or the secret is wrong, or the key or its user is disabled"


@dataclass(frozen=True)
class SignedIn:
    token: str
    csrf: str
    principal: str


@dataclass(frozen=True)
class Session:
    """A live session: who acts (with the policies read in this request) and the form token."""

    principal: Principal
    csrf: str
    expires_at: _dt.datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def csrf_token(token: str) -> str:
    return hmac.new(token.encode("utf-8", "surrogateescape"), b"pki-console-csrf", hashlib.sha256).hexdigest()


def check_csrf(token: str, submitted: str | None) -> None:
    """PermissionDenied ``console_csrf_invalid`` unless ``submitted`` is this session's form token."""
    if not submitted or not hmac.compare_digest(csrf_token(token).encode(), submitted.encode("utf-8", "replace")):
        raise PermissionDenied("the form is missing its CSRF token or it is not this session's: reload the page "
                               "and submit it again", code="console_csrf_invalid")


def check_pre_token(cookie: str | None, submitted: str | None) -> None:
    """The sign-in form's token (double submit: the same random value as a cookie and as a field), so that
    another site cannot sign a browser in under its own key (login CSRF)."""
    if not cookie or not submitted or not hmac.compare_digest(cookie.encode("utf-8", "replace"),
                                                               submitted.encode("utf-8", "replace")):
        raise PermissionDenied("the sign-in form is missing its CSRF token or it does not match: reload the "
                               "sign-in page and try again", code="console_csrf_invalid")


def _account_resource(ctx: Context) -> str:
    return policy_engine.account_resource(ctx.settings.region, ctx.settings.account_id)


def _throttle_keys(access_key_id: str, source_ip: str | None) -> list[str]:
    return [f"ip:{source_ip or '-'}"[:96], f"key:{access_key_id}"[:96]]


def _blocked_for(session, keys: list[str], now: _dt.datetime) -> int | None:
    """Seconds until a sign-in may be tried again, if any of ``keys`` is over its failures."""
    waits = []
    for key in keys:
        row = console_repos.get_throttle(session, key=key)
        if row is not None and row.failures >= MAX_FAILURES and now < row.window_start + FAILURE_WINDOW:
            waits.append(int((row.window_start + FAILURE_WINDOW - now).total_seconds()) + 1)
    return max(waits) if waits else None


def sign_in(ctx: Context, *, access_key_id: str, secret: str, source_ip: str | None = None,
            request_id: str | None = None) -> SignedIn:
    """A new session for the user behind the key, or Unauthenticated ``console_signin_failed`` (the same
    refusal for an unknown key, a wrong secret and a disabled key or user) or RateLimited."""
    now = ctx.clock.now()
    access_key_id = (access_key_id or "").strip()[:64]
    keys = _throttle_keys(access_key_id, source_ip)
    record = dict(action=SIGN_IN_ACTION, resource=_account_resource(ctx), source_ip=source_ip,
                  request_id=request_id, now=now)
    with ctx.store.transaction() as session:
        wait = _blocked_for(session, keys, now)
        if wait is not None:
            audit.record(session, result="denied", error_code="rate_limited", principal="-",
                         details={"access_key_id": access_key_id, "reason": "too many failed sign-ins"}, **record)
    if wait is not None:
        raise RateLimited(f"too many failed sign-ins from this address or for this key; retry after {wait} s",
                          code="rate_limited", retry_after=wait)
    principal = None
    if is_access_key_id(access_key_id) and 0 < len(secret or "") <= MAX_SECRET_CHARS:
        try:
            found, key = resolve_access_key(ctx, access_key_id)
        except PermissionDenied:
            found, key = None, b""
        if found is not None and hmac.compare_digest(secret.encode("utf-8", "replace"), key):
            principal = found
    token = _secrets.token_urlsafe(32)
    with ctx.store.transaction() as session:
        if principal is None:
            for key in keys:
                console_repos.count_failure(session, key=key, now=now, window=FAILURE_WINDOW)
            audit.record(session, result="failed", error_code="console_signin_failed", principal="-",
                         details={"access_key_id": access_key_id}, **record)
        else:
            console_repos.purge_sessions(session, now=now)
            console_repos.clear_throttle(session, key=keys[1])
            console_repos.insert_session(session, ConsoleSession(
                token_sha256=_digest(token), access_key_id=access_key_id, created_at=now, last_seen_at=now,
                expires_at=min(now + IDLE_TIMEOUT, now + MAX_AGE)))
            audit.record(session, principal=principal.name, details={"access_key_id": access_key_id}, **record)
    if principal is None:
        raise Unauthenticated(f"sign-in refused: {_REFUSED}", code="console_signin_failed")
    return SignedIn(token=token, csrf=csrf_token(token), principal=principal.name)


def _expired() -> Unauthenticated:
    return Unauthenticated("the console session has ended (signed out, idle too long, or its key or user is "
                           "disabled): sign in again", code="console_session_expired")


def resume(ctx: Context, token: str | None) -> Session:
    """The live session of ``token`` with its principal and policies, or Unauthenticated
    ``console_session_expired``; extends its idle expiry."""
    if not token or len(token) > 128:
        raise _expired()
    now = ctx.clock.now()
    digest = _digest(token)
    with ctx.store.transaction() as session:
        row = console_repos.get_session(session, token_sha256=digest)
        if row is None or row.expires_at <= now:
            if row is not None:
                console_repos.delete_session(session, token_sha256=digest)
            principal = None
        else:
            key = access_repos.get_key_with_user(session, access_key_id=row.access_key_id)
            if key is None or key.key_status != Status.ACTIVE or key.user_status != Status.ACTIVE:
                console_repos.delete_session(session, token_sha256=digest)
                principal = None
            else:
                principal = Principal(kind="user", name=key.user_name, user_id=key.user_id,
                                      access_key_id=row.access_key_id,
                                      policies=tuple(compiled_policies(ctx, session, key.user_id)))
                expires_at = row.expires_at
                if now - row.last_seen_at >= TOUCH_EVERY:
                    expires_at = min(now + IDLE_TIMEOUT, row.created_at + MAX_AGE)
                    console_repos.touch_session(session, token_sha256=digest, last_seen_at=now,
                                                expires_at=expires_at)
    if principal is None:
        raise _expired()
    return Session(principal=principal, csrf=csrf_token(token), expires_at=expires_at)


def sign_out(ctx: Context, token: str | None, *, principal: str | None = None) -> bool:
    """End the session of ``token``; False if there was none."""
    if not token or len(token) > 128:
        return False
    with ctx.store.transaction() as session:
        ended = console_repos.delete_session(session, token_sha256=_digest(token))
        if ended:
            audit.record(session, action=SIGN_OUT_ACTION, resource=_account_resource(ctx), principal=principal,
                         now=ctx.clock.now())
    return ended
