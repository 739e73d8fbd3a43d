"""Secret-check benchmark: the broker's password check against the bare HMAC loop, in one run.

    .venv/bin/python scripts/bench_secrets.py [--n 20000] [--pg postgresql://...]

In process, one thread (one core).  Baselines, measured in the same run:
(a) bare ``hmac.compare_digest(b64(hmac.new(secret, client_id, sha1)), password)``;
(b) bare HMAC-SHA256 over ``sr + "\\n" + se`` and a compare (the SAS token).
Project, through ``pki.services.secrets.verify`` (username parse, client-id
check, per-check row read, cached unsealed secret, constant-time compare):
(1) a registered credential, HMAC-SHA1 password;
(2) a registered credential, SharedAccessSignature token;
(3) a group-derived credential (one more HMAC-SHA256 per check);
(4) as (1) but allowing a 1 s status cache (``max_status_age=1``);
(5) first check of each of N distinct credentials (row read + AES-GCM unseal).
Each figure is printed with its ratio to its baseline.  The store is a fresh
SQLite file, and PostgreSQL too when --pg is given.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pki.clock import SystemClock  # noqa: E402
from pki.config import Settings  # noqa: E402
from pki.services import secrets as svc  # noqa: E402
from pki.services.context import Context  # noqa: E402
from pki.services.setup import initialise  # noqa: E402
from pki.store import Store  # noqa: E402


def _rate(n: int, fn) -> float:
    fn()  # warm caches (unseal, prepared lookup, pool)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def _baselines(n: int) -> tuple[float, float]:
    secret = base64.b64encode(b"\x01" * 32)
    client = b"bench-device-1"
    password = base64.b64encode(hmac.new(secret, client, hashlib.sha1).digest())

    def sha1_check():
        assert hmac.compare_digest(base64.b64encode(hmac.new(secret, client, hashlib.sha1).digest()), password)

    raw = base64.b64decode(secret)
    message = b"bench-device-1\n4102444800"
    sig = hmac.new(raw, message, hashlib.sha256).digest()

    def sas_check():
        assert hmac.compare_digest(hmac.new(raw, message, hashlib.sha256).digest(), sig)

    return _rate(n, sha1_check), _rate(n, sas_check)


def _bench_store(label: str, url: str | None, n: int, base_sha1: float, base_sas: float) -> None:
    home = Path(tempfile.mkdtemp(prefix="bench-secrets-"))
    settings = Settings.load(home=home, database_url=url, environ={})
    initialise(settings)
    ctx = Context(settings=settings, store=Store(settings.database_url), clock=SystemClock())
    try:
        cred = svc.register_secret(ctx, client_id="bench-device-1")
        pw = svc.password_for(cred.secret, "bench-device-1")
        token = svc.sas_token(cred.secret, "bench-device-1", expires=int(time.time()) + 3600)
        svc.create_group(ctx, name="bench-group")
        member = svc.derive_member_secret(ctx, group="bench-group", client_id="bench-member-1")
        member_pw = svc.password_for(member.secret, "bench-member-1")

        def check(client_id, username, password, **kw):
            def run():
                assert svc.verify(ctx, client_id=client_id, username=username, password=password, **kw)
            return run

        rows = [
            ("(1) registered, HMAC-SHA1 password", check("bench-device-1", cred.username, pw), base_sha1),
            ("(2) registered, SAS token", check("bench-device-1", cred.username, token), base_sas),
            ("(3) group-derived, HMAC-SHA1 password",
             check("bench-member-1", member.username, member_pw), base_sha1),
            ("(4) registered, status cached 1 s",
             check("bench-device-1", cred.username, pw, max_status_age=1.0), base_sha1),
        ]
        print(f"\n[{label}]")
        for name, fn, base in rows:
            rate = _rate(n, fn)
            print(f"  {name:<42} {rate:>10,.0f} checks/s   {rate / base:6.3f} x baseline")

        # (5) cold: each credential checked once, so every check unseals.
        m = max(200, n // 20)
        creds = [svc.register_secret(ctx, client_id=f"cold-{i}") for i in range(m)]
        pws = [(c.client_id, c.username, svc.password_for(c.secret, c.client_id)) for c in creds]
        ctx.__dict__.pop("_secret_verifier", None)
        start = time.perf_counter()
        for client_id, username, password in pws:
            assert svc.verify(ctx, client_id=client_id, username=username, password=password)
        rate = m / (time.perf_counter() - start)
        print(f"  {'(5) first check of ' + str(m) + ' credentials':<42} {rate:>10,.0f} checks/s   "
              f"{rate / base_sha1:6.3f} x baseline")
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="checks per measurement")
    parser.add_argument("--pg", help="also measure on this PostgreSQL URL (an empty database or schema)")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.machine()}, one thread, n={args.n}")
    base_sha1, base_sas = _baselines(args.n)
    print(f"  {'(a) baseline: bare HMAC-SHA1 + compare':<42} {base_sha1:>10,.0f} checks/s")
    print(f"  {'(b) baseline: bare HMAC-SHA256 + compare':<42} {base_sas:>10,.0f} checks/s")
    _bench_store("SQLite file", None, args.n, base_sha1, base_sas)
    if args.pg:
        _bench_store("PostgreSQL", args.pg, max(2000, args.n // 10), base_sha1, base_sas)
    return 0


if __name__ == "__main__":
    sys.exit(main())
