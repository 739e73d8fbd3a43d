"""Shared test fixtures; what tests import besides fixtures lives in tests/support/.

Store tests run on SQLite and on PostgreSQL.  On a developer machine without
PostgreSQL or the openssl CLI those tests skip with a reason; in CI
(``CI=true``) they fail instead, because CI must exercise them.  Every test
that reaches PostgreSQL carries the ``postgres`` marker, so that
``-m "not postgres"`` leaves them all out.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy import text

from pki.clock import FixedClock, SystemClock
from pki.config import Settings
from pki.services.context import Context
from pki.store import Store
from tests.support import FIXTURES, PG_URL, skip_or_fail
from tests.support.openssl import require_openssl
from tests.support.rabbitmq import _rabbitmq_session, rabbitmq, rabbitmq_auth  # noqa: F401 (fixtures)


def pytest_collection_modifyitems(items):
    # The postgresql half of `database_url` is marked where it is declared; a test
    # that asks for `pg_url` itself is marked here, so no test file has to remember.
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def openssl() -> None:
    require_openssl()


_pg_checked: list[bool] = []


def _postgres_reachable() -> bool:
    if not _pg_checked:
        try:
            import psycopg

            with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
                _pg_checked.append(True)
        except Exception:
            _pg_checked.append(False)
    return _pg_checked[0]


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if not _postgres_reachable():
        skip_or_fail(f"PostgreSQL is not reachable at {PG_URL}")
    schema = f"pki_test_{secrets.token_hex(6)}"
    admin = Store(PG_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pki.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def clock() -> FixedClock:
    """Pinned at the real current time: openssl-made certificates use the real clock."""
    return FixedClock(SystemClock().now())


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    return Settings.load(
        home=tmp_path / "home", database_url=database_url, instance="default", environ={}
    )


def _context(settings, clock):
    from pki.services.setup import initialise

    initialise(settings)
    return Context(settings=settings, store=Store(settings.database_url), clock=clock)


@pytest.fixture
def ctx(settings, clock):
    context = _context(settings, clock)
    yield context
    context.close()


@pytest.fixture
def sqlite_ctx(tmp_path, clock):
    """For tests about the SQLite file itself."""
    settings = Settings.load(home=tmp_path / "home", instance="default", environ={})
    context = _context(settings, clock)
    yield context
    context.close()


@pytest.fixture
def pki(settings, ctx, capsys):
    """Run `pki ...` in process against the test store; returns (exit code, stdout, stderr)."""
    from pki.cli.main import main

    base = ["--home", str(settings.home), "--database-url", settings.database_url]

    def run(*args: str):
        code = main([*base, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
