"""pki/store/lean.py and the held connection: the driver's cursor, with the store's types and errors kept."""

from __future__ import annotations

import datetime as _dt
import sqlite3

import pytest
from sqlalchemy import bindparam, exc as sa_exc, select

from pki.errors import Conflict, StoreError
from pki.services import audit, devices, managed
from pki.store import DeviceCertificate, repos
from pki.store.access_repos import lock_audit_head
from pki.store.lean import LeanStatement

UTC = _dt.timezone.utc


def _device_values(ca_id: int, sn: str, when: _dt.datetime) -> dict:
    return dict(instance="default", ca_id=ca_id, sn=sn, client_id=f"lean-{sn}", status="ACTIVE", source="issued",
                fingerprint_sha256=sn.rjust(64, "0"), key_type="ec-p256", not_before=when,
                not_after=when + _dt.timedelta(days=1), cert_der=b"\x30\x00", created_at=when, updated_at=when,
                status_changed_at=when)


def test_a_lean_insert_stores_what_core_would_and_reads_back_utc(ctx):
    ca = managed.create_ca(ctx, name="Lean Root")
    # A zone other than UTC: the column type (UTCDateTime) converts it, as Core's execute would.
    when = _dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=_dt.timezone(_dt.timedelta(hours=2)))
    with ctx.store.core_transaction() as conn:
        state = repos.get_issuer_state(conn, instance="default", sn=ca.sn, lock=True)
        repos.insert_device_values(conn, _device_values(state.id, "abc1", when))
    assert state.sn == ca.sn and state.not_after.tzinfo is not None and state.cert_der[:1] == b"\x30"
    with ctx.store.transaction(readonly=True) as session:
        row = repos.get_device(session, ca_id=state.id, sn="abc1")
        assert row.not_before == when and row.not_before.utcoffset() == _dt.timedelta(0)
        assert (row.client_id, row.cert_der, row.status) == ("lean-abc1", b"\x30\x00", "ACTIVE")


def test_a_naive_time_is_refused_before_the_database_sees_it(ctx):
    ca = managed.create_ca(ctx, name="Naive Root")
    with pytest.raises(ValueError, match="naive datetime"):
        with ctx.store.core_transaction() as conn:
            state = repos.get_issuer_state(conn, instance="default", sn=ca.sn)
            repos.insert_device_values(conn, _device_values(state.id, "abc2", _dt.datetime(2026, 3, 1)))


def test_a_duplicate_row_is_the_stores_conflict_and_nothing_is_kept(ctx):
    ca = managed.create_ca(ctx, name="Dup Root")
    when = _dt.datetime.now(UTC)
    with ctx.store.core_transaction() as conn:
        ca_id = repos.get_issuer_state(conn, instance="default", sn=ca.sn).id
        repos.insert_device_values(conn, _device_values(ca_id, "d1", when))
    with pytest.raises(Conflict) as err:
        with ctx.store.core_transaction() as conn:
            repos.insert_device_values(conn, _device_values(ca_id, "d2", when))
            repos.insert_device_values(conn, _device_values(ca_id, "d2", when))  # same (ca, serial)
    assert err.value.code == "conflicting_change"
    assert isinstance(err.value.__cause__, sa_exc.IntegrityError) and err.value.__cause__.orig is not None
    with ctx.store.transaction(readonly=True) as session:
        assert repos.get_device(session, ca_id=ca_id, sn="d2") is None


def test_a_lean_select_answers_none_one_or_refuses_several(ctx):
    managed.create_ca(ctx, name="Sel A")
    managed.create_ca(ctx, name="Sel B")
    from pki.store import CaCertificate

    by_instance = LeanStatement(select(CaCertificate.sn).where(CaCertificate.instance == bindparam("instance")))
    with ctx.store.core_transaction(readonly=True) as conn:
        assert by_instance.one_or_none(conn, {"instance": "elsewhere"}) is None
        with pytest.raises(sa_exc.MultipleResultsFound):
            by_instance.one_or_none(conn, {"instance": "default"})
        seq, head_hash, last_seq = lock_audit_head(conn)
    assert seq == last_seq >= 2 and len(head_hash) == 64


def test_an_insert_whose_columns_are_not_all_given_is_refused_when_compiled(ctx):
    from sqlalchemy import insert

    partial = LeanStatement(insert(DeviceCertificate.__table__), column_keys=("instance", "sn"))
    with pytest.raises(ValueError, match="not the columns given"):
        with ctx.store.core_transaction() as conn:
            partial.execute(conn, {"instance": "default", "sn": "x"})


def test_the_held_connection_is_reused_and_dropped_after_a_database_error(ctx):
    ca = managed.create_ca(ctx, name="Held Root")
    held = ctx.store.held_connection()
    with held.transaction() as first:
        ca_id = repos.get_issuer_state(first, instance="default", sn=ca.sn).id
    with held.transaction() as second:
        repos.insert_device_values(second, _device_values(ca_id, "h1", _dt.datetime.now(UTC)))
    assert second is first
    with pytest.raises(Conflict):
        with held.transaction() as conn:
            repos.insert_device_values(conn, _device_values(ca_id, "h1", _dt.datetime.now(UTC)))
    with held.transaction() as third:
        assert third is not first
        assert repos.get_device_public(third, instance="default", sn="h1", ca_sn=ca.sn).client_id == "lean-h1"
    held.IDLE_SECONDS = 0.0  # idle for longer than that: back to the pool, a checked one taken
    with held.transaction() as fourth:
        assert fourth is not third
    ctx.store.dispose()
    assert fourth.closed


