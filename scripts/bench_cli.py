#!/usr/bin/env python3
"""Benchmark the `pki` CLI as an operator runs it: start-up, bulk revoke, export.

    .venv/bin/python scripts/bench_cli.py [--runs 15] [--revoke 10000] [--export 1000000] [--skip-export]

- start-up: `pki --version`, `pki --help`, `pki device show SN --ca CA`, `pki device revoke SN --ca CA`
  on a local SQLite store, each run --runs times as a fresh process (the project's own repeated runs),
  median and ratio to `python -c pass` measured in the same run;
- bulk revoke: `pki device revoke --from FILE` of --revoke devices (client ids), including the CRL
  re-sign, against the bare cryptography build + sign of a CRL with as many entries;
- export: `pki device list --all --output csv` of --export devices to /dev/null: rows/s, and peak RSS of
  the whole instance against one CA with a tenth of the devices (flat memory: the two are close);
  the baseline is the floor, sqlite3 + csv.writer over the same table in this process.

Devices are synthetic rows inserted in bulk (placeholder cert_der: none of these commands reads it).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import os
import resource
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pki.config import Settings  # noqa: E402
from pki.ids import format_serial  # noqa: E402
from pki.services import managed  # noqa: E402
from pki.services.context import open_context  # noqa: E402
from pki.services.setup import initialise  # noqa: E402
from pki.store import repos  # noqa: E402

PKI = str(Path(sys.executable).with_name("pki"))


def _insert(ctx, ca_sn: str, count: int, *, prefix: str) -> list[tuple[str, str]]:
    now = ctx.clock.now()
    base = secrets.randbits(120) << 32
    made = []
    with ctx.store.transaction() as session:
        ca_id = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca_sn).id
        batch = []
        for i in range(count):
            sn = format_serial(base + i)
            batch.append(dict(
                instance=ctx.instance, ca_id=ca_id, sn=sn, client_id=f"{prefix}-{i}", status="ACTIVE",
                source="issued", revocation_reason=None, revoked_at=None,
                fingerprint_sha256=format(base + i, "064x"), key_type="ec-p256", not_before=now,
                not_after=now + _dt.timedelta(days=365), cert_der=b"\x30\x00", created_at=now, updated_at=now,
                status_changed_at=now))
            if len(made) < 1000:
                made.append((f"{prefix}-{i}", sn))
            if len(batch) == 50_000:
                repos.insert_devices(session, batch)
                batch = []
        repos.insert_devices(session, batch)
    return made


#: CPU seconds (user + system) of each run, by label: on a loaded machine the steadier figure.
CPU: dict[str, list[float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(argv: list[str], env: dict, runs: int, *, each=None, label: str = "") -> list[float]:
    times = []
    for i in range(runs):
        args = each(i) if each else argv
        cpu = _children_cpu()
        start = time.perf_counter()
        done = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            raise SystemExit(f"{' '.join(args)}: exit {done.returncode}: {done.stderr}")
        times.append(time.perf_counter() - start)
        CPU.setdefault(label, []).append(_children_cpu() - cpu)
    return times


def _crl_baseline(n: int) -> float:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "baseline")])
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    start = time.perf_counter()
    reason = x509.Extension(x509.oid.CRLEntryExtensionOID.CRL_REASON, False,
                            x509.CRLReason(x509.ReasonFlags.key_compromise))
    revoked = [x509.RevokedCertificateBuilder(serial_number=(1 << 150) + i, revocation_date=now,
                                              extensions=[reason]).build() for i in range(n)]
    x509.CertificateRevocationListBuilder(issuer_name=name, last_update=now, next_update=now + _dt.timedelta(days=7),
                                          revoked_certificates=revoked).sign(key, hashes.SHA256())
    return time.perf_counter() - start


def _peak_rss_mb(argv: list[str], env: dict) -> tuple[float, float, float]:
    """Wall time, CPU time (user + system) and peak RSS (MB) of one run, its stdout to /dev/null
    (the rusage of a fresh child: on a shared, loaded machine the CPU time is the steadier figure)."""
    probe = ("import resource, subprocess, sys, time; s = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
             "print(time.perf_counter() - s, u.ru_utime + u.ru_stime, u.ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, *argv], env=env, check=True, capture_output=True,
                         text=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--revoke", type=int, default=10_000)
    parser.add_argument("--export", type=int, default=1_000_000)
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  cpus: {os.cpu_count()}  "
          f"python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "PKI_HOME": str(home)}
        for var in ("PKI_SERVER", "PKI_PROFILE", "PKI_DATABASE_URL", "PKI_MASTER_KEY_FILE"):
            env.pop(var, None)
        env["XDG_CONFIG_HOME"] = str(Path(tmp) / "config")
        settings = Settings.load(home=home, environ={})
        initialise(settings)
        ctx = open_context(settings)
        ca = managed.create_ca(ctx, name="Bench Root")
        small = managed.create_ca(ctx, name="Bench Line")

        # -- start-up ------------------------------------------------------------------------
        targets = _insert(ctx, ca.sn, 1 + args.runs + args.revoke, prefix="dev")
        show_sn = targets[0][1]
        runs = args.runs
        commands = {
            "python -c pass": lambda i: [sys.executable, "-c", "pass"],
            "pki --version": lambda i: [PKI, "--version"],
            "pki --help": lambda i: [PKI, "--help"],
            "pki device show SN --ca CA": lambda i: [PKI, "device", "show", show_sn, "--ca", ca.sn],
            "pki device revoke SN --ca CA": lambda i: [PKI, "device", "revoke", targets[1 + i][1], "--ca", ca.sn],
        }
        results = {label: [] for label in commands}
        for i in range(runs):  # interleaved: a burst of load on the machine hits every command alike
            for label, argv in commands.items():
                results[label] += _time([], env, 1, each=lambda _: argv(i), label=label)
        base = statistics.median(results["python -c pass"])
        base_cpu = statistics.median(CPU["python -c pass"])
        print(f"\nstart-up, {runs} runs each (interleaved): wall median (min) and CPU median (user + system), "
              "ratios of medians to `python -c pass`:")
        for label, times in results.items():
            med, cpu = statistics.median(times), statistics.median(CPU[label])
            print(f"  {label:30s} wall {med * 1000:7.1f} ms ({min(times) * 1000:6.1f}) {med / base:5.1f}x   "
                  f"CPU {cpu * 1000:7.1f} ms {cpu / base_cpu:5.1f}x")

        # -- bulk revoke -------------------------------------------------------------------------
        listing = Path(tmp) / "revoke.txt"
        listing.write_text("".join(f"dev-{i}\n" for i in range(1 + runs, 1 + runs + args.revoke)))
        cpu = _children_cpu()
        start = time.perf_counter()
        done = subprocess.run([PKI, "device", "revoke", "--from", str(listing), "--json"], env=env,
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        cpu = _children_cpu() - cpu
        import json

        report = json.loads(done.stdout)
        crl_base = _crl_baseline(args.revoke)
        print(f"\nbulk revoke of {args.revoke:,} devices by client id (`pki device revoke --from FILE`, exit "
              f"{done.returncode}): {elapsed:.2f} s incl. start-up and the CRL re-sign "
              f"(revoked {report['revoked']:,}, failed {len(report['failed'])}, crls_signed {report['crls_signed']}); "
              f"CPU {cpu:.2f} s")
        print(f"  baseline: bare cryptography build + sign of a {args.revoke:,}-entry CRL: {crl_base:.2f} s "
              f"-> {elapsed / crl_base:.1f}x; {args.revoke / elapsed:,.0f} revocations/s")

        # -- export ----------------------------------------------------------------------------------
        if not args.skip_export:
            tenth = args.export // 10
            start = time.perf_counter()
            _insert(ctx, small.sn, tenth, prefix="line")
            _insert(ctx, ca.sn, args.export - tenth - runs - args.revoke, prefix="bulk")
            print(f"\nexport: inserted {args.export:,} devices in {time.perf_counter() - start:.0f} s")
            db = str(home / "pki.db")
            start = time.perf_counter()
            cpu_start = time.process_time()
            con = sqlite3.connect(db)
            rows = 0
            with open(os.devnull, "w", newline="") as sink:
                writer = csv.writer(sink)
                for row in con.execute("SELECT d.sn, c.sn, d.client_id, d.status, d.source, d.fingerprint_sha256, "
                                       "d.key_type, d.not_before, d.not_after, d.revocation_reason, d.revoked_at, "
                                       "d.created_at, d.updated_at, d.status_changed_at FROM device_certificate d "
                                       "JOIN ca_certificate c ON c.id = d.ca_id ORDER BY d.id"):
                    writer.writerow(row)
                    rows += 1
            con.close()
            floor = time.perf_counter() - start
            cpu_floor = time.process_time() - cpu_start
            wall_small, cpu_small, rss_small = _peak_rss_mb(
                [PKI, "device", "list", "--all", "--output", "csv", "--ca", small.sn], env)
            wall, cpu, rss = _peak_rss_mb([PKI, "device", "list", "--all", "--output", "csv"], env)
            print(f"  baseline: sqlite3 + csv.writer in this process, same rows, no conversion: {rows / floor:,.0f} "
                  f"rows/s wall, {rows / cpu_floor:,.0f} rows/s of CPU time")
            print(f"  pki device list --all --output csv: {args.export:,} rows in {wall:.1f} s wall, {cpu:.1f} s CPU = "
                  f"{args.export / wall:,.0f} rows/s wall ({(args.export / wall) / (rows / floor):.2f}x the baseline), "
                  f"{args.export / cpu:,.0f} rows/s of CPU time ({(args.export / cpu) / (rows / cpu_floor):.2f}x); "
                  f"peak RSS {rss:.0f} MB")
            print(f"  the same for one CA of {tenth:,} rows: {tenth / wall_small:,.0f} rows/s wall, "
                  f"{tenth / cpu_small:,.0f} rows/s CPU; peak RSS {rss_small:.0f} MB (flat memory: about the same)")
        ctx.close()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
