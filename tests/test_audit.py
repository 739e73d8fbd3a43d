"""The audit log: hash chain, tamper detection (edited, removed, reordered), concurrent appends."""

from __future__ import annotations

import datetime as _dt
import json
import threading

import pytest
from sqlalchemy import text

from pki.cli.main import main
from pki.cli.render import EXIT_CODES
from pki.errors import Conflict, InvalidInput, InvalidState
from pki.services import audit, codes
from pki.services.audit_chain import canonical_json
from pki.services.context import Context
from pki.store import Store
from tests.test_remote_cli import admin, env, remote, run, serve  # noqa: F401  (fixtures)


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


# -- tampering outside the application: rows past the head, a missing head, a lost tail --------


def _forge_after_head(ctx, *, recompute: bool) -> None:
    """A copy of the newest record, appended by hand after it with prev_hash = the head's hash.

    ``recompute``: its hash is the right one for its fields (the chain alone looks intact).
    """
    last = audit.list_records(ctx, newest_first=True, limit=1).items[0]
    forged = audit.record_hash(
        seq=last.seq + 1, time=last.time, principal="mallory", action=last.action, resource=last.resource,
        result=last.result, error_code=last.error_code, source_ip=last.source_ip, request_id=last.request_id,
        details=canonical_json(last.details), prev_hash=last.hash,
    ) if recompute else "ab" * 32
    _sql(ctx, "INSERT INTO audit_record (seq, time, principal, action, resource, result, error_code, source_ip, "
         "request_id, details, prev_hash, hash) SELECT seq + 1, time, 'mallory', action, resource, result, "
         "error_code, source_ip, request_id, details, hash, :h FROM audit_record WHERE seq = :s",
         h=forged, s=last.seq)


def _state(ctx):
    """Everything a refused write must leave as it was."""
    with ctx.store.engine.connect() as conn:
        return [conn.execute(text(q)).all() for q in (
            "SELECT seq, prev_hash, hash FROM audit_record ORDER BY seq", "SELECT id, seq, hash FROM audit_head",
            "SELECT count(*) FROM register_code")]


def _cli(settings, *args: str) -> list[str]:
    return ["--home", str(settings.home), "--database-url", settings.database_url, *args]


@pytest.mark.parametrize("recompute", [False, True], ids=["any-hash", "recomputed-hash"])
def test_detects_a_record_forged_past_the_head(ctx, recompute):
    _fill(ctx)
    _forge_after_head(ctx, recompute=recompute)
    result = audit.verify(ctx)
    assert (result.ok, result.first_bad, result.problem) == (False, 7, "appended")
    assert result.records_checked == 6 and "#7" in result.message and "#6" in result.message


def test_detects_a_record_inserted_below_the_first(ctx):
    _fill(ctx, 2)
    _sql(ctx, "INSERT INTO audit_record (seq, time, principal, action, resource, result, details, prev_hash, hash) "
         "SELECT 0, time, principal, action, resource, result, details, :p, :h FROM audit_record WHERE seq = 1",
         p="cd" * 32, h="ef" * 32)
    result = audit.verify(ctx)
    assert (result.ok, result.first_bad, result.problem) == (False, 0, "inserted")


def test_writes_after_a_forged_record_are_refused_and_change_nothing(settings, ctx, capsys):
    _fill(ctx)
    _forge_after_head(ctx, recompute=False)
    before = _state(ctx)
    with pytest.raises(InvalidState) as err:
        audit.record(ctx, action="mq:RegisterCa", resource="r")
    assert err.value.code == "audit_chain_broken" and "#7" in err.value.message and "verify" in err.value.message
    with pytest.raises(InvalidState) as err:
        codes.new_code(ctx)  # a real change: refused whole, the code is not kept either
    assert err.value.code == "audit_chain_broken"
    assert main(_cli(settings, "code", "new")) == EXIT_CODES["invalid_state"]
    assert capsys.readouterr().err.startswith("error[audit_chain_broken]:")
    assert _state(ctx) == before


def test_a_deleted_head_fails_verify_and_refuses_writes(settings, ctx, capsys):
    _fill(ctx, 3)
    _sql(ctx, "DELETE FROM audit_head")
    result = audit.verify(ctx)
    assert (result.ok, result.problem, result.head_seq, result.records_checked) == (False, "head_missing", None, 3)
    assert main(_cli(settings, "audit", "verify", "--json")) == EXIT_CODES["invalid_state"]
    out, err = capsys.readouterr()
    assert json.loads(out)["problem"] == "head_missing"
    assert err.startswith("error[audit_chain_broken]:") and "audit_head" in err
    before = _state(ctx)
    with pytest.raises(InvalidState) as exc:
        codes.new_code(ctx)
    assert exc.value.code == "audit_chain_broken" and "missing" in exc.value.message
    assert "verify" in exc.value.message
    assert main(_cli(settings, "code", "new")) == EXIT_CODES["invalid_state"]
    assert capsys.readouterr().err.startswith("error[audit_chain_broken]:")
    assert _state(ctx) == before


