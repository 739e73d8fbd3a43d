"""The audit log: hash chain, tamper detection (edited, removed, reordered), concurrent appends."""

from __future__ import annotations

import datetime as _dt
import json
import threading

import pytest
from sqlalchemy import text

from pki.cli.main import main
from pki.cli.render import EXIT_CODES
from pki.errors import Conflict
from pki.services import audit
from pki.services.context import Context
from pki.store import Store


def _fill(ctx, n: int = 6) -> None:
    for i in range(n):
        ctx.clock.advance(_dt.timedelta(seconds=1))
        audit.record(ctx, action="mq:IssueDeviceCertificate", resource="acs:mq:local:default:default",
                     details={"sn": f"{i:x}", "n": i})


def _sql(ctx, statement: str, **params) -> None:
    with ctx.store.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_records_chain_and_verify(ctx, clock):
    assert audit.verify(ctx).ok and audit.verify(ctx).records_checked == 0
    with audit.acting_as(audit.Actor(principal="alice", source_ip="192.0.2.1", request_id="req-1")):
        first = audit.record(ctx, action="mq:RegisterCa", resource="acs:mq:local:default:default",
                             details={"sn": "3af1", "when": clock.now()})
    second = audit.record(ctx, action="mq:RevokeDeviceCertificate", resource="r", result="failed",
                          error_code="device_not_found")
    assert (first.seq, second.seq) == (1, 2)
    assert first.principal == "alice" and first.source_ip == "192.0.2.1" and first.request_id == "req-1"
    assert second.principal == audit.ACCOUNT_PRINCIPAL and second.source_ip is None
    assert first.prev_hash == "0" * 64 and second.prev_hash == first.hash
    result = audit.verify(ctx)
    assert result.ok and result.records_checked == 2 and result.first_bad is None and result.head_hash == second.hash

    # The JSON output is enough to recompute a hash elsewhere.
    listed = audit.list_records(ctx).items[0].as_json()
    recomputed = audit.record_hash(
        seq=listed["seq"], time=_dt.datetime.fromisoformat(listed["time"].replace("Z", "+00:00")),
        principal=listed["principal"], action=listed["action"], resource=listed["resource"],
        result=listed["result"], error_code=listed["error_code"], source_ip=listed["source_ip"],
        request_id=listed["request_id"],
        details=json.dumps(listed["details"], sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        prev_hash=listed["prev_hash"],
    )
    assert recomputed == listed["hash"]


def test_details_never_hold_secrets(ctx):
    rec = audit.record(ctx, action="mq:RegisterDeviceCredential", resource="r", details={
        "client_id": "dev-1", "secret": "s3cr3t", "access_key_secret": "abc", "nested": {"password": "pw"},
        "items": [{"private_key_pem": "-----BEGIN"}], "blob": b"\x00\x01",
    })
    flat = json.dumps(rec.details)
    for leaked in ("s3cr3t", "abc", "pw", "BEGIN"):
        assert leaked not in flat
    assert rec.details["client_id"] == "dev-1" and rec.details["blob"] == "<2 bytes>"
    with ctx.store.engine.connect() as conn:
        stored = conn.execute(text("SELECT details FROM audit_record")).scalar()
    assert "s3cr3t" not in stored


def test_record_commits_and_rolls_back_with_the_callers_transaction(ctx):
    with ctx.store.transaction() as session:
        audit.record(session, action="mq:CreateCaCertificate", resource="r", now=ctx.clock.now())
    with pytest.raises(RuntimeError):
        with ctx.store.transaction() as session:
            audit.record(session, action="mq:DeleteCaCertificate", resource="r")
            raise RuntimeError("the service failed after recording")
    with ctx.store.core_transaction() as conn:  # the hot path's bare Connection
        audit.record(conn, action="mq:IssueDeviceCertificate", resource="r")
    records = audit.list_records(ctx).items
    assert [r.action for r in records] == ["mq:CreateCaCertificate", "mq:IssueDeviceCertificate"]
    assert [r.seq for r in records] == [1, 2]
    assert audit.verify(ctx).ok


def test_list_filters_and_pages(ctx):
    _fill(ctx, 5)
    audit.record(ctx, action="mq:RegisterCa", resource="r", result="denied", principal="bob")
    page = audit.list_records(ctx, limit=2)
    assert [r.seq for r in page.items] == [1, 2] and page.next_cursor
    page2 = audit.list_records(ctx, limit=2, cursor=page.next_cursor)
    assert [r.seq for r in page2.items] == [3, 4]
    newest = audit.list_records(ctx, limit=2, newest_first=True)
    assert [r.seq for r in newest.items] == [6, 5]
    assert [r.seq for r in audit.list_records(ctx, limit=2, newest_first=True, cursor=newest.next_cursor).items] == [4, 3]
    denied = audit.list_records(ctx, result="denied").items
    assert [(r.seq, r.principal, r.error_code) for r in denied] == [(6, "bob", "access_denied")]
    assert len(audit.list_records(ctx, action="mq:IssueDeviceCertificate").items) == 5


# -- tampering, with raw SQL -------------------------------------------------------------------


def test_detects_an_edited_record(ctx):
    _fill(ctx)
    _sql(ctx, "UPDATE audit_record SET principal = 'mallory' WHERE seq = 3")
    result = audit.verify(ctx)
    assert (result.ok, result.first_bad, result.problem) == (False, 3, "edited")
    assert result.records_checked == 2 and "#3" in result.message


def test_detects_an_edited_record_whose_hash_was_recomputed(ctx):
    _fill(ctx)
    _sql(ctx, "UPDATE audit_record SET details = '{}', hash = :h WHERE seq = 3", h="ab" * 32)
    result = audit.verify(ctx)
    assert not result.ok and result.first_bad in (3, 4)


def test_detects_an_edited_time(ctx):
    _fill(ctx)
    with ctx.store.engine.connect() as conn:
        t = conn.execute(text("SELECT time FROM audit_record WHERE seq = 2")).scalar()
    _sql(ctx, "UPDATE audit_record SET time = :t WHERE seq = 5", t=t)
    result = audit.verify(ctx)
    assert (result.first_bad, result.problem) == (5, "edited")


@pytest.mark.parametrize("seq,first_bad", [(1, 1), (3, 3), (6, 6)])
def test_detects_a_removed_record(ctx, seq, first_bad):
    _fill(ctx)
    _sql(ctx, "DELETE FROM audit_record WHERE seq = :s", s=seq)
    result = audit.verify(ctx)
    assert (result.ok, result.first_bad, result.problem) == (False, first_bad, "removed")


def test_detects_a_removed_record_with_renumbering(ctx):
    _fill(ctx)
    _sql(ctx, "DELETE FROM audit_record WHERE seq = 3")
    for seq in (4, 5, 6):
        _sql(ctx, "UPDATE audit_record SET seq = :new WHERE seq = :old", new=seq - 1, old=seq)
    _sql(ctx, "UPDATE audit_head SET seq = 5, hash = (SELECT hash FROM audit_record WHERE seq = 5)")
    result = audit.verify(ctx)
    assert (result.first_bad, result.problem) == (3, "removed")


def test_detects_reordered_records(ctx):
    _fill(ctx)
    _sql(ctx, "UPDATE audit_record SET seq = -1 WHERE seq = 3")
    _sql(ctx, "UPDATE audit_record SET seq = 3 WHERE seq = 4")
    _sql(ctx, "UPDATE audit_record SET seq = 4 WHERE seq = -1")
    result = audit.verify(ctx)
    assert (result.ok, result.first_bad, result.problem) == (False, 3, "reordered")
    assert "#3" in result.message


def test_audit_verify_cli_exits_non_zero_naming_the_record(settings, ctx, capsys):
    base = ["--home", str(settings.home), "--database-url", settings.database_url]
    _fill(ctx)
    assert main([*base, "audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    _sql(ctx, "UPDATE audit_record SET action = 'mq:Nothing' WHERE seq = 2")
    code = main([*base, "audit", "verify", "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_CODES["invalid_state"] != 0
    body = json.loads(out)
    assert (body["ok"], body["first_bad"], body["problem"]) == (False, 2, "edited")
    assert err.startswith("error[audit_chain_broken]:") and "#2" in err
    assert main([*base, "audit", "list", "--json", "--limit", "2"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["seq"] for r in listed["items"]] == [1, 2] and listed["next_cursor"]


# -- concurrency -------------------------------------------------------------------------------


def test_concurrent_appends_keep_one_chain(ctx):
    """8 writers, each with its own engine (as separate processes would have), 25 records each."""
    writers, each = 8, 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def writer(n: int) -> None:
        own = Context(settings=ctx.settings, store=Store(ctx.settings.database_url), clock=ctx.clock)
        try:
            barrier.wait()
            for i in range(each):
                for attempt in range(20):
                    try:
                        if i % 2:
                            audit.record(own, action="mq:IssueDeviceCertificate", resource="r",
                                         details={"writer": n, "i": i})
                        else:
                            with own.store.transaction() as session:
                                audit.record(session, action="mq:IssueDeviceCertificate", resource="r",
                                             details={"writer": n, "i": i})
                        break
                    except Conflict:  # only a writer that lost a lock race would see this; retry
                        continue
                else:
                    raise AssertionError("could not append")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = audit.verify(ctx)
    assert result.ok, result.message
    assert result.records_checked == result.head_seq == writers * each
    items = audit.list_records(ctx, limit=1000).items
    assert sorted((r.details["writer"], r.details["i"]) for r in items) == sorted(
        (n, i) for n in range(writers) for i in range(each))
    with ctx.store.engine.connect() as conn:
        forks = conn.execute(text("SELECT count(*) FROM audit_record GROUP BY prev_hash HAVING count(*) > 1")).all()
    assert forks == []


# -- schema ------------------------------------------------------------------------------------


def test_migration_downgrades_and_upgrades(database_url):
    from alembic import command

    store = Store(database_url)
    try:
        store.upgrade()
        with store.engine.begin() as conn:
            command.downgrade(store._alembic_config(conn), "0004")
        with store.engine.connect() as conn:
            tables = set(conn.dialect.get_table_names(conn))
        assert not tables & {"access_user", "audit_record", "audit_head"}
        store.upgrade()
        store.check_schema()
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT seq, hash FROM audit_head")).one() == (0, "0" * 64)
    finally:
        store.dispose()
