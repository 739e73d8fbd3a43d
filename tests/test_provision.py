"""Factory provisioning: output, refusals, secrecy, and resumption after kill -9."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from tests.support import snapshot
from tests.support.certs import load_pair, pem, verification_pem
from pki.errors import InvalidInput, InvalidState
from pki.services import cas, codes
from pki.services import provision as provision_module
from pki.services.devices import issue_device
from pki.services.managed import create_ca
from pki.services.provision import provision
from pki.store import DeviceCertificate, provision_repos

REPO = Path(__file__).resolve().parent.parent


def _manifest(path: Path, ids, *, header: bool = True, sans: bool = True) -> Path:
    lines = ["client_id,san1,san2"] if header else []
    lines.append("# a comment, then a blank line")
    lines.append("")
    for i, cid in enumerate(ids):
        lines.append(f"{cid},dns:{cid.lower()}.example,ip:10.0.{i // 250}.{i % 250}" if sans else cid)
    path.write_text("\n".join(lines) + "\n")
    return path


def _ids(n: int, prefix: str = "dev") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


def _active_by_client(ctx, ca_sn: str) -> dict[str, list[DeviceCertificate]]:
    with ctx.store.transaction(readonly=True) as session:
        ca_row = cas.resolve_ca(session, instance=ctx.instance, ref=ca_sn)
        rows = session.scalars(
            select(DeviceCertificate).where(DeviceCertificate.ca_id == ca_row.id, DeviceCertificate.status == "ACTIVE")
        ).all()
    out: dict[str, list[DeviceCertificate]] = {}
    for row in rows:
        out.setdefault(row.client_id, []).append(row)
    return out


def _spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_complete(ctx, ca_sn: str, ids: list[str], out: Path, *, fmt: str = "pem", password: bytes | None = None):
    """Every device: one ACTIVE certificate, its files, matching keys; the index lists each once, in order."""
    active = _active_by_client(ctx, ca_sn)
    assert sorted(active) == sorted(ids)
    assert all(len(rows) == 1 for rows in active.values()), {k: len(v) for k, v in active.items() if len(v) != 1}
    with ctx.store.transaction(readonly=True) as session:
        ca_cert = x509.load_der_x509_certificate(cas.resolve_ca(session, instance=ctx.instance, ref=ca_sn).cert_der)

    lines = (out / "index.jsonl").read_bytes().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["client_id"] for e in entries] == ids  # each once, manifest order
    devices = out / "devices"
    for entry in entries:
        row = active[entry["client_id"]][0]
        assert entry["sn"] == row.sn and entry["ca_sn"] == ca_sn
        assert entry["fingerprint_sha256"] == row.fingerprint_sha256
        cert = x509.load_pem_x509_certificate((out / entry["cert_file"]).read_bytes())
        assert cert.public_bytes(serialization.Encoding.DER) == row.cert_der
        cert.verify_directly_issued_by(ca_cert)
        key_file = out / entry["key_file"]
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        if fmt == "p12":
            key, p12_cert, _chain = pkcs12.load_key_and_certificates(key_file.read_bytes(), password)
            assert p12_cert == cert
        else:
            key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        assert _spki(key.public_key()) == _spki(cert.public_key())
    # No leftovers, and no key file whose certificate is not in the store.
    names = {p.name for p in devices.iterdir()}
    assert not [n for n in names if n.endswith(".partial") or n.endswith(".tmp")]
    suffix = ".p12" if fmt == "p12" else ".key.pem"
    assert {n[: -len(suffix)] for n in names if n.endswith(suffix)} == set(ids)
    return entries


@pytest.fixture
def factory_ca(ctx):
    return create_ca(ctx, name="Factory CA").sn


# -- the happy path -----------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_provision_issues_every_device(ctx, factory_ca, tmp_path, workers):
    ids = _ids(45)
    progress = []
    result = provision(
        ctx, ca=factory_ca, manifest=_manifest(tmp_path / "m.csv", ids), out=tmp_path / "out", workers=workers,
        batch_size=10, on_progress=lambda done, total: progress.append((done, total)),
    )
    assert (result.total, result.issued, result.skipped_existing) == (45, 45, 0)
    assert result.index == tmp_path / "out" / "index.jsonl"
    assert progress[0] == (0, 45) and progress[-1] == (45, 45)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    _check_complete(ctx, factory_ca, ids, tmp_path / "out")
    cert = x509.load_pem_x509_certificate((tmp_path / "out/devices/dev-00003.crt.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["dev-00003.example"]

    # Running it again issues nothing and changes nothing.
    before = snapshot(ctx)
    again = provision(ctx, ca=factory_ca, manifest=tmp_path / "m.csv", out=tmp_path / "out", workers=workers)
    assert (again.issued, again.skipped_existing) == (0, 45)
    assert snapshot(ctx) == before


def test_p12_output_opens_with_the_password(ctx, factory_ca, tmp_path):
    ids = _ids(6)
    provision(
        ctx, ca=factory_ca, manifest=_manifest(tmp_path / "m.csv", ids), out=tmp_path / "out", workers=2,
        fmt="p12", p12_password=b"factory-secret", batch_size=4,
    )
    _check_complete(ctx, factory_ca, ids, tmp_path / "out", fmt="p12", password=b"factory-secret")
    data = (tmp_path / "out/devices/dev-00000.p12").read_bytes()
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(data, b"wrong")


def test_p12_needs_a_password(ctx, factory_ca, tmp_path):
    with pytest.raises(InvalidInput) as info:
        provision(ctx, ca=factory_ca, manifest=_manifest(tmp_path / "m.csv", _ids(2)), out=tmp_path / "out", fmt="p12")
    assert info.value.code == "pkcs12_password_required"


def test_devices_issued_elsewhere_are_not_issued_again(ctx, factory_ca, tmp_path):
    ids = _ids(8)
    earlier = issue_device(ctx, ca=factory_ca, generate=True, client_id="dev-00002")
    result = provision(ctx, ca=factory_ca, manifest=_manifest(tmp_path / "m.csv", ids), out=tmp_path / "out",
                       workers=1, batch_size=3)
    assert (result.issued, result.skipped_existing) == (7, 1)
    entries = [json.loads(line) for line in (tmp_path / "out/index.jsonl").read_text().splitlines()]
    assert [e["client_id"] for e in entries] == ids
    entry = entries[2]
    assert entry["sn"] == earlier.device.sn and entry["key_file"] is None  # its key is with whoever issued it
    assert not (tmp_path / "out/devices/dev-00002.key.pem").exists()
    assert all(len(v) == 1 for v in _active_by_client(ctx, factory_ca).values())


# -- refusals, before anything is written ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "line"),
    [
        ("client_id\ndev-1\nbad id\ndev-3\n", "manifest_invalid_row", 3),
        ("dev-1\ndev-2/x\n", "manifest_invalid_row", 2),
        ("dev-1,dns:ok.example\ndev-2,dns:not valid\n", "manifest_invalid_row", 2),
        ("dev-1\ndev-2\n# comment\ndev-1\n", "manifest_duplicate_client_id", 4),
    ],
)
def test_bad_manifests_are_refused_up_front(ctx, factory_ca, tmp_path, body, code, line):
    manifest = tmp_path / "m.csv"
    manifest.write_text(body)
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as info:
        provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1)
    assert info.value.code == code
    assert info.value.data["line"] == line and f"line {line}" in info.value.message
    assert snapshot(ctx) == before
    assert not (tmp_path / "out").exists()


def test_empty_or_missing_manifest_is_refused(ctx, factory_ca, tmp_path):
    (tmp_path / "empty.csv").write_text("client_id\n# nothing\n")
    with pytest.raises(InvalidInput) as info:
        provision(ctx, ca=factory_ca, manifest=tmp_path / "empty.csv", out=tmp_path / "out")
    assert info.value.code == "manifest_empty"
    with pytest.raises(InvalidInput) as info:
        provision(ctx, ca=factory_ca, manifest=tmp_path / "absent.csv", out=tmp_path / "out")
    assert info.value.code == "manifest_unreadable"


def test_inactive_ca_is_refused(ctx, factory_ca, tmp_path):
    cas.deactivate_ca(ctx, factory_ca)
    before = snapshot(ctx)
    with pytest.raises(InvalidState) as info:
        provision(ctx, ca=factory_ca, manifest=_manifest(tmp_path / "m.csv", _ids(3)), out=tmp_path / "out")
    assert info.value.code == "ca_inactive"
    assert snapshot(ctx) == before and not (tmp_path / "out").exists()


def test_registered_ca_is_refused(ctx, tmp_path):
    cert, key = load_pair("ca_root_ec_p256")
    code = codes.new_code(ctx).code
    registered = cas.register_ca(
        ctx, certificate=pem(cert), verification=verification_pem(cert, key, code, now=ctx.clock.now())
    )
    before = snapshot(ctx)
    with pytest.raises(InvalidState) as info:
        provision(ctx, ca=registered.sn, manifest=_manifest(tmp_path / "m.csv", _ids(3)), out=tmp_path / "out")
    assert info.value.code == "ca_not_managed"
    assert snapshot(ctx) == before and not (tmp_path / "out").exists()


def test_an_out_dir_of_another_manifest_is_refused(ctx, factory_ca, tmp_path):
    provision(ctx, ca=factory_ca, manifest=_manifest(tmp_path / "a.csv", _ids(3, "a")), out=tmp_path / "out", workers=1)
    with pytest.raises(InvalidInput) as info:
        provision(ctx, ca=factory_ca, manifest=_manifest(tmp_path / "b.csv", _ids(3, "b")), out=tmp_path / "out",
                  workers=1)
    assert info.value.code == "provision_out_mismatch"
    assert sorted(_active_by_client(ctx, factory_ca)) == _ids(3, "a")


# -- secrecy -------------------------------------------------------------------------------


def test_store_holds_no_device_private_key(sqlite_ctx, tmp_path):
    ctx = sqlite_ctx
    factory_ca = create_ca(ctx, name="Secrecy CA").sn
    ids = _ids(12)
    provision(ctx, ca=factory_ca, manifest=_manifest(tmp_path / "m.csv", ids), out=tmp_path / "out", workers=2,
              batch_size=5)
    db = Path(ctx.settings.database_url.removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())
    assert raw  # the search below is over something
    for cid in ids[:4]:
        key = serialization.load_pem_private_key((tmp_path / f"out/devices/{cid}.key.pem").read_bytes(), None)
        pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        assert pkcs8 not in raw and scalar not in raw
        # ...while the public side is there, so the search does look in the right place.
        assert key.public_key().public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint) in raw


# -- crash safety ----------------------------------------------------------------------------


class _Boom(Exception):
    pass


def test_crash_after_commit_before_renames_is_finished_on_resume(ctx, factory_ca, tmp_path, monkeypatch):
    ids = _ids(10)
    manifest = _manifest(tmp_path / "m.csv", ids)
    real_replace = os.replace
    calls: list = []

    def replace(src, dst):
        nonlocal calls  # die at the first rename of the second batch: its rows are committed
        calls += [src] if str(src).endswith(".partial") else []
        if len(calls) == 5 + 1:  # one rename per device: its key
            raise _Boom
        real_replace(src, dst)

    monkeypatch.setattr(provision_module.os, "replace", replace)
    with pytest.raises(_Boom):
        provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1, batch_size=5)
    monkeypatch.setattr(provision_module.os, "replace", real_replace)
    assert len(_active_by_client(ctx, factory_ca)) == 10
    assert len((tmp_path / "out/index.jsonl").read_text().splitlines()) == 5

    result = provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1, batch_size=5)
    assert (result.issued, result.skipped_existing) == (0, 10)
    _check_complete(ctx, factory_ca, ids, tmp_path / "out")


def test_crash_before_commit_leaves_nothing_and_resumes(ctx, factory_ca, tmp_path, monkeypatch):
    ids = _ids(10)
    manifest = _manifest(tmp_path / "m.csv", ids)
    real_insert = provision_repos.insert_devices
    calls = []

    def insert(session, rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise _Boom
        real_insert(session, rows)

    monkeypatch.setattr(provision_repos, "insert_devices", insert)
    with pytest.raises(_Boom):
        provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1, batch_size=5)
    monkeypatch.setattr(provision_repos, "insert_devices", real_insert)
    assert sorted(_active_by_client(ctx, factory_ca)) == ids[:5]
    partials = [p.name for p in (tmp_path / "out/devices").iterdir() if p.name.endswith(".partial")]
    assert partials  # the second batch's keys, never committed...
    assert not (tmp_path / "out/devices/dev-00007.key.pem").exists()  # ...and never final

    result = provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1, batch_size=5)
    assert (result.issued, result.skipped_existing) == (5, 5)
    _check_complete(ctx, factory_ca, ids, tmp_path / "out")


def test_a_torn_index_line_is_dropped_and_redone(ctx, factory_ca, tmp_path):
    ids = _ids(6)
    manifest = _manifest(tmp_path / "m.csv", ids)
    provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1, batch_size=3)
    index = tmp_path / "out/index.jsonl"
    data = index.read_bytes()
    index.write_bytes(data[: len(data) - 40])  # the kill landed inside the last line
    result = provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1, batch_size=3)
    assert (result.issued, result.skipped_existing) == (0, 6)
    _check_complete(ctx, factory_ca, ids, tmp_path / "out")


_DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pki.config import Settings
    from pki.services.context import open_context
    from pki.services.provision import provision

    home, url, ca, manifest, out, workers, batch = sys.argv[1:]
    settings = Settings.load(home=home, database_url=url, instance="default", environ={})
    ctx = open_context(settings)
    provision(ctx, ca=ca, manifest=Path(manifest), out=Path(out), workers=int(workers), batch_size=int(batch))
    """
)


