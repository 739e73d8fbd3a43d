"""A provisioning batch on the audit log: a summary and a digest in the record, every device in a companion table.

A batch of a few hundred devices used to leave a record reading only
{"truncated": true, "chars": N}.  Now the record holds the CA, the count, the
first and last client id and the digest of the ordered (client id, serial)
pairs, the pairs are rows of provision_batch_device, and `pki audit verify`
fails, naming the batch, when a row is removed, edited or added.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from pki.services import audit, managed
from pki.services.audit_chain import batch_digest
from tests.test_remote_cli import admin, env, local, run, serve  # noqa: F401  (fixtures)
from pki.services.provision import provision

COUNT = 300  # over twice what used to fit the record's details


@pytest.fixture
def batch(ctx, tmp_path):
    root = managed.create_ca(ctx, name="Batch Root")
    manifest = tmp_path / "m.csv"
    manifest.write_text("client_id\n" + "".join(f"line-7-device-{i:05d}\n" for i in range(COUNT)))
    provision(ctx, ca=root.sn, manifest=manifest, out=tmp_path / "out", workers=1, batch_size=COUNT)
    records = [r for r in audit.list_records(ctx, limit=1000).items if r.details.get("operation") == "device.provision"]
    assert len(records) == 1
    index = [json.loads(line) for line in (tmp_path / "out" / "index.jsonl").read_text().splitlines()]
    return root, records[0], [(e["client_id"], e["sn"]) for e in index]


def _devices(ctx, batch_id: str) -> list[tuple[str, str]]:
    found, cursor = [], None
    while True:
        page = audit.batch_devices(ctx, batch_id, limit=120, cursor=cursor)
        found += [(d["client_id"], d["sn"]) for d in page.items]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def test_the_record_summarises_the_batch_and_the_table_lists_it(ctx, batch):
    root, record, index = batch
    details = record.details
    assert "truncated" not in details
    assert details["ca_sn"] == root.sn == details["subject"]
    assert details["count"] == COUNT
    assert (details["first_client_id"], details["last_client_id"]) == ("line-7-device-00000", "line-7-device-00299")
    listed = _devices(ctx, details["batch"])
    assert listed == index  # every device, in the batch's order, with its serial
    assert details["digest"] == batch_digest(index)
    assert audit.verify(ctx).ok


def test_unknown_batch_lists_nothing(ctx):
    assert audit.batch_devices(ctx, "0" * 32).items == []


def _tamper(ctx, sql: str | tuple[str, ...], **params) -> None:
    with ctx.store.engine.begin() as conn:
        for statement in (sql,) if isinstance(sql, str) else sql:
            conn.execute(text(statement), params)


@pytest.mark.parametrize("sql,how", [
    ("DELETE FROM provision_batch_device WHERE batch_id = :b AND position = 150", "removed"),
    ("UPDATE provision_batch_device SET sn = '01' WHERE batch_id = :b AND position = 7", "edited"),
    ("UPDATE provision_batch_device SET client_id = 'someone-else' WHERE batch_id = :b AND position = 0", "edited"),
    (("UPDATE provision_batch_device SET position = -1 WHERE batch_id = :b AND position = 1",
      "UPDATE provision_batch_device SET position = 1 WHERE batch_id = :b AND position = 2",
      "UPDATE provision_batch_device SET position = 2 WHERE batch_id = :b AND position = -1"), "reordered"),
    ("INSERT INTO provision_batch_device (batch_id, position, client_id, sn) VALUES (:b, 300, 'extra', '02')",
     "added"),
    ("DELETE FROM provision_batch_device WHERE batch_id = :b", "removed"),
])
def test_verify_names_the_batch_whose_rows_changed(ctx, batch, pki, sql, how):
    _root, record, _index = batch
    batch_id = record.details["batch"]
    _tamper(ctx, sql, b=batch_id)
    result = audit.verify(ctx)
    assert not result.ok
    assert (result.first_bad, result.problem) == (record.seq, "batch_mismatch")
    assert batch_id in result.message and how in result.message, result.message
    code, out, err = pki("audit", "verify", "--json")
    assert code == 6, (out, err)
    assert json.loads(out)["problem"] == "batch_mismatch"
    assert batch_id in err


def test_rows_of_a_batch_no_record_names_fail_verify(ctx, batch):
    _tamper(ctx, "INSERT INTO provision_batch_device (batch_id, position, client_id, sn) "
                 "VALUES ('feedfacefeedfacefeedfacefeedface', 0, 'ghost', '03')")
    result = audit.verify(ctx)
    assert not result.ok and result.problem == "batch_mismatch"
    assert "feedfacefeedfacefeedfacefeedface" in result.message and "no audit record" in result.message


def test_the_cli_lists_a_batch_locally_and_remotely(ctx, batch, serve, env, admin, run, local):
    _root, record, index = batch
    batch_id = record.details["batch"]
    code, out, err = local("audit", "batch", batch_id, "--limit", "1000", "--json")
    assert code == 0, err
    assert [(d["client_id"], d["sn"]) for d in json.loads(out)["items"]] == index
    env(serve(), admin)
    code, remote_out, err = run("audit", "batch", batch_id, "--limit", "1000", "--json")
    assert code == 0, err
    assert json.loads(remote_out) == json.loads(out)
    code, text, _ = local("audit", "batch", batch_id, "--limit", "2")
    assert text.splitlines()[0].split() == ["POSITION", "CLIENT_ID", "SN"] and len(text.splitlines()) >= 3
