"""CRLs: signed here for managed CAs, signed offline and uploaded for registered ones."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..clock import Clock, SystemClock, isoformat
from ..errors import InvalidInput, InvalidState, NotFound
from ..ids import format_crl_number, format_serial, parse_serial
from ..store import CaCertificate, DeviceStatus, Status, artifact_repos
from ..store.artifact_models import CrlState
from .. import x509 as px509
from ..x509.crl import HOLD, REASONS, RevokedEntry
from .cas import resolve_ca
from . import audit
from .context import Context
from .supersede import supersede_due
from .managed import ca_signer

__all__ = [
    "CRL_STATUSES",
    "DEFAULT_CRL_LIFETIME",
    "CrlInfo",
    "current_crl",
    "crl_request",
    "sign_crl_request",
    "upload_crl",
    "ensure_managed_crl",
    "listed_entries",
    "REQUEST_FORMAT",
]

DEFAULT_CRL_LIFETIME = _dt.timedelta(days=7)
MIN_CRL_LIFETIME = _dt.timedelta(hours=1)
MAX_CRL_LIFETIME = _dt.timedelta(days=366)
REQUEST_FORMAT = "pki-crl-request/1"
MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CrlInfo:
    ca_sn: str
    source: str
    crl_number: int
    this_update: _dt.datetime
    next_update: _dt.datetime
    entry_count: int
    der: bytes

    @property
    def pem(self) -> bytes:
        return x509.load_der_x509_crl(self.der).public_bytes(serialization.Encoding.PEM)

    def as_json(self) -> dict:
        return {
            "ca_sn": self.ca_sn, "source": self.source, "crl_number": format_crl_number(self.crl_number),
            "this_update": isoformat(self.this_update), "next_update": isoformat(self.next_update),
            "entry_count": self.entry_count,
        }

    @classmethod
    def of(cls, state: CrlState, *, ca_sn: str) -> "CrlInfo":
        return cls(
            ca_sn=ca_sn, source=state.source, crl_number=int(state.crl_number, 16), this_update=state.this_update,
            next_update=state.next_update, entry_count=state.entry_count, der=bytes(state.crl_der),
        )


def check_lifetime(lifetime: _dt.timedelta | int) -> _dt.timedelta:
    """A lifetime, or a number of seconds (checked before it becomes a timedelta, which may overflow)."""
    seconds = lifetime.total_seconds() if isinstance(lifetime, _dt.timedelta) else lifetime
    if not MIN_CRL_LIFETIME.total_seconds() <= seconds <= MAX_CRL_LIFETIME.total_seconds():
        raise InvalidInput("a CRL lifetime must be between 1 hour and 366 days", code="invalid_crl_lifetime")
    return lifetime if isinstance(lifetime, _dt.timedelta) else _dt.timedelta(seconds=seconds)


# -- what a CA's CRL must list --------------------------------------------------------


#: The device statuses that put a certificate on its CA's CRL (and make OCSP answer revoked).
CRL_STATUSES = (DeviceStatus.REVOKED, DeviceStatus.INACTIVE)


def listed_entries(session, *, ca_id: int) -> tuple[list[RevokedEntry], str]:
    """The entries the store says the CA's CRL must hold, and a digest of them.

    REVOKED devices with their reason, INACTIVE ones as certificateHold (so
    they drop off again once reactivated).  Sorted by serial, so the digest
    and the CRL are the same for the same state.
    """
    entries = []
    rows = artifact_repos.revocation_rows(session, ca_id=ca_id, statuses=CRL_STATUSES)
    for sn, status, reason, revoked_at, changed_at in rows:
        if status == DeviceStatus.REVOKED:
            entries.append(RevokedEntry(int(sn, 16), revoked_at or changed_at, reason or "unspecified"))
        else:
            entries.append(RevokedEntry(int(sn, 16), changed_at, HOLD))
    entries.sort(key=lambda e: e.serial)
    digest = hashlib.sha256()
    for e in entries:
        digest.update(f"{e.serial:x} {e.reason} {int(e.revoked_at.timestamp())}\n".encode())
    return entries, digest.hexdigest()


def _needs_resign(state: CrlState | None, *, digest: str, now: _dt.datetime,
                  lifetime: _dt.timedelta | None) -> bool:
    if state is None or state.entries_sha256 != digest:
        return True
    if state.this_update > now:
        # Signed "in the future" (the clock has since moved back): RFC 5280 relying parties may
        # refuse a CRL whose thisUpdate has not come yet.
        return True
    if lifetime is not None and state.next_update > now + lifetime:
        # It outlives what is asked for now (say a 1 h lifetime over a fresh 7-day CRL).
        return True
    life = state.next_update - state.this_update
    return state.next_update - now < life / 2


def ensure_managed_crl(
    ctx: Context, session, ca: CaCertificate, *, now: _dt.datetime, lifetime: _dt.timedelta = DEFAULT_CRL_LIFETIME,
    force: bool = False, shorten: bool = True,
) -> tuple[CrlState, bool]:
    """The managed CA's CRL, re-signed if the revocation state changed, half its life is gone, it
    outlives ``lifetime`` from now, or its thisUpdate is in the future.

    ``shorten=False`` keeps a CRL that outlives ``lifetime`` (a reader's default must not undo the
    operator's longer --crl-lifetime).  Returns the state and whether it was signed now.  The CRL
    number only grows.
    """
    state = artifact_repos.get_crl_state(session, ca_id=ca.id, lock=True)
    supersede_due(ctx, session, ca_id=ca.id, ca_sn=ca.sn, now=now)  # renewals whose grace ended (supersede.py)
    entries, digest = listed_entries(session, ca_id=ca.id)
    if not force and not _needs_resign(state, digest=digest, now=now, lifetime=lifetime if shorten else None):
        return state, False
    signer = ca_signer(ctx, session, ca)
    number = int(state.crl_number, 16) + 1 if state is not None else 1
    this_update = now.replace(microsecond=0)
    next_update = this_update + lifetime
    builder = px509.build_crl(
        issuer=x509.load_der_x509_certificate(ca.cert_der), entries=entries, crl_number=number,
        this_update=this_update, next_update=next_update,
    )
    der = signer.sign_crl(builder).public_bytes(serialization.Encoding.DER)
    if state is None:
        state = CrlState(ca_id=ca.id, source="signed", crl_number="0", this_update=this_update,
                         next_update=next_update, entries_sha256=digest, crl_der=der, updated_at=now)
    state.source = "signed"
    state.crl_number = format_crl_number(number)
    state.this_update, state.next_update = this_update, next_update
    state.entries_sha256, state.entry_count, state.crl_der, state.updated_at = digest, len(entries), der, now
    artifact_repos.save_crl_state(session, state)
    return state, True


def current_crl(ctx: Context, *, ca: str, lifetime: _dt.timedelta = DEFAULT_CRL_LIFETIME) -> CrlInfo:
    """The CA's current CRL: a managed CA's is refreshed when needed; a registered CA's is its upload."""
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = resolve_ca(session, instance=ctx.instance, ref=ca)
        if row.status != Status.ACTIVE:
            raise InvalidState(f"CA {row.sn} is INACTIVE: it publishes no CRL", code="ca_inactive")
        if row.key_id is not None:
            state, _ = ensure_managed_crl(ctx, session, row, now=now, lifetime=lifetime, shorten=False)
        else:
            state = artifact_repos.get_crl_state(session, ca_id=row.id)
            if state is None:
                raise NotFound(
                    f"registered CA {row.sn} has no CRL yet: export a CRL request, sign it where the key lives, "
                    "then upload the CRL",
                    code="crl_not_available", ca_sn=row.sn,
                )
        return CrlInfo.of(state, ca_sn=row.sn)


# -- registered CAs: request, offline signing, upload --------------------------------------


def crl_request(ctx: Context, *, ca: str, lifetime: _dt.timedelta = DEFAULT_CRL_LIFETIME) -> dict:
    """What a registered CA's next CRL must list, for `pki crl sign` where its key lives."""
    check_lifetime(lifetime)
    now = ctx.clock.now()
    with ctx.store.transaction(readonly=True) as session:
        row = resolve_ca(session, instance=ctx.instance, ref=ca)
        if row.key_id is not None:
            raise InvalidState(
                f"CA {row.sn} is managed: its CRL is signed here when the artifacts are published",
                code="ca_managed_crl", ca_sn=row.sn,
            )
        state = artifact_repos.get_crl_state(session, ca_id=row.id)
        entries, digest = listed_entries(session, ca_id=row.id)
    return {
        "format": REQUEST_FORMAT,
        "instance": ctx.instance,
        "ca_sn": row.sn,
        "ca_subject": row.subject,
        "ca_fingerprint_sha256": row.fingerprint_sha256,
        "crl_number": format_crl_number(int(state.crl_number, 16) + 1 if state is not None else 1),
        "lifetime_seconds": int(lifetime.total_seconds()),
        "created_at": isoformat(now),
        "entries_sha256": digest,
        "entries": [{"sn": format_serial(e.serial), "reason": e.reason, "revoked_at": isoformat(e.revoked_at)}
                    for e in entries],
    }


def _bad_request(message: str) -> InvalidInput:
    return InvalidInput(f"CRL request: {message}; export a new one", code="invalid_crl_request")


#: What an X.509 time can say (RFC 5280 4.1.2.5: UTCTime from 1950, GeneralizedTime to 9999).
_EARLIEST = _dt.datetime(1950, 1, 1, tzinfo=_dt.timezone.utc)
_LATEST = _dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=_dt.timezone.utc)


