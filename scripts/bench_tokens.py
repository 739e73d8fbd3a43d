"""Broker-token benchmark: apply and the hooks' verification against bare joserfc loops, in one run.

    .venv/bin/python scripts/bench_tokens.py [--n 3000] [--alg ES256|EdDSA|RS256] [--threads 4] [--pg URL]

In process.  Baselines, measured in the same run with the same key type:
(a) bare ``joserfc.jwt.encode`` of a token's header and claims (the sign loop);
(b) bare ``joserfc.jwt.decode`` of N distinct tokens with the public key (the verify loop).
Project:
(1) ``pki.services.tokens.apply``, one thread: validation, a durable transaction (key read, token insert,
    revision, audit record), signing;
(2) the same from ``--threads`` threads (applies that arrive together share a commit);
(3) ``pki.services.tokens.verify.authenticate`` on N distinct tokens, each once (the first connect of each:
    revision read, kid and algorithm checks, joserfc signature check, claims, revocation);
(4) the same token again (a reconnect: the signature check is remembered; claims and revocation are not);
(5) ``pki.services.dataplane.hooks.authenticate`` on N distinct tokens (the whole hook: blocklist, identity
    lookup, token);
(6) ``hooks.authorize`` of a token client's publish (blocklist, superuser, the token's acl).
Each figure is printed with its ratio to its baseline.  The store is a fresh SQLite file (PostgreSQL with --pg).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from joserfc import jwt  # noqa: E402
from joserfc.jwk import ECKey, OKPKey, RSAKey  # noqa: E402

from pki.clock import SystemClock  # noqa: E402
from pki.config import Settings  # noqa: E402
from pki.keys import generate_private_key  # noqa: E402
from pki.services import tokens  # noqa: E402
from pki.services.context import Context  # noqa: E402
from pki.services.dataplane import hooks  # noqa: E402
from pki.services.setup import initialise  # noqa: E402
from pki.services.tokens import verify  # noqa: E402
from pki.services.tokens.state import ALGORITHMS  # noqa: E402
from pki.store import Store  # noqa: E402

_CLASSES = {"ES256": ECKey, "EdDSA": OKPKey, "RS256": RSAKey}


def _rate(n: int, fn) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def _claims(i: int) -> dict:
    now = int(time.time())
    return {"iss": "acs:mq:local:default:default", "sub": f"c{i}", "iat": now, "nbf": now, "exp": now + 3600,
            "jti": f"tok_{i:024x}", "clientid": f"c{i}",
            "acl": [{"permission": "allow", "action": "all", "topic": "t/${clientid}/#"},
                    {"permission": "deny", "action": "all", "topic": "#"}]}


def _baselines(n: int, alg: str) -> tuple[float, float]:
    raw = generate_private_key(ALGORITHMS[alg])
    private, public = _CLASSES[alg].import_key(raw), _CLASSES[alg].import_key(raw.public_key())
    header = {"alg": alg, "kid": "key_bench", "typ": "JWT"}
    sign = _rate(n, lambda i: jwt.encode(header, _claims(i), private, algorithms=[alg]))
    made = [jwt.encode(header, _claims(i), private, algorithms=[alg]) for i in range(n)]
    check = _rate(n, lambda i: jwt.decode(made[i], public, algorithms=[alg]))
    return sign, check


def _line(label: str, rate: float, base: float, unit: str, target: str = "") -> None:
    print(f"{label:<58} {rate:>9,.0f} {unit}/s  {rate / base:5.2f} x{('   ' + target) if target else ''}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--alg", choices=sorted(ALGORITHMS), default="ES256")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pg", help="a PostgreSQL URL instead of a fresh SQLite file")
    args = parser.parse_args()
    n = args.n
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start; alg {args.alg}; n={n}; "
          f"store {'PostgreSQL' if args.pg else 'SQLite (synchronous=FULL)'}")
    base_sign, base_verify = _baselines(n, args.alg)
    _line("(a) bare joserfc sign loop", base_sign, base_sign, "tokens", "(baseline)")

    home = Path(tempfile.mkdtemp(prefix="bench-tokens-"))
    settings = Settings.load(home=home, database_url=args.pg, environ={})
    initialise(settings)
    ctx = Context(settings=settings, store=Store(settings.database_url), clock=SystemClock())
    try:
        tokens.rotate(ctx, alg=args.alg)
        tokens.apply(ctx, client_id="warm", topics=["t/#"])
        made: list[dict] = []
        one = _rate(n, lambda i: made.append(tokens.apply(ctx, client_id=f"c{i}", topics=["t/${clientid}/#"],
                                                           action="all", ttl="1h")))
        _line("(1) apply in process, 1 thread", one, base_sign, "tokens", "(target >= 2,000/s)")
        per_thread = max(1, n // args.threads)

        def worker(t: int) -> None:
            for i in range(per_thread):
                made.append(tokens.apply(ctx, client_id=f"d{t}-{i}", topics=["t/${clientid}/#"], ttl="1h"))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(args.threads)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        many = per_thread * args.threads / (time.perf_counter() - start)
        _line(f"(2) apply in process, {args.threads} threads", many, base_sign, "tokens", "(target >= 2,000/s)")

        print()
        _line("(b) bare joserfc verify loop, distinct tokens", base_verify, base_verify, "checks", "(baseline)")
        sample = made[:n]
        verify.authenticate(ctx, token=sample[0]["token"], client_id="c0", username=None)  # load keys
        ids = [f"c{i}" if i < n else None for i in range(n)]
        cold = _rate(n, lambda i: _expect(verify.authenticate(ctx, token=sample[i]["token"], client_id=ids[i],
                                                              username=None)))
        _line("(3) hook token check, distinct tokens (first connect)", cold, base_verify, "checks",
              "(targets >= 10,000/s and >= 0.5 x)")
        warm = _rate(n, lambda i: _expect(verify.authenticate(ctx, token=sample[0]["token"], client_id="c0",
                                                              username=None)))
        _line("(4) hook token check, the same token (reconnect)", warm, base_verify, "checks",
              "(targets >= 10,000/s and >= 0.5 x)")
        fresh = [tokens.apply(ctx, client_id=f"e{i}", topics=["t/#"], ttl="1h")["token"] for i in range(n)]
        whole = _rate(n, lambda i: _expect(hooks.authenticate(ctx, "", fresh[i], f"e{i}", "10.0.0.1")))
        _line("(5) hooks.authenticate, distinct tokens", whole, base_verify, "checks")
        authz = _rate(n, lambda i: _expect(hooks.authorize(ctx, "", "c0", "10.0.0.1", "publish", "t/c0/x")))
        _line("(6) hooks.authorize, a token client's publish", authz, base_verify, "checks")
    finally:
        ctx.close()
    print(f"# load average {os.getloadavg()[0]:.2f} at end")


def _expect(answer) -> None:
    if answer.result != "allow":
        raise SystemExit(f"unexpected refusal: {answer.reason}")


if __name__ == "__main__":
    main()
