"""A register code must be live when it is spent, and a PostgreSQL lock wait is bounded (store_busy)."""

from __future__ import annotations

import contextlib
import datetime as _dt

import pytest
from sqlalchemy import text

from tests.support import snapshot
from tests.support.certs import load_pair, pem, verification_pem
from pki.errors import InvalidState, StoreError
from pki.services import cas, codes
from pki.services.context import Context
from pki.store import Store


def test_a_code_that_expires_while_the_request_waits_is_not_spent(ctx, clock, monkeypatch):
    cert, key = load_pair("ca_root_ec_p256")
    code = codes.new_code(ctx, ttl=_dt.timedelta(minutes=10)).code
    verification = verification_pem(cert, key, code)
    clock.advance(_dt.timedelta(minutes=9, seconds=59))  # live when the request begins
    transaction = ctx.store.transaction

    @contextlib.contextmanager
    def slow_transaction(**kw):
        clock.advance(_dt.timedelta(seconds=2))  # ... and expired once the write lock is had
        with transaction(**kw) as session:
            yield session

    monkeypatch.setattr(ctx.store, "transaction", slow_transaction)
    before = snapshot(ctx)
    with pytest.raises(InvalidState) as err:
        cas.register_ca(ctx, certificate=pem(cert), verification=verification)
    assert err.value.code == "register_code_expired"
    assert snapshot(ctx) == before


@pytest.mark.postgres
def test_a_lock_wait_on_postgresql_is_bounded_and_changes_nothing(pg_url, tmp_path, clock):
    from pki.config import Settings
    from pki.services.setup import initialise

    settings = Settings.load(home=tmp_path / "home", database_url=pg_url, instance="default", environ={})
    initialise(settings)
    ctx = Context(settings=settings, store=Store(pg_url, lock_timeout_ms=300), clock=clock)
    holder = Store(pg_url)
    try:
        cert, key = load_pair("ca_root_ec_p256")
        code = codes.new_code(ctx, ttl=_dt.timedelta(minutes=10)).code
        verification = verification_pem(cert, key, code)
        before = snapshot(ctx)
        with holder.engine.begin() as conn:
            conn.execute(text("SELECT * FROM register_code FOR UPDATE")).all()  # a transaction that hangs on
            with pytest.raises(StoreError) as err:
                cas.register_ca(ctx, certificate=pem(cert), verification=verification)
        assert err.value.code == "store_busy" and err.value.family == "store"
        assert snapshot(ctx) == before
        assert cas.register_ca(ctx, certificate=pem(cert), verification=verification).status == "ACTIVE"
    finally:
        ctx.close()
        holder.dispose()
