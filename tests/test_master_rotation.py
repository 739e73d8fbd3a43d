"""Master-key rotation: every sealed blob moves to the new key, resumably, with issuance working throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from pki.config import Settings
from pki.errors import ConfigError, InvalidInput
from pki.keys import SoftwareKeystore, create_master_key_file, load_master_key
from pki.services import devices, managed, secrets, users
from pki.services.context import Context
from pki.services.master_keys import SEALED_COLUMNS, rotate_master
from pki.store import Store
from pki.store.access_models import AuditRecord
from pki.store.key_models import MasterKeyRecord
from tests.support import snapshot

REPO = Path(__file__).resolve().parent.parent


def _blobs(ctx) -> list[tuple[str, str, bytes]]:
    """(kind, key id, blob) for every non-empty sealed blob in the store."""
    out = []
    with ctx.store.engine.connect() as conn:
        for spec in SEALED_COLUMNS:
            t = spec.sa_table()
            col, kid = t.c[spec.column], t.c[spec.key_id_column]
            for blob, key_id in conn.execute(select(col, kid).where(col.is_not(None))):
                if blob:
                    out.append((spec.kind, key_id, bytes(blob)))
    return out


def _opens(keystore: SoftwareKeystore, kind: str, key_id: str, blob: bytes) -> bool:
    try:
        if kind == "private_key":
            keystore.open_private_key(blob, key_id=key_id)
        else:
            keystore.open_secret(blob, key_id=key_id)
        return True
    except ConfigError:
        return False


def _populate(ctx, *, secrets_count: int = 20) -> str:
    root = managed.create_ca(ctx, name="Rotation Root")
    inter = managed.create_ca(ctx, name="Rotation Issuing", parent=root.sn, days=1000)
    for i in range(secrets_count):
        secrets.register_secret(ctx, client_id=f"sec-{i:04d}")
    secrets.refresh_secret(ctx, client_id="sec-0000")  # a secondary too
    secrets.create_group(ctx, name="fleet")
    users.create_user(ctx, "operator")
    users.create_access_key(ctx, "operator")
    from pki.services import ocsp as ocsp_service

    ocsp_service.responder_certificate(ctx, ca=inter.sn)  # the OCSP key, sealed too
    return inter.sn


def _context(settings, master_key_file, clock=None) -> Context:
    s = Settings.load(home=settings.home, database_url=settings.database_url, instance="default",
                      master_key_file=str(master_key_file), environ={})
    return Context(settings=s, store=Store(s.database_url), **({"clock": clock} if clock else {}))


def _audit(ctx) -> list[dict]:
    with ctx.store.transaction(readonly=True) as session:
        rows = session.scalars(select(AuditRecord.details).order_by(AuditRecord.seq)).all()
    return [d for d in map(json.loads, rows) if d.get("operation") == "keys.master.rotate"]


def test_rotation_reseals_every_blob_audits_and_retires_the_old_key(ctx, settings, tmp_path):
    ca_sn = _populate(ctx)
    old = load_master_key(settings.master_key_file)
    new_file = tmp_path / "new.key"
    create_master_key_file(new_file)
    new = load_master_key(new_file)
    kinds = {k for k, _, _ in _blobs(ctx)}
    assert kinds == {"private_key", "secret"} and len(_blobs(ctx)) >= 26

    result = rotate_master(ctx, new_key_file=new_file, batch_size=3)
    assert result.retired and result.remaining == 0 and result.moved == len(_blobs(ctx))
    assert "can be destroyed" in result.as_json()["message"]
    for kind, key_id, blob in _blobs(ctx):
        assert SoftwareKeystore.sealed_by(blob) == new.key_id
        assert _opens(SoftwareKeystore(new), kind, key_id, blob)
        assert not _opens(SoftwareKeystore(old), kind, key_id, blob)
    phases = [(r["phase"], r.get("resumed")) for r in _audit(ctx)]
    assert phases == [("start", False), ("end", None)]
    end = _audit(ctx)[-1]
    assert end["retired"] == [old.key_id] and end["remaining"] == 0
    with ctx.store.transaction(readonly=True) as session:
        states = {r.key_id: r.state for r in session.scalars(select(MasterKeyRecord))}
    assert states == {old.key_id: "retired", new.key_id: "current"}

    # The old file can go: a process configured with the new key alone does everything.
    os.unlink(settings.master_key_file)
    fresh = _context(settings, new_file)
    try:
        devices.issue_device(fresh, ca=ca_sn, generate=True, client_id="after-rotation")
        shown = secrets.show_secret(fresh, client_id="sec-0001", reveal=True)
        assert shown.secret
    finally:
        fresh.close()


def test_rotation_refusals_change_nothing(ctx, settings, tmp_path):
    _populate(ctx, secrets_count=2)
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as info:
        rotate_master(ctx, new_key_file=settings.master_key_file)
    assert info.value.code == "master_key_unchanged"
    loose = tmp_path / "loose.key"
    create_master_key_file(loose)
    os.chmod(loose, 0o644)
    with pytest.raises(ConfigError) as info:
        rotate_master(ctx, new_key_file=loose)
    assert info.value.code == "master_key_insecure"
    with pytest.raises(InvalidInput) as info:
        rotate_master(ctx, new_key_file=tmp_path / "absent.key")
    assert info.value.code == "master_key_file_not_found"
    assert snapshot(ctx) == before


def _moved(ctx, new_id: str) -> tuple[int, int]:
    blobs = _blobs(ctx)
    done = sum(SoftwareKeystore.sealed_by(b) == new_id for _, _, b in blobs)
    return done, len(blobs) - done


@pytest.mark.slow
def test_kill_9_mid_rotation_then_rerun_finishes_and_issuance_works_throughout(ctx, settings, tmp_path, clock):
    ca_sn = _populate(ctx, secrets_count=1000)
    old = load_master_key(settings.master_key_file)
    new_file = tmp_path / "new.key"
    create_master_key_file(new_file)
    new = load_master_key(new_file)
    cmd = [sys.executable, "-m", "pki.cli.main", "--home", str(settings.home), "--database-url",
           settings.database_url, "--master-key-file", str(settings.master_key_file), "keys", "rotate-master",
           "--new-key-file", str(new_file), "--batch-size", "1", "--json"]
    # At the lowest priority: on a busy machine the poll below must not fall behind the rotation's rows.
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: os.nice(19))
    base = [sys.executable, "-m", "pki.cli.main", "--home", str(settings.home), "--database-url",
            settings.database_url, "--master-key-file", str(settings.master_key_file)]
    # Issuance while the rotation runs, from a process configured with the old key only: a process of its
    # own, started with the rotation, so that the loop below only polls (waiting for an issuance there let
    # the rotation, one transaction per row over 1,000 rows, finish before the kill).
    during = subprocess.Popen([*base, "device", "issue", "--ca", ca_sn, "--generate", "--client-id", "during-0",
                               "--json"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = b"", b""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done, left = _moved(ctx, new.key_id)
            if done >= 20 and left > 0:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        out, err = during.communicate(timeout=120)
    done, left = _moved(ctx, new.key_id)
    assert done >= 20 and left > 0, (done, left)  # killed half-way
    assert during.returncode == 0, err
    assert json.loads(out)["status"] == "ACTIVE"

    # Half-way: both an old-key and a new-key process open every row, and issue.
    for key_file in (settings.master_key_file, new_file):
        other = _context(settings, key_file, clock)
        try:
            devices.issue_device(other, ca=ca_sn, generate=True, client_id=f"halfway-{Path(key_file).name}")
            assert secrets.show_secret(other, client_id="sec-0299", reveal=True).secret
            assert secrets.show_secret(other, client_id="sec-0000", reveal=True).secret
        finally:
            other.close()
    # A process started after the rotation began seals new blobs under the new key, even configured
    # with the old one (ctx, loaded before, still seals under the old one: the rerun moves those).
    late = _context(settings, settings.master_key_file, clock)
    try:
        secrets.register_secret(late, client_id="born-during")
    finally:
        late.close()
    secrets.register_secret(ctx, client_id="born-before")
    with ctx.store.engine.connect() as conn:
        from pki.store.secret_models import DeviceSecret

        sealed = dict(conn.execute(select(DeviceSecret.client_id, DeviceSecret.sealed_primary).where(
            DeviceSecret.client_id.in_(["born-during", "born-before"]))).all())
    assert SoftwareKeystore.sealed_by(sealed["born-during"]) == new.key_id
    assert SoftwareKeystore.sealed_by(sealed["born-before"]) == old.key_id

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    answer = json.loads(rerun.stdout)
    assert answer["old_keys_retired"] is True and answer["remaining"] == 0
    assert "can be destroyed" in answer["message"]
    for kind, key_id, blob in _blobs(ctx):
        assert _opens(SoftwareKeystore(new), kind, key_id, blob)
        assert not _opens(SoftwareKeystore(old), kind, key_id, blob)
    phases = [(r["phase"], r.get("resumed")) for r in _audit(ctx)]
    assert phases == [("start", False), ("start", True), ("end", None)]

    os.unlink(settings.master_key_file)
    fresh = _context(settings, new_file, clock)
    try:
        devices.issue_device(fresh, ca=ca_sn, generate=True, client_id="after")
        assert secrets.show_secret(fresh, client_id="born-during", reveal=True).secret
    finally:
        fresh.close()


# -- the envelope: which master key sealed a blob ----------------------------------------------


def test_blobs_name_their_master_key_and_open_with_any_key_the_keystore_holds():
    import secrets as _secrets

    from pki.keys import MasterKey

    a, b = MasterKey(_secrets.token_bytes(32)), MasterKey(_secrets.token_bytes(32))
    assert a.key_id != b.key_id and len(a.key_id) == 16 and a.key_id in repr(a)
    blob = SoftwareKeystore(a).seal_secret(b"s3cret", key_id="AK1")
    assert SoftwareKeystore.sealed_by(blob) == a.key_id
    assert SoftwareKeystore(b, others=[a]).open_secret(blob, key_id="AK1") == b"s3cret"
    moved = SoftwareKeystore(b, others=[a]).reseal_secret(blob, key_id="AK1")
    assert SoftwareKeystore.sealed_by(moved) == b.key_id
    assert SoftwareKeystore(b).open_secret(moved, key_id="AK1") == b"s3cret"
    with pytest.raises(ConfigError) as info:
        SoftwareKeystore(a).open_secret(moved, key_id="AK1")
    assert info.value.code == "key_unseal_failed" and b.key_id in info.value.message
    # A key the process was not given is found through the resolver (the store's master_key table).
    assert SoftwareKeystore(a, resolve={b.key_id: b}.get).open_secret(moved, key_id="AK1") == b"s3cret"
    # A resolver answering with the wrong key is not believed.
    with pytest.raises(ConfigError):
        SoftwareKeystore(a, resolve=lambda _id: a).open_secret(moved, key_id="AK1")


def test_version_1_blobs_from_before_the_rotation_format_still_open_and_rotate():
    import secrets as _secrets

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from pki.keys import MasterKey

    raw = _secrets.token_bytes(32)
    old, new = MasterKey(raw), MasterKey(_secrets.token_bytes(32))
    nonce = _secrets.token_bytes(12)
    legacy = bytes([1]) + nonce + AESGCM(raw).encrypt(nonce, b"legacy", b"device-pki keystore v1\x00secret\x00AK9")
    assert SoftwareKeystore.sealed_by(legacy) is None
    assert SoftwareKeystore(old).open_secret(legacy, key_id="AK9") == b"legacy"
    moved = SoftwareKeystore(new, others=[old]).reseal_secret(legacy, key_id="AK9")
    assert SoftwareKeystore(new).open_secret(moved, key_id="AK9") == b"legacy"
    with pytest.raises(ConfigError):
        SoftwareKeystore(new).open_secret(legacy, key_id="AK9")


# -- the same operations over HTTP and the CLI ------------------------------------------------


def test_keys_over_http_list_and_rotate(ctx, settings, tmp_path):
    from pki.client import ApiError
    from tests.support.http_app import app_for, make_user, signed_client

    _populate(ctx, secrets_count=2)
    api = signed_client(app_for(ctx), make_user(ctx, "admin", "PkiAdministratorAccess"))
    page = api.call("GET", "/v1/keys")
    old = load_master_key(settings.master_key_file)
    assert page["items"] and all(k["master_key_id"] == old.key_id for k in page["items"])
    # Every request leaves its nonce, and a refusal its audit record; nothing else may change.
    def state():
        return {k: v for k, v in snapshot(ctx).items() if k not in ("http_nonce", "audit_record", "audit_head")}

    before = state()
    with pytest.raises(ApiError) as info:
        api.call("POST", "/v1/keys/rotate-master", json={"new_key_file": str(tmp_path / "absent.key")})
    assert info.value.code == "master_key_file_not_found"
    assert state() == before
    new_file = tmp_path / "new.key"
    create_master_key_file(new_file)
    done = api.call("POST", "/v1/keys/rotate-master", json={"new_key_file": str(new_file), "batch_size": 2})
    new = load_master_key(new_file)
    assert done["old_keys_retired"] and done["new_master_key_id"] == new.key_id
    assert all(k["master_key_id"] == new.key_id for k in api.call("GET", "/v1/keys")["items"])


def test_cli_new_master_and_rotate(pki, ctx, tmp_path):
    _populate(ctx, secrets_count=2)
    code, out, err = pki("keys", "new-master", "--out", str(tmp_path / "k2"), "--json")
    assert code == 0, err
    made = json.loads(out)
    assert oct(os.stat(tmp_path / "k2").st_mode & 0o777) == "0o600"
    code, out, err = pki("keys", "new-master", "--out", str(tmp_path / "k2"))
    assert code != 0 and "master_key_exists" in err  # never overwrites
    code, out, err = pki("keys", "rotate-master", "--new-key-file", str(tmp_path / "k2"), "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["new_master_key_id"] == made["master_key_id"] and answer["old_keys_retired"]
