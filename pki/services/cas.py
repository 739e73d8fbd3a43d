"""The CA registry: register (with proof of possession), list, show, status, delete."""

from __future__ import annotations

import hmac
import logging
import unicodedata

from cryptography.hazmat.primitives import serialization

from ..errors import Conflict, InvalidInput, InvalidState, NotFound
from ..ids import looks_like_fingerprint, parse_fingerprint, parse_serial, validate_name
from ..store import CaCertificate, Status, repos
from .. import x509 as px509
from .codes import code_digest
from . import audit
from .context import Context
from .paging import DEFAULT_PAGE, MAX_PAGE, list_page, page_limit, parse_status
from .schemas import CaPublic, Page
from .status_change import change_status

__all__ = [
    "register_ca",
    "list_cas",
    "show_ca",
    "activate_ca",
    "deactivate_ca",
    "delete_ca",
    "resolve_ca",
    "parse_status",
    "page_limit",
    "MAX_PAGE",
    "DEFAULT_PAGE",
    "name_skeleton",
    "confusable_names",
]

_log = logging.getLogger("pki.cas")

#: A small fold of the letters other scripts share with Latin (Cyrillic, Greek) and of the digits
#: that pass for letters, after NFKC and casefold: enough that "Plаnt Root" with a Cyrillic "а", or
#: "PLANT R00T", is seen to look like "Plant Root".  Not Unicode's full confusables table (UTS #39):
#: only a warning rides on it, and the serial tells CAs apart for sure (`pki ca list` shows it).
_CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "һ": "h", "н": "h", "і": "i", "ј": "j", "к": "k",
    "м": "m", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t", "у": "y", "х": "x", "ԝ": "w", "ӏ": "l",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "0": "o", "1": "l",
})

def resolve_ca(session, *, instance: str, ref: str, lock: bool = False) -> CaCertificate:
    """A CA by serial (any case, colons allowed) or by SHA-256 fingerprint."""
    if looks_like_fingerprint(ref):
        row = repos.get_ca_by_fingerprint(
            session, instance=instance, fingerprint_sha256=parse_fingerprint(ref), lock=lock
        )
    else:
        row = repos.get_ca_by_sn(session, instance=instance, sn=parse_serial(ref), lock=lock)
    if row is None:
        raise NotFound(
            f"no CA {ref!r} in instance {instance!r}; list the CAs to find it",
            code="ca_not_found",
        )
    return row


def name_skeleton(name: str) -> str:
    """What a name looks like: NFKC, casefolded, look-alikes folded, invisible characters and spacing dropped."""
    folded = unicodedata.normalize("NFKC", name).casefold().translate(_CONFUSABLES)
    return " ".join("".join(ch for ch in folded if unicodedata.category(ch) != "Cf").split())


def confusable_names(session, *, instance: str, name: str) -> list[str]:
    """A warning for each CA of the instance whose name looks like ``name``, logged on pki.cas."""
    skeleton = name_skeleton(name)
    found, after = [], None
    while True:  # every CA of the instance: a handful in practice, read a page at a time
        rows = repos.list_cas(session, instance=instance, status=None, after_id=after, limit=MAX_PAGE)
        found += [row for row in rows if name_skeleton(row.name) == skeleton]
        if len(rows) < MAX_PAGE:
            break
        after = rows[-1].id
    warnings = [
        f"CA {row.sn} is already named {row.name!r}, which looks like {name!r}; tell them apart by serial "
        "(the CA list shows it) or pick another name" for row in found
    ]
    for warning in warnings:
        _log.warning("instance %s: %s", instance, warning)
    return warnings


