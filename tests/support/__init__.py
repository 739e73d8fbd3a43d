"""What the tests share besides pytest fixtures (those stay in tests/conftest.py).

- `tests.support` (here): where the fixtures and PostgreSQL are, skip-or-fail,
  snapshots of the store, the JSON of a CLI run;
- `tests.support.certs`: certificates built with cryptography, not with the code under test;
- `tests.support.openssl`: material made with the openssl CLI at test time;
- `tests.support.lint`: pkilint and `openssl verify` as independent judges;
- `tests.support.http_app`: an app over a Context, users, signing clients, a served process.

Imported as `from tests.support... import ...`: pytest puts the repository root
on sys.path (``pythonpath`` in pyproject.toml), and tests/ is a package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pki.services.context import Context

__all__ = ["FIXTURES", "PG_URL", "cli_json", "fixture_bytes", "refused_unchanged", "skip_or_fail", "snapshot"]

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures"
PG_URL = os.environ.get("PKI_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def skip_or_fail(reason: str) -> None:
    """Skip on a developer machine; in CI (``CI=true``) a missing dependency is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true: this test must run in CI")
    pytest.skip(reason)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def snapshot(ctx: Context) -> dict[str, list[tuple]]:
    """Every row of every table: compare before and after to prove nothing changed."""
    from sqlmodel import SQLModel

    out = {}
    with ctx.store.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            rows = conn.execute(table.select().order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


def cli_json(run, *args):
    """`run(*args, "--json")`, which must succeed; its parsed output."""
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def refused_unchanged(ctx: Context, code: str, call) -> Exception:
    """Run ``call``, which must raise InvalidInput ``code`` and leave the store exactly as it was."""
    import pytest

    from pki.errors import InvalidInput

    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as err:
        call()
    assert err.value.code == code, err.value
    assert snapshot(ctx) == before
    return err.value
