"""Apply, show, list and revoke broker tokens: short-lived JWTs for one client id and its topics.

A token is signed with the instance's CURRENT key (:mod:`.keys`) by joserfc and shown once, in the
answer to :func:`apply`; the store keeps its id (the ``jti``), its claims and its status, never the
token.  Its claims: ``iss`` (the instance's resource name, ``acs:mq:{region}:{account}:{instance}``),
``sub`` and ``clientid`` (the client id), ``username`` when one is given, ``iat``, ``nbf``, ``exp``,
``jti``, and ``acl`` in EMQX 5's rule-list form (pki/dataplane/token_acl.py); ``is_superuser`` for a
superuser's token.

Applies that arrive together share one transaction and one commit (pki/services/group_commit.py): each
is signed in turn, then the batch's token rows go in with one statement and its audit records, one per token,
are chained in memory and appended with another (audit.append_changes).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import secrets as _secrets
from dataclasses import dataclass
from typing import Any

from joserfc import jwt

from ...dataplane import token_acl
from ...errors import InvalidInput, InvalidState, NotFound
from ...ids import parse_duration, validate_client_id
from ...store import TokenStatus
from ...store import token_repos as repos
from .. import audit
from ..context import Context
from ..dataplane.common import Public, field, log
from ..group_commit import GroupCommit
from ..paging import after_position, page_limit, page_of
from ..policy import resource_name
from ..schemas import Page, UtcTime
from . import keys

__all__ = ["TokenPublic", "DEFAULT_TTL", "apply", "show", "list_tokens", "revoke", "issuer", "TOKEN_ID_PREFIX"]

DEFAULT_TTL = _dt.timedelta(hours=1)
TOKEN_ID_PREFIX = "tok_"
_TOKEN_ID = re.compile(r"tok_[0-9a-f]{24}\Z")
_MAX_USERNAME = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class TokenPublic(Public):
    token_id: str
    instance: str
    client_id: str
    username: str | None
    superuser: bool
    #: ACTIVE, REVOKED, or EXPIRED (an ACTIVE token past its expiry).
    status: str
    kid: str
    acl: list[dict[str, Any]]
    issued_at: UtcTime
    expires_at: UtcTime
    revoked_at: UtcTime | None

    @classmethod
    def of(cls, row, *, now: _dt.datetime) -> "TokenPublic":
        status = row.status
        if status == TokenStatus.ACTIVE and row.expires_at <= now:
            status = TokenStatus.EXPIRED
        return cls(token_id=row.token_id, instance=row.instance, client_id=row.client_id, username=row.username,
                   superuser=row.superuser, status=status, kid=row.kid, acl=json.loads(row.claims).get("acl", []),
                   issued_at=row.issued_at, expires_at=row.expires_at, revoked_at=row.revoked_at)


def issuer(ctx: Context) -> str:
    """The ``iss`` of this instance's tokens: its policy resource name, unique per deployment (kept per
    Context: every apply and every hook check asks for it)."""
    return ctx.memo(("tokens", "issuer"),
                    lambda: resource_name(ctx.settings.region, ctx.settings.account_id, ctx.instance))


def _ttl(ctx: Context, ttl) -> _dt.timedelta:
    with field("ttl"):
        if ttl is None:
            value = DEFAULT_TTL
        elif isinstance(ttl, _dt.timedelta):
            value = ttl
        else:
            value = parse_duration(str(ttl))
        cap = ctx.settings.token_max_ttl
        if not _dt.timedelta(seconds=1) <= value <= _dt.timedelta(seconds=cap):
            raise InvalidInput(f"a token lives from 1s to {cap}s (PKI_TOKEN_MAX_TTL); ask for a shorter TTL",
                               code="invalid_ttl", max_seconds=cap)
        return min(value, _dt.timedelta(seconds=cap))


def _username(username: str | None) -> str | None:
    if username is None:
        return None
    if not isinstance(username, str) or not username or len(username) > _MAX_USERNAME or _CONTROL.search(username):
        raise InvalidInput(f"a token's username is 1 to {_MAX_USERNAME} characters without control characters",
                           code="invalid_username", field="username")
    return username


def _token_id(token_id) -> str:
    if not isinstance(token_id, str) or not _TOKEN_ID.match(token_id):
        raise InvalidInput(f"{str(token_id)[:40]!r} is not a token id (tok_ and 24 hex digits)",
                           code="invalid_token_id")
    return token_id


@dataclass(frozen=True)
class _Job:
    client_id: str
    username: str | None
    superuser: bool
    acl: list
    ttl: _dt.timedelta
    now: _dt.datetime


def apply(ctx: Context, *, client_id: str, topics=(), action: str = "all", username: str | None = None,
          ttl=None, superuser: bool = False) -> dict:
    """A new token: ``{"token", "token_id", "expires_at"}``, the only time the token is shown."""
    with field("client_id"):
        validate_client_id(client_id)
    _username(username)
    with field("topic"):
        acl = token_acl.build(list(topics or ()), action, superuser=bool(superuser))
    job = _Job(client_id, username, bool(superuser), acl, _ttl(ctx, ttl), ctx.clock.now())
    # Signed here, in the caller's thread, with the key the last batch found CURRENT: callers sign while a
    # batch ahead of them waits for its commit, so the batch's leader only stores.  The leader signs again
    # if a rotation has made another key CURRENT since (see _write).
    known = _known_key(ctx).get("key")
    return _group(ctx).submit((job, _sign(ctx, job, *known) if known else None))[0]


def _known_key(ctx: Context) -> dict:
    return ctx.memo(("tokens", "known_current_key"), dict)


def _group(ctx: Context) -> GroupCommit:
    return ctx.memo(("group_commit", "token.apply"),
                    lambda: GroupCommit(ctx.store.held_connection().transaction,
                                        lambda conn, job: _write(ctx, conn, job), finish=_finish))


def _finish(conn, results: list[tuple[dict, dict, dict]]) -> None:
    """Last in each batch's transaction: its token rows in one statement, then its audit records, chained."""
    repos.insert_tokens(conn, [row for _, row, _ in results])
    audit.append_changes(conn, [record for _, _, record in results])


