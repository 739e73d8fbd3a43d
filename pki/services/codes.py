"""Register codes: single-use, expiring proof-of-possession challenges."""

from __future__ import annotations

import datetime as _dt
import hashlib

from ..errors import InvalidInput
from ..clock import isoformat
from ..ids import format_duration, new_register_code
from ..store import repos
from . import audit
from .context import Context
from .schemas import RegisterCodePublic

__all__ = ["new_code", "code_digest", "DEFAULT_TTL", "MAX_TTL"]

DEFAULT_TTL = _dt.timedelta(hours=1)
MAX_TTL = _dt.timedelta(days=7)


def code_digest(code: str) -> str:
    """Codes are looked up by their SHA-256, so the table never holds one."""
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def new_code(ctx: Context, *, ttl: _dt.timedelta = DEFAULT_TTL) -> RegisterCodePublic:
    if not (_dt.timedelta(seconds=1) <= ttl <= MAX_TTL):
        raise InvalidInput(
            f"a register code lives between 1 second and {MAX_TTL.days} days; got {format_duration(ttl)}",
            code="invalid_ttl",
        )
    code = new_register_code()
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = repos.insert_register_code(
            session, instance=ctx.instance, code_sha256=code_digest(code), now=now, expires_at=now + ttl
        )
        # The code itself is a credential: the log learns only when it expires.
        audit.record_change(session, ctx, "code.new", subject=ctx.instance, expires_at=isoformat(row.expires_at))
    return RegisterCodePublic(code=code, instance=ctx.instance, expires_at=row.expires_at)
