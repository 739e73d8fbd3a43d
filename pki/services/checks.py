"""Fleet audit checks: what is wrong or about to go wrong across an instance, after AWS IoT Device
Defender's audit checks (https://docs.aws.amazon.com/iot-device-defender/latest/devguide/device-defender-audit-checks.html).

The interface, for every front end (CLI, HTTP, a console):

- :func:`run_checks` ``(ctx, *, device_days=30, ca_days=90, artifacts_dir=None) -> list[Finding]``:
  every finding, most severe first;
- :class:`Finding`: ``check_id``, ``severity`` (``high``, ``medium``, ``low``), ``resource``
  (``ca/<sn>``, ``device/<ca sn>/<sn>``, ``client-id/<id>``, ``audit-log``), ``message`` (what is
  wrong) and ``remedy`` (what to do), and ``as_json()``;
- :data:`CHECKS`: every check id with its severity and a one-line title;
- :func:`fleet_report`: the findings with counts, capped per check, as the front ends show them.

One pass over the store: the CAs with their CRL state (a handful of rows), then every device
certificate once, in client-id order (:func:`pki.store.check_repos.stream_devices`), so the
per-client checks keep no state beyond the current client id; the only state that grows with the
fleet is one 64-bit hash per live public key (shared-key check).  Then the audit chain is
verified (:func:`pki.services.audit_chain.verify`), which reads the audit log, not the devices.
Reading only: nothing is written, not even an audit record.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from ..clock import isoformat
from ..errors import InvalidInput
from ..store import DeviceStatus, Status, check_repos
from ..x509.checks import MIN_RSA_BITS
from ..x509.der import spki_der
from . import audit_chain
from .context import Context
from .device_profile import DEFAULT_DEVICE_DAYS

__all__ = ["Finding", "CheckInfo", "CHECKS", "SEVERITIES", "run_checks", "fleet_report", "CheckReport",
           "DEFAULT_DEVICE_DAYS_AHEAD", "DEFAULT_CA_DAYS_AHEAD"]

SEVERITIES = ("high", "medium", "low")
DEFAULT_DEVICE_DAYS_AHEAD = 30
DEFAULT_CA_DAYS_AHEAD = 90
MAX_DAYS_AHEAD = 3650
#: Findings listed per check in a report; the rest are counted (``omitted``).
DEFAULT_PER_CHECK = 1000


@dataclass(frozen=True)
class CheckInfo:
    check_id: str
    severity: str
    title: str


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one resource."""

    check_id: str
    severity: str
    resource: str
    message: str
    remedy: str

    def as_json(self) -> dict[str, str]:
        return {"check_id": self.check_id, "severity": self.severity, "resource": self.resource,
                "message": self.message, "remedy": self.remedy}


_ALL = (
    CheckInfo("device_cert_expiring", "medium", "device certificates expiring soon (or expired while ACTIVE)"),
    CheckInfo("ca_cert_expiring", "high", "CA certificates expiring soon"),
    CheckInfo("ca_crl_not_valid", "high", "a CA with no valid CRL, or a CRL past half its lifetime"),
    CheckInfo("device_key_shared", "high", "device certificates sharing one public key"),
    CheckInfo("weak_key", "high", "certificates with a key this PKI no longer accepts"),
    CheckInfo("client_id_multiple_cas", "medium", "a client id with ACTIVE certificates under two CAs"),
    CheckInfo("revoked_device_active_secret", "high", "a revoked device whose client id still has an ACTIVE secret"),
    CheckInfo("registered_crl_stale", "high", "a registered CA whose uploaded CRL is past its nextUpdate"),
    CheckInfo("ca_issuance_limit", "medium", "a CA near its issuance limit (validity left, path length)"),
    CheckInfo("audit_chain_broken", "high", "the audit log's hash chain does not verify"),
)
#: Every check, by id, in the order they are listed.
CHECKS: Mapping[str, CheckInfo] = {c.check_id: c for c in _ALL}
_ORDER = {c.check_id: i for i, c in enumerate(_ALL)}


def _finding(check_id: str, resource: str, message: str, remedy: str) -> Finding:
    return Finding(check_id, CHECKS[check_id].severity, resource, message, remedy)


#: What pki.x509.check_public_key accepts besides RSA, by pki.x509.public_key_type's names.
_STRONG_TYPES = frozenset({"ed25519", "ec-p256", "ec-p384", "ec-p521"})


def is_weak_key_type(key_type: str) -> bool:
    """A key type (as :func:`pki.x509.public_key_type` names it) that registration would refuse today."""
    if key_type.startswith("rsa-"):
        bits = key_type[4:]
        return not bits.isdigit() or int(bits) < MIN_RSA_BITS
    return key_type not in _STRONG_TYPES


