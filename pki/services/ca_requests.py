"""A managed intermediate signed by an outside root: request (key in custody, a CSR out), then install.

1. :func:`request_ca` makes the key in custody and a PKCS#10 request for it, signed by that key (the
   key never leaves custody); the request is kept, PENDING, under a ``ref``.
2. The CSR goes to the outside root (a registered CA's owner, an offline root), which signs it.
3. :func:`install_signed` takes the certificate: it must be a CA certificate for the request's key;
   its chain comes from ``chain`` (checked up to a root) or from the issuer if that is a CA here.
   The request becomes an ACTIVE managed CA, with the certificate's serial, in one transaction.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select

from ..clock import isoformat
from ..errors import Conflict, InvalidInput, NotFound
from ..ids import validate_name
from ..keys import new_key_id
from ..store import CaCertificate, CustodyKey, Status, repos
from ..store.ca_request_models import PENDING, CaRequest
from .. import x509 as px509
from ..x509.subjects import build_csr_der
from . import audit
from .cas import confusable_names
from .context import Context
from .managed import ca_subject, check_key_type
from .schemas import CaPublic

__all__ = ["request_ca", "install_signed", "CaRequestPublic", "PENDING"]


@dataclass(frozen=True)
class CaRequestPublic:
    ref: str
    name: str
    subject: str
    key_type: str
    created_at: _dt.datetime
    csr_der: bytes
    status: str = PENDING

    @property
    def csr_pem(self) -> str:
        return x509.load_der_x509_csr(self.csr_der).public_bytes(px509.PEM).decode("ascii")

    def as_json(self) -> dict:
        return {"ref": self.ref, "name": self.name, "subject": self.subject, "key_type": self.key_type,
                "status": self.status, "created_at": isoformat(self.created_at), "csr_pem": self.csr_pem}

    @classmethod
    def of(cls, row: CaRequest) -> "CaRequestPublic":
        return cls(row.ref, row.name, row.subject, row.key_type, row.created_at, bytes(row.csr_der))


def request_ca(ctx: Context, *, name: str | None = None, subject: str | None = None,
               key_type: str = "ec-p256") -> CaRequestPublic:
    """A key in custody and a CSR for it, PENDING until :func:`install_signed`."""
    name, subject_name = ca_subject(name=name, subject=subject)
    check_key_type(key_type)
    now = ctx.clock.now()
    key_id = new_key_id()
    signer, sealed = ctx.keystore.new_key(key_type, key_id=key_id)
    public_key = signer.public_key()
    csr_der = build_csr_der(subject=subject_name, public_key=public_key, sign=signer.sign_bytes)
    ref = "req-" + secrets.token_hex(8)
    with ctx.store.transaction() as session:
        repos.insert_custody_key(session, CustodyKey(key_id=key_id, key_type=key_type, sealed=sealed, created_at=now))
        row = CaRequest(instance=ctx.instance, ref=ref, name=name, subject=subject_name.rfc4514_string(),
                        key_type=key_type, spki_sha256=px509.spki_sha256(public_key), key_id=key_id,
                        csr_der=csr_der, created_at=now)
        session.add(row)
        session.flush()
        audit.record_change(session, ctx, "ca.request", subject=ref, key_type=key_type)
        return CaRequestPublic.of(row)


def _find_request(session, ctx: Context, *, ref: str | None, spki: str) -> CaRequest:
    table = CaRequest
    if ref is not None:
        validate_name(ref, what="request")
        row = session.scalars(select(table).where(table.instance == ctx.instance, table.ref == ref)).one_or_none()
        if row is None:
            raise NotFound(f"no pending CA request {ref!r} in instance {ctx.instance!r}", code="ca_request_not_found")
        if row.spki_sha256 != spki:
            raise InvalidInput(f"the certificate is not for the key of request {ref}: its public key differs; "
                               "install the certificate the outside CA made from that request's CSR",
                               code="key_mismatch")
        return row
    row = session.scalars(select(table).where(table.instance == ctx.instance, table.spki_sha256 == spki)
                          ).one_or_none()
    if row is None:
        raise NotFound("no pending CA request holds this certificate's public key; it was not made from a CSR "
                       "of this instance (or was installed already)", code="ca_request_not_found")
    return row


def _known_issuer(session, ctx: Context, cert: x509.Certificate) -> CaCertificate | None:
    """A CA of this instance that signed ``cert`` (by subject, then signature), or None."""
    issuer = cert.issuer.rfc4514_string()
    for row in session.scalars(select(CaCertificate).where(CaCertificate.instance == ctx.instance,
                                                           CaCertificate.subject == issuer)):
        try:
            cert.verify_directly_issued_by(x509.load_der_x509_certificate(row.cert_der))
            return row
        except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError: not this one
            continue
    return None


def install_signed(ctx: Context, *, certificate: bytes, ref: str | None = None,
                   chain: bytes | None = None) -> CaPublic:
    """The outside CA's certificate for a pending request: the request becomes an ACTIVE managed CA.

    ``ref``: the request (default: the one whose key the certificate holds).  ``chain``: the issuers up
    to the root, checked; without it, the issuer must be a CA here, or the CA has no chain (a warning).
    """
    now = ctx.clock.now()
    cert = px509.load_certificate(certificate, what="CA certificate")
    facts = px509.check_ca_certificate(cert, now=now)
    if facts.self_issued:
        raise InvalidInput("the certificate is self-signed; install the one the outside CA signed",
                           code="chain_unexpected")
    chain_pem = None
    warnings: list[str] = []
    if chain is not None:
        chain_certs = px509.load_certificates(chain, what="chain")
        px509.check_chain(cert, chain_certs, now=now)
        chain_pem = "".join(c.public_bytes(px509.PEM).decode("ascii") for c in chain_certs)
    with ctx.store.transaction() as session:
        request = _find_request(session, ctx, ref=ref, spki=facts.spki_sha256)
        parent = _known_issuer(session, ctx, cert)
        if chain_pem is None and parent is not None:
            pem = x509.load_der_x509_certificate(parent.cert_der).public_bytes(px509.PEM).decode("ascii")
            chain_pem = pem + (parent.chain_pem or "")
        elif chain_pem is None:
            warnings.append(f"the issuer {facts.issuer} is not a CA here and no chain was given: devices get no "
                            "chain with their certificates; register the root, or install again with its chain")
        if facts.subject != request.subject:
            warnings.append(f"the outside CA changed the subject: asked for {request.subject}, signed "
                            f"{facts.subject}")
        if repos.find_ca_clash(session, instance=ctx.instance, sn=facts.sn,
                               fingerprint_sha256=facts.fingerprint_sha256, spki_sha256=facts.spki_sha256):
            raise Conflict("a CA with this serial, certificate or key already exists here",
                           code="ca_already_registered", sn=facts.sn)
        warnings += confusable_names(session, instance=ctx.instance, name=request.name)
        row = repos.insert_ca(session, CaCertificate(
            instance=ctx.instance, sn=facts.sn, name=request.name, status=Status.ACTIVE, source="managed",
            subject=facts.subject, issuer=facts.issuer, not_before=facts.not_before, not_after=facts.not_after,
            fingerprint_sha256=facts.fingerprint_sha256, spki_sha256=facts.spki_sha256, key_type=facts.key_type,
            cert_der=facts.der, chain_pem=chain_pem, key_id=request.key_id,
            parent_id=parent.id if parent is not None and parent.source == "managed" else None,
            created_at=now, updated_at=now, status_changed_at=now,
        ))
        session.delete(request)
        audit.record_change(session, ctx, "ca.install", subject=row.sn, request=request.ref,
                            issuer_known=parent is not None)
        return CaPublic.of(row, warnings=warnings or None)