def _parse_time(value) -> _dt.datetime:
    if not isinstance(value, str):
        raise _bad_request("a time is not text")
    try:
        moment = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise _bad_request(f"{value!r} has no time zone")
        moment = moment.astimezone(_dt.timezone.utc)
    except (ValueError, OverflowError):
        raise _bad_request(f"{value!r} is not an ISO-8601 time an X.509 CRL can carry") from None
    if not _EARLIEST <= moment <= _LATEST:
        raise _bad_request(f"{value!r} is outside what an X.509 CRL can carry (1950 to 9999)")
    return moment


def _serial(value, what: str, *, least: int) -> int:
    try:
        number = int(parse_serial(str(value)), 16)
    except InvalidInput:
        number = -1
    if not least <= number < px509.MAX_CRL_NUMBER:
        raise _bad_request(f"{what} {str(value)[:48]!r} is not a positive hex number of at most 20 octets")
    return number


def _parse_request(data: bytes) -> dict:
    if len(data) > MAX_REQUEST_BYTES:
        raise _bad_request("too large")
    try:
        request = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _bad_request("not JSON") from None
    if not isinstance(request, dict) or request.get("format") != REQUEST_FORMAT:
        raise _bad_request(f"not a {REQUEST_FORMAT} document")
    for key, kind in (("ca_fingerprint_sha256", str), ("crl_number", str), ("lifetime_seconds", int),
                      ("entries", list)):
        if not isinstance(request.get(key), kind) or isinstance(request.get(key), bool):
            raise _bad_request(f"{key} is missing or of the wrong type")
    return request


