"""Naming one device certificate, listing many: the resolver every addressed device operation shares.

A device certificate is named by ``(CA serial, serial)``, by its SHA-256 fingerprint (unique in an
instance), or by its client id.  A client id names one certificate only when it is unambiguous:
:func:`choose` takes its ACTIVE certificate, else its one INACTIVE, else its one REVOKED; several at
the same rank (two ACTIVE certificates under two CAs, a renewal's overlap) is an error listing them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..clock import isoformat
from ..errors import InvalidInput, NotFound
from ..ids import decode_cursor, encode_cursor, looks_like_fingerprint, parse_fingerprint, parse_serial
from ..store import DeviceStatus, device_repos, quick
from .cas import resolve_ca
from .context import Context
from .paging import after_position, page_limit, parse_status
from .schemas import Page

__all__ = ["choose", "resolve", "list_instance_devices", "iter_devices", "iter_device_rows", "device_json",
           "EXPORT_PAGE", "EXPORT_COLUMNS"]

#: The columns of :func:`iter_device_rows`, the JSON shape's keys in order.
EXPORT_COLUMNS = device_repos.PUBLIC_COLUMNS

#: Rows per read transaction of an export: short transactions, flat memory, one indexed query each.
EXPORT_PAGE = 5000

_RANK = (DeviceStatus.ACTIVE, DeviceStatus.INACTIVE, DeviceStatus.REVOKED)


def _get(row: Any, key: str) -> Any:
    return row[key] if isinstance(row, Mapping) else getattr(row, key)


def choose(rows: Sequence[Any], *, client_id: str, instance: str) -> Any:
    """The one certificate a client id names among ``rows`` (Core rows or JSON dicts of its certificates).

    Pure, so a remote client resolves the server's answer exactly as the local store does.
    """
    for status in _RANK:
        ranked = [r for r in rows if _get(r, "status") == status]
        if len(ranked) == 1:
            return ranked[0]
        if len(ranked) > 1:
            listed = "; ".join(f"CA {_get(r, 'ca_sn')} serial {_get(r, 'sn')}" for r in ranked)
            raise InvalidInput(
                f"client id {client_id!r} has {len(ranked)} {status} certificates ({listed}); name one by its "
                "CA and serial, or by its fingerprint",
                code="ambiguous_client_id", field="client_id",
                candidates=[{"ca_sn": _get(r, "ca_sn"), "sn": _get(r, "sn"), "status": status} for r in ranked],
            )
    raise NotFound(f"instance {instance!r} has no device certificate for client id {client_id!r}",
                   code="device_not_found")


def resolve(ctx: Context, *, ca: str | None = None, sn: str | None = None, client_id: str | None = None,
            fingerprint: str | None = None) -> dict[str, str]:
    """``{"ca_sn", "sn"}`` of the one device certificate named (see the module docstring)."""
    given = [n for n, v in (("sn", sn), ("client_id", client_id), ("fingerprint", fingerprint)) if v is not None]
    if len(given) != 1:
        raise InvalidInput("name a device certificate by one of: serial and CA, client id, fingerprint",
                           code="invalid_request")
    if sn is not None:
        if ca is None:
            raise InvalidInput("a device serial needs its CA", code="invalid_request", field="ca")
        return {"ca_sn": ca, "sn": sn}
    ca_sn = None
    if ca is not None and not looks_like_fingerprint(ca):
        ca_sn = parse_serial(ca)
    with ctx.store.core_transaction(readonly=True) as conn:
        if fingerprint is not None:
            rows = device_repos.device_candidates(conn, instance=ctx.instance,
                                                  fingerprints=[parse_fingerprint(fingerprint)], ca_sn=ca_sn)
            if not rows:
                raise NotFound(f"instance {ctx.instance!r} has no device certificate with fingerprint "
                               f"{fingerprint!r}", code="device_not_found")
            row = rows[0]
        else:
            if ca is not None and ca_sn is None:
                with ctx.store.transaction(readonly=True) as session:
                    ca_sn = resolve_ca(session, instance=ctx.instance, ref=ca).sn
            rows = device_repos.device_candidates(conn, instance=ctx.instance, client_ids=[client_id], ca_sn=ca_sn)
            row = choose(rows, client_id=client_id, instance=ctx.instance)
    return {"ca_sn": row.ca_sn, "sn": row.sn}


def device_json(row: Any) -> dict[str, Any]:
    """A device row (id + public columns) as the JSON shape of :class:`pki.services.schemas.DevicePublic`."""
    out = {}
    for column in device_repos.PUBLIC_COLUMNS:
        value = getattr(row, column)
        out[column] = isoformat(value) if isinstance(value, _dt.datetime) else value
    return out


def _filters(ctx: Context, ca: str | None, status: str | None):
    wanted = parse_status(status, DeviceStatus)
    if ca is None:
        return None, wanted
    with ctx.store.transaction(readonly=True) as session:
        return resolve_ca(session, instance=ctx.instance, ref=ca).id, wanted


def _walk(ctx: Context, **kw) -> Iterator[tuple[int, Any]]:
    """``(ca row id, device row)`` in (CA, device) id order: :func:`_walk_pages` row by row."""
    for current, rows in _walk_pages(ctx, **kw):
        for row in rows:
            yield current, row


def _walk_pages(ctx: Context, *, ca_id: int | None, wanted, expiring_before, start: tuple[int | None, int | None],
                limit: int, text_times: bool = False) -> Iterator[tuple[int, Any]]:
    """``(ca row id, rows)`` pages in (CA, device) id order from ``start`` (exclusive of its device), up to
    ``limit`` rows per read transaction, CA by CA (see pki.store.device_repos.ca_page)."""
    first_ca, after = start
    with ctx.store.core_transaction(readonly=True) as conn:
        cas = [ca_id] if ca_id is not None else device_repos.ca_ids(conn, instance=ctx.instance, after_id=first_ca)
    for current in cas:
        position = after if current == first_ca else None
        while True:
            with ctx.store.core_transaction(readonly=True) as conn:
                rows = device_repos.ca_page(conn, ca_id=current, status=wanted, expiring_before=expiring_before,
                                            after_id=position, limit=limit, text_times=text_times)
            if rows:
                yield current, rows
            if len(rows) < limit:
                break
            position = rows[-1].id


def list_instance_devices(ctx: Context, *, ca: str | None = None, status: str | None = None,
                          expiring_before: _dt.datetime | None = None, limit: int | None = None,
                          cursor: str | None = None) -> Page:
    """A page of one CA's device certificates (id order), or of the instance's (CA by CA, then id order)."""
    ca_id, wanted = _filters(ctx, ca, status)
    size = page_limit(limit)
    if ca_id is not None:
        start = (ca_id, after_position(cursor))
    elif cursor:
        position = decode_cursor(cursor, keys=("ca", "id"))
        if not all(isinstance(v, int) for v in position.values()):
            raise InvalidInput("the cursor is not one this server handed out", code="invalid_cursor")
        start = (position["ca"], position["id"])
    else:
        start = (None, None)
    rows = []
    for item in _walk(ctx, ca_id=ca_id, wanted=wanted, expiring_before=expiring_before, start=start, limit=size + 1):
        rows.append(item)
        if len(rows) > size:
            break
    more = len(rows) > size
    rows = rows[:size]
    if not more:
        next_cursor = None
    elif ca_id is not None:
        next_cursor = encode_cursor({"id": rows[-1][1].id})
    else:
        next_cursor = encode_cursor({"ca": rows[-1][0], "id": rows[-1][1].id})
    return Page(items=[device_json(r) for _, r in rows], next_cursor=next_cursor)


def iter_devices(ctx: Context, *, ca: str | None = None, status: str | None = None,
                 expiring_before: _dt.datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every matching device certificate as JSON, in the order of :func:`list_instance_devices`.

    Each page (:data:`EXPORT_PAGE` rows) is its own short read transaction, so an export of a million
    rows holds no snapshot (nor, on SQLite, the WAL) for its whole run, and memory stays at one page.
    """
    ca_id, wanted = _filters(ctx, ca, status)
    for _, row in _walk(ctx, ca_id=ca_id, wanted=wanted, expiring_before=expiring_before, start=(None, None),
                        limit=EXPORT_PAGE):
        yield device_json(row)


