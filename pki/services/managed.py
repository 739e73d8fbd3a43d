"""Managed CAs: created here, their keys held by key custody."""

from __future__ import annotations

import datetime as _dt

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..errors import Conflict, InvalidInput, InvalidState
from ..ids import validate_name
from ..keys import KEY_TYPES, new_key_id
from ..keys.custody import KeyHandle
from ..store import CaCertificate, Status, repos
from .. import x509 as px509
from ..x509.subjects import parse_subject
from .cas import confusable_names, resolve_ca
from . import audit
from .context import Context
from .custody import custody_from_options, handle_of, row_of
from .schemas import CaPublic

__all__ = ["create_ca", "ca_signer", "ca_subject", "check_key_type", "DEFAULT_CA_DAYS", "MAX_CA_DAYS"]

DEFAULT_CA_DAYS = 3650
MAX_CA_DAYS = 36500
#: cryptography refuses to build a longer CN (64 characters of ASCII; fewer of other scripts).
MAX_CN_OCTETS = 64


def ca_signer(ctx: Context, session, ca: CaCertificate):
    """The Signer of a managed CA (cached per context)."""
    if ca.key_id is None:
        raise InvalidState(
            f"CA {ca.sn} is registered: its key stays with its owner, so it cannot sign here. "
            "Issue from a managed CA",
            code="ca_not_managed",
        )
    cached = ctx.cached_signer(ca.key_id)
    if cached is not None:
        return cached
    return ctx.signer_for(ca_key_handle(session, ca))


def ca_key_handle(session, ca: CaCertificate) -> KeyHandle:
    """Where a managed CA's key is (software blob or token URI)."""
    return handle_of(repos.get_custody_key(session, key_id=ca.key_id))


