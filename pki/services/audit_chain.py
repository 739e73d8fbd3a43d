"""The audit log's hash chain: computing a record's hash, and verifying the whole log.

Every record carries ``prev_hash``, the hash of the record before it, and
``hash`` = SHA-256 over a canonical JSON of its own fields (``seq``
included) and ``prev_hash``.  The one ``audit_head`` row holds the newest
record's seq and hash; an append moves it in the same transaction
(:mod:`pki.services.audit`).  Editing, removing, reordering or adding a record
outside the application breaks the chain (or leaves a record past the head),
and :func:`verify` names the first wrong record.  What the database alone
cannot show is a rewrite of the whole tail, hashes recomputed and head moved
back: pass a ``head_hash`` kept outside the database (a ticket, a log shipper)
as ``expect_head`` to catch that too.

A provisioning batch is one record holding a digest (:func:`batch_digest`)
of its devices, whose list is in the companion table
``provision_batch_device`` (a batch of thousands does not fit a record's
details); :func:`verify` recomputes each batch's digest from those rows, so
a row removed, edited or added there breaks the log as an edited record would.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..clock import ensure_utc
from ..errors import InvalidInput, InvalidState
from ..store import access_repos
from ..store import provision_repos
from ..store.access_models import GENESIS_HASH
from .context import Context
from .policy import ACTIONS

__all__ = ["canonical_json", "record_hash", "batch_digest", "VerifyResult", "verify", "check"]

#: The action of a provisioning batch's record (the one whose details name a batch).
_BATCH_ACTION = ACTIONS["device.provision"].action


def canonical_json(value: Any) -> str:
    """The JSON a hash covers: sorted keys, no spaces, UTF-8 as is."""
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
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


def batch_digest(devices: Iterable[tuple[str, str]]) -> str:
    """SHA-256 (hex) over a batch's (client id, serial) pairs in order, one canonical JSON line each."""
    digest = hashlib.sha256()
    for client_id, sn in devices:
        digest.update(canonical_json([client_id, sn]).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _row_hash(row, *, seq: int | None = None) -> str:
    """A stored record's hash recomputed from its fields (with another ``seq`` if given)."""
    return record_hash(
        seq=row.seq if seq is None else seq, time=row.time, principal=row.principal, action=row.action,
        resource=row.resource, result=row.result, error_code=row.error_code, source_ip=row.source_ip,
        request_id=row.request_id, details=row.details, prev_hash=row.prev_hash,
    )


def _original_seq(row, *, window: int = 1000) -> int | None:
    """The sequence number a renumbered (otherwise intact) record was hashed with, if near."""
    for delta in range(1, window + 1):
        for seq in (row.seq + delta, row.seq - delta):
            if seq > 0 and _row_hash(row, seq=seq) == row.hash:
                return seq
    return None


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records_checked: int
    first_bad: int | None
    # "edited" | "removed" | "reordered" | "appended" | "inserted" | "head_missing" | "batch_mismatch"
    problem: str | None
    message: str
    head_seq: int | None  # None: the head row is missing
    head_hash: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "records_checked": self.records_checked, "first_bad": self.first_bad,
            "problem": self.problem, "message": self.message, "head_seq": self.head_seq,
            "head_hash": self.head_hash,
        }