def _iso_text(text: str | None) -> str | None:
    # SQLite's "YYYY-MM-DD HH:MM:SS[.ffffff]" (UTC) as pki.clock.isoformat writes it: whole seconds, Z.
    return None if text is None else f"{text[:10]}T{text[11:19]}Z"


def iter_device_rows(ctx: Context, *, ca: str | None = None, status: str | None = None,
                     expiring_before: _dt.datetime | None = None) -> Iterator[list[tuple]]:
    """:func:`iter_devices` as pages of value lists in :data:`EXPORT_COLUMNS` order (None for null): the
    export's fast path, the same values as the JSON shape."""
    ca_id, wanted = _filters(ctx, ca, status)
    sqlite = ctx.store.dialect == "sqlite"
    path = quick.sqlite_path(ctx.settings.database_url) if sqlite else None
    if path is not None:
        # The standard library's sqlite3, not SQLAlchemy's row handling: half the time of a big export.
        pages = quick.device_export_pages(path, instance=ctx.instance, ca_id=ca_id, status=wanted,
                                          expiring_before=expiring_before, page=EXPORT_PAGE)
        if pages is not None:
            yield from pages
            return
    times = [i for i, c in enumerate(EXPORT_COLUMNS) if c in device_repos.TIME_COLUMNS]
    for _, rows in _walk_pages(ctx, ca_id=ca_id, wanted=wanted, expiring_before=expiring_before,
                               start=(None, None), limit=EXPORT_PAGE, text_times=sqlite):
        if not sqlite:
            yield [list(device_json(row).values()) for row in rows]
            continue
        page = []
        for row in rows:
            values = list(row[1:])
            for i in times:
                values[i] = _iso_text(values[i])
            page.append(values)
        yield page
