#!/usr/bin/env python3
"""Benchmark the fleet audit checks (`pki check run`) over many devices. Target: 1M devices in under 30 s.

    .venv/bin/python scripts/bench_checks.py [--devices 1000000] [--database-url URL]

Inserts synthetic device rows under two managed CAs with one bulk executemany.
Their cert_der is one real device certificate whose public key bytes are
replaced by random ones per row (the checks read only the SubjectPublicKeyInfo
out of the DER; nothing verifies the signature), so every device has a key of
its own, as in a real fleet; 0.1 % expire within 30 days, 0.1 % are revoked,
a few share a key or a client id, so every device check has work to do.

Prints, from one run: a baseline (reading every device row with its
certificate once, in the same order the checks use: the least any one-pass
check can cost), then `run_checks` and its ratio to the baseline, the findings
per check, and the machine's load average.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select  # noqa: E402

from pki.clock import SystemClock  # noqa: E402
from pki.config import Settings  # noqa: E402
from pki.services import checks, crls, devices, managed  # noqa: E402
from pki.services.context import Context  # noqa: E402
from pki.services.setup import initialise  # noqa: E402
from pki.store import DeviceCertificate, Store, repos  # noqa: E402
from pki.x509.der import spki_der  # noqa: E402


def _template(ctx, ca_sn: str) -> tuple[bytes, int, int]:
    """A real device certificate's DER and where its EC point's 64 random-looking bytes are."""
    issued = devices.issue_device(ctx, ca=ca_sn, generate=True, client_id="template")
    der = issued.certificate.public_bytes(encoding=__import__("cryptography.hazmat.primitives.serialization",
                                                              fromlist=["Encoding"]).Encoding.DER)
    spki = spki_der(der)
    at = der.index(spki) + len(spki) - 64  # uncompressed P-256 point: 04 || X || Y, the last 65 bytes
    return der, at, 64


def _insert(ctx, ca_ids: list[int], n: int, der: bytes, at: int, width: int) -> None:
    now = ctx.clock.now()
    base = secrets.randbits(120) << 32
    shared = os.urandom(width)
    with ctx.store.transaction() as session:
        batch = []
        for i in range(n):
            key = shared if i < 3 else os.urandom(width)
            cert = der[:at] + key + der[at + width:]
            revoked = i % 1000 == 7
            expiring = i % 1000 == 3
            client_id = f"dev-{i}" if i != 11 else "dev-10"  # dev-10 twice: under two CAs
            batch.append(dict(
                instance=ctx.instance, ca_id=ca_ids[i % 2 if i in (10, 11) else 0], sn=format(base + i, "x"),
                client_id=client_id, status="REVOKED" if revoked else "ACTIVE", source="issued",
                revocation_reason="keyCompromise" if revoked else None, revoked_at=now if revoked else None,
                fingerprint_sha256=format(base + i, "064x"), key_type="ec-p256", not_before=now,
                not_after=now + _dt.timedelta(days=10 if expiring else 365), cert_der=cert, created_at=now,
                updated_at=now, status_changed_at=now,
            ))
            if len(batch) == 20_000:
                repos.insert_devices(session, batch)
                batch = []
        repos.insert_devices(session, batch)


def _baseline(ctx) -> float:
    c = DeviceCertificate.__table__.c
    start = time.perf_counter()
    with ctx.store.core_transaction(readonly=True) as conn:
        result = conn.execution_options(yield_per=5000).execute(
            select(c.id, c.ca_id, c.sn, c.client_id, c.status, c.source, c.key_type, c.not_after, c.cert_der)
            .where(c.instance == ctx.instance).order_by(c.client_id, c.id))
        total = sum(len(row.cert_der) for row in result)
    assert total
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(home=Path(tmp) / "home", database_url=args.database_url, environ={})
        initialise(settings)
        ctx = Context(settings=settings, store=Store(settings.database_url), clock=SystemClock())
        roots = [managed.create_ca(ctx, name=f"Bench Root {i}") for i in range(2)]
        for root in roots:
            crls.current_crl(ctx, ca=root.sn)
        der, at, width = _template(ctx, roots[0].sn)
        with ctx.store.transaction(readonly=True) as session:
            ca_ids = [repos.get_ca_by_sn(session, instance=ctx.instance, sn=r.sn).id for r in roots]
        start = time.perf_counter()
        _insert(ctx, ca_ids, args.devices, der, at, width)
        print(f"database: {ctx.store.dialect}; load average before: {os.getloadavg()[0]:.2f}")
        print(f"inserted {args.devices:,} devices in {time.perf_counter() - start:.1f} s")
        baseline = min(_baseline(ctx) for _ in range(2))
        print(f"baseline: read every device row with its certificate once, in client-id order: {baseline:.2f} s")
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            found = checks.run_checks(ctx)
            runs.append(time.perf_counter() - start)
        best = min(runs)
        per_check: dict[str, int] = {}
        for f in found:
            per_check[f.check_id] = per_check.get(f.check_id, 0) + 1
        print(f"run_checks over {args.devices:,} devices: {best:.2f} s (best of 2: "
              f"{', '.join(f'{r:.2f}' for r in runs)}), {best / baseline:.1f}x the baseline, "
              f"{args.devices / best:,.0f} devices/s; target under 30 s: {'met' if best < 30 else 'MISSED'}")
        print("findings: " + ", ".join(f"{k}={v}" for k, v in sorted(per_check.items())))
        print(f"load average after: {os.getloadavg()[0]:.2f} (2 cores, shared)")
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
