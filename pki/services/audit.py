"""The audit log: append-only, hash-chained, verifiable.

Every record carries ``prev_hash``, the hash of the record before it, and
``hash`` = SHA-256 over a canonical JSON of its own fields (``seq``
included) and ``prev_hash``.  Editing, removing or reordering a record breaks
the chain at that record, and :func:`verify` names it.  What the chain cannot
show by itself is a rewrite of the whole tail, hashes recomputed and head
moved: compare ``head_hash`` from :func:`verify` with a value kept outside
the database (a ticket, a log shipper) to catch that too.

Appending (:func:`record`) locks the one ``audit_head`` row, so concurrent
writers on PostgreSQL queue there and SQLite writers are serialised by the
database lock; unique constraints on ``prev_hash`` and ``hash`` refuse a fork
even from a writer that skipped the lock.  The lock is held until the
transaction ends: a service should call :func:`record` as its last statement.

A service records its change in its own transaction, in one line::

    audit.record(session, action="mq:RevokeDeviceCertificate", resource=res,
                 details={"ca_sn": ca.sn, "sn": sn, "reason": reason}, now=now)

Who did it (principal, source IP, request id) comes from the current
:class:`Actor`, which a front end sets per request with :func:`acting_as`;
without one it is the account (the local CLI).  Details never hold secrets:
any key that looks like one (``secret``, ``password``, ``private_key``,
``token``...) has its value replaced by ``"[redacted]"``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import PlainSerializer
from sqlalchemy.engine import Connection
from sqlmodel import Session

from ..clock import SystemClock, ensure_utc
from ..errors import InvalidInput
from ..store import access_repos as repos
from ..store.access_models import AUDIT_RESULTS, GENESIS_HASH
from .paging import after_position, page_limit, page_of
from . import policy
from .context import Context
from .schemas import Page, _Public

__all__ = [
    "record_change",
    "ACCOUNT_PRINCIPAL",
    "Actor",
    "current_actor",
    "acting_as",
    "record",
    "list_records",
    "verify",
    "VerifyResult",
    "AuditRecordPublic",
    "record_hash",
    "MAX_DETAILS_CHARS",
]

#: The root principal's name on the log.
ACCOUNT_PRINCIPAL = "account"
MAX_DETAILS_CHARS = 8192
_SECRET_WORDS = ("secret", "password", "passphrase", "private_key", "privatekey", "token", "credential_value")
_REDACTED = "[redacted]"
_LIMITS = {"principal": 128, "action": 128, "error_code": 64, "source_ip": 64, "request_id": 128}


# == who is acting ===========================================================================


@dataclass(frozen=True)
class Actor:
    """The principal behind the current request, and where it came from."""

    principal: str = ACCOUNT_PRINCIPAL
    source_ip: str | None = None
    request_id: str | None = None


_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("pki_audit_actor", default=None)


def current_actor() -> Actor:
    return _actor.get() or Actor()


@contextlib.contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Attribute every record made inside the block to ``actor`` (per thread / task)."""
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


# == the record and its hash =================================================================


def _precise(value: _dt.datetime) -> str:
    # The hash covers microseconds, so the output shows them (the CLI's other times show seconds).
    return ensure_utc(value).isoformat(timespec="microseconds").replace("+00:00", "Z")


PreciseUtcTime = Annotated[_dt.datetime, PlainSerializer(_precise, return_type=str)]


