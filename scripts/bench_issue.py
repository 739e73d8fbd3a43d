"""Issuance benchmark: the project against the bare cryptography loop, in one run.

    .venv/bin/python scripts/bench_issue.py [--n 3000] [--provision 100000] [--skip-provision] [--skip-list]

(t) the DER template (pki/x509/template.py) against x509.CertificateBuilder with the
    device profile, the same inputs (public key, serial, validity, CN), signed, DER out;
(a) baseline: load a CSR, verify it, build the device certificate, sign, PEM;
(b) the project's in-process issuance from a CSR, store write and audit included, one
    caller: its rate, and its CPU time against the baseline's (the rest is the wait for
    the durable commit's fsync, measured alone on the same disk and printed);
(b8) the same with 8 callers at once (group commit shares the fsync);
(s) store designs measured in the same run: one device-row insert through Core's execute,
    exec_driver_sql and the DB-API cursor (pki/store/lean.py); issuance with the group's
    transaction on a pooled connection (Store.core_transaction) and on a held one
    (HeldConnection, what ships), CPU per certificate in interleaved rounds;
(c) provisioning N devices with generated keys end to end, 1 and 2 workers,
    with the peak RSS of the provisioning processes, against a bare 1-core
    keygen+builder loop (generate a P-256 key, build, sign, PEM);
(d) one `device list --ca` page with 10k and with 1M devices under the CA.
Each figure is printed with its ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pki.config import Settings  # noqa: E402
from pki.services import devices, managed  # noqa: E402
from pki.services.context import open_context  # noqa: E402
from pki.services.setup import initialise  # noqa: E402
from pki.store import repos  # noqa: E402


def csr_pem(i: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{i}")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def bare_loop(csrs: list[bytes], ca_cert, ca_key) -> float:
    """(a): what any issuer must do at least; certificates per second."""
    start = time.perf_counter()
    now = _dt.datetime.now(_dt.timezone.utc)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    for pem in csrs:
        csr = x509.load_pem_x509_csr(pem)
        assert csr.is_signature_valid
        public = csr.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + _dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(aki, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert.public_bytes(serialization.Encoding.PEM)
    return len(csrs) / (time.perf_counter() - start)


def bare_cpu(csrs, ca_cert, ca_key) -> float:
    """CPU seconds per certificate of the bare loop (a)."""
    start = time.process_time()
    bare_loop(csrs, ca_cert, ca_key)
    return (time.process_time() - start) / len(csrs)


def project_loop(ctx, ca_sn: str, csrs: list[bytes]) -> tuple[float, float]:
    """(b): devices.issue_device from a CSR, one transaction each; (rate, CPU seconds per certificate)."""
    start, cpu = time.perf_counter(), time.process_time()
    for pem in csrs:
        devices.issue_device(ctx, ca=ca_sn, csr=pem)
    return len(csrs) / (time.perf_counter() - start), (time.process_time() - cpu) / len(csrs)


def project_threads(ctx, ca_sn: str, csrs: list[bytes], threads: int = 8) -> float:
    """(b8): the same from ``threads`` callers at once."""
    import threading

    parts = [csrs[i::threads] for i in range(threads)]
    gate = threading.Barrier(threads + 1)

    def run(part):
        gate.wait()
        for pem in part:
            devices.issue_device(ctx, ca=ca_sn, csr=pem, client_id=f"t-{hashlib.sha1(pem).hexdigest()[:16]}")

    workers = [threading.Thread(target=run, args=(p,)) for p in parts]
    for w in workers:
        w.start()
    gate.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return len(csrs) / (time.perf_counter() - start)


def insert_designs(ctx, ca_sn: str, n: int = 2000) -> dict[str, float]:
    """(s): CPU microseconds of one device-row insert, three ways, in a transaction rolled back."""
    from pki.store.repos import _INSERT_DEVICE, _LEAN_INSERT_DEVICE

    with ctx.store.core_transaction(readonly=True) as conn:
        ca_id = repos.get_issuer_state(conn, instance=ctx.instance, sn=ca_sn).id
    now = _dt.datetime.now(_dt.timezone.utc)
    rows = [dict(instance=ctx.instance, ca_id=ca_id, sn=f"5{i:x}", client_id=f"s-{i}", status="ACTIVE", source="issued",
                 fingerprint_sha256=f"{i:064x}", key_type="ec-p256", not_before=now, not_after=now, cert_der=b"0" * 400,
                 created_at=now, updated_at=now, status_changed_at=now) for i in range(n)]
    designs = {
        "Core execute": lambda conn, row: conn.execute(_INSERT_DEVICE, [row]),
        "exec_driver_sql": lambda conn, row: conn.exec_driver_sql(
            compiled.sql, compiled.parameters(row)),  # the same SQL and bind processing as the lean path
        "DB-API cursor (lean)": lambda conn, row: _LEAN_INSERT_DEVICE.execute(conn, row),
    }
    cpu = {name: 0.0 for name in designs}
    with ctx.store.engine.connect() as conn:
        compiled = _LEAN_INSERT_DEVICE._compiled(conn.dialect)
        for _round in range(2):  # interleaved: load drifts on a shared machine
            for name, insert_one in designs.items():
                with conn.begin() as tx:
                    start = time.process_time()
                    for row in rows:
                        insert_one(conn, row)
                    cpu[name] += time.process_time() - start
                    tx.rollback()
    return {name: seconds / (2 * n) for name, seconds in cpu.items()}


def transaction_designs(settings, ca_sn: str, csrs: list[bytes], rounds: int = 4) -> dict[str, float]:
    """(s): CPU seconds per issued certificate with the group's transaction pooled or held, interleaved."""
    from pki.services import audit
    from pki.services.group_commit import GroupCommit

    contexts = {}
    for name in ("pooled (core_transaction)", "held (HeldConnection)"):
        ctx = contexts[name] = open_context(settings)
        transaction = ctx.store.core_transaction if name.startswith("pooled") else ctx.store.held_connection().transaction
        ctx.memo(("group_commit", "device.issue"), lambda c=ctx, t=transaction: GroupCommit(
            t, lambda conn, job: devices._write_issued(c, conn, job),
            finish=lambda conn, results: audit.append_changes(conn, [r[-1] for r in results])))
    cpu = {name: 0.0 for name in contexts}
    part = len(csrs) // (rounds * len(contexts))
    chunks = iter(range(0, part * rounds * len(contexts), part))
    for _round in range(rounds):
        for name, ctx in contexts.items():
            first = next(chunks)
            start = time.process_time()
            for pem in csrs[first:first + part]:
                devices.issue_device(ctx, ca=ca_sn, csr=pem, client_id=f"d-{hashlib.sha1(pem).hexdigest()[:16]}")
            cpu[name] += time.process_time() - start
    for ctx in contexts.values():
        ctx.close()
    return {name: seconds / (part * rounds) for name, seconds in cpu.items()}