def _days(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS_AHEAD:
        raise InvalidInput(f"{what} must be a whole number of days from 0 to {MAX_DAYS_AHEAD}", code="invalid_duration",
                           field=what)
    return value


def run_checks(ctx: Context, *, device_days: int = DEFAULT_DEVICE_DAYS_AHEAD, ca_days: int = DEFAULT_CA_DAYS_AHEAD,
               artifacts_dir: str | Path | None = None) -> list[Finding]:
    """Every finding of every check over the instance, most severe first.

    ``device_days``/``ca_days``: how far ahead an expiry counts.  ``artifacts_dir``: the directory
    artifacts are published into; when given, the CRL check reads the CRLs of its current
    generation (what the broker loads), else the CRL state in the store (what a publish ships).
    """
    device_days, ca_days = _days(device_days, "device_days"), _days(ca_days, "ca_days")
    now = ctx.clock.now()
    findings: list[Finding] = []
    with ctx.store.core_transaction(readonly=True) as conn:
        cas = check_repos.cas_with_crl(conn, instance=ctx.instance)
        ca_sn = {ca.id: ca.sn for ca, _ in cas}
        for ca, crl in cas:
            findings += _ca_findings(ca, crl, now=now, ca_days=ca_days, artifacts_dir=artifacts_dir)
        findings += _device_pass(conn, ctx.instance, ca_sn, now=now, device_days=device_days)
    verified = audit_chain.verify(ctx)
    if not verified.ok:
        findings.append(_finding(
            "audit_chain_broken", "audit-log", f"the audit log does not verify: {verified.message}",
            "treat it as an incident: the log was changed outside the application; restore it from a backup "
            "and compare, and find who had write access to the database"))
    findings.sort(key=lambda f: (SEVERITIES.index(f.severity), _ORDER[f.check_id], f.resource))
    return findings


# -- CAs -------------------------------------------------------------------------------------------


def _ca_findings(ca, crl, *, now: _dt.datetime, ca_days: int, artifacts_dir) -> list[Finding]:
    out: list[Finding] = []
    res = f"ca/{ca.sn}"
    if is_weak_key_type(ca.key_type):
        out.append(_finding("weak_key", res, f"CA {ca.sn} ({ca.name}) has a {ca.key_type} key, which this PKI "
                            "no longer accepts", "replace the CA: create or register one with an EC P-256, "
                            "RSA-2048+ or Ed25519 key, move its devices, then deactivate this one"))
    if ca.status != Status.ACTIVE:
        return out  # not trusted: its expiry and CRLs no longer matter to a broker
    left = ca.not_after - now
    if left <= _dt.timedelta(days=ca_days):
        when = (f"expired on {isoformat(ca.not_after)}" if left.total_seconds() <= 0
                else f"expires on {isoformat(ca.not_after)}, in {left.days} day(s)")
        out.append(_finding("ca_cert_expiring", res, f"CA {ca.sn} ({ca.name}) {when}; every device under it "
                            "stops authenticating then", "create or register its successor now and renew the "
                            "devices under it before the date"))
    out += _crl_findings(ca, crl, now=now, artifacts_dir=artifacts_dir)
    if ca.source == "managed":
        out += _limit_findings(ca, now=now)
    return out


def _crl_findings(ca, crl, *, now: _dt.datetime, artifacts_dir) -> list[Finding]:
    res = f"ca/{ca.sn}"
    remedy = ("publish the artifacts again, which signs a fresh CRL" if ca.source == "managed" else
              "have the CA's owner sign a CRL from the CRL request and upload it, then publish the artifacts")
    if artifacts_dir is not None:
        problem = _published_crl_problem(ca, Path(artifacts_dir), now=now)
        if problem is not None:
            return [_finding("ca_crl_not_valid", res, f"CA {ca.sn}: {problem}", remedy)]
        return []
    if crl is None:
        return [_finding("ca_crl_not_valid", res, f"CA {ca.sn} has no CRL: a broker that checks CRLs refuses "
                         "every device under it", remedy)]
    if crl.next_update <= now:
        if ca.source == "managed":
            return [_finding("ca_crl_not_valid", res, f"CA {ca.sn}'s CRL expired on "
                             f"{isoformat(crl.next_update)}", remedy)]
        return [_finding("registered_crl_stale", res, f"registered CA {ca.sn}: the last CRL uploaded (number "
                         f"{crl.crl_number}, this update {isoformat(crl.this_update)}) passed its nextUpdate on "
                         f"{isoformat(crl.next_update)}; brokers refuse stale CRLs", remedy)]
    half = crl.this_update + (crl.next_update - crl.this_update) / 2
    if now >= half:
        return [_finding("ca_crl_not_valid", res, f"CA {ca.sn}'s CRL is past half its lifetime (next update "
                         f"{isoformat(crl.next_update)}): a broker that caches it may keep it past that", remedy)]
    return []


def _published_crl_problem(ca, directory: Path, *, now: _dt.datetime) -> str | None:
    """Why the current generation under ``directory`` holds no valid CRL for ``ca``, or None."""
    shown = f"current/crl/{ca.sn}.pem"  # relative: the server's own paths are not the caller's business
    path = directory / shown
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except FileNotFoundError:
        return f"the published generation has no CRL for it ({shown})"
    except (OSError, ValueError) as exc:
        return f"its published CRL {shown} cannot be read ({type(exc).__name__})"
    cert = x509.load_der_x509_certificate(ca.cert_der)
    if crl.issuer != cert.subject or not crl.is_signature_valid(cert.public_key()):
        return f"its published CRL {shown} is not signed by this CA"
    next_update = crl.next_update_utc
    if next_update is None or next_update <= now:
        return f"its published CRL {shown} is past its nextUpdate"
    half = crl.last_update_utc + (next_update - crl.last_update_utc) / 2
    if now >= half:
        return f"its published CRL {shown} is past half its lifetime (next update {isoformat(next_update)})"
    return None


def _limit_findings(ca, *, now: _dt.datetime) -> list[Finding]:
    res = f"ca/{ca.sn}"
    out = []
    left = ca.not_after - now
    if _dt.timedelta(0) < left < _dt.timedelta(days=DEFAULT_DEVICE_DAYS):
        out.append(_finding("ca_issuance_limit", res, f"managed CA {ca.sn} ({ca.name}) has {left.days} day(s) "
                            f"left: a device certificate of the default {DEFAULT_DEVICE_DAYS} days no longer "
                            "fits under it", "create its successor and issue new devices from that"))
    cert = x509.load_der_x509_certificate(ca.cert_der)
    try:
        path_length = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        path_length = None
    if path_length == 0 and cert.subject == cert.issuer:
        out.append(_finding("ca_issuance_limit", res, f"managed root {ca.sn} ({ca.name}) has path length 0: it "
                            "can never sign an intermediate CA", "if intermediates are planned, create a root "
                            "without a path length limit"))
    return out


# -- devices: one pass, in client-id order --------------------------------------------------------


def _expiry_finding(row, ca_sn: Mapping[int, str], now: _dt.datetime) -> Finding:
    left = row.not_after - now
    when = (f"expired on {isoformat(row.not_after)} and is still ACTIVE" if left.total_seconds() <= 0
            else f"expires on {isoformat(row.not_after)}, in {left.days} day(s)")
    return _finding("device_cert_expiring", f"device/{ca_sn.get(row.ca_id, '?')}/{row.sn}",
                    f"the certificate of {row.client_id!r} {when}",
                    "renew it before then, or revoke it if the device is retired")


def _weak_finding(row, ca_sn: Mapping[int, str]) -> Finding:
    return _finding("weak_key", f"device/{ca_sn.get(row.ca_id, '?')}/{row.sn}",
                    f"the certificate of {row.client_id!r} has a {row.key_type} key, which this PKI no longer "
                    "accepts", "give the device a new key (EC P-256, RSA-2048+ or Ed25519) and a new certificate, "
                    "then revoke this one")


def _multi_ca_finding(client_id: str, ca_sns: list[str]) -> Finding:
    return _finding("client_id_multiple_cas", f"client-id/{client_id}", f"client id {client_id!r} has ACTIVE "
                    f"certificates under {len(ca_sns)} CAs ({', '.join(ca_sns)}): two devices may claim one "
                    "identity, and a broker lets both connect", "keep the certificate of the real device and "
                    "revoke the others (or deactivate them while you find out)")


def _device_pass(conn, instance: str, ca_sn: Mapping[int, str], *, now: _dt.datetime,
                 device_days: int) -> list[Finding]:
    """Every device once, in client-id order.  The loop is written flat (locals, no call per row but the
    SubjectPublicKeyInfo walk): at a million devices each microsecond per row is a second."""
    horizon = now + _dt.timedelta(days=device_days)
    findings: list[Finding] = []
    keys: dict[int, int] = {}  # hash() of a live SPKI -> the first device id that has it
    clashes: list[tuple[int, int]] = []
    revoked_only: list[str] = []
    weak_memo: dict[str, bool] = {}
    active, revoked = DeviceStatus.ACTIVE.value, DeviceStatus.REVOKED.value
    current = None
    active_cas: set[int] = set()
    any_active = any_revoked = False
    for row in check_repos.stream_devices(conn, instance=instance, horizon=horizon):
        device_id, ca_id, _sn, client_id, status, key_type, der, _not_after, expiring = row
        if client_id != current:
            if len(active_cas) > 1:
                findings.append(_multi_ca_finding(current, sorted(ca_sn.get(i, "?") for i in active_cas)))
            if any_revoked and not any_active:
                revoked_only.append(current)
            current, any_active, any_revoked = client_id, False, False
            active_cas.clear()
        if status == revoked:
            any_revoked = True
            continue  # a revoked certificate's key and key type no longer matter (a renewal may keep the key)
        if status == active:
            any_active = True
            active_cas.add(ca_id)
            if expiring:
                findings.append(_expiry_finding(row, ca_sn, now))
        weak = weak_memo.get(key_type)
        if weak is None:
            weak = weak_memo[key_type] = is_weak_key_type(key_type)
        if weak:
            findings.append(_weak_finding(row, ca_sn))
        spki = spki_der(der)
        if spki is not None:
            # Python's own 64-bit hash of the bytes: a clash is confirmed on the full bytes afterwards.
            first = keys.setdefault(hash(spki), device_id)
            if first != device_id:
                clashes.append((first, device_id))
    if len(active_cas) > 1:
        findings.append(_multi_ca_finding(current, sorted(ca_sn.get(i, "?") for i in active_cas)))
    if any_revoked and not any_active:
        revoked_only.append(current)
    keys.clear()
    findings += _shared_key_findings(conn, clashes, ca_sn)
    with_secret = check_repos.active_secret_client_ids(conn, instance=instance, client_ids=revoked_only)
    for client_id in sorted(with_secret):
        findings.append(_finding(
            "revoked_device_active_secret", f"client-id/{client_id}", f"every certificate of {client_id!r} is "
            "REVOKED, but its device secret is still ACTIVE: the device can still log in with a password",
            "deactivate or unregister the device secret of this client id"))
    return findings


def _shared_key_findings(conn, clashes: list[tuple[int, int]], ca_sn: Mapping[int, str]) -> list[Finding]:
    """Confirm each digest clash on the full SubjectPublicKeyInfo (8-byte digests may collide)."""
    if not clashes:
        return []
    rows = check_repos.devices_by_id(conn, ids=sorted({i for pair in clashes for i in pair}))
    groups: dict[bytes, set[int]] = {}
    for first, other in clashes:
        a, b = spki_der(rows[first][2]), spki_der(rows[other][2])
        if a == b:
            groups.setdefault(a, {first}).add(other)
    out = []
    for ids in groups.values():
        names = sorted(f"{ca_sn.get(rows[i][0], '?')}/{rows[i][1]}" for i in ids)
        for name in names:
            out.append(_finding("device_key_shared", f"device/{name}", f"{len(names)} live device certificates "
                                f"share one public key ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}): "
                                "whoever holds the key is all of those devices", "give each device its own key: "
                                "re-provision them with keys generated on the device, then revoke these"))
    return out


# -- the report front ends show --------------------------------------------------------------------


@dataclass(frozen=True)
class CheckReport:
    checked_at: _dt.datetime
    findings: list[Finding]
    counts: dict[str, int]
    omitted: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {"checked_at": isoformat(self.checked_at), "counts": self.counts, "omitted": self.omitted,
                "findings": [f.as_json() for f in self.findings]}

    def worst(self) -> str | None:
        """The most severe severity found, or None for a clean fleet."""
        return next((s for s in SEVERITIES if self.counts[s]), None)


def fleet_report(ctx: Context, *, device_days: int = DEFAULT_DEVICE_DAYS_AHEAD,
                 ca_days: int = DEFAULT_CA_DAYS_AHEAD, artifacts_dir: str | Path | None = None,
                 per_check: int = DEFAULT_PER_CHECK) -> CheckReport:
    """:func:`run_checks` with counts per severity; at most ``per_check`` findings listed per check."""
    if not 1 <= per_check <= 100_000:
        raise InvalidInput("per_check must be between 1 and 100000", code="invalid_limit", field="per_check")
    findings = run_checks(ctx, device_days=device_days, ca_days=ca_days, artifacts_dir=artifacts_dir)
    counts = {s: 0 for s in SEVERITIES}
    listed: dict[str, int] = {}
    omitted: dict[str, int] = {}
    kept = []
    for f in findings:
        counts[f.severity] += 1
        if listed.get(f.check_id, 0) < per_check:
            listed[f.check_id] = listed.get(f.check_id, 0) + 1
            kept.append(f)
        else:
            omitted[f.check_id] = omitted.get(f.check_id, 0) + 1
    return CheckReport(ctx.clock.now(), kept, counts, omitted)