class AuditRecordPublic(_Public):
    seq: int
    time: PreciseUtcTime
    principal: str
    action: str
    resource: str
    result: str
    error_code: str | None
    source_ip: str | None
    request_id: str | None
    details: dict
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, row) -> "AuditRecordPublic":
        return cls(
            seq=row.seq, time=row.time, principal=row.principal, action=row.action, resource=row.resource,
            result=row.result, error_code=row.error_code, source_ip=row.source_ip, request_id=row.request_id,
            details=json.loads(row.details), prev_hash=row.prev_hash, hash=row.hash,
        )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(
    *, seq: int, time: _dt.datetime, principal: str, action: str, resource: str, result: str,
    error_code: str | None, source_ip: str | None, request_id: str | None, details: str, prev_hash: str,
) -> str:
    """SHA-256 (hex) over the canonical JSON of a record's fields; ``details`` as its stored text."""
    fields = {
        "seq": seq,
        "time": ensure_utc(time).isoformat(timespec="microseconds"),
        "principal": principal,
        "action": action,
        "resource": resource,
        "result": result,
        "error_code": error_code,
        "source_ip": source_ip,
        "request_id": request_id,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(_canonical(fields).encode("utf-8")).hexdigest()


def _row_hash(row) -> str:
    return record_hash(
        seq=row.seq, time=row.time, principal=row.principal, action=row.action, resource=row.resource,
        result=row.result, error_code=row.error_code, source_ip=row.source_ip, request_id=row.request_id,
        details=row.details, prev_hash=row.prev_hash,
    )


def _original_seq(row, *, window: int = 1000) -> int | None:
    """The sequence number a renumbered (otherwise intact) record was hashed with, if near."""
    for delta in range(1, window + 1):
        for seq in (row.seq + delta, row.seq - delta):
            if seq > 0 and record_hash(
                seq=seq, time=row.time, principal=row.principal, action=row.action, resource=row.resource,
                result=row.result, error_code=row.error_code, source_ip=row.source_ip,
                request_id=row.request_id, details=row.details, prev_hash=row.prev_hash,
            ) == row.hash:
                return seq
    return None


def _looks_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _scrub(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): (_REDACTED if _looks_secret(str(k)) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    if isinstance(value, _dt.datetime):
        return ensure_utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _details_text(details: Mapping[str, Any] | None) -> str:
    text = _canonical(_scrub(dict(details or {})))
    if len(text) > MAX_DETAILS_CHARS:
        text = _canonical({"truncated": True, "chars": len(text)})
    return text


def _clip(name: str, value: str | None) -> str | None:
    return None if value is None else str(value)[: _LIMITS[name]]


def record(
    target: Context | Session | Connection,
    *,
    action: str,
    resource: str = "",
    result: str = "success",
    error_code: str | None = None,
    details: Mapping[str, Any] | None = None,
    principal: str | None = None,
    source_ip: str | None = None,
    request_id: str | None = None,
    now: _dt.datetime | None = None,
) -> AuditRecordPublic:
    """Append one record.

    ``target`` is a Session or Connection (the record commits, or rolls back,
    with the caller's transaction) or a Context (a transaction of its own:
    for refusals, which change nothing else).  ``principal``, ``source_ip``
    and ``request_id`` default to the current :class:`Actor`; ``now`` to the
    Context's clock, or the system clock.
    """
    if result not in AUDIT_RESULTS:
        raise ValueError(f"result must be one of {AUDIT_RESULTS}")
    if result != "success" and not error_code:
        error_code = "access_denied" if result == "denied" else "failed"
    if isinstance(target, Context):
        when = now or target.clock.now()
        with target.store.transaction() as session:
            return record(
                session, action=action, resource=resource, result=result, error_code=error_code,
                details=details, principal=principal, source_ip=source_ip, request_id=request_id, now=when,
            )
    values = _values(action=action, resource=resource, result=result, error_code=error_code, details=details,
                     principal=principal, source_ip=source_ip, request_id=request_id, now=now)
    _append(target, values)
    return AuditRecordPublic(**{**values, "details": json.loads(values["details"])})


def _values(*, action: str, resource: str, result: str, error_code: str | None, details: Mapping[str, Any] | None,
            principal: str | None, source_ip: str | None, request_id: str | None, now: _dt.datetime | None) -> dict:
    """A record's own fields; who acted defaults to the current Actor."""
    actor = current_actor()
    return {
        "time": ensure_utc(now or SystemClock().now()),
        "principal": _clip("principal", principal or actor.principal),
        "action": _clip("action", action),
        "resource": str(resource),
        "result": result,
        "error_code": _clip("error_code", error_code),
        "source_ip": _clip("source_ip", source_ip if source_ip is not None else actor.source_ip),
        "request_id": _clip("request_id", request_id if request_id is not None else actor.request_id),
        "details": _details_text(details),
    }


def _append(target: Session | Connection, values: dict) -> None:
    """Chain ``values`` (every field but seq, prev_hash and hash) onto the head, in place."""
    seq, prev_hash = repos.lock_audit_head(target)
    values["seq"] = seq + 1
    values["prev_hash"] = prev_hash
    values["hash"] = record_hash(**values)
    repos.append_audit(target, values=values)


def record_change(
    target: Session | Connection, ctx: Context, operation: str, *, subject: str, **details: Any
) -> None:
    """A successful change, in the transaction that made it: call it last (it holds the head lock).

    ``operation`` is the CLI operation (``"device.issue"``); the record carries
    its RAM action, the instance resource, and ``subject`` (what changed:
    a serial, ``ca_sn/sn``, a client id) in its details.
    """
    # record() without the public copy it returns: this is on every change's path.
    _append(target, _values(
        action=policy.ACTIONS[operation].action,
        resource=policy.resource_name(ctx.settings.region, ctx.settings.account_id, ctx.instance),
        result="success", error_code=None, details={"operation": operation, "subject": subject, **details},
        principal=None, source_ip=None, request_id=None, now=ctx.clock.now(),
    ))


# == reading =================================================================================


def list_records(
    ctx: Context,
    *,
    limit: int | None = None,
    cursor: str | None = None,
    principal: str | None = None,
    action: str | None = None,
    result: str | None = None,
    newest_first: bool = False,
) -> Page:
    """A page of records in sequence order (or newest first), optionally filtered."""
    size = page_limit(limit)
    if result is not None and result not in AUDIT_RESULTS:
        raise InvalidInput(f"result {result!r} is not one of {', '.join(AUDIT_RESULTS)}", code="invalid_result")
    position = after_position(cursor, key="seq")
    with ctx.store.transaction(readonly=True) as session:
        rows = repos.audit_page(
            session,
            after_seq=None if newest_first else position,
            before_seq=position if newest_first else None,
            limit=size + 1,
            descending=newest_first,
            principal=principal,
            action=action,
            result=result,
        )
    return page_of(rows, size, AuditRecordPublic.of, key="seq")


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records_checked: int
    first_bad: int | None
    problem: str | None  # "edited" | "removed" | "reordered"
    message: str
    head_seq: int
    head_hash: str

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "records_checked": self.records_checked, "first_bad": self.first_bad,
            "problem": self.problem, "message": self.message, "head_seq": self.head_seq,
            "head_hash": self.head_hash,
        }


def verify(ctx: Context, *, batch: int = 1000) -> VerifyResult:
    """Walk the chain from the first record to the head; name the first record that is wrong.

    - a sequence number missing, or the log ending before its head: ``removed``;
    - a record chained to one that exists elsewhere in the log: ``reordered``;
    - a record whose hash does not match its fields: ``edited`` (unless it
      matches with another sequence number near its own: then the log was
      renumbered after a removal, ``removed``, or shuffled, ``reordered``);
    - a record chained to a hash no record has, its own hash intact: the
      record before it was ``removed`` (or replaced whole).
    """
    with ctx.store.transaction(readonly=True) as session:
        head_seq, head_hash = repos.audit_head(session)
        checked, expected, prev_hash = 0, 1, GENESIS_HASH

        def bad(seq: int, problem: str, message: str) -> VerifyResult:
            return VerifyResult(False, checked, seq, problem, message, head_seq, head_hash)

        after = 0
        while after < head_seq:
            rows = repos.audit_page(session, after_seq=after, limit=batch)
            rows = [r for r in rows if r.seq <= head_seq]
            if not rows:
                break
            for row in rows:
                if row.seq != expected:
                    return bad(expected, "removed", f"record #{expected} is missing: it was removed "
                               f"(the log jumps from #{expected - 1} to #{row.seq})")
                if row.prev_hash != prev_hash:
                    found = repos.audit_by_hash(session, hash=row.prev_hash)
                    if found is not None:
                        return bad(row.seq, "reordered", f"record #{row.seq} is chained to record #{found.seq}, "
                                   f"not to #{row.seq - 1}: records were reordered")
                    if _row_hash(row) != row.hash:
                        original = _original_seq(row)
                        if original is not None and original > row.seq:
                            return bad(row.seq, "removed", f"record #{row.seq} was #{original}: "
                                       f"{original - row.seq} record(s) before it were removed and the rest "
                                       "renumbered")
                        if original is not None:
                            return bad(row.seq, "reordered", f"record #{row.seq} was #{original}: records "
                                       "were reordered")
                        return bad(row.seq, "edited", f"record #{row.seq} was edited: its hash does not "
                                   "match its contents")
                    return bad(row.seq, "removed", f"record #{row.seq} is chained to a record that is no "
                               "longer in the log: the record before it was removed or replaced")
                if _row_hash(row) != row.hash:
                    return bad(row.seq, "edited", f"record #{row.seq} was edited: its hash does not match "
                               "its contents")
                prev_hash, expected, checked = row.hash, expected + 1, checked + 1
            after = rows[-1].seq
            if len(rows) < batch:
                break
        if expected - 1 != head_seq:
            return bad(expected, "removed", f"the log ends at #{expected - 1} but its head is #{head_seq}: "
                       f"records from #{expected} on were removed")
        if prev_hash != head_hash:
            return bad(head_seq, "edited", f"record #{head_seq} is not the record the log's head points at: "
                       "it was edited or replaced")
    return VerifyResult(True, checked, None, None, f"{checked} record(s) verified; the chain is intact",
                        head_seq, head_hash)
