"""The audit log: append-only, hash-chained, verifiable.

Each record is chained to the one before by hash; :mod:`pki.services.audit_chain`
computes the hashes and verifies the log (:func:`verify`, :func:`check`, both
re-exported here).

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

A provisioning batch (:func:`record_batch`) is one record with a summary and
a digest; its devices are rows of a companion table, listed by
:func:`batch_devices` and checked against the digest by :func:`verify`.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import PlainSerializer
from sqlalchemy.engine import Connection
from sqlmodel import Session

from ..clock import SystemClock, ensure_utc
from ..errors import InvalidInput, InvalidState
from ..store import access_repos
from ..store import provision_repos
from ..store.access_models import AUDIT_RESULTS
from .audit_chain import VerifyResult, batch_digest, canonical_json, check, record_hash, verify
from .paging import after_position, page_limit, page_of
from . import policy as policy_engine
from .context import Context
from .schemas import Page, _Public

__all__ = [
    "record_change",
    "change_values",
    "append_changes",
    "record_batch",
    "record_changes",
    "batch_devices",
    "ACCOUNT_PRINCIPAL",
    "Actor",
    "current_actor",
    "acting_as",
    "record",
    "list_records",
    "verify",
    "check",
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
    text = canonical_json(_scrub(dict(details or {})))
    if len(text) > MAX_DETAILS_CHARS:
        text = canonical_json({"truncated": True, "chars": len(text)})
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
    """Chain ``values`` (every field but seq, prev_hash and hash) onto the head, in place.

    A log whose head row is gone, or with records past its head, was changed
    outside the application: appending would fail on a unique constraint (or
    hide the change), so the write is refused, naming what was found.
    """
    seq, prev_hash = _locked_head(target)
    values["seq"] = seq + 1
    values["prev_hash"] = prev_hash
    values["hash"] = record_hash(**values)
    access_repos.append_audit(target, values=values)


def _locked_head(target: Session | Connection) -> tuple[int, str]:
    """The head's (seq, hash), locked; refused when the log was changed outside the application."""
    head = access_repos.lock_audit_head(target)
    if head is None:
        raise InvalidState(
            "the audit log's head (the one row of table audit_head) is missing: it was deleted outside the "
            "application. Nothing was changed; verify the audit log, then restore the database from a backup",
            code="audit_chain_broken", problem="head_missing",
        )
    seq, prev_hash, last_seq = head
    if last_seq > seq:
        raise InvalidState(
            f"the audit log holds record #{last_seq}, past its head (#{seq}): it was added outside the "
            "application. Nothing was changed; verify the audit log, then restore the database from a backup",
            code="audit_chain_broken", problem="appended", head_seq=seq, last_seq=last_seq,
        )
    return seq, prev_hash


def change_values(ctx: Context, operation: str, *, subject: str, **details: Any) -> dict:
    """The record :func:`record_change` would append, not yet chained: for :func:`append_changes`."""
    return _values(
        action=policy_engine.ACTIONS[operation].action,
        resource=policy_engine.resource_name(ctx.settings.region, ctx.settings.account_id, ctx.instance),
        result="success", error_code=None, details={"operation": operation, "subject": subject, **details},
        principal=None, source_ip=None, request_id=None, now=ctx.clock.now(),
    )


def append_changes(target: Session | Connection, records: list[dict]) -> None:
    """Chain ``records`` (from :func:`change_values`) onto the head in memory, in order, and insert them
    with one statement and one move of the head: the hash chain is the same as appending them one by one.
    Same transaction as the changes, called last (it holds the head lock)."""
    if not records:
        return
    seq, prev_hash = _locked_head(target)
    for values in records:
        seq += 1
        values["seq"] = seq
        values["prev_hash"] = prev_hash
        values["hash"] = prev_hash = record_hash(**values)
    access_repos.append_audit_many(target, records)


def record_change(
    target: Session | Connection, ctx: Context, operation: str, *, subject: str, **details: Any
) -> None:
    """A successful change, in the transaction that made it: call it last (it holds the head lock).

    ``operation`` is the CLI operation (``"device.issue"``); the record carries
    its RAM action, the instance resource, and ``subject`` (what changed:
    a serial, ``ca_sn/sn``, a client id) in its details.
    """
    # record() without the public copy it returns: this is on every change's path.
    _append(target, change_values(ctx, operation, subject=subject, **details))


def record_changes(target: Session | Connection, ctx: Context, operation: str,
                   changes: list[tuple[str, dict[str, Any]]]) -> None:
    """One record per ``(subject, details)``, as :func:`record_change` writes them, chained and inserted
    together (a bulk revocation of thousands): the same records, one head lock and one insert."""
    append_changes(target, [change_values(ctx, operation, subject=subject, **details) for subject, details in changes])


def record_batch(target: Session | Connection, ctx: Context, *, ca_sn: str,
                 devices: list[tuple[str, str]]) -> str:
    """A provisioning batch, in the transaction that inserted its certificates; returns its id.

    The record holds the CA, the count, the first and last client id and the
    digest of the (client id, serial) pairs in order; the pairs go to the
    companion table (a batch of thousands does not fit MAX_DETAILS_CHARS).
    Like :func:`record_change`, call it last.
    """
    batch_id = uuid.uuid4().hex
    provision_repos.insert_batch_devices(target, batch_id=batch_id, devices=devices)
    record_change(target, ctx, "device.provision", subject=ca_sn, batch=batch_id, ca_sn=ca_sn, count=len(devices),
                  first_client_id=devices[0][0] if devices else None,
                  last_client_id=devices[-1][0] if devices else None, digest=batch_digest(devices))
    return batch_id


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
        rows = access_repos.audit_page(
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




def batch_devices(ctx: Context, batch: str, *, limit: int | None = None, cursor: str | None = None) -> Page:
    """A page of a provisioning batch's devices ({position, client_id, sn}), in the batch's order;
    ``batch`` is the id its record's details name.  An unknown batch is an empty page."""
    size = page_limit(limit)
    position = after_position(cursor, key="position")
    with ctx.store.transaction(readonly=True) as session:
        rows = provision_repos.batch_devices_page(session, batch_id=str(batch), after_position=position,
                                                  limit=size + 1)
    return page_of(rows, size, lambda row: {"position": row.position, "client_id": row.client_id, "sn": row.sn},
                   key="position")
