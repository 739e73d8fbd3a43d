"""Provisioning with and without the per-batch durability barrier, 1 and 2 workers, against a bare loop.

    .venv/bin/python scripts/bench_provision_sync.py sync|nosync|machine [--n 20000]

N devices in process (default 20,000).  "sync": the barrier as shipped (syncfs(2) of the
output's filesystem on Linux); "nosync" stubs it out to show what it costs;
"machine": sync(2) of every filesystem, as before syncfs.  Each rate is printed with
its ratio to a bare 1-core loop measured in the same run: generate a P-256 key, build
the device certificate with x509.CertificateBuilder, sign, PEM-encode key and
certificate (no files, no store).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pki import durable  # noqa: E402
from pki.config import Settings  # noqa: E402
from pki.services import managed, provision as pv  # noqa: E402
from pki.services.context import open_context  # noqa: E402
from pki.services.setup import initialise  # noqa: E402
from scripts.bench_issue import keygen_builder_loop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("sync", "nosync", "machine"))
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    if args.mode == "nosync":
        durable.sync_filesystem = lambda path: None
    elif args.mode == "machine":
        durable.sync_filesystem = lambda path: os.sync()
    print(f"cores: {os.cpu_count()} (provisioning default --workers: {pv.available_cores()}); "
          f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    home = Path(tempfile.mkdtemp())
    settings = Settings.load(home=home, environ={})
    initialise(settings)
    ctx = open_context(settings)
    ca = managed.create_ca(ctx, name="X")
    from cryptography import x509
    from pki.services.devices import _issuer_material  # the CA's parsed certificate, as issuance has it
    from pki.store import repos
    with ctx.store.transaction(readonly=True) as session:
        row = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca.sn)
        ca_cert, _ = _issuer_material(ctx, row)
        key_row = repos.get_custody_key(session, key_id=row.key_id)
    ca_key = ctx.keystore.open_private_key(key_row.sealed, key_id=key_row.key_id)
    assert isinstance(ca_cert, x509.Certificate)
    bare = keygen_builder_loop(ca_cert, ca_key, n=min(args.n, 4000))
    print(f"bare 1-core keygen+builder loop   {bare:7.0f}/s   1.00 x (baseline)")
    for w in (1, 2):
        manifest = home / f"m{w}.csv"
        manifest.write_text("client_id\n" + "".join(f"w{w}-{i}\n" for i in range(args.n)))
        start = time.perf_counter()
        pv.provision(ctx, ca=ca.sn, manifest=manifest, out=home / f"o{w}", workers=w)
        rate = args.n / (time.perf_counter() - start)
        print(f"{args.mode:<7} {args.n} devices, {w} worker(s) {rate:7.0f}/s   {rate / bare:.2f} x"
              + (" (target >= 1.0 with 2 workers)" if w == 2 else ""))


if __name__ == "__main__":
    main()