def ca_subject(*, name: str | None, subject: str | None) -> tuple[str, x509.Name]:
    """(display name, subject) from a name (the subject is then CN=name), a full subject (the name is
    then its CN), or both."""
    if subject is not None:
        parsed = parse_subject(subject)
        if name is None:
            name = str(parsed.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    elif name is None:
        raise InvalidInput("give the CA a name or a subject", code="invalid_name", field="name")
    validate_name(name, what="name")
    if len(name.encode("utf-8")) > MAX_CN_OCTETS:
        raise InvalidInput(
            f"name is {len(name.encode('utf-8'))} octets in UTF-8; a CA's CN takes at most {MAX_CN_OCTETS} "
            "(RFC 5280 ub-common-name)", code="invalid_name",
        )
    if subject is None:
        parsed = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return name, parsed


def check_key_type(key_type: str) -> None:
    if key_type not in KEY_TYPES:
        raise InvalidInput(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}", code="unsupported_key_type")


def create_ca(
    ctx: Context,
    *,
    name: str | None = None,
    key_type: str = "ec-p256",
    days: int | None = None,
    parent: str | None = None,
    path_length: int | None = None,
    subject: str | None = None,
    custody: str = "software",
    pkcs11_module: str | None = None,
    token_label: str | None = None,
    pin_env: str | None = None,
    pin_file: str | None = None,
) -> CaPublic:
    """A managed root, or an intermediate under a managed parent.

    ``subject``: the full DN as openssl writes it (``C=DE,O=Acme,CN=Line 3``); default ``CN=name``.
    ``days``: default :data:`DEFAULT_CA_DAYS`; for an intermediate, no later than its parent's end
    (the smaller of the two), so the default never outlives the parent.
    ``custody="pkcs11"`` makes the key on the token (``pkcs11_module``, ``token_label``, the PIN
    from the environment variable ``pin_env`` or the 0600 file ``pin_file``); the store then keeps
    only the key's URI.
    """
    name, subject_name = ca_subject(name=name, subject=subject)
    check_key_type(key_type)
    if days is not None and (isinstance(days, bool) or not 1 <= days <= MAX_CA_DAYS):
        raise InvalidInput(f"days must be between 1 and {MAX_CA_DAYS}", code="invalid_validity", field="days")
    if path_length is not None and not 0 <= path_length <= 8:
        raise InvalidInput("the path length must be between 0 and 8", code="invalid_path_length",
                           field="path_length")
    now = ctx.clock.now()
    not_before = now - px509.build.BACKDATE
    not_after = now + _dt.timedelta(days=DEFAULT_CA_DAYS if days is None else days)
    holder = custody_from_options(ctx, custody=custody, pkcs11_module=pkcs11_module, token_label=token_label,
                                  pin_env=pin_env, pin_file=pin_file)
    key_id = new_key_id()
    signer, handle = holder.new_key(key_type, key_id=key_id)
    try:
        return _create_ca(ctx, name=name, subject=subject_name, key_type=key_type, days=days, parent=parent,
                          path_length=path_length, now=now, not_before=not_before, not_after=not_after, signer=signer,
                          handle=handle)
    except BaseException:
        holder.destroy(handle)  # nothing in the store names it: leave nothing on the token either
        raise


def _create_ca(ctx: Context, *, name, subject: x509.Name, key_type, days, parent, path_length, now, not_before,
               not_after, signer, handle) -> CaPublic:
    key_id = handle.key_id
    serial = px509.random_serial()

    with ctx.store.transaction() as session:
        parent_row = None
        if parent is not None:
            parent_row = resolve_ca(session, instance=ctx.instance, ref=parent, lock=True)
            parent_signer = ca_signer(ctx, session, parent_row)
            _check_can_issue(parent_row, now=now)
            parent_cert = x509.load_der_x509_certificate(parent_row.cert_der)
            parent_len = parent_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
            if parent_len == 0:
                raise InvalidState(
                    f"CA {parent_row.sn} has path length 0: it may not have intermediate CAs",
                    code="path_length_exceeded",
                )
            if path_length is None:
                path_length = 0
            if parent_len is not None and path_length >= parent_len:
                raise InvalidInput(
                    f"the path length must be below the parent's ({parent_len})", code="invalid_path_length",
                    field="path_length",
                )
            if days is None:
                not_after = min(not_after, parent_row.not_after)  # the default: never past the parent
            if not_after > parent_row.not_after:
                raise InvalidInput(
                    f"a CA valid for {days} days would outlive its parent (until {parent_row.not_after:%Y-%m-%d}); "
                    "ask for fewer days",
                    code="validity_exceeds_ca", field="days", ca_sn=parent_row.sn,
                )
            not_before = max(not_before, parent_row.not_before)
            builder = px509.build_ca_certificate(
                subject=subject, public_key=signer.public_key(), serial=serial, not_before=not_before,
                not_after=not_after, path_length=path_length, issuer=parent_cert,
            )
            cert = parent_signer.sign_certificate(builder)
        else:
            builder = px509.build_ca_certificate(
                subject=subject, public_key=signer.public_key(), serial=serial, not_before=not_before,
                not_after=not_after, path_length=path_length,
            )
            cert = signer.sign_certificate(builder)
        facts = px509.facts_of(cert)
        if repos.find_ca_clash(
            session, instance=ctx.instance, sn=facts.sn, fingerprint_sha256=facts.fingerprint_sha256,
            spki_sha256=facts.spki_sha256,
        ):
            raise Conflict("a CA with this serial already exists; run the command again", code="conflicting_change")
        warnings = confusable_names(session, instance=ctx.instance, name=name)
        repos.insert_custody_key(session, row_of(handle, created_at=now))
        row = repos.insert_ca(
            session,
            CaCertificate(
                instance=ctx.instance, sn=facts.sn, name=name, status=Status.ACTIVE, source="managed",
                subject=facts.subject, issuer=facts.issuer, not_before=facts.not_before,
                not_after=facts.not_after, fingerprint_sha256=facts.fingerprint_sha256,
                spki_sha256=facts.spki_sha256, key_type=facts.key_type, cert_der=facts.der,
                chain_pem=_parent_chain_pem(parent_row), key_id=key_id,
                parent_id=parent_row.id if parent_row is not None else None,
                created_at=now, updated_at=now, status_changed_at=now,
            ),
        )
        audit.record_change(session, ctx, "ca.create", subject=row.sn, key_type=key_type,
                            parent=parent_row.sn if parent_row is not None else None, custody=handle.custody,
                            key_id=key_id)
        return CaPublic.of(row, warnings=warnings)


def _parent_chain_pem(parent: CaCertificate | None) -> str | None:
    """An intermediate's chain: its parent, then the parent's own chain."""
    if parent is None:
        return None
    pem = x509.load_der_x509_certificate(parent.cert_der).public_bytes(px509.PEM).decode("ascii")
    return pem + (parent.chain_pem or "")


def _check_can_issue(ca, *, now: _dt.datetime) -> None:
    if ca.status != Status.ACTIVE:
        raise InvalidState(
            f"CA {ca.sn} is {ca.status}; activate it before it issues",
            code="ca_inactive", ca_sn=ca.sn,
        )
    if now > ca.not_after:
        raise InvalidState(f"CA {ca.sn} expired on {ca.not_after:%Y-%m-%d}; it can no longer issue", code="ca_expired")
    if now < ca.not_before:
        raise InvalidState(f"CA {ca.sn} is not valid yet", code="ca_not_yet_valid")
