"""Repositories for nonces and rate limits, and the HTTP API's hot device read.  They never commit.

Each takes a Connection or a Session (anything with ``execute``) and works on
SQLite and PostgreSQL alike: the nonce insert is ``ON CONFLICT DO NOTHING``
(a replay returns no row, not an exception that would spoil a
PostgreSQL transaction), the bucket take a conditional UPDATE on
``version`` (compare-and-set: two processes cannot both spend one token).
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from .http_models import HttpNonce, HttpRateBucket
from .models import CaCertificate, DeviceCertificate

__all__ = ["remember_nonce", "purge_nonces", "get_bucket", "create_bucket", "take_from_bucket",
           "device_detail_row", "replaced_by"]

_NONCE = HttpNonce.__table__
_BUCKET = HttpRateBucket.__table__


def _dialect(target) -> str:
    return (getattr(target, "dialect", None) or target.get_bind().dialect).name


def _insert(target, table):
    return postgresql.insert(table) if _dialect(target) == "postgresql" else sqlite.insert(table)


def _remember_statement(dialect: str):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(_NONCE).values(access_key_id=bindparam("k"), nonce=bindparam("n"), expires_at=bindparam("e"))
            .on_conflict_do_nothing(index_elements=["access_key_id", "nonce"]).returning(_NONCE.c.id))


# Built once per dialect: this insert is on every signed request's path.
_REMEMBER = {name: _remember_statement(name) for name in ("postgresql", "sqlite")}


def remember_nonce(target, *, access_key_id: str, nonce: str, expires_at: _dt.datetime) -> bool:
    """True if the nonce is new for this key; False if it was seen (a replay)."""
    stmt = _REMEMBER[_dialect(target)]
    return target.execute(stmt, {"k": access_key_id, "n": nonce, "e": expires_at}).first() is not None


def purge_nonces(target, *, now: _dt.datetime) -> int:
    """Forget nonces whose timestamps can no longer pass the skew check anyway."""
    return target.execute(delete(_NONCE).where(_NONCE.c.expires_at < now)).rowcount


def get_bucket(target, *, access_key_id: str):
    return target.execute(
        select(_BUCKET.c.tokens, _BUCKET.c.updated_at, _BUCKET.c.version).where(
            _BUCKET.c.access_key_id == access_key_id)
    ).first()


def create_bucket(target, *, access_key_id: str, tokens: float, at: float) -> bool:
    """Insert a bucket; False if another process made it first."""
    stmt = _insert(target, _BUCKET).values(access_key_id=access_key_id, tokens=tokens, updated_at=at, version=1)
    stmt = stmt.on_conflict_do_nothing(index_elements=["access_key_id"]).returning(_BUCKET.c.access_key_id)
    return target.execute(stmt).first() is not None


def take_from_bucket(target, *, access_key_id: str, version: int, tokens: float, at: float) -> bool:
    """Set the bucket to ``tokens`` if nobody changed it since ``version`` was read."""
    result = target.execute(
        update(_BUCKET)
        .where(_BUCKET.c.access_key_id == access_key_id, _BUCKET.c.version == version)
        .values(tokens=tokens, updated_at=at, version=version + 1)
    )
    return result.rowcount == 1


# -- GET /v1/cas/{ca_sn}/devices/{sn} ----------------------------------------------------------------
# pki.services.renewal.device_detail's columns in one Core read (what pki/store/quick.py reads with
# sqlite3 for the CLI): three ORM queries cost a GET most of its server time (scripts/bench_service.py).

_CA, _DEVICE = CaCertificate.__table__.c, DeviceCertificate.__table__.c
_REPLACED = aliased(DeviceCertificate.__table__, name="replaced")
_DETAIL = select(
    _CA.sn.label("ca_sn"), _DEVICE.sn, _DEVICE.client_id, _DEVICE.status, _DEVICE.source,
    _DEVICE.fingerprint_sha256, _DEVICE.key_type, _DEVICE.not_before, _DEVICE.not_after,
    _DEVICE.revocation_reason, _DEVICE.revoked_at, _DEVICE.created_at, _DEVICE.updated_at,
    _DEVICE.status_changed_at, _DEVICE.id, _DEVICE.cert_der, _DEVICE.supersede_after,
    _CA.cert_der.label("ca_cert_der"), _CA.chain_pem.label("ca_chain_pem"),
    select(_REPLACED.c.sn).where(_REPLACED.c.id == _DEVICE.replaces_id).scalar_subquery().label("replaces"),
).select_from(DeviceCertificate.__table__.join(CaCertificate.__table__, _DEVICE.ca_id == _CA.id))
# Built once each: a lookup by (CA, serial) is the commonest read over HTTP.
_DETAIL_BY_CA_SN = _DETAIL.where(
    _CA.instance == bindparam("instance"), _CA.sn == bindparam("ca"), _DEVICE.sn == bindparam("sn"))
_DETAIL_BY_CA_FINGERPRINT = _DETAIL.where(
    _CA.instance == bindparam("instance"), _CA.fingerprint_sha256 == bindparam("ca"), _DEVICE.sn == bindparam("sn"))
_REPLACED_BY = select(_DEVICE.sn).where(_DEVICE.replaces_id == bindparam("id")).order_by(_DEVICE.id)


def device_detail_row(target, *, instance: str, sn: str, ca_sn: str | None = None, ca_fingerprint: str | None = None):
    """A device's public columns, ``ca_sn``, ``id``, ``cert_der``, ``supersede_after``, its CA's ``ca_cert_der``
    and ``ca_chain_pem``, and the serial it ``replaces``, as one plain row; or None.

    None does not say whether the CA or the device is missing: ask again with the ORM for the error.
    """
    query, ca = (_DETAIL_BY_CA_SN, ca_sn) if ca_fingerprint is None else (_DETAIL_BY_CA_FINGERPRINT, ca_fingerprint)
    return target.execute(query, {"instance": instance, "ca": ca, "sn": sn}).one_or_none()


def replaced_by(target, *, device_id: int) -> list[str]:
    """The serials of the certificates that replace device ``device_id``, oldest first."""
    return list(target.execute(_REPLACED_BY, {"id": device_id}).scalars())
