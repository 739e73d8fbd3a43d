"""The connect blocklist: client ids, usernames and IP networks refused by every hook, until a time or
for good.  :func:`is_blocked` is the hooks' check (cached per data-plane revision)."""

from __future__ import annotations

import datetime as _dt
import ipaddress

from ...dataplane import mosquitto
from ...dataplane.rules import parse_client_ip
from ...errors import Conflict, InvalidInput, NotFound
from ...ids import parse_time, validate_client_id
from ...store import dataplane_repos as repos
from ...store.dataplane_models import BrokerBlock
from .. import audit
from ..context import Context
from ..paging import after_position, page_limit, page_of
from ..schemas import Page, UtcTime
from .common import Public, cached, field, log, memoised, parse_cidr, parse_id

__all__ = ["BlockPublic", "KINDS", "add", "list_blocks", "delete", "is_blocked"]

KINDS = ("client_id", "username", "ip")


class BlockPublic(Public):
    id: int
    kind: str
    value: str
    until: UtcTime | None
    instance: str
    created_at: UtcTime

    @classmethod
    def of(cls, row: BrokerBlock) -> "BlockPublic":
        return cls(id=row.id, kind=row.kind, value=row.value, until=row.until, instance=row.instance,
                   created_at=row.created_at)


def _entry(client_id: str | None, username: str | None, ip: str | None) -> tuple[str, str]:
    given = [(k, v) for k, v in (("client_id", client_id), ("username", username), ("ip", ip)) if v is not None]
    if len(given) != 1:
        raise InvalidInput("a blocklist entry names exactly one of a client id, a username or an IP network",
                           code="invalid_block", field="client_id")
    kind, value = given[0]
    if kind == "client_id":
        with field("client_id"):
            validate_client_id(value)
    elif kind == "username":
        # Any name a client may connect with, a device's DeviceCredential|... included.
        with field("username"):
            mosquitto.check_username(value, password_file=False)
            if len(value) > 256:
                raise InvalidInput("the username is longer than 256 characters", code="invalid_username")
    else:
        value = parse_cidr(value, field_name="ip")
    return kind, value


def _until(until, now: _dt.datetime) -> _dt.datetime | None:
    if until is None:
        return None
    with field("until"):
        when = parse_time(until, what="until") if isinstance(until, str) else until
        if not isinstance(when, _dt.datetime) or when.tzinfo is None:
            raise InvalidInput("until must be a time with a zone", code="invalid_time")
        if when <= now:
            raise InvalidInput(f"until ({when.isoformat()}) is not in the future", code="invalid_time")
    return when


def add(ctx: Context, *, client_id: str | None = None, username: str | None = None, ip: str | None = None,
        until=None) -> BlockPublic:
    kind, value = _entry(client_id, username, ip)
    now = ctx.clock.now()
    when = _until(until, now)
    with ctx.store.transaction() as session:
        existing = repos.find_block(session, instance=ctx.instance, kind=kind, value=value)
        if existing is not None:
            raise Conflict(f"the {kind.replace('_', ' ')} {value!r} is on the blocklist already (entry "
                           f"{existing.id})", code="block_exists", id=existing.id)
        row = repos.insert_row(session, BrokerBlock(instance=ctx.instance, kind=kind, value=value, until=when,
                                                    created_at=now))
        public = BlockPublic.of(row)
        audit.record_change(session, ctx, "blocklist.add", subject=f"{kind}:{value}",
                            until=when.isoformat() if when else None)
    log.info("blocklist entry added: instance=%s %s=%r", ctx.instance, kind, value)
    return public


def list_blocks(ctx: Context, *, limit: int | None = None, cursor: str | None = None) -> Page:
    size, after = page_limit(limit), after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        rows = repos.list_blocks(session, instance=ctx.instance, after_id=after, limit=size + 1)
    return page_of(rows, size, BlockPublic.of)


def delete(ctx: Context, *, id) -> dict:
    block_id = parse_id(id, what="blocklist entry", code="invalid_block")
    with ctx.store.transaction() as session:
        row = repos.get_block(session, instance=ctx.instance, block_id=block_id, lock=True)
        if row is None:
            raise NotFound(f"no blocklist entry {block_id} in instance {ctx.instance!r}", code="block_not_found",
                           id=block_id)
        repos.delete_row(session, row, instance=ctx.instance)
        audit.record_change(session, ctx, "blocklist.delete", subject=f"{row.kind}:{row.value}")
    log.info("blocklist entry deleted: instance=%s %s=%r", ctx.instance, row.kind, row.value)
    return {"id": row.id, "deleted": True}


def _load(ctx: Context) -> dict:
    with ctx.store.transaction(readonly=True) as session:
        rows = [BlockPublic.of(r) for r in repos.all_blocks(session, instance=ctx.instance)]
    return {"names": {(b.kind, b.value): b for b in rows if b.kind != "ip"},
            "networks": [(ipaddress.ip_network(b.value), b) for b in rows if b.kind == "ip"]}


def is_blocked(ctx: Context, *, username: str | None, client_id: str | None, ip: str | None) -> BlockPublic | None:
    """The entry that refuses this client now, or None.  An expired entry refuses nothing."""
    entries = memoised(cached(ctx, "blocklist"), "entries", lambda: _load(ctx))
    now = ctx.clock.now()
    found = []
    if client_id:
        found.append(entries["names"].get(("client_id", client_id)))
    if username:
        found.append(entries["names"].get(("username", username)))
    if entries["networks"]:
        address = parse_client_ip(ip)
        if address is not None:
            found += [b for net, b in entries["networks"] if address.version == net.version and address in net]
    for block in found:
        if block is not None and (block.until is None or block.until > now):
            return block
    return None
