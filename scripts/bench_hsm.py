"""PKCS#11 custody benchmark: a SoftHSM2-held CA key against the software keystore, in one run.

    .venv/bin/python scripts/bench_hsm.py [--n 2000] [--provision 5000] [--rounds 2]

Needs Debian's softhsm2 (softhsm2-util and libsofthsm2.so).  A token is
initialised in a temporary directory (SOFTHSM2_CONF), then:

(a) device issuance from a CSR, in process, store write included, from a
    software-keystore CA and from a CA whose key is on the token; the two
    alternate in rounds so machine load hits both alike;
(b) `pki device provision --workers 2` of N devices with generated keys, the
    real CLI in a subprocess, under each CA.
Targets (issue 17): (a) and (b) on SoftHSM2 each at least 0.5x the software figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
PIN = "bench-pin-1234"


def init_token(directory: Path, label: str) -> tuple[str, Path]:
    module = next((m for m in MODULES if os.path.exists(m)), None)
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        raise SystemExit("SoftHSM2 is not installed (apt-get install softhsm2)")
    (directory / "tokens").mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    subprocess.run([util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "so-" + PIN],
                   check=True, capture_output=True, env={**os.environ, "SOFTHSM2_CONF": str(conf)})
    return module, conf


def csr_pem(i: int) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{i}")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def issue_rate(ctx, ca_sn: str, csrs: list[bytes]) -> tuple[int, float]:
    from pki.services import devices

    start = time.perf_counter()
    for pem in csrs:
        devices.issue_device(ctx, ca=ca_sn, csr=pem)
    return len(csrs), time.perf_counter() - start


def provision_rate(home: Path, ca_sn: str, n: int, tag: str) -> float:
    manifest = home / f"manifest-{tag}.csv"
    manifest.write_text("client_id\n" + "".join(f"{tag}-{i:07d}\n" for i in range(n)))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pki", "device", "provision", "--ca", ca_sn, "--manifest", str(manifest), "--out",
         str(home / f"out-{tag}"), "--workers", "2", "--no-progress", "--json"],
        env={**os.environ, "PKI_HOME": str(home)}, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"provision ({tag}) failed: {proc.stderr}")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="CSRs issued per custody")
    parser.add_argument("--provision", type=int, default=5000, help="devices provisioned per custody")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds for (a)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-hsm-"))
    try:
        module, conf = init_token(work / "softhsm", "bench")
        # Before anything loads the module: SoftHSM2 reads its config once per process.
        os.environ["SOFTHSM2_CONF"] = str(conf)
        os.environ["PKI_PKCS11_PIN"] = PIN
        from pki.config import Settings
        from pki.services import managed
        from pki.services.context import open_context
        from pki.services.setup import initialise

        home = work / "home"
        settings = Settings.load(home=home, environ={})
        initialise(settings)
        ctx = open_context(settings)
        soft = managed.create_ca(ctx, name="Bench Software CA").sn
        hsm = managed.create_ca(ctx, name="Bench HSM CA", custody="pkcs11", pkcs11_module=module,
                                token_label="bench").sn
        print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cpus: {os.cpu_count()}")
        print(f"# SoftHSM2 module {module}; python {sys.version.split()[0]}")

        per_round = max(1, args.n // args.rounds)
        totals = {"software": [0, 0.0], "pkcs11": [0, 0.0]}
        issue_rate(ctx, soft, [csr_pem(i) for i in range(20)])  # warm-up: signers opened, caches filled
        issue_rate(ctx, hsm, [csr_pem(i) for i in range(20)])
        for r in range(args.rounds):
            for name, ca in (("software", soft), ("pkcs11", hsm)) if r % 2 == 0 else (("pkcs11", hsm),
                                                                                         ("software", soft)):
                n, seconds = issue_rate(ctx, ca, [csr_pem(i) for i in range(per_round)])
                totals[name][0] += n
                totals[name][1] += seconds
        soft_rate = totals["software"][0] / totals["software"][1]
        hsm_rate = totals["pkcs11"][0] / totals["pkcs11"][1]
        print(f"(a) issuance from a CSR, software keystore CA: {soft_rate:8.1f} certs/s (baseline 1.00x)")
        print(f"(a) issuance from a CSR, SoftHSM2 CA key:      {hsm_rate:8.1f} certs/s "
              f"({hsm_rate / soft_rate:.2f}x; target >= 0.5x: {'met' if hsm_rate >= 0.5 * soft_rate else 'MISSED'})")
        ctx.close()

        p_soft = provision_rate(home, soft, args.provision, "soft")
        p_hsm = provision_rate(home, hsm, args.provision, "hsm")
        print(f"(b) provision {args.provision} devices, 2 workers, software keystore CA: {p_soft:8.1f} devices/s "
              "(baseline 1.00x)")
        print(f"(b) provision {args.provision} devices, 2 workers, SoftHSM2 CA key:      {p_hsm:8.1f} devices/s "
              f"({p_hsm / p_soft:.2f}x; target >= 0.5x: {'met' if p_hsm >= 0.5 * p_soft else 'MISSED'})")
        print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
