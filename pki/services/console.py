"""What the browser console (``/console``) shows that no other operation answers in one call: the
overview, devices across CAs, a CA's CRL entries, certificate PEMs.  Read-only, one transaction each."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from cryptography import x509

from ..errors import InvalidInput, NotFound
from ..ids import format_serial, looks_like_fingerprint, parse_fingerprint, parse_serial
from ..store import DeviceStatus, console_repos, repos
from .. import x509 as px509
from . import crls
from .cas import resolve_ca
from .context import Context
from .paging import after_position, page_limit, page_of, parse_status
from .schemas import Page

__all__ = ["EXPIRING_WITHIN", "CaSummary", "Overview", "overview", "findings", "DeviceRow", "list_devices", "crl_entries",
           "ca_pem", "device_pem"]

#: "Expiring soon" on the overview.
EXPIRING_WITHIN = _dt.timedelta(days=30)


@dataclass
class CaSummary:
    sn: str
    name: str
    status: str
    source: str
    not_after: _dt.datetime
    counts: dict[str, int] = field(default_factory=dict)
    expiring: int = 0
    crl_this_update: _dt.datetime | None = None
    crl_next_update: _dt.datetime | None = None
    crl_entries: int | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Overview:
    now: _dt.datetime
    cas: list[CaSummary]
    findings: list[dict]

    @property
    def totals(self) -> dict[str, int]:
        out = {s.value: 0 for s in DeviceStatus}
        for ca in self.cas:
            for status, n in ca.counts.items():
                out[status] = out.get(status, 0) + n
        return out

    @property
    def expiring(self) -> int:
        return sum(ca.expiring for ca in self.cas)


#: How long the overview reuses a run of the fleet checks: a run reads every device (about 30 s for a
#: million, BENCHMARKS.md), far too long for a page; the page says when the checks ran.
FINDINGS_MAX_AGE = _dt.timedelta(minutes=5)
#: Findings listed per check on the overview (the counts cover all of them; `check run` lists more).
FINDINGS_PER_CHECK = 5


def findings(ctx: Context) -> list[dict]:
    """The findings of the fleet checks (pki/services/checks.py, ``check run``), most severe first, each
    ``{"severity", "check", "message", "resource", "remedy"}``; a run is kept for :data:`FINDINGS_MAX_AGE`."""
    from . import checks

    now = ctx.clock.now()
    cached = ctx.peek(("console", "findings"))
    if cached is None or now - cached[0] > FINDINGS_MAX_AGE:
        report = checks.fleet_report(ctx, per_check=FINDINGS_PER_CHECK)
        cached = (now, [{"severity": f.severity, "check": f.check_id, "message": f.message, "resource": f.resource,
                         "remedy": f.remedy} for f in report.findings])
        ctx.remember(("console", "findings"), cached)
    return cached[1]


def overview(ctx: Context) -> Overview:
    """Counts by status per CA, ACTIVE certificates ending within :data:`EXPIRING_WITHIN`, each CA's
    CRL (its age is ``now - this_update``), and the fleet-check findings."""
    now = ctx.clock.now()
    with ctx.store.transaction(readonly=True) as session:
        cas = {}
        after = None
        while True:  # every CA of the instance, a keyset page at a time
            rows = repos.list_cas(session, instance=ctx.instance, status=None, after_id=after, limit=500)
            for row in rows:
                cas[row.id] = CaSummary(sn=row.sn, name=row.name, status=row.status, source=row.source,
                                        not_after=row.not_after)
            if len(rows) < 500:
                break
            after = rows[-1].id
        for ca_id, status, count in console_repos.device_counts(session, instance=ctx.instance):
            if ca_id in cas:
                cas[ca_id].counts[status] = count
        for ca_id, count in console_repos.expiring_counts(session, instance=ctx.instance, now=now,
                                                          until=now + EXPIRING_WITHIN):
            if ca_id in cas:
                cas[ca_id].expiring = count
        for ca_id, this_update, next_update, entries in console_repos.crl_states(session, instance=ctx.instance):
            if ca_id in cas:
                cas[ca_id].crl_this_update, cas[ca_id].crl_next_update = this_update, next_update
                cas[ca_id].crl_entries = entries
    return Overview(now=now, cas=list(cas.values()), findings=findings(ctx))


def _search_terms(query: str) -> dict:
    """What a search box's text may be: a client id, a serial, or a SHA-256 fingerprint (any of them)."""
    text = query.strip()
    if not text or len(text) > 256:
        raise InvalidInput("search for a client id, a serial or a SHA-256 fingerprint (at most 256 characters)",
                           code="invalid_request")
    terms: dict = {"client_id": text}
    try:
        terms["sn"] = parse_serial(text)
    except InvalidInput:
        pass
    if looks_like_fingerprint(text):
        try:
            terms["fingerprint"] = parse_fingerprint(text)
        except InvalidInput:
            pass
    return terms


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """What a device list shows: lighter than DevicePublic, whose validation cost most of a 1,000-row
    page (profile: BENCHMARKS.md)."""

    sn: str
    ca_sn: str
    client_id: str
    status: str
    not_after: _dt.datetime