def _index_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(ctx, factory_ca, settings, tmp_path):
    """kill -9 the provisioning process at random points, several times, then let it finish."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    ids = _ids(1500)
    manifest = _manifest(tmp_path / "m.csv", ids)
    out = tmp_path / "out"
    index = out / "index.jsonl"
    argv = [sys.executable, "-c", _DRIVER, str(settings.home), settings.database_url, factory_ca, str(manifest),
            str(out), "2", "40"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kills_mid_run = 0
    rounds = []  # (round, index lines at the kill or "finished"), for the failure message
    # Kill points are positions in the batch, not times: a loaded machine must not
    # turn "mid-run" into "before the start" or "after the end".
    targets = sorted(rng.sample(range(40, len(ids) - 300), 6))
    for round_ in range(6):
        proc = subprocess.Popen(argv, env=env, start_new_session=True, stderr=subprocess.PIPE)
        try:
            # Strike when the index passes this round's target, then at a random point of a batch;
            # round 0 may strike earlier, at a random time (start-up and recovery included).
            target = max(targets[round_], _index_lines(index) + 1)
            deadline = time.monotonic() + (rng.uniform(0.0, 1.5) if round_ == 0 else 120)
            while _index_lines(index) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.02))
            if proc.poll() is not None:  # it finished (or failed) before the kill
                assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
                rounds.append((round_, "finished"))
                break
            done = _index_lines(index)
            rounds.append((round_, done))
            proc.send_signal(signal.SIGKILL)  # the writer only, as `kill -9 PID` would
            proc.wait(timeout=30)
            kills_mid_run += 0 < done < len(ids)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # belt and braces: no orphaned worker outlives the test
            except ProcessLookupError:
                pass
            proc.stderr.close()
    assert kills_mid_run >= 3, f"the kills did not land mid-run (seed {seed}, rounds {rounds})"

    final = subprocess.run(argv, env=env, capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    _check_complete(ctx, factory_ca, ids, out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs(2) is Linux's")
def test_the_batch_barrier_flushes_the_output_filesystem_not_the_machine(ctx, factory_ca, tmp_path, monkeypatch):
    from pki import durable

    assert durable._SYNCFS is not None
    flushed = []
    real = durable._SYNCFS
    monkeypatch.setattr(durable, "_SYNCFS", lambda fd: flushed.append(os.fstat(fd).st_dev) or real(fd))

    def machine_wide():
        raise AssertionError("sync() flushes every filesystem of the machine")

    monkeypatch.setattr(durable.os, "sync", machine_wide)
    ids = _ids(30)
    out = tmp_path / "out"
    provision(ctx, ca=factory_ca, manifest=_manifest(tmp_path / "m.csv", ids), out=out, workers=1, batch_size=10)
    _check_complete(ctx, factory_ca, ids, out)
    assert len(flushed) >= 3 and set(flushed) == {os.stat(out).st_dev}


def test_torn_partials_of_a_killed_worker_are_discarded(ctx, factory_ca, tmp_path):
    """A worker killed mid-write leaves a cut-short partial: never committed, so it goes (and a wrong
    p12 password on a complete one is still reported, not mistaken for a torn file)."""
    ids = _ids(4)
    manifest = _manifest(tmp_path / "m.csv", ids)
    out = tmp_path / "out"
    provision(ctx, ca=factory_ca, manifest=manifest, out=out, workers=1, fmt="p12", p12_password=b"pw", batch_size=2)
    whole = (out / "devices/dev-00000.p12").read_bytes()
    (out / "devices/stray-1.p12.partial").write_bytes(whole[: len(whole) // 2])
    (out / "devices/stray-2.crt.pem.partial").write_bytes(b"-----BEGIN")
    provision(ctx, ca=factory_ca, manifest=manifest, out=out, workers=1, fmt="p12", p12_password=b"pw")
    _check_complete(ctx, factory_ca, ids, out, fmt="p12", password=b"pw")

    (out / "devices/stray-3.p12.partial").write_bytes(whole)
    with pytest.raises(InvalidInput) as info:
        provision(ctx, ca=factory_ca, manifest=manifest, out=out, workers=1, fmt="p12", p12_password=b"other")
    assert info.value.code == "provision_key_file_unreadable"
    assert "pw" not in info.value.message and "other" not in info.value.message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs(2) is Linux's")
def test_a_failed_flush_records_nothing_and_says_so(ctx, factory_ca, tmp_path, monkeypatch):
    from pki.errors import StoreError
    from pki import durable

    def failing(fd):
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(durable, "_SYNCFS", failing)
    ids = _ids(5)
    manifest = _manifest(tmp_path / "m.csv", ids)
    before = snapshot(ctx)
    with pytest.raises(StoreError) as info:
        provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1)
    assert info.value.code == "provision_flush_failed" and "Input/output error" in info.value.message
    assert snapshot(ctx) == before
    monkeypatch.undo()
    provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1)
    _check_complete(ctx, factory_ca, ids, tmp_path / "out")