def test_a_locked_sqlite_store_at_begin_is_the_stores_error(sqlite_ctx):
    """BEGIN IMMEDIATE runs on the driver's connection (pki/store/engine.py); its error is still mapped."""
    ctx = sqlite_ctx
    held = ctx.store.held_connection()
    with held.transaction() as conn:
        conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=50")  # per connection: kept
    other = sqlite3.connect(ctx.store.engine.url.database, isolation_level=None, timeout=1)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError) as err:
            with held.transaction():
                pass
        assert err.value.code == "store_unavailable"
        assert isinstance(err.value.__cause__, sa_exc.OperationalError)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_issuances_through_the_lean_path_keep_the_audit_chain(ctx):
    ca = managed.create_ca(ctx, name="Chain Root")
    issued = [devices.issue_device(ctx, ca=ca.sn, generate=True, client_id=f"chain-{i}") for i in range(3)]
    records = audit.list_records(ctx, action="mq:IssueDeviceCertificate").items
    assert [r.details["subject"] for r in records] == [f"{ca.sn}/{i.device.sn}" for i in issued]
    assert audit.verify(ctx).ok


@pytest.mark.postgres
def test_a_lost_postgresql_connection_fails_once_then_a_fresh_one_is_taken(pg_url, clock, tmp_path):
    """The server ends the held connection's session (a restart, an idle timeout): the statement on the
    driver's cursor fails as the store's error, and the next transaction works on a checked connection."""
    from pki.config import Settings
    from pki.services.context import Context
    from pki.services.setup import initialise
    from pki.store import Store

    settings = Settings.load(home=tmp_path / "home", database_url=pg_url, instance="default", environ={})
    initialise(settings)
    ctx = Context(settings=settings, store=Store(settings.database_url), clock=clock)
    try:
        ca = managed.create_ca(ctx, name="Lost Root")
        held = ctx.store.held_connection()
        with held.transaction() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with ctx.store.engine.begin() as admin:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        with pytest.raises(StoreError) as err:
            with held.transaction() as conn:
                repos.get_issuer_state(conn, instance="default", sn=ca.sn, lock=True)
        assert err.value.code == "store_unavailable"
        with held.transaction() as conn:
            assert repos.get_issuer_state(conn, instance="default", sn=ca.sn, lock=True).sn == ca.sn
    finally:
        ctx.close()


def test_the_issuer_state_is_read_once_per_transaction_and_again_in_the_next(ctx):
    """The jobs of one group-commit batch share the CA row they locked; a later transaction sees a change."""
    from pki.errors import InvalidState
    from pki.services import cas

    ca = managed.create_ca(ctx, name="Once Root")
    with ctx.store.core_transaction() as conn:
        first = devices._issuer_state(conn, ctx, ca.sn)
        assert devices._issuer_state(conn, ctx, ca.sn) is first and first.status == "ACTIVE"
    cas.deactivate_ca(ctx, ca.sn)
    with ctx.store.core_transaction() as conn:
        assert devices._issuer_state(conn, ctx, ca.sn).status == "INACTIVE"
    with pytest.raises(InvalidState) as err:
        devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="after-deactivation")
    assert err.value.code == "ca_inactive"


def test_an_audit_append_that_collides_is_the_stores_conflict_and_the_head_stays(ctx):
    """The record insert and the head move go together (one pipeline on PostgreSQL): the insert's error
    stops both and is mapped as before."""
    from pki.store import access_repos

    managed.create_ca(ctx, name="Collide Root")
    with ctx.store.core_transaction(readonly=True) as conn:
        head = access_repos.audit_head(conn)
    values = audit.change_values(ctx, "device.issue", subject="x/1")
    values.update(seq=head[0], prev_hash="0" * 64, hash="f" * 64)  # the head's own seq: taken
    with pytest.raises(Conflict) as err:
        with ctx.store.core_transaction() as conn:
            access_repos.append_audit_many(conn, [values, {**values, "seq": head[0] + 1, "hash": "e" * 64}])
    assert err.value.code == "conflicting_change"
    with ctx.store.core_transaction(readonly=True) as conn:
        assert access_repos.audit_head(conn) == head
    assert audit.verify(ctx).ok


def test_closing_a_context_closes_the_connections_its_groups_held(pg_url, tmp_path, clock):
    """PostgreSQL: after an issuance and a token apply (each group keeps a connection, Store.held_connection),
    Context.close() leaves no connection of this Context open on the server."""
    import secrets

    import psycopg

    from pki.config import Settings
    from pki.services import tokens
    from pki.services.context import Context
    from pki.services.setup import initialise
    from pki.store import Store
    from tests.support import PG_URL

    name = f"pki_held_{secrets.token_hex(4)}"
    settings = Settings.load(home=tmp_path / "home", database_url=f"{pg_url}&application_name={name}",
                             instance="default", environ={})
    initialise(settings)
    context = Context(settings=settings, store=Store(settings.database_url), clock=clock)

    def open_connections() -> int:
        with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql")) as admin:
            return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                 (name,)).fetchone()[0]

    try:
        ca = managed.create_ca(context, name="Held Root")
        devices.issue_device(context, ca=ca.sn, generate=True, client_id="held-1")
        tokens.apply(context, client_id="held-1", topics=["t/#"])
        assert open_connections() >= 2  # the two groups' held connections at least
    finally:
        context.close()
    assert open_connections() == 0