def list_devices(ctx: Context, *, ca: str | None = None, query: str | None = None, status: str | None = None,
                 expiring_soon: bool = False, limit: int | None = None, cursor: str | None = None) -> Page:
    """A keyset page of :class:`DeviceRow`: a CA's devices, or the instance's across CAs; ``query``
    matches a client id, a device serial or a fingerprint exactly; ``expiring_soon``: only certificates
    ending within :data:`EXPIRING_WITHIN` (or ended already)."""
    expiring_before = ctx.clock.now() + EXPIRING_WITHIN if expiring_soon else None
    terms = _search_terms(query) if query else {}
    wanted = parse_status(status, DeviceStatus)
    size = page_limit(limit)
    after = after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        ca_id = resolve_ca(session, instance=ctx.instance, ref=ca).id if ca is not None else None
        rows = console_repos.device_rows(session, instance=ctx.instance, ca_id=ca_id, status=wanted,
                                         expiring_before=expiring_before, after_id=after, limit=size + 1, **terms)
    return page_of(rows, size, lambda r: DeviceRow(r.sn, r.ca_sn, r.client_id, r.status, r.not_after))


def crl_entries(ctx: Context, *, ca: str) -> tuple[crls.CrlInfo, list[dict]]:
    """The CA's current CRL (as the public CRL path serves it) and its entries: serial, date, reason."""
    info = crls.current_crl(ctx, ca=ca)
    crl = x509.load_der_x509_crl(info.der)
    entries = []
    for revoked in crl:
        try:
            reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        entries.append({"sn": format_serial(revoked.serial_number), "revoked_at": revoked.revocation_date_utc,
                        "reason": reason})
    return info, entries


def ca_pem(ctx: Context, ca: str) -> str:
    """The CA certificate as PEM, then its chain if it was registered with one."""
    with ctx.store.transaction(readonly=True) as session:
        row = resolve_ca(session, instance=ctx.instance, ref=ca)
        body = console_repos.ca_body(session, instance=ctx.instance, sn=row.sn)
    der, chain = body
    pem = x509.load_der_x509_certificate(der).public_bytes(px509.PEM).decode("ascii")
    return pem + (chain or "")


def device_pem(ctx: Context, *, ca: str, sn: str) -> str:
    """The device certificate as PEM."""
    with ctx.store.transaction(readonly=True) as session:
        ca_row = resolve_ca(session, instance=ctx.instance, ref=ca)
        der = console_repos.device_body(session, instance=ctx.instance, ca_sn=ca_row.sn, sn=parse_serial(sn))
    if der is None:
        raise NotFound(f"CA {ca_row.sn} has no device certificate {sn!r}; list the CA's devices to find it",
                       code="device_not_found", ca_sn=ca_row.sn)
    return x509.load_der_x509_certificate(bytes(der)).public_bytes(px509.PEM).decode("ascii")