def test_expect_head_catches_a_truncated_tail(settings, ctx, capsys):
    _fill(ctx)
    saved = audit.verify(ctx).head_hash
    third = audit.list_records(ctx, limit=3).items[2].hash
    _sql(ctx, "DELETE FROM audit_record WHERE seq > 4")
    _sql(ctx, "UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_record WHERE seq = 4)")
    assert audit.verify(ctx).ok  # the chain alone cannot show a tail cut with the head moved back
    result = audit.verify(ctx, expect_head=saved)
    assert (result.ok, result.first_bad, result.problem) == (False, 5, "removed")
    assert saved in result.message and "#4" in result.message
    assert audit.verify(ctx, expect_head=third).ok  # an older head: the log grew since
    assert audit.verify(ctx, expect_head=audit.verify(ctx).head_hash.upper()).ok

    assert main(_cli(settings, "audit", "verify", "--json", "--expect-head", saved)) == EXIT_CODES["invalid_state"]
    out, err = capsys.readouterr()
    assert (json.loads(out)["first_bad"], json.loads(out)["problem"]) == (5, "removed")
    assert err.startswith("error[audit_chain_broken]:") and saved in err
    assert main(_cli(settings, "audit", "verify", "--expect-head", third)) == 0
    capsys.readouterr()
    assert main(_cli(settings, "audit", "verify", "--expect-head", "not-a-hash")) == EXIT_CODES["invalid_input"]
    assert capsys.readouterr().err.startswith("error[invalid_head_hash]:")
    with pytest.raises(InvalidInput):
        audit.verify(ctx, expect_head="0" * 63)


def test_an_edited_record_is_named_before_the_expected_head(ctx):
    _fill(ctx)
    head = audit.verify(ctx).head_hash
    _sql(ctx, "UPDATE audit_record SET resource = 'elsewhere' WHERE seq = 3")
    result = audit.verify(ctx, expect_head=head)
    assert (result.ok, result.first_bad, result.problem) == (False, 3, "edited")
    # Appending chains on the head, which is intact: nothing collides, and verify still names #3.
    audit.record(ctx, action="mq:RegisterCa", resource="r")
    assert (audit.verify(ctx).first_bad, audit.verify(ctx).problem) == (3, "edited")


def test_the_refusal_carries_the_whole_result(ctx):
    from tests.support.http_app import app_for, make_user, signed_client
    from pki.client import ApiError

    api = signed_client(app_for(ctx), make_user(ctx, "auditor", "PkiAdministratorAccess"))
    head = audit.verify(ctx).head_hash
    assert audit.check(ctx, expect_head=head).ok and api.call("GET", "/v1/audit/verify",
                                                             params={"expect_head": head})["ok"] is True
    _sql(ctx, "DELETE FROM audit_record WHERE seq = (SELECT max(seq) FROM audit_record)")
    _sql(ctx, "UPDATE audit_head SET seq = seq - 1, hash = (SELECT hash FROM audit_record WHERE seq = "
         "(SELECT max(seq) FROM audit_record))")
    with pytest.raises(InvalidState) as err:
        audit.check(ctx, expect_head=head)
    expected = audit.verify(ctx, expect_head=head).as_json()
    assert err.value.code == "audit_chain_broken" and err.value.data["result"] == expected
    assert (err.value.data["first_bad"], err.value.data["problem"]) == (expected["head_seq"] + 1, "removed")
    with pytest.raises(ApiError) as err:
        api.call("GET", "/v1/audit/verify", params={"expect_head": head})
    assert err.value.status == 409 and err.value.code == "audit_chain_broken"
    assert err.value.data["result"] == expected and err.value.message.endswith(expected["message"])


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


def test_remote_verify_passes_expect_head_and_shows_the_result(ctx, remote):
    # remote: the CLI against a live `pki serve` (the fixtures of tests/test_remote_cli.py)
    head = json.loads(remote("audit", "verify", "--json")[1])["head_hash"]
    _sql(ctx, "DELETE FROM audit_record WHERE seq = (SELECT max(seq) FROM audit_record)")
    _sql(ctx, "UPDATE audit_head SET seq = seq - 1, hash = (SELECT hash FROM audit_record WHERE seq = "
         "(SELECT max(seq) FROM audit_record))")
    assert remote("audit", "verify")[0] == 0
    rc, out, err = remote("audit", "verify", "--json", "--expect-head", head)
    assert rc == EXIT_CODES["invalid_state"] and err.startswith("error[audit_chain_broken]:")
    assert json.loads(out) == audit.verify(ctx, expect_head=head).as_json()
