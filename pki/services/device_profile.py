"""The device profile of a CA: validity, URLs, the DER template, and the row a new certificate becomes.

Shared by every path that issues (pki/services/devices.py, renewal.py, est.py, provision/workers.py).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from cryptography import x509

from .. import x509 as px509
from ..errors import InvalidInput
from ..ids import format_serial
from ..store import DeviceStatus
from ..x509.template import DeviceTemplate, TemplatedCertificate
from .context import Context
from .managed import _check_can_issue

__all__ = ["DEFAULT_DEVICE_DAYS", "DeviceProfile", "device_profile", "device_template", "issuer_template", "sign_device",
           "device_row_values"]

DEFAULT_DEVICE_DAYS = 365

@dataclass(frozen=True)
class DeviceProfile:
    """Everything issuance needs from a CA, loaded once (provisioning ships it to workers)."""

    ca_id: int
    ca_sn: str
    ca_cert_der: bytes
    chain_der: tuple[bytes, ...]
    not_before: _dt.datetime
    not_after: _dt.datetime
    crl_url: str | None
    ocsp_url: str | None


def _validity(ctx: Context, ca, days: int | None, now: _dt.datetime):
    days = DEFAULT_DEVICE_DAYS if days is None else days
    if not 1 <= days <= ctx.settings.max_device_days:
        raise InvalidInput(
            f"days must be between 1 and {ctx.settings.max_device_days} (PKI_MAX_DEVICE_DAYS)",
            code="validity_too_long", field="days",
        )
    not_after = now + _dt.timedelta(days=days)
    if not_after > ca.not_after:
        raise InvalidInput(
            f"a certificate valid for {days} days would outlive CA {ca.sn} (valid until "
            f"{ca.not_after:%Y-%m-%d}); ask for fewer days",
            code="validity_exceeds_ca", field="days", ca_sn=ca.sn,
        )
    # Certificates keep whole seconds: round up so the backdate never exceeds 5 minutes.
    not_before = now - px509.build.BACKDATE
    if not_before.microsecond:
        not_before = not_before.replace(microsecond=0) + _dt.timedelta(seconds=1)
    return max(not_before, ca.not_before), not_after


def _issuer_material(ctx: Context, ca) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """The parsed CA certificate and chain: immutable for a (row id, fingerprint), so parsed once."""

    def parse():
        chain = tuple(px509.load_certificates(ca.chain_pem.encode())) if ca.chain_pem else ()
        return x509.load_der_x509_certificate(ca.cert_der), chain

    return ctx.memo(("issuer", ca.id, ca.fingerprint_sha256), parse)


def device_profile(ctx: Context, ca, *, days: int | None, now: _dt.datetime) -> DeviceProfile:
    """``ca`` is a CA row (or the issuer-state row of repos.get_issuer_state)."""
    _check_can_issue(ca, now=now)
    not_before, not_after = _validity(ctx, ca, days, now)
    _, chain = _issuer_material(ctx, ca)
    return DeviceProfile(
        ca_id=ca.id, ca_sn=ca.sn, ca_cert_der=ca.cert_der, chain_der=tuple(c.public_bytes(px509.DER) for c in chain),
        not_before=not_before, not_after=not_after, crl_url=_url(ctx.settings.crl_url, ca.sn),
        ocsp_url=_url(ctx.settings.ocsp_url, ca.sn),
    )


def _url(template: str | None, ca_sn: str) -> str | None:
    return template.replace("{ca_sn}", ca_sn) if template else None


def device_template(profile: DeviceProfile, ca_cert: x509.Certificate, signer) -> DeviceTemplate:
    """The CA's device profile as a DER template (pki/x509/template.py), for one signer's key type."""
    return DeviceTemplate(issuer=ca_cert, signer_key_type=signer.key_type, crl_url=profile.crl_url,
                          ocsp_url=profile.ocsp_url)


def issuer_template(ctx: Context, state, profile: DeviceProfile, ca_cert, signer) -> DeviceTemplate:
    """:func:`device_template`, encoded once per CA certificate, key type and URLs, and kept in ``ctx``."""
    key = ("device_template", state.id, state.fingerprint_sha256, signer.key_type, profile.crl_url, profile.ocsp_url)
    return ctx.memo(key, lambda: device_template(profile, ca_cert, signer))


def sign_device(profile: DeviceProfile, template: DeviceTemplate, signer, *, public_key, client_id: str,
                sans: tuple[x509.GeneralName, ...] = ()) -> TemplatedCertificate:
    """The device certificate from the CA's template, signed by ``signer``: its DER, serial and validity."""
    return template.issue(signer, public_key=public_key, client_id=client_id, serial=px509.random_serial(),
                          not_before=profile.not_before, not_after=profile.not_after, sans=sans)


def device_row_values(cert: x509.Certificate | TemplatedCertificate, *, instance: str, ca_id: int, client_id: str,
                      key_type: str, now: _dt.datetime, source: str = "issued") -> dict:
    if isinstance(cert, TemplatedCertificate):  # made here: its values are known, nothing to parse
        der, serial, not_before, not_after = cert.der, cert.serial, cert.not_before, cert.not_after
    else:
        der, serial = cert.public_bytes(px509.DER), cert.serial_number
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    return dict(instance=instance, ca_id=ca_id, sn=format_serial(serial), client_id=client_id,
                status=DeviceStatus.ACTIVE, source=source, fingerprint_sha256=px509.fingerprint_sha256_der(der),
                key_type=key_type, not_before=not_before, not_after=not_after, cert_der=der,
                created_at=now, updated_at=now, status_changed_at=now)
