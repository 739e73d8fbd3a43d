"""Hook tokens: the bearer tokens the broker hooks accept, each usable only from its CIDR blocks.

The token is 256 bits from :mod:`secrets`, shown once in the answer to :func:`create`; the store keeps
its SHA-256 only (a high-entropy token needs no slow hash: guessing it is hopeless at any speed).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets as _secrets

from ...dataplane.rules import parse_client_ip
from ...errors import Conflict, InvalidInput, NotFound
from ...ids import validate_path_name
from ...store import Status
from ...store import dataplane_repos as repos
from ...store.dataplane_models import HookToken
from .. import audit
from ..context import Context
from ..paging import after_position, page_limit, page_of
from ..schemas import Page, UtcTime
from .common import Public, cached, field, log, memoised, parse_cidr

__all__ = ["HookTokenPublic", "TOKEN_PREFIX", "create", "list_tokens", "delete", "verify", "MAX_CIDRS"]

TOKEN_PREFIX = "pkh_"
MAX_CIDRS = 32


class HookTokenPublic(Public):
    name: str
    cidrs: list[str]
    status: str
    created_at: UtcTime

    @classmethod
    def of(cls, row: HookToken) -> "HookTokenPublic":
        return cls(name=row.name, cidrs=json.loads(row.cidrs), status=row.status, created_at=row.created_at)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _name(name: str) -> str:
    with field("name"):
        return validate_path_name(name, what="hook token name", code="invalid_name")


def _cidrs(cidrs) -> list[str]:
    cidrs = list(cidrs or ())
    if len(cidrs) > MAX_CIDRS:
        raise InvalidInput(f"at most {MAX_CIDRS} CIDR blocks per token", code="invalid_cidr", field="cidrs")
    return sorted({parse_cidr(text, field_name="cidrs") for text in cidrs})


def create(ctx: Context, *, name: str, cidrs=()) -> dict:
    """A new token: ``{"name", "token"}``, the only time the token is shown."""
    _name(name)
    networks = _cidrs(cidrs)
    token = TOKEN_PREFIX + _secrets.token_urlsafe(32)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        if repos.get_hook_token(session, name=name) is not None:
            raise Conflict(f"a hook token named {name!r} exists already", code="hook_token_exists", name=name)
        repos.insert_row(session, HookToken(name=name, token_sha256=_digest(token), cidrs=json.dumps(networks),
                                            status=Status.ACTIVE, created_at=now))
        audit.record_change(session, ctx, "hook.token.create", subject=name, cidrs=networks)
    log.info("hook token created: name=%r cidrs=%s", name, networks)
    return {"name": name, "token": token}


def list_tokens(ctx: Context, *, limit: int | None = None, cursor: str | None = None) -> Page:
    size, after = page_limit(limit), after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        rows = repos.list_hook_tokens(session, after_id=after, limit=size + 1)
    return page_of(rows, size, HookTokenPublic.of)


def delete(ctx: Context, *, name: str) -> dict:
    _name(name)
    with ctx.store.transaction() as session:
        row = repos.get_hook_token(session, name=name, lock=True)
        if row is None:
            raise NotFound(f"no hook token named {name!r}", code="hook_token_not_found", name=name)
        repos.delete_row(session, row, instance=repos.HOOK_TOKENS)
        audit.record_change(session, ctx, "hook.token.delete", subject=name)
    log.info("hook token deleted: name=%r", name)
    return {"name": name, "deleted": True}


def _load(ctx: Context) -> dict:
    with ctx.store.transaction(readonly=True) as session:
        return {row.token_sha256: (row.name, row.status, [ipaddress.ip_network(c) for c in json.loads(row.cidrs)])
                for row in repos.all_hook_tokens(session)}


def verify(ctx: Context, *, token: str | None, source_ip: str | None) -> str | None:
    """The name of the ACTIVE token ``token`` when ``source_ip`` is inside its CIDR blocks; None otherwise."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    tokens = memoised(cached(ctx, "hook_tokens", instance=repos.HOOK_TOKENS), "tokens", lambda: _load(ctx))
    found = tokens.get(_digest(token))
    if found is None or found[1] != Status.ACTIVE:
        return None
    name, _, networks = found
    if networks:
        address = parse_client_ip(source_ip)
        if address is None or not any(address.version == n.version and address in n for n in networks):
            log.info("hook token used from outside its CIDR blocks: name=%r source_ip=%r", name, source_ip)
            return None
    return name