def sign_crl_request(
    *, ca_certificate: bytes, ca_private_key: bytes, request: bytes, key_password: bytes | None = None,
    clock: Clock | None = None,
) -> bytes:
    """Offline, where a registered CA's key lives: the PEM CRL a `pki crl request` asks for."""
    now = (clock or SystemClock()).now()
    ca = px509.load_certificate(ca_certificate, what="CA certificate")
    key = px509.load_private_key(ca_private_key, what="CA private key", password=key_password)
    if key.public_key() != ca.public_key():
        raise InvalidInput(
            "the CA private key does not belong to the CA certificate; give the matching pair", code="key_mismatch"
        )
    req = _parse_request(request)
    if req["ca_fingerprint_sha256"] != px509.fingerprint_sha256(ca):
        raise InvalidInput(
            "this CRL request is for another CA; give the certificate and key of the CA it names",
            code="crl_request_wrong_ca",
        )
    number = _serial(req["crl_number"], "crl_number", least=0)
    lifetime = check_lifetime(req["lifetime_seconds"])
    entries = []
    for item in req["entries"]:
        if not isinstance(item, dict) or item.get("reason") not in REASONS:
            raise _bad_request("an entry lacks a serial, a known reason or a time")
        # Serial 0 and 21-octet serials are no certificate's (RFC 5280 4.1.2.2).
        entries.append(RevokedEntry(_serial(item.get("sn", ""), "serial", least=1),
                                    _parse_time(item.get("revoked_at")), item["reason"]))
    this_update = now.replace(microsecond=0)
    builder = px509.build_crl(issuer=ca, entries=entries, crl_number=number, this_update=this_update,
                              next_update=this_update + lifetime)
    crl = builder.sign(key, px509.build.hash_for_key(key))
    return crl.public_bytes(serialization.Encoding.PEM)


