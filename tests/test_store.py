"""Schema management: migrations are the only source of the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from pki.errors import ConfigError
from pki.store import Store, head_revision


def test_migrations_form_one_line():
    """Parallel branches would leave two heads and `pki init` would refuse to pick one."""
    config = Config()
    config.set_main_option("script_location", str(Path(__import__("pki.store").store.__file__).with_name("migrations")))
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1


def test_upgrade_from_first_revision_keeps_data(database_url):
    from alembic import command

    store = Store(database_url)
    with store.engine.begin() as conn:
        command.upgrade(store._alembic_config(conn), "0001")
    with pytest.raises(ConfigError) as err:
        store.check_schema()
    assert err.value.code == "store_outdated"
    with store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO ca_certificate (instance, sn, name, status, source, subject, issuer, not_before, not_after,"
            " fingerprint_sha256, spki_sha256, key_type, cert_der, created_at, updated_at, status_changed_at)"
            " VALUES ('default', 'ab', 'old', 'ACTIVE', 'registered', 'CN=x', 'CN=x', :t, :t, 'f', 's', 'ec-p256',"
            " :der, :t, :t, :t)"
        ), {"t": "2026-01-01 00:00:00", "der": b"\x30\x00"})
    assert store.upgrade() == head_revision()
    store.check_schema()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT name, key_id FROM ca_certificate")).all() == [("old", None)]
    store.dispose()


def test_unreachable_database_is_a_store_error():
    from pki.errors import StoreError

    store = Store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(StoreError) as err:
        store.check_schema()
    assert err.value.code == "store_unavailable"


def test_migrations_build_exactly_the_tables_the_models_describe(database_url):
    """Every table, column, index and constraint of every model comes from a migration, and nothing else."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    store = Store(database_url)
    store.upgrade()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), SQLModel.metadata)
    store.dispose()
    assert diff == []


def test_sqlite_commits_reach_the_disk_unless_a_transaction_says_it_need_not(sqlite_ctx):
    """synchronous=FULL (2) everywhere; NORMAL (1) only inside core_transaction(durable=False), and put
    back afterwards even when that transaction fails, on the pooled connection the next one reuses."""
    from sqlalchemy import text

    store = sqlite_ctx.store

    def level(conn) -> int:
        return conn.execute(text("PRAGMA synchronous")).scalar_one()

    with store.core_transaction() as conn:
        assert level(conn) == 2
    with store.core_transaction(durable=False) as conn:
        assert level(conn) == 1
    with store.core_transaction() as conn:
        assert level(conn) == 2
    with pytest.raises(RuntimeError):
        with store.core_transaction(durable=False) as conn:
            raise RuntimeError("fails midway")
    with store.transaction() as session:
        assert level(session) == 2
    with store.transaction(readonly=True) as session:
        assert level(session) == 2


def test_sqlite_store_files_are_private_and_an_open_one_is_warned_about(tmp_path, caplog):
    from pki.config import Settings
    from pki.services.setup import initialise

    import os

    old = os.umask(0o022)  # the usual umask, under which SQLite would create the file 0644
    try:
        initialise(Settings.load(home=tmp_path / "home", environ={}))
    finally:
        os.umask(old)
    home = tmp_path / "home"
    assert (home.stat().st_mode & 0o777) == 0o700
    db = home / "pki.db"
    assert (db.stat().st_mode & 0o777) == 0o600
    for extra in (home / "pki.db-wal", home / "pki.db-shm"):
        if extra.exists():
            assert (extra.stat().st_mode & 0o077) == 0
    assert not [r for r in caplog.records if "open to others" in r.getMessage()]

    db.chmod(0o644)
    with caplog.at_level("WARNING", logger="pki.store"):
        Store(f"sqlite:///{db}").dispose()
    assert any("open to others" in r.getMessage() and "chmod 600" in r.getMessage() for r in caplog.records)
