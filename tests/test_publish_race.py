"""Publishing reads the store under the output's lock: a delayed publisher never switches `current` back to
older CRLs, and concurrent publishers wait for each other (bounded) instead of failing."""

from __future__ import annotations

import json
import threading

from pki.services import artifacts, devices, managed


def _current_crl_number(out, sn) -> str:
    manifest = json.loads((out / "current" / "manifest.json").read_text())
    return next(ca["crl_number"] for ca in manifest["cas"] if ca["sn"] == sn)


def test_a_delayed_publisher_cannot_put_an_older_crl_back(ctx, tmp_path, monkeypatch):
    root = managed.create_ca(ctx, name="Race Root")
    dev = devices.issue_device(ctx, ca=root.sn, generate=True, client_id="racer")
    out = tmp_path / "out"
    artifacts.publish(ctx, out_dir=out)
    collected, release = threading.Event(), threading.Event()
    collect = artifacts._collect

    def slow_collect(*args, **kw):
        result = collect(*args, **kw)
        if threading.current_thread().name == "slow":
            collected.set()
            release.wait(30)  # a bound only
        return result

    monkeypatch.setattr(artifacts, "_collect", slow_collect)
    errors = []

    def run():
        try:
            artifacts.publish(ctx, out_dir=out)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    slow = threading.Thread(target=run, name="slow")
    slow.start()
    assert collected.wait(30)
    devices.revoke_device(ctx, ca=root.sn, sn=dev.device.sn, reason="keyCompromise")
    fast = threading.Thread(target=run, name="fast")
    fast.start()
    fast.join(0.5)  # it waits for the lock the slow one holds
    release.set()
    slow.join(60)
    fast.join(60)
    assert not errors, errors
    # CRL #1 at the first publish and again by the slow one; #2 lists the revocation and must stay current.
    assert int(_current_crl_number(out, root.sn), 16) == 2
    crl_pem = (out / "current" / "crl" / f"{root.sn}.pem").read_bytes()
    from cryptography import x509

    assert x509.load_pem_x509_crl(crl_pem).get_revoked_certificate_by_serial_number(
        dev.certificate.serial_number) is not None


def test_concurrent_publishers_into_one_directory_both_succeed(ctx, tmp_path):
    for i in range(3):
        managed.create_ca(ctx, name=f"Concurrent Root {i}")
    out = tmp_path / "out"
    results, errors = [], []

    def run():
        try:
            results.append(artifacts.publish(ctx, out_dir=out).generation)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, [getattr(e, "code", e) for e in errors]
    assert sorted(results) == [1, 2, 3, 4]