def _expected_head(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidInput(f"expected head {value!r} is not a head_hash (64 hex digits, as verify shows it)",
                           code="invalid_head_hash")
    return text


def verify(ctx: Context, *, expect_head: str | None = None, batch: int = 1000) -> VerifyResult:
    """Walk every record from the lowest sequence number up; name the first one that is wrong.

    - a sequence number missing, or the log ending before its head: ``removed``;
    - a record chained to one that exists elsewhere in the log: ``reordered``;
    - a record whose hash does not match its fields: ``edited`` (unless it
      matches with another sequence number near its own: then the log was
      renumbered after a removal, ``removed``, or shuffled, ``reordered``);
    - a record chained to a hash no record has, its own hash intact: the
      record before it was ``removed`` (or replaced whole);
    - a record past the head (appends move the head in the same
      transaction): ``appended``; one numbered below 1: ``inserted``;
    - no head row: ``head_missing``;
    - a provisioning batch whose rows in ``provision_batch_device`` do not
      match its record's digest, or rows of a batch no record names:
      ``batch_mismatch`` (checked once the chain itself is intact).

    ``expect_head`` is a ``head_hash`` saved from an earlier run, outside the
    database: a log that holds no record with that hash lost its tail (or was
    rewritten), which the chain alone cannot show.
    """
    expected_head = _expected_head(expect_head)
    with ctx.store.transaction(readonly=True) as session:
        head = access_repos.audit_head(session)
        head_seq, head_hash = head if head is not None else (None, None)
        checked, expected, prev_hash = 0, 1, GENESIS_HASH
        batches: dict[str, tuple[int, dict]] = {}  # batch id -> (seq, the record's details)

        def bad(seq: int | None, problem: str, message: str) -> VerifyResult:
            return VerifyResult(False, checked, seq, problem, message, head_seq, head_hash)

        after = None
        while True:
            rows = access_repos.audit_page(session, after_seq=after, limit=batch)
            for row in rows:
                if row.seq < 1:
                    return bad(row.seq, "inserted", f"record #{row.seq} is not part of the log (sequence numbers "
                               "start at 1): it was added outside the application")
                if head_seq is not None and row.seq > head_seq:
                    return bad(row.seq, "appended", f"record #{row.seq} is past the log's head (#{head_seq}): "
                               "it was added outside the application")
                problem = _chain_problem(session, row, expected, prev_hash)
                if problem is not None:
                    return bad(*problem)
                prev_hash, expected, checked = row.hash, expected + 1, checked + 1
                if row.action == _BATCH_ACTION:
                    details = json.loads(row.details)
                    if isinstance(details.get("batch"), str):  # older records list their devices inline
                        batches[details["batch"]] = (row.seq, details)
            if len(rows) < batch:
                break
            after = rows[-1].seq
        if head is None:
            return bad(None, "head_missing", f"the log's head (the one row of table audit_head) is missing: it was "
                       f"deleted outside the application ({checked} record(s) before it are intact)")
        if expected - 1 != head_seq:
            return bad(expected, "removed", f"the log ends at #{expected - 1} but its head is #{head_seq}: "
                       f"records from #{expected} on were removed")
        if prev_hash != head_hash:
            return bad(head_seq, "edited", f"record #{head_seq} is not the record the log's head points at: "
                       "it was edited or replaced")
        if expected_head is not None and expected_head != head_hash \
                and access_repos.audit_by_hash(session, hash=expected_head) is None:
            return bad(head_seq + 1, "removed", f"no record has the expected head {expected_head}: the log ends "
                       f"at #{head_seq}, so records after #{head_seq} up to that head were removed (or the log "
                       "was rewritten)")
        problem = _batch_problem(session, batches)
        if problem is not None:
            return bad(*problem)
    return VerifyResult(True, checked, None, None, f"{checked} record(s) verified; the chain is intact",
                        head_seq, head_hash)


def _chain_problem(session, row, expected: int, prev_hash: str) -> tuple[int, str, str] | None:
    """(first_bad, problem, message) if ``row`` is not the intact record #``expected`` after ``prev_hash``."""
    if row.seq != expected:
        return expected, "removed", (f"record #{expected} is missing: it was removed (the log jumps from "
                                     f"#{expected - 1} to #{row.seq})")
    if row.prev_hash != prev_hash:
        found = access_repos.audit_by_hash(session, hash=row.prev_hash)
        if found is not None:
            return row.seq, "reordered", (f"record #{row.seq} is chained to record #{found.seq}, not to "
                                          f"#{row.seq - 1}: records were reordered")
        if _row_hash(row) != row.hash:
            original = _original_seq(row)
            if original is not None and original > row.seq:
                return row.seq, "removed", (f"record #{row.seq} was #{original}: {original - row.seq} record(s) "
                                            "before it were removed and the rest renumbered")
            if original is not None:
                return row.seq, "reordered", f"record #{row.seq} was #{original}: records were reordered"
            return row.seq, "edited", f"record #{row.seq} was edited: its hash does not match its contents"
        return row.seq, "removed", (f"record #{row.seq} is chained to a record that is no longer in the log: "
                                    "the record before it was removed or replaced")
    if _row_hash(row) != row.hash:
        return row.seq, "edited", f"record #{row.seq} was edited: its hash does not match its contents"
    return None


def _batch_problem(session, batches: dict[str, tuple[int, dict]]) -> tuple[int | None, str, str] | None:
    """(first_bad, "batch_mismatch", message) for the first batch whose rows do not match its record."""
    found: dict[str, tuple[str, int]] = {}  # batch id -> (digest of its rows, row count)
    for batch_id, group in itertools.groupby(provision_repos.iter_batch_devices(session), key=lambda r: r[0]):
        rows = [(client_id, sn) for _batch, client_id, sn in group]
        found[batch_id] = (batch_digest(rows), len(rows))
    for batch_id, (seq, details) in sorted(batches.items(), key=lambda item: item[1][0]):
        digest, count = found.get(batch_id, (batch_digest(()), 0))
        if digest == details.get("digest"):
            continue
        recorded = details.get("count")
        how = ("rows were removed" if isinstance(recorded, int) and count < recorded else
               "rows were added" if isinstance(recorded, int) and count > recorded else "rows were edited or reordered")
        return seq, "batch_mismatch", (
            f"provisioning batch {batch_id} (record #{seq}, CA {details.get('ca_sn')}): its {count} device row(s) "
            f"in table provision_batch_device do not match the digest of the {recorded} its record holds: {how} "
            "outside the application")
    for batch_id, (_digest, count) in found.items():
        if batch_id not in batches:
            return None, "batch_mismatch", (
                f"table provision_batch_device holds {count} device row(s) of batch {batch_id}, which no audit "
                "record names: they were added outside the application")
    return None


def check(ctx: Context, *, expect_head: str | None = None) -> VerifyResult:
    """:func:`verify`, refusing a broken chain: the error (``audit_chain_broken``) carries the
    whole result as ``result``, and ``first_bad`` and ``problem``, for front ends to show."""
    result = verify(ctx, expect_head=expect_head)
    if not result.ok:
        raise InvalidState(f"the audit log was tampered with: {result.message}", code="audit_chain_broken",
                           first_bad=result.first_bad, problem=result.problem, result=result.as_json())
    return result