def fsync_ms(directory: Path, count: int = 200) -> float:
    """What one durable commit waits for on this disk: write 4 KiB and fsync, median."""
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    timings = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
            timings.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return sorted(timings)[count // 2] * 1000


def template_vs_builder(n: int = 3000) -> tuple[float, float]:
    """(t): certificates per second, builder then template, same CA signer and inputs, DER out."""
    from pki.keys import SoftwareSigner
    from pki.x509 import build
    from pki.x509.template import DeviceTemplate

    ca_key = ec.generate_private_key(ec.SECP256R1())
    signer = SoftwareSigner(ca_key, key_id="key_bench")
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    ca_cert = signer.sign_certificate(build.build_ca_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Template Bench CA")]),
        public_key=ca_key.public_key(), serial=1, not_before=now, not_after=now + _dt.timedelta(days=3650),
        path_length=None))
    template = DeviceTemplate(issuer=ca_cert, signer_key_type=signer.key_type)
    inputs = [(ec.generate_private_key(ec.SECP256R1()).public_key(), f"bench-{i}", build.random_serial())
              for i in range(n)]
    not_after = now + _dt.timedelta(days=365)
    rates = []
    for use_template in (False, True, False, True):  # interleaved: load drifts on a shared machine
        start = time.perf_counter()
        for public_key, cn, serial in inputs:
            if use_template:
                template.issue(signer, public_key=public_key, client_id=cn, serial=serial, not_before=now,
                               not_after=not_after).der
            else:
                signer.sign_certificate(build.build_device_certificate(
                    issuer=ca_cert, public_key=public_key, client_id=cn, serial=serial, not_before=now,
                    not_after=not_after)).public_bytes(serialization.Encoding.DER)
        rates.append(n / (time.perf_counter() - start))
    return max(rates[0], rates[2]), max(rates[1], rates[3])