def upload_crl(ctx: Context, *, ca: str, crl: bytes) -> CrlInfo:
    """Store a registered CA's CRL after checking issuer, signature, freshness, number and coverage."""
    now = ctx.clock.now()
    parsed = px509.load_crl(crl)
    with ctx.store.transaction() as session:
        row = resolve_ca(session, instance=ctx.instance, ref=ca, lock=True)
        if row.key_id is not None:
            raise InvalidState(
                f"CA {row.sn} is managed: its CRL is signed here, not uploaded", code="ca_managed_crl"
            )
        ca_cert = x509.load_der_x509_certificate(row.cert_der)
        number = px509.check_crl(parsed, ca=ca_cert, now=now)
        state = artifact_repos.get_crl_state(session, ca_id=row.id, lock=True)
        if state is not None and number <= int(state.crl_number, 16):
            raise InvalidInput(
                f"CRL number {format_crl_number(number)} is not above the stored CRL's ({state.crl_number}): an old CRL must not "
                "replace a newer one. Sign a new CRL from a fresh CRL request",
                code="crl_number_not_increasing",
            )
        entries, digest = listed_entries(session, ca_id=row.id)
        missing = _missing(parsed, entries)
        if missing:
            raise InvalidInput(
                f"the CRL lacks {len(missing)} certificate(s) the store has revoked or put on hold "
                f"(e.g. {', '.join(missing[:5])}); sign a new CRL from a fresh CRL request",
                code="crl_missing_entries",
                missing=missing[:100],
            )
        der = parsed.public_bytes(serialization.Encoding.DER)
        if state is None:
            state = CrlState(ca_id=row.id, source="uploaded", crl_number="0", this_update=now, next_update=now,
                             entries_sha256=digest, crl_der=der, updated_at=now)
        state.source = "uploaded"
        state.crl_number = format_crl_number(number)
        state.this_update, state.next_update = parsed.last_update_utc, parsed.next_update_utc
        state.entries_sha256, state.entry_count, state.crl_der, state.updated_at = digest, len(parsed), der, now
        artifact_repos.save_crl_state(session, state)
        audit.record_change(session, ctx, "crl.upload", subject=row.sn, crl_number=state.crl_number)
        return CrlInfo.of(state, ca_sn=row.sn)


def _missing(crl: x509.CertificateRevocationList, entries: list[RevokedEntry]) -> list[str]:
    listed = {r.serial_number for r in crl}
    return [format_serial(e.serial) for e in entries if e.serial not in listed]


def uploaded_crl_problem(session, ca: CaCertificate, state: CrlState | None, *, now: _dt.datetime):
    """Why a registered CA's stored CRL is not good enough to publish: (code, message) or None."""
    if state is None:
        return "crl_missing", (f"registered CA {ca.sn} ({ca.name}) has no CRL: with CRL checks on, brokers refuse "
                               "every device of it. Export a CRL request, sign it where the key lives, upload the CRL")
    if state.next_update <= now:
        return "crl_stale", (f"the CRL of registered CA {ca.sn} ({ca.name}) expired at {isoformat(state.next_update)}:"
                             " brokers refuse every device of it. Upload a new one")
    entries, digest = listed_entries(session, ca_id=ca.id)
    if digest != state.entries_sha256:
        missing = _missing(x509.load_der_x509_crl(bytes(state.crl_der)), entries)
        if missing:
            return "crl_outdated", (f"the CRL of registered CA {ca.sn} lacks {len(missing)} certificate(s) revoked "
                                    "or put on hold since it was uploaded; upload a new one")
    return None
