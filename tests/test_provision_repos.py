"""The provisioning writer's two batch statements (pki/store/provision_repos.py), on SQLite and PostgreSQL.

Its insert hands pre-processed values to the driver; a row must read back
exactly as one inserted through the ORM does, stored text included.
"""

from __future__ import annotations

from sqlalchemy import select, text

from pki.services.devices import issue_device
from pki.services.managed import create_ca
from pki.store import DeviceCertificate, DeviceStatus, provision_repos, repos

_COLUMNS = [c.name for c in DeviceCertificate.__table__.columns if c.name not in ("id", "sn", "fingerprint_sha256",
                                                                                  "client_id")]


def _values(row: DeviceCertificate, *, n: int) -> dict:
    values = {c.name: getattr(row, c.name) for c in DeviceCertificate.__table__.columns
              if c.name not in ("id", "revocation_reason", "revoked_at", "replaces_id", "supersede_after")}
    values.update(sn=f"{n:040x}", fingerprint_sha256=f"{n:064x}", client_id=f"copy-{n}")
    return values


def test_insert_devices_stores_what_the_orm_insert_stores(ctx):
    ca = create_ca(ctx, name="Repo CA")
    issued = issue_device(ctx, ca=ca.sn, generate=True, client_id="original")
    with ctx.store.transaction() as session:
        ca_id = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca.sn).id
        original = repos.get_device(session, ca_id=ca_id, sn=issued.device.sn)
        repos.insert_devices(session, [_values(original, n=1)])  # the ORM's bulk path
        provision_repos.insert_devices(session, [_values(original, n=2), _values(original, n=3)])
    with ctx.store.transaction(readonly=True) as session:
        rows = {r.client_id: r for r in session.scalars(select(DeviceCertificate)).all()}
        raw = {r.client_id: tuple(r[1:]) for r in session.execute(text(
            "SELECT client_id, created_at, updated_at, status_changed_at, not_before, not_after, status, cert_der "
            "FROM device_certificate"))}
    assert set(rows) == {"original", "copy-1", "copy-2", "copy-3"}
    for name in ("copy-2", "copy-3"):
        assert {c: getattr(rows[name], c) for c in _COLUMNS} == {c: getattr(rows["copy-1"], c) for c in _COLUMNS}
        assert raw[name] == raw["copy-1"]  # the same stored text (SQLite keeps datetimes as text)
    assert rows["copy-2"].created_at.tzinfo is not None and rows["copy-2"].status == DeviceStatus.ACTIVE


def test_active_client_ids_names_only_active_certificates_under_the_ca(ctx):
    ca = create_ca(ctx, name="Repo CA")
    other = create_ca(ctx, name="Other CA")
    issue_device(ctx, ca=ca.sn, generate=True, client_id="here")
    issue_device(ctx, ca=other.sn, generate=True, client_id="elsewhere")
    with ctx.store.transaction() as session:
        ca_id = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca.sn).id
        device = session.scalars(select(DeviceCertificate).where(DeviceCertificate.client_id == "here")).one()
        # A REVOKED certificate of another client id under the same CA: not active.
        session.execute(DeviceCertificate.__table__.insert(), [{
            **{c.name: getattr(device, c.name) for c in DeviceCertificate.__table__.columns if c.name != "id"},
            "sn": "0f" * 10, "fingerprint_sha256": "e" * 64, "client_id": "was-here", "status": DeviceStatus.REVOKED,
        }])
    with ctx.store.transaction(readonly=True) as session:
        found = provision_repos.active_client_ids(session, instance=ctx.instance, ca_id=ca_id,
                                                  client_ids=["here", "elsewhere", "was-here", "never"])
        assert found == {"here"}
        assert provision_repos.active_client_ids(session, instance="another", ca_id=ca_id, client_ids=["here"]) == set()
