"""Revoke many device certificates from a list: one transaction per batch, each CRL re-signed once at the end.

Each line names one certificate (see :func:`parse_line`).  A line that names nothing, or names it
ambiguously, fails alone and is reported with its number and error code; the others go on.  A
certificate already REVOKED counts as done (rerunning a list after a failure is safe).  Every change
goes on the audit log as its own ``device.revoke`` record, in the transaction that made it.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput, NotFound, PkiError
from ..ids import looks_like_fingerprint, parse_fingerprint, parse_serial, validate_client_id
from ..store import DeviceStatus, Status, device_repos, repos
from ..x509.crl import REVOCATION_REASONS
from . import audit
from .cas import resolve_ca
from .context import Context
from .crls import DEFAULT_CRL_LIFETIME, ensure_managed_crl
from .device_lookup import choose

__all__ = ["BulkRevokeResult", "parse_line", "revoke_lines", "DEFAULT_BATCH", "MAX_LINE_CHARS"]

DEFAULT_BATCH = 1000
MAX_LINE_CHARS = 512
_CA_SLASH_SN = re.compile(r"^([0-9A-Fa-f:]+)/([0-9A-Fa-f:]+)$")


@dataclass
class BulkRevokeResult:
    lines: int = 0
    revoked: int = 0
    already_revoked: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    crls_signed: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "revoked": self.revoked, "already_revoked": self.already_revoked,
                "failed": self.failed, "crls_signed": self.crls_signed}


def parse_line(text: str, *, ca: str | None = None) -> dict[str, str | None]:
    """What one line names, as the keyword arguments of :func:`pki.services.device_lookup.resolve`.

    ``fingerprint:F`` / ``sha256:F`` / 64 hex digits: a fingerprint; ``client-id:ID``: a client id;
    ``CA_SN/SN``: a serial under that CA; ``sn:SN`` or, with ``ca`` given, a bare hex serial: a serial
    under ``ca``; anything else: a client id.
    """
    line = text.strip()
    if len(line) > MAX_LINE_CHARS:
        raise InvalidInput(f"the line is longer than {MAX_LINE_CHARS} characters", code="invalid_request")
    lowered = line.lower()
    ref: dict[str, str | None] = {"ca": None, "sn": None, "client_id": None, "fingerprint": None}
    if lowered.startswith("fingerprint:"):
        ref["fingerprint"] = parse_fingerprint(line[len("fingerprint:"):].strip())
    elif lowered.startswith("client-id:"):
        ref["client_id"] = validate_client_id(line[len("client-id:"):].strip())
    elif lowered.startswith("sn:") or (ca is not None and re.fullmatch(r"[0-9A-Fa-f:]+", line)
                                       and not looks_like_fingerprint(line)):
        if ca is None:
            raise InvalidInput("a serial needs its CA: write CA_SN/SN", code="invalid_request", field="ca")
        ref["ca"], ref["sn"] = ca, parse_serial(line.split(":", 1)[1] if lowered.startswith("sn:") else line)
    elif looks_like_fingerprint(line):
        ref["fingerprint"] = parse_fingerprint(line)
    elif (m := _CA_SLASH_SN.match(line)) is not None:
        ref["ca"], ref["sn"] = m.group(1), parse_serial(m.group(2))
    else:
        ref["client_id"] = validate_client_id(line)
    return ref


def _numbered(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    for number, text in enumerate(lines, 1):
        stripped = text.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped


def _chunks(items: Iterator[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _fail(result: BulkRevokeResult, number: int, text: str, exc: PkiError) -> None:
    result.failed.append({"line": number, "text": text[:MAX_LINE_CHARS], "code": exc.code, "message": exc.message})


def revoke_lines(ctx: Context, lines: Iterable[str], *, reason: str = "unspecified", ca: str | None = None,
                 batch_size: int = DEFAULT_BATCH,
                 crl_lifetime: _dt.timedelta = DEFAULT_CRL_LIFETIME) -> BulkRevokeResult:
    """Revoke every certificate the lines name (blank lines and ``#`` comments skipped)."""
    if reason not in REVOCATION_REASONS:
        raise InvalidInput(f"reason {reason!r} is not one of {', '.join(REVOCATION_REASONS)}",
                           code="invalid_revocation_reason")
    if not 1 <= batch_size <= 10_000:
        raise InvalidInput("the batch size must be between 1 and 10000", code="invalid_batch_size")
    result = BulkRevokeResult()
    touched: set[str] = set()
    ca_sns: dict[str, str] = {}
    for chunk in _chunks(_numbered(lines), batch_size):
        result.lines += len(chunk)
        parsed = []
        for number, text in chunk:
            try:
                parsed.append((number, text, parse_line(text, ca=ca)))
            except PkiError as exc:
                _fail(result, number, text, exc)
        try:
            _revoke_batch(ctx, parsed, reason=reason, result=result, touched=touched, ca_sns=ca_sns)
        except PkiError as exc:  # the batch's transaction rolled back: every line of it failed
            for number, text, _ in parsed:
                _fail(result, number, text, exc)
    result.failed.sort(key=lambda f: f["line"])
    result.crls_signed = _resign(ctx, touched, lifetime=crl_lifetime)
    return result


def _ca_sn(ctx: Context, ref: str, ca_sns: dict[str, str]) -> str:
    if ref not in ca_sns:
        with ctx.store.transaction(readonly=True) as session:
            ca_sns[ref] = resolve_ca(session, instance=ctx.instance, ref=ref).sn
    return ca_sns[ref]


def _revoke_batch(ctx: Context, parsed, *, reason: str, result: BulkRevokeResult, touched: set[str],
                  ca_sns: dict[str, str]) -> None:
    now = ctx.clock.now()
    wanted: dict[int, Any] = {}  # device id -> row
    pending = []
    for number, text, ref in parsed:
        try:
            if ref["ca"] is not None:
                ref = {**ref, "ca": _ca_sn(ctx, ref["ca"], ca_sns)}
            pending.append((number, text, ref))
        except PkiError as exc:
            _fail(result, number, text, exc)
    with ctx.store.core_transaction() as conn:
        fingerprints = {r["fingerprint"] for _, _, r in pending if r["fingerprint"]}
        client_ids = {r["client_id"] for _, _, r in pending if r["client_id"]}
        by_fp = {row.fingerprint_sha256: row for row in device_repos.device_candidates(
            conn, instance=ctx.instance, fingerprints=sorted(fingerprints))} if fingerprints else {}
        by_client: dict[str, list] = {}
        if client_ids:
            for row in device_repos.device_candidates(conn, instance=ctx.instance, client_ids=sorted(client_ids)):
                by_client.setdefault(row.client_id, []).append(row)
        by_serial: dict[tuple[str, str], Any] = {}
        serials: dict[str, set[str]] = {}
        for _, _, r in pending:
            if r["sn"]:
                serials.setdefault(r["ca"], set()).add(r["sn"])
        for ca_sn, sns in serials.items():
            for row in device_repos.devices_by_serials(conn, instance=ctx.instance, ca_sn=ca_sn, sns=sorted(sns)):
                by_serial[(ca_sn, row.sn)] = row
        chosen = []
        for number, text, ref in pending:
            try:
                if ref["fingerprint"]:
                    row = by_fp.get(ref["fingerprint"])
                elif ref["client_id"]:
                    row = choose(by_client.get(ref["client_id"], []), client_id=ref["client_id"],
                                 instance=ctx.instance)
                else:
                    row = by_serial.get((ref["ca"], ref["sn"]))
                if row is None:
                    raise NotFound(f"no device certificate matches {text!r}", code="device_not_found")
            except PkiError as exc:
                _fail(result, number, text, exc)
                continue
            chosen.append(row)
            wanted[row.id] = row
        changed = device_repos.revoke_ids(conn, ids=sorted(wanted), reason=reason, now=now)
        records = []
        for row in chosen:
            if row.id in changed:
                changed.discard(row.id)  # a duplicate line counts once as revoked, then as already revoked
                result.revoked += 1
                records.append((f"{row.ca_sn}/{row.sn}", {"status": DeviceStatus.REVOKED, "reason": reason}))
                touched.add(row.ca_sn)
            else:
                result.already_revoked += 1
        # Last, as record_change asks: the same records as single revocations write, in one insert.
        audit.record_changes(conn, ctx, "device.revoke", records)


def _resign(ctx: Context, ca_sns: set, *, lifetime: _dt.timedelta) -> list[str]:
    """Each touched managed ACTIVE CA's CRL, signed once for the whole run (a registered CA signs its own)."""
    signed = []
    for ca_sn in sorted(ca_sns):
        with ctx.store.transaction() as session:
            ca = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca_sn)
            if ca is None or ca.key_id is None or ca.status != Status.ACTIVE:
                continue
            _, did = ensure_managed_crl(ctx, session, ca, now=ctx.clock.now(), lifetime=lifetime)
            if did:
                signed.append(ca_sn)
    return signed
