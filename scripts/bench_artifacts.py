#!/usr/bin/env python3
"""Benchmark `pki artifacts publish` with many devices under one managed CA.

    .venv/bin/python scripts/bench_artifacts.py [--devices 1000000] [--revoked 100000] [--database-url URL]

Inserts synthetic device rows (unique serials and fingerprints; the cert_der
is a placeholder, publish never reads it) with one bulk executemany, then
times: a baseline (bare cryptography: build + sign a CRL of the same number
of entries), the first publish (signs the CRL), a second publish of the same
state (nothing to re-sign), and a publish after one more revocation.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from pki.clock import SystemClock  # noqa: E402
from pki.config import Settings  # noqa: E402
from pki.services import artifacts, devices, managed  # noqa: E402
from pki.services.context import Context  # noqa: E402
from pki.services.setup import initialise  # noqa: E402
from pki.store import Store, repos  # noqa: E402


def _baseline(n: int) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "baseline")])
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    base = secrets.randbits(120) << 32
    start = time.perf_counter()
    reason = x509.Extension(x509.oid.CRLEntryExtensionOID.CRL_REASON, False, x509.CRLReason(x509.ReasonFlags.key_compromise))
    revoked = [x509.RevokedCertificateBuilder(serial_number=base + i, revocation_date=now, extensions=[reason]).build()
               for i in range(n)]
    x509.CertificateRevocationListBuilder(
        issuer_name=name, last_update=now, next_update=now + _dt.timedelta(days=7), revoked_certificates=revoked,
    ).sign(key, hashes.SHA256())
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--revoked", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = Settings.load(home=home, database_url=args.database_url, environ={})
        initialise(settings)
        ctx = Context(settings=settings, store=Store(settings.database_url), clock=SystemClock())
        ca = managed.create_ca(ctx, name="Bench Root")
        now = ctx.clock.now()
        base = secrets.randbits(120) << 32
        start = time.perf_counter()
        with ctx.store.transaction() as session:
            ca_id = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca.sn).id
            batch = []
            for i in range(args.devices):
                revoked = i % (args.devices // args.revoked) == 0 if args.revoked else False
                batch.append(dict(
                    instance=ctx.instance, ca_id=ca_id, sn=format(base + i, "x"), client_id=f"dev-{i}",
                    status="REVOKED" if revoked else "ACTIVE", source="issued",
                    revocation_reason="keyCompromise" if revoked else None, revoked_at=now if revoked else None,
                    fingerprint_sha256=format(base + i, "064x"), key_type="ec-p256", not_before=now,
                    not_after=now + _dt.timedelta(days=365), cert_der=b"\x30\x00", created_at=now, updated_at=now,
                    status_changed_at=now,
                ))
                if len(batch) == 50_000:
                    repos.insert_devices(session, batch)
                    batch = []
            repos.insert_devices(session, batch)
        insert_s = time.perf_counter() - start
        print(f"database: {Store(settings.database_url).dialect}")
        print(f"inserted {args.devices:,} devices ({args.revoked:,} revoked) in {insert_s:.1f} s")
        baseline = _baseline(args.revoked)
        print(f"baseline: bare cryptography build + sign of a {args.revoked:,}-entry CRL: {baseline:.2f} s")
        out = Path(tmp) / "artifacts"
        for label in ("publish 1 (signs the CRL)", "publish 2 (same state, no re-sign)"):
            start = time.perf_counter()
            result = artifacts.publish(ctx, out_dir=out)
            elapsed = time.perf_counter() - start
            size = (out / "current" / "crl.pem").stat().st_size
            print(f"{label}: {elapsed:.2f} s (generation {result.generation}, crls_signed={len(result.crls_signed)}, "
                  f"crl.pem {size / 1e6:.1f} MB)")
        with ctx.store.transaction(readonly=True) as session:
            one = repos.list_devices(session, ca_id=ca_id, status="ACTIVE", expiring_before=None, after_id=None,
                                     limit=1)[0]
        devices.revoke_device(ctx, ca=ca.sn, sn=one.sn)
        start = time.perf_counter()
        result = artifacts.publish(ctx, out_dir=out)
        print(f"publish 3 (one more revocation, re-signs): {time.perf_counter() - start:.2f} s "
              f"(crls_signed={len(result.crls_signed)})")
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
