"""The provisioning protocol's file side: when key and certificate files appear, their modes, strays.

A key is written as a ``.partial`` before its batch's commit; after the
commit the workers rename it and write the certificate file; the index line
comes last.  (tests/test_provision.py has the kill -9 test and the crashes
around the commit.)
"""

from __future__ import annotations

import os
import stat

import pytest

from pki.errors import InvalidState
from pki.services.managed import create_ca
from pki.services.provision import provision
from pki.store import provision_repos
from tests.test_provision import _active_by_client, _check_complete, _ids, _manifest


class _Boom(Exception):
    pass


@pytest.fixture
def factory_ca(ctx):
    return create_ca(ctx, name="Factory CA").sn


@pytest.mark.parametrize("workers", [1, 2])
def test_a_key_file_of_an_unissued_row_stops_the_batch(ctx, factory_ca, tmp_path, workers):
    ids = _ids(8)
    manifest = _manifest(tmp_path / "m.csv", ids)
    out = tmp_path / "out"
    (out / "devices").mkdir(parents=True)
    stray = out / "devices" / "dev-00005.key.pem"
    stray.write_bytes(b"someone else's key\n")
    with pytest.raises(InvalidState) as info:
        provision(ctx, ca=factory_ca, manifest=manifest, out=out, workers=workers, batch_size=4)
    assert info.value.code == "provision_stray_key_file" and "dev-00005" in info.value.message
    assert sorted(_active_by_client(ctx, factory_ca)) == ids[:4]  # the first batch only
    assert stray.read_bytes() == b"someone else's key\n"
    assert not (out / "devices" / "dev-00004.crt.pem").exists()

    stray.unlink()
    result = provision(ctx, ca=factory_ca, manifest=manifest, out=out, workers=workers, batch_size=4)
    assert (result.issued, result.skipped_existing) == (4, 4)
    _check_complete(ctx, factory_ca, ids, out)


def test_certificate_files_appear_only_after_their_commit(ctx, factory_ca, tmp_path, monkeypatch):
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
    names = sorted(p.name for p in (tmp_path / "out/devices").iterdir())
    assert [n for n in names if n.endswith(".crt.pem")] == [f"{i}.crt.pem" for i in ids[:5]]
    assert [n for n in names if n.endswith(".partial")] == [f"{i}.key.pem.partial" for i in ids[5:]]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_file_modes_whatever_the_umask(ctx, factory_ca, tmp_path, umask):
    ids = _ids(3)
    previous = os.umask(umask)
    try:
        provision(ctx, ca=factory_ca, manifest=_manifest(tmp_path / "m.csv", ids), out=tmp_path / "out", workers=1)
    finally:
        os.umask(previous)
    devices = tmp_path / "out/devices"
    for client_id in ids:
        assert stat.S_IMODE((devices / f"{client_id}.key.pem").stat().st_mode) == 0o600
        assert stat.S_IMODE((devices / f"{client_id}.crt.pem").stat().st_mode) == 0o644


def test_a_torn_certificate_file_of_an_unindexed_row_is_rewritten(ctx, factory_ca, tmp_path):
    """A kill while a worker wrote a certificate file: its row is committed, not yet in the index."""
    ids = _ids(6)
    manifest = _manifest(tmp_path / "m.csv", ids)
    out = tmp_path / "out"
    provision(ctx, ca=factory_ca, manifest=manifest, out=out, workers=1, batch_size=3)
    index = out / "index.jsonl"
    index.write_bytes(b"".join(index.read_bytes().splitlines(keepends=True)[:3]))
    cert = out / "devices/dev-00004.crt.pem"
    cert.write_bytes(cert.read_bytes()[:100])
    (out / "devices/dev-00005.crt.pem").unlink()  # killed before its certificate was written
    result = provision(ctx, ca=factory_ca, manifest=manifest, out=out, workers=2, batch_size=3)
    assert (result.issued, result.skipped_existing) == (0, 6)
    _check_complete(ctx, factory_ca, ids, out)