def _write(ctx: Context, conn, item: tuple[_Job, tuple | None]) -> tuple[dict, dict, dict]:
    """One apply in a batch: (the answer, the token's row, its audit record); _finish stores the last two."""
    job, signed = item
    # Once per transaction (a batch of applies shares one): move the revision first, which locks its row
    # as a rotation does (pki/services/tokens/keys.py), then read the CURRENT key, so that no rotation
    # can slip between the read and this batch's commit.
    txn = conn.get_transaction()
    batch = conn.info.get("pki.token_batch")
    if batch is None or batch[0] is not txn:
        repos.bump_revision(conn, ctx.instance)
        batch = conn.info["pki.token_batch"] = (txn, tuple(keys.ensure_current(ctx, conn, now=job.now)))
    kid, alg, sealed = batch[1]
    _known_key(ctx)["key"] = batch[1]
    if signed is not None and signed[1]["kid"] == kid:
        return signed
    return _sign(ctx, job, kid, alg, sealed)


def _sign(ctx: Context, job: _Job, kid: str, alg: str, sealed: bytes) -> tuple[dict, dict, dict]:
    """The token of ``job`` signed with ``kid``: (the answer, the token's row, its audit record)."""
    token_id = TOKEN_ID_PREFIX + _secrets.token_hex(12)
    issued = int(job.now.timestamp())
    expires = issued + int(job.ttl.total_seconds())
    claims: dict[str, Any] = {"iss": issuer(ctx), "sub": job.client_id, "iat": issued, "nbf": issued,
                              "exp": expires, "jti": token_id, "clientid": job.client_id}
    if job.username is not None:
        claims["username"] = job.username
    if job.superuser:
        claims["is_superuser"] = True
    claims["acl"] = job.acl
    token = jwt.encode({"alg": alg, "kid": kid, "typ": "JWT"}, claims,
                       keys.signing_key(ctx, kid=kid, alg=alg, sealed=sealed), algorithms=[alg])
    expires_at = _dt.datetime.fromtimestamp(expires, _dt.timezone.utc)
    row = {
        "instance": ctx.instance, "token_id": token_id, "kid": kid, "client_id": job.client_id,
        "username": job.username, "superuser": job.superuser, "claims": json.dumps(claims, separators=(",", ":")),
        "status": TokenStatus.ACTIVE, "issued_at": _dt.datetime.fromtimestamp(issued, _dt.timezone.utc),
        "expires_at": expires_at, "revoked_at": None}
    # The token id, never the token: the record must not be a credential.  Made under this job's Actor
    # (in the caller's thread, or in the leader's, which runs each job as its caller), appended in _finish.
    record = audit.change_values(ctx, "token.apply", subject=token_id, client_id=job.client_id, kid=kid,
                                 expires_at=expires_at.isoformat(), superuser=job.superuser)
    answer = {"token": token, "token_id": token_id, "expires_at": expires_at.isoformat().replace("+00:00", "Z")}
    return answer, row, record


def show(ctx: Context, *, token_id: str) -> TokenPublic:
    _token_id(token_id)
    with ctx.store.core_transaction(readonly=True) as conn:
        row = repos.get_token(conn, instance=ctx.instance, token_id=token_id)
    if row is None:
        raise _not_found(ctx, token_id)
    return TokenPublic.of(row, now=ctx.clock.now())


def list_tokens(ctx: Context, *, client_id: str | None = None, status: str | None = None,
                limit: int | None = None, cursor: str | None = None) -> Page:
    if client_id is not None:
        with field("client_id"):
            validate_client_id(client_id)
    if status is not None and status not in TokenStatus.__members__:
        raise InvalidInput(f"status must be one of {', '.join(TokenStatus)}", code="invalid_status", field="status")
    size, after = page_limit(limit), after_position(cursor)
    now = ctx.clock.now()
    with ctx.store.core_transaction(readonly=True) as conn:
        rows = repos.list_tokens(conn, instance=ctx.instance, client_id=client_id, status=status, now=now,
                                 after_id=after, limit=size + 1)
    return page_of(rows, size, lambda row: TokenPublic.of(row, now=now))


def revoke(ctx: Context, *, token_id: str) -> TokenPublic:
    """ACTIVE -> REVOKED: the hooks refuse the token at their next check.  An expired token can still be
    revoked (a record that it must not come back); a REVOKED one is refused (``token_not_active``)."""
    _token_id(token_id)
    now = ctx.clock.now()
    with ctx.store.core_transaction() as conn:
        row = repos.get_token(conn, instance=ctx.instance, token_id=token_id, lock=True)
        if row is None:
            raise _not_found(ctx, token_id)
        if not repos.revoke(conn, instance=ctx.instance, token_id=token_id, now=now):
            raise InvalidState(f"token {token_id} is {row.status} already", code="token_not_active",
                               token_id=token_id, token_status=row.status)
        audit.record_change(conn, ctx, "token.revoke", subject=token_id, client_id=row.client_id)
        row = repos.get_token(conn, instance=ctx.instance, token_id=token_id)
    log.info("broker token revoked: instance=%s token_id=%s", ctx.instance, token_id)
    return TokenPublic.of(row, now=now)


def _not_found(ctx: Context, token_id: str) -> NotFound:
    return NotFound(f"no token {token_id} in instance {ctx.instance!r}", code="token_not_found", token_id=token_id)
