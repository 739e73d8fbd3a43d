"""The schema revision this code needs, read without SQLAlchemy or Alembic (a CLI start-up cost)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ..errors import ConfigError

__all__ = ["MIGRATIONS", "head_revision"]

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATIONS = MIGRATIONS

_REVISION_LINE = re.compile(r'^(down_revision|revision)\s*(?::[^=]*)?=\s*(?:"([^"]*)"|\'([^\']*)\'|None)', re.M)


@functools.cache
def head_revision() -> str:
    """The newest migration shipped with this version of the code.

    Read from the migration files' ``revision``/``down_revision`` lines, not from an Alembic
    environment: importing Alembic costs most of a CLI command's start-up, and every command checks
    the schema.  tests/test_store.py checks this against Alembic's own answer.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        found = {m.group(1): m.group(2) or m.group(3) for m in _REVISION_LINE.finditer(path.read_text("utf-8"))}
        if found.get("revision"):
            revisions.add(found["revision"])
            if found.get("down_revision"):
                parents.add(found["down_revision"])
    heads = revisions - parents
    if len(heads) != 1:
        raise ConfigError(f"the shipped migrations have {len(heads)} heads ({', '.join(sorted(heads))}), not one",
                          code="invalid_config")
    return heads.pop()