def keygen_builder_loop(ca_cert, ca_key, n: int = 2000) -> float:
    """(c)'s baseline: one core generating a P-256 key, building, signing and PEM-encoding its certificate."""
    now = _dt.datetime.now(_dt.timezone.utc)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    start = time.perf_counter()
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key()
        (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"k-{i}")]))
            .issuer_name(ca_cert.subject).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + _dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(aki, critical=False)
            .sign(ca_key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    return n / (time.perf_counter() - start)


def provision_run(home: Path, ca_sn: str, n: int, workers: int) -> dict:
    """(c): the real CLI in a subprocess, so RSS and cores are the command's own."""
    manifest = home / f"manifest-{workers}.csv"
    with manifest.open("w") as fh:
        fh.write("client_id\n")
        for i in range(n):
            fh.write(f"w{workers}-device-{i:07d}\n")
    out = home / f"out-{workers}"
    env = {**os.environ, "PKI_HOME": str(home)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pki", "device", "provision", "--ca", ca_sn, "--manifest", str(manifest),
         "--out", str(out), "--workers", str(workers), "--no-progress", "--json"],
        env=env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"provision failed: {proc.stderr}")
    return {"rate": n / elapsed, "seconds": elapsed}


def peak_rss_children_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def list_page_ms(ctx, ca_sn: str, *, repeats: int = 200) -> float:
    """(d): median time of one 100-item page, taken deep in the CA's devices."""
    first = devices.list_devices(ctx, ca=ca_sn, limit=100)
    cursor = first.next_cursor
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        page = devices.list_devices(ctx, ca=ca_sn, limit=100, cursor=cursor)
        timings.append(time.perf_counter() - start)
        assert len(page.items) == 100
    timings.sort()
    return timings[len(timings) // 2] * 1000


def fill_devices(ctx, ca_sn: str, count: int, *, start_index: int) -> None:
    """Synthetic rows through the same bulk insert provisioning uses."""
    with ctx.store.transaction(readonly=True) as session:
        ca_id = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca_sn).id
    now = ctx.clock.now()
    batch = []
    for i in range(start_index, start_index + count):
        batch.append(dict(
            instance=ctx.instance, ca_id=ca_id, sn=format(i + 1, "x"), client_id=f"fill-{i}", status="ACTIVE",
            source="issued", fingerprint_sha256=format(i, "064x"), key_type="ec-p256", not_before=now,
            not_after=now + _dt.timedelta(days=365), cert_der=b"\x30\x00", created_at=now, updated_at=now,
            status_changed_at=now,
        ))
        if len(batch) == 20000:
            with ctx.store.transaction() as session:
                repos.insert_devices(session, batch)
            batch = []
    if batch:
        with ctx.store.transaction() as session:
            repos.insert_devices(session, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="certificates for (a) and (b)")
    parser.add_argument("--provision", type=int, default=100_000, help="devices for (c)")
    parser.add_argument("--skip-provision", action="store_true")
    parser.add_argument("--skip-list", action="store_true")
    parser.add_argument("--designs-only", action="store_true", help="(a), (b), (b8) and (s) only")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite in a temporary "
                        "directory, whose disk the fsync line measures)")
    args = parser.parse_args()

    results: dict = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    if args.designs_only or args.database_url:
        args.skip_provision = args.skip_list = True
    print(f"cores: {os.cpu_count()}; load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    builder_rate, template_rate = template_vs_builder()
    results.update(t_builder_per_s=round(builder_rate), t_template_per_s=round(template_rate))
    print(f"(t) CertificateBuilder, device profile {builder_rate:8.0f} certs/s   1.00 x (baseline)")
    print(f"(t) DER template, same inputs          {template_rate:8.0f} certs/s   {template_rate / builder_rate:.2f} x"
          " (target >= 3)")
    with tempfile.TemporaryDirectory(prefix="bench-issue-") as tmp:
        home = Path(tmp)
        settings = Settings.load(home=home, environ={}, database_url=args.database_url)
        initialise(settings)
        ctx = open_context(settings)
        ca = managed.create_ca(ctx, name="Bench CA")
        # The baseline signs with the same kind of key (P-256) as the managed CA.
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Baseline CA")])
        ca_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
            .serial_number(1).not_valid_before(_dt.datetime(2025, 1, 1, tzinfo=_dt.timezone.utc))
            .not_valid_after(_dt.datetime(2035, 1, 1, tzinfo=_dt.timezone.utc))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        csrs = [csr_pem(i) for i in range(args.n)]
        bare_loop(csrs[:200], ca_cert, ca_key)  # warm-up
        baseline = bare_loop(csrs, ca_cert, ca_key)
        baseline_cpu = bare_cpu(csrs, ca_cert, ca_key)
        project, project_cpu = project_loop(ctx, ca.sn, csrs)
        threaded = project_threads(ctx, ca.sn, csrs)
        sync_ms = fsync_ms(home)
        results.update(a_bare_per_s=round(baseline), b_project_per_s=round(project), b8_project_per_s=round(threaded),
                       b_cpu_ratio=round(baseline_cpu / project_cpu, 3), fsync_ms=round(sync_ms, 3))
        print(f"(a) bare cryptography loop        {baseline:8.0f} certs/s   1.00 x (baseline)")
        print(f"(b) pki issue from CSR + store     {project:8.0f} certs/s   {project / baseline:.2f} x (target >= 0.70)")
        print(f"(b) its CPU per certificate        {project_cpu * 1e6:8.0f} us       {baseline_cpu / project_cpu:.2f} x "
              f"the bare loop's {baseline_cpu * 1e6:.0f} us (the rest is the durable commit's wait)")
        print(f"(b) one 4 KiB write+fsync on this disk: {sync_ms:.2f} ms (median), so at most "
              f"{1000 / sync_ms:.0f} durable commits/s for one caller")
        print(f"(b8) pki issue, 8 callers at once  {threaded:8.0f} certs/s   {threaded / baseline:.2f} x (group commit)")
        floor = 1 / (baseline_cpu + sync_ms / 1000)
        ours = 1 / (project_cpu + sync_ms / 1000)
        results.update(b_floor_ratio=round(floor / baseline, 3), b_own_floor_ratio=round(ours / baseline, 3))
        print(f"(b) floor, one durable commit per certificate: the bare loop's CPU + one fsync = "
              f"{(baseline_cpu + sync_ms / 1000) * 1e6:.0f} us, at most {floor:.0f} certs/s = {floor / baseline:.2f} x; "
              f"with (b)'s own CPU: {ours:.0f} certs/s = {ours / baseline:.2f} x")
        inserts = insert_designs(ctx, ca.sn)
        for name, seconds in inserts.items():
            print(f"(s) one device-row insert, {name:22s} {seconds * 1e6:6.1f} us CPU  "
                  f"{seconds / inserts['Core execute']:.2f} x Core's")
        tx = transaction_designs(settings, ca.sn, [csr_pem(i) for i in range(max(400, args.n // 2))])
        for name, seconds in tx.items():
            print(f"(s) issue from CSR, group transaction {name:26s} {seconds * 1e6:6.0f} us CPU/cert  "
                  f"{baseline_cpu / seconds:.2f} x the bare loop's")
        results.update(s_insert_us={k: round(v * 1e6, 1) for k, v in inserts.items()},
                       s_issue_cpu_us={k: round(v * 1e6) for k, v in tx.items()})

        if not args.skip_provision:
            bare_keygen = keygen_builder_loop(ca_cert, ca_key)
            results["c_bare_keygen_per_s"] = round(bare_keygen)
            print(f"(c) bare 1-core keygen+builder loop {bare_keygen:8.0f} devices/s  1.00 x (baseline of (c))")
            ctx.close()
            one = provision_run(home, ca.sn, args.provision, 1)
            two = provision_run(home, ca.sn, args.provision, 2)
            rss = peak_rss_children_mb()
            results.update(c_1_worker_per_s=round(one["rate"]), c_2_workers_per_s=round(two["rate"]), c_peak_rss_mb=round(rss))
            print(f"(c) provision {args.provision} devices, 1 worker  {one['rate']:8.0f} devices/s  "
                  f"{one['rate'] / bare_keygen:.2f} x   ({one['seconds']:.1f} s)")
            print(f"(c) provision {args.provision} devices, 2 workers {two['rate']:8.0f} devices/s  "
                  f"{two['rate'] / bare_keygen:.2f} x (target >= 1.0)   ({two['seconds']:.1f} s; "
                  f"{two['rate'] / one['rate']:.2f} x 1 worker; 1M devices at this rate: "
                  f"{1_000_000 / two['rate'] / 60:.1f} min, target <= 4)")
            print(f"(c) peak RSS of the provisioning processes: {rss:.0f} MB (target < 300)")
            ctx = open_context(settings)

        if not args.skip_list:
            list_ca = managed.create_ca(ctx, name="List CA")
            fill_devices(ctx, list_ca.sn, 10_000, start_index=0)
            small = list_page_ms(ctx, list_ca.sn)
            fill_devices(ctx, list_ca.sn, 990_000, start_index=10_000)
            large = list_page_ms(ctx, list_ca.sn)
            results.update(d_10k_page_ms=round(small, 3), d_1m_page_ms=round(large, 3))
            print(f"(d) device list page, 10k devices  {small:7.3f} ms (target < 5)")
            print(f"(d) device list page, 1M devices   {large:7.3f} ms ({large / small:.2f} x the 10k page, target <= 1.5)")
        ctx.close()
    results["load_average_end"] = os.getloadavg()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in results['load_average_end'])}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
