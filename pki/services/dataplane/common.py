"""What the data-plane services share: the field an input error concerns, the per-Context cache of what
the checks read, and the public shapes' base.

The checks (a password, a permission, the blocklist, a hook token) run on the broker's connect and
publish paths.  Each reads one counter (:func:`pki.store.dataplane_repos.revision`) per call; what they
loaded from the store stays cached for as long as that counter has not moved.  Every change, made by
any process, moves it in its own transaction, so a change takes effect at the next check.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from ...errors import InvalidInput
from ...store import dataplane_repos as repos
from ..context import Context

__all__ = ["log", "field", "Public", "cached", "memoised", "one_reading", "parse_cidr", "parse_id", "MAX_CACHED"]

log = logging.getLogger("pki.dataplane")

#: Bound on each cache (usernames a flood of bad logins may name, say): past it the cache starts over.
MAX_CACHED = 100_000


@contextmanager
def field(name: str):
    """Tag an InvalidInput raised inside with ``field=name``: the request value at fault (the /v1 JSON field,
    and what the CLI turns into its flag)."""
    try:
        yield
    except InvalidInput as exc:
        exc.data.setdefault("field", name)
        raise


def parse_cidr(text, *, field_name: str) -> str:
    """An IP address or CIDR block in its normalised form (``10.0.0.0/8``); InvalidInput ``invalid_cidr``."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except (ValueError, AttributeError):
        raise InvalidInput(f"{str(text)[:60]!r} is not an IP address or CIDR block (e.g. 10.0.0.0/8 or "
                           "2001:db8::/32)", code="invalid_cidr", field=field_name) from None


def parse_id(value, *, what: str, code: str) -> int:
    """A row id from an int or its decimal text (a path segment); InvalidInput ``code`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**12:
        return value
    text = str(value).strip()
    if not (text.isdigit() and text.isascii() and len(text) <= 12):
        raise InvalidInput(f"{text[:40]!r} is not a {what} id (a number)", code=code, field="id")
    return int(text)


class Public(BaseModel):
    model_config = ConfigDict(frozen=True)

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class _Cache:
    """One kind of cached state of one revision row; rebuilt when the row moved."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.revision: int | None = None
        self.values: dict = {}


#: The revisions one hook call has read (:func:`one_reading`); None outside such a call.
_READING: ContextVar[dict[str, int] | None] = ContextVar("dataplane_reading", default=None)


@contextmanager
def one_reading(ctx: Context):
    """One broker hook call: every check inside reads the revision counters once, together.

    A call checks the hook token (the revision of :data:`~pki.store.dataplane_repos.HOOK_TOKENS`), then
    the blocklist, the identities or the rules (the instance's): read one by one, that was four statements
    and three quarters of an authz call (the profile in BENCHMARKS.md).  Inside, the first check reads both
    counters in one statement and the others reuse them, so a call decides on one consistent view, and a
    change still takes effect at the next call.  A context variable, so that concurrent calls (threads or
    tasks) each have their own reading.
    """
    token = _READING.set({})
    try:
        yield
    finally:
        _READING.reset(token)


def _current(ctx: Context, instance: str) -> int:
    reading = _READING.get()
    if reading is not None and instance in reading:
        return reading[instance]
    reader: repos.RevisionReader = ctx.memo(("dataplane", "revision_reader"),
                                            lambda: repos.RevisionReader(ctx.store.engine))
    if reading is None:
        return reader.read((instance,))[instance]
    reading.update(reader.read((instance, ctx.instance, repos.HOOK_TOKENS)))
    return reading[instance]


def cached(ctx: Context, kind: str, *, instance: str | None = None) -> dict:
    """The cache dict of ``kind`` for the current revision (emptied when the revision moved).

    Callers fill it as they go; a dict past :data:`MAX_CACHED` entries starts over.
    """
    instance = instance or ctx.instance
    cache: _Cache = ctx.memo(("dataplane", kind, instance), _Cache)
    now = _current(ctx, instance)
    with cache.lock:
        if cache.revision != now or len(cache.values) >= MAX_CACHED:
            cache.values = {}
            cache.revision = now
        return cache.values


def memoised(values: dict, key, load: Callable[[], Any]):
    try:
        return values[key]
    except KeyError:
        value = values[key] = load()
        return value
