"""Key custody as services see it: handles from store rows, new keys, and ``pki keys list``."""

from __future__ import annotations

from sqlalchemy import select

from ..clock import isoformat
from ..errors import InvalidInput
from ..keys import CUSTODIES, KeyCustody, KeyHandle, Pkcs11Custody, Pkcs11Location, SoftwareKeystore
from ..store import CaCertificate, CustodyKey
from ..store.artifact_models import OcspSigner
from .context import Context

__all__ = ["custody_from_options", "handle_of", "list_keys", "row_of"]


def handle_of(row) -> KeyHandle:
    """The handle a custody_key row holds (a Row or a CustodyKey)."""
    custody = getattr(row, "custody", None) or "software"
    return KeyHandle(custody, row.key_id, row.key_type, key_ref=row.key_ref,
                     sealed=bytes(row.sealed) if custody == "software" else None)


def row_of(handle: KeyHandle, *, created_at) -> CustodyKey:
    """The custody_key row for a new key: the sealed blob, or the URI and no key bytes at all."""
    return CustodyKey(key_id=handle.key_id, key_type=handle.key_type, sealed=handle.sealed or b"",
                      custody=handle.custody, key_ref=handle.key_ref, created_at=created_at)


def custody_from_options(ctx: Context, *, custody: str = "software", pkcs11_module: str | None = None,
                         token_label: str | None = None, pin_env: str | None = None,
                         pin_file: str | None = None) -> KeyCustody:
    """The custody a new CA key goes to; a PKCS#11 one is checked (module, token, PIN) before any change."""
    if custody not in CUSTODIES:
        raise InvalidInput(f"custody must be one of {', '.join(CUSTODIES)}, not {custody!r}",
                           code="unsupported_custody", field="custody")
    if custody == "software":
        if any(v is not None for v in (pkcs11_module, token_label, pin_env, pin_file)):
            raise InvalidInput("a PKCS#11 module, token or PIN source only applies to pkcs11 custody",
                               code="invalid_custody")
        from ..keys import SoftwareCustody

        return SoftwareCustody(ctx.keystore)
    if not pkcs11_module or not token_label:
        raise InvalidInput("pkcs11 custody needs the PKCS#11 module path and the token label",
                           code="invalid_custody")
    if pin_env is not None and pin_file is not None:
        raise InvalidInput("name one PIN source: an environment variable or a file", code="invalid_custody")
    chosen = Pkcs11Custody(Pkcs11Location(module=pkcs11_module, token_label=token_label,
                                          pin_env=pin_env if pin_file is None else None, pin_file=pin_file))
    chosen.check()
    return chosen


def list_keys(ctx: Context) -> dict:
    """Every custody key: kind, type, where it is, the CAs that use it, when made.  No secret material."""
    with ctx.store.transaction(readonly=True) as session:
        keys = session.execute(select(CustodyKey.key_id, CustodyKey.key_type, CustodyKey.custody,
                                      CustodyKey.key_ref, CustodyKey.sealed, CustodyKey.created_at)
                               .order_by(CustodyKey.created_at, CustodyKey.key_id)).all()
        cas: dict[str, list[dict]] = {}
        for key_id, sn, instance in session.execute(
                select(CaCertificate.key_id, CaCertificate.sn, CaCertificate.instance)
                .where(CaCertificate.key_id.is_not(None))):
            cas.setdefault(key_id, []).append({"ca_sn": sn, "instance": instance, "use": "ca"})
        for key_id, sn, instance in session.execute(
                select(OcspSigner.key_id, CaCertificate.sn, CaCertificate.instance)
                .join(CaCertificate, CaCertificate.id == OcspSigner.ca_id)):
            cas.setdefault(key_id, []).append({"ca_sn": sn, "instance": instance, "use": "ocsp"})
    items = []
    for key_id, key_type, custody, key_ref, sealed, created_at in keys:
        custody = custody or "software"
        item = {"key_id": key_id, "custody": custody, "key_type": key_type,
                "created_at": isoformat(created_at), "used_by": cas.get(key_id, [])}
        if custody == "pkcs11":
            # The URI names the module, token and object, and at most where the PIN is read: never the PIN.
            item["uri"] = key_ref
        else:
            item["master_key_id"] = SoftwareKeystore.sealed_by(bytes(sealed))
        items.append(item)
    return {"items": items, "next_cursor": None}
