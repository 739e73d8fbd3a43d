"""What a load balancer and a metrics scraper ask of the service: is the store answering, how old are
the CRLs.  Read-only; never audited (a probe every few seconds would flood the log)."""

from __future__ import annotations

import datetime as _dt

from ..store import Status, check_repos
from .context import Context

__all__ = ["store_ready", "crl_ages"]


def store_ready(ctx: Context) -> dict:
    """One trivial query; raises the store's error (``store_unavailable``...) when it does not answer."""
    with ctx.store.core_transaction(readonly=True) as conn:
        conn.exec_driver_sql("SELECT 1").scalar()
    return {"status": "ready", "database": ctx.store.dialect}


def crl_ages(ctx: Context) -> tuple[_dt.datetime, list[tuple[str, str, _dt.datetime, _dt.datetime]]]:
    """(now, [(CA name, CRL source, thisUpdate, nextUpdate)]) for every ACTIVE CA that has a CRL."""
    with ctx.store.core_transaction(readonly=True) as conn:
        rows = check_repos.cas_with_crl(conn, instance=ctx.instance)
    return ctx.clock.now(), [(ca.name, crl.source, crl.this_update, crl.next_update)
                             for ca, crl in rows if crl is not None and ca.status == Status.ACTIVE]
