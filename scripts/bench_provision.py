"""Provisioning end to end (the CLI, as an operator runs it) against the bare 1-core loop, in one run.

    .venv/bin/python scripts/bench_provision.py [--n 100000] [--workers 1,2] [--compare-with /work/main]

For each worker count, `pki device provision` runs in a subprocess on a fresh
manifest of N devices; its rate is printed with its ratio to the bare 1-core
keygen+builder loop of scripts/bench_issue.py, measured before and after the
runs (their mean is the baseline: the machine is shared and its load moves).
Each run's peak RSS is the largest of the command and its workers, and its CPU
time is theirs summed, per device (wait4(2)): on a shared machine the CPU time
moves less than the rate.
``--compare-with TREE`` also runs another checkout's code (e.g. main) on the
same machine in the same run, interleaved, so that the two can be compared
under the same load.  The load average is printed at the start and the end.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from pki.config import Settings  # noqa: E402
from pki.services import managed  # noqa: E402
from pki.services.context import open_context  # noqa: E402
from pki.services.setup import initialise  # noqa: E402
from scripts.bench_issue import keygen_builder_loop  # noqa: E402


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bare(n: int) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Baseline CA")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(_dt.datetime(2025, 1, 1, tzinfo=_dt.timezone.utc))
        .not_valid_after(_dt.datetime(2035, 1, 1, tzinfo=_dt.timezone.utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    keygen_builder_loop(cert, key, n=200)  # warm-up
    return keygen_builder_loop(cert, key, n=n)


def provision_run(home: Path, ca_sn: str, n: int, workers: int, tree: Path, tag: str) -> tuple[float, float, float]:
    """(devices/s, peak RSS MB of the command and its workers, their CPU time (user + system) per device in us)."""
    manifest = home / f"manifest-{tag}-{workers}.csv"
    with manifest.open("w") as fh:
        fh.write("client_id\n")
        for i in range(n):
            fh.write(f"{tag}{workers}-device-{i:07d}\n")
    env = {**os.environ, "PKI_HOME": str(home), "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-m", "pki", "device", "provision", "--ca", ca_sn, "--manifest", str(manifest),
            "--out", str(home / f"out-{tag}-{workers}"), "--workers", str(workers), "--no-progress", "--json"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"provision ({tree}) failed: {err[-2000:]}")
    return n / elapsed, usage.ru_maxrss / 1024, (usage.ru_utime + usage.ru_stime) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--bare", type=int, default=3000, help="devices of the bare loop, before and after")
    parser.add_argument("--compare-with", type=Path, help="another checkout whose pki package to run too")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    trees = [("this", ROOT)] + ([("other", args.compare_with.resolve())] if args.compare_with else [])
    print(f"cores: {os.cpu_count()}; load average at start: {load()}", flush=True)
    before = bare(args.bare)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-provision-", dir=os.environ.get("BENCH_DIR")) as tmp:
        home = Path(tmp)
        settings = Settings.load(home=home, environ={})
        initialise(settings)
        ctx = open_context(settings)
        ca_sn = managed.create_ca(ctx, name="Bench CA").sn
        ctx.store.dispose()
        for workers in counts:
            for tag, tree in trees:
                rate, rss, cpu = provision_run(home, ca_sn, args.n, workers, tree, tag[0])
                results.append((tag, tree, workers, rate, rss, cpu))
                print(f"  ran: {workers} worker(s) [{tag}] {rate:.0f} devices/s, {rate / before:.2f} x the bare loop "
                      f"before the runs; load average {load()}", flush=True)
        after = bare(args.bare)  # before the clean-up: deleting the output takes minutes
        print(f"load average at the end: {load()}", flush=True)
        base = (before + after) / 2
        print(f"bare 1-core keygen+builder loop {base:8.0f} devices/s  1.00 x (before {before:.0f}, after {after:.0f})")
        print(f"  (its CPU time: {1e6 / base:.0f} us per device)")
        for tag, tree, workers, rate, rss, cpu in results:
            print(f"provision {args.n} devices, {workers} worker(s) [{tag}: {tree}] {rate:8.0f} devices/s  "
                  f"{rate / base:.2f} x   peak RSS {rss:.0f} MB   CPU {cpu:.0f} us per device (all processes)", flush=True)


if __name__ == "__main__":
    main()