def _pem(certs) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def register_ca(
    ctx: Context,
    *,
    certificate: bytes,
    verification: bytes,
    name: str | None = None,
    inactive: bool = False,
    chain: bytes | None = None,
) -> CaPublic:
    """Register a CA the customer owns, after checking the proof that they hold its key.

    Everything that needs no store is checked first; then one transaction
    redeems the register code (a conditional UPDATE) and inserts the CA, so a
    code is spent only by a registration that succeeds.
    """
    now = ctx.clock.now()
    ca = px509.load_certificate(certificate, what="CA certificate")
    facts = px509.check_ca_certificate(ca, now=now)
    vcert = px509.load_certificate(verification, what="verification certificate")
    code = px509.check_verification_certificate(vcert, ca, now=now)
    chain_pem = None
    if chain is not None:
        chain_certs = px509.load_certificates(chain, what="chain")
        if facts.self_issued:
            raise InvalidInput(
                "the CA is a self-signed root; a chain only belongs to an intermediate CA",
                code="chain_unexpected",
            )
        px509.check_chain(ca, chain_certs, now=now)
        chain_pem = _pem(chain_certs)
    cns = px509.common_names(ca.subject)
    display = validate_name(name if name is not None else (cns[0] if cns else facts.sn), what="name")
    digest = code_digest(code)

    with ctx.store.transaction() as session:
        # The code must be live when it is spent, not only when the request began: the checks above
        # and a wait for the write lock (bounded by the store's lock timeout) take time.
        now = ctx.clock.now()
        if not repos.redeem_register_code(session, instance=ctx.instance, code_sha256=digest, now=now):
            _explain_unredeemable(session, ctx=ctx, digest=digest, now=now)
        clash = repos.find_ca_clash(
            session,
            instance=ctx.instance,
            sn=facts.sn,
            fingerprint_sha256=facts.fingerprint_sha256,
            spki_sha256=facts.spki_sha256,
        )
        if clash is not None:
            what = (
                "this certificate"
                if clash.fingerprint_sha256 == facts.fingerprint_sha256
                else "a CA with the same key"
                if clash.spki_sha256 == facts.spki_sha256
                else "a CA with the same serial number"
            )
            raise Conflict(
                f"{what} is already registered as CA {clash.sn}",
                code="ca_already_registered",
                sn=clash.sn,
            )
        warnings = confusable_names(session, instance=ctx.instance, name=display)
        row = repos.insert_ca(
            session,
            CaCertificate(
                instance=ctx.instance,
                sn=facts.sn,
                name=display,
                status=Status.INACTIVE if inactive else Status.ACTIVE,
                source="registered",
                subject=facts.subject,
                issuer=facts.issuer,
                not_before=facts.not_before,
                not_after=facts.not_after,
                fingerprint_sha256=facts.fingerprint_sha256,
                spki_sha256=facts.spki_sha256,
                key_type=facts.key_type,
                cert_der=facts.der,
                chain_pem=chain_pem,
                created_at=now,
                updated_at=now,
                status_changed_at=now,
            ),
        )
        repos.link_register_code(session, code_sha256=digest, ca_id=row.id)
        audit.record_change(session, ctx, "ca.register", subject=row.sn, status=row.status)
    return CaPublic.of(row, warnings=warnings)


def _explain_unredeemable(session, *, ctx: Context, digest: str, now) -> None:
    """The conditional UPDATE matched nothing: say why, without a second chance to win."""
    row = repos.find_register_code(session, instance=ctx.instance, code_sha256=digest)
    # The lookup is by hash; compare_digest keeps the final decision constant-time.
    if row is None or not hmac.compare_digest(row.code_sha256, digest):
        raise InvalidInput(
            "the verification certificate's CN is not a register code of this instance; "
            "get a register code and put it, exactly, in the CN",
            code="verification_code_mismatch",
        )
    if row.used_at is not None:
        raise Conflict(
            "this register code was already used; get a new one",
            code="register_code_used",
        )
    raise InvalidState(
        "this register code has expired; get a new one",
        code="register_code_expired",
    )


def list_cas(
    ctx: Context, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Page:
    return list_page(ctx, repos.list_cas, CaPublic.of, status=status, statuses=Status, limit=limit, cursor=cursor)


def show_ca(ctx: Context, ref: str) -> CaPublic:
    with ctx.store.transaction(readonly=True) as session:
        return CaPublic.of(resolve_ca(session, instance=ctx.instance, ref=ref))


def _set_status(ctx: Context, ref: str, status: Status, operation: str) -> CaPublic:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        # No lock: issuers hold the row FOR SHARE, and two changes upgrading their shares would deadlock.
        # The conditional UPDATE of change_status orders them instead.
        row = resolve_ca(session, instance=ctx.instance, ref=ref)
        if change_status(session, row, status, what=f"CA {row.sn}", status_changed_at=now, updated_at=now):
            audit.record_change(session, ctx, operation, subject=row.sn, status=status)
        return CaPublic.of(row)


def activate_ca(ctx: Context, ref: str) -> CaPublic:
    return _set_status(ctx, ref, Status.ACTIVE, "ca.activate")


def deactivate_ca(ctx: Context, ref: str) -> CaPublic:
    """An INACTIVE CA leaves the trust bundle: all its devices are locked out."""
    return _set_status(ctx, ref, Status.INACTIVE, "ca.deactivate")


def delete_ca(ctx: Context, ref: str, *, cascade: bool = False) -> dict:
    with ctx.store.transaction() as session:
        row = resolve_ca(session, instance=ctx.instance, ref=ref)
        devices = repos.count_devices_of_ca(session, ca_id=row.id)
        if devices and not cascade:
            raise InvalidState(
                f"CA {row.sn} still has {devices} device certificate(s); delete them first, "
                "or delete them with the CA (cascade)",
                code="ca_has_devices", field="cascade", ca_sn=row.sn,
                devices=devices,
            )
        removed = repos.delete_ca(session, ca=row, cascade=cascade)
        audit.record_change(session, ctx, "ca.delete", subject=row.sn, devices_deleted=removed)
        return {"sn": row.sn, "deleted": True, "devices_deleted": removed}
