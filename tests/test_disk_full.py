"""A full disk is the store's family (exit 9, HTTP 503) with its own code and the path, not a bad input."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pki.cli.main import main
from pki.cli.render import EXIT_CODES
from pki.errors import StoreError, io_error
from pki.store import Store

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_a_full_sqlite_store_says_disk_full_with_its_path(tmp_path):
    db = tmp_path / "full.db"
    store = Store(f"sqlite:///{db}")
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
        with pytest.raises(StoreError) as err:
            with store.core_transaction() as conn:
                # SQLITE_FULL without filling a real disk: the file may not grow past its pages.
                pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
                conn.exec_driver_sql(f"PRAGMA max_page_count={pages}")
                conn.exec_driver_sql("INSERT INTO t VALUES (zeroblob(1000000))")
        assert err.value.code == "disk_full" and err.value.family == "store"
        assert err.value.data["path"] == str(db) and str(db) in err.value.message
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    finally:
        store.dispose()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_the_cli_writing_to_a_full_disk_exits_with_the_store_family(capsys):
    code = main(["ca", "verification-cert", "--ca-cert", str(FIXTURES / "ca_root_ec_p256.pem"),
                 "--ca-key", str(FIXTURES / "ca_root_ec_p256.key.pem"), "--code", "a" * 64, "--out", "/dev/full"])
    err = capsys.readouterr().err
    assert code == EXIT_CODES["store"] == 9
    assert err.startswith("error[disk_full]: the disk is full")


@pytest.mark.parametrize("number,code,family", [
    (errno.ENOSPC, "disk_full", "store"), (errno.EDQUOT, "disk_full", "store"), (errno.EIO, "io_failed", "store"),
    (errno.ENOENT, "io_error", "invalid_input"), (errno.EACCES, "io_error", "invalid_input")])
def test_os_errors_map_to_codes_with_the_path(number, code, family):
    err = io_error(OSError(number, "message", "/srv/pki/out/file.pem"))
    assert (err.code, err.family) == (code, family)
    assert err.data["path"] == "/srv/pki/out/file.pem" and "/srv/pki/out/file.pem" in err.message


def test_a_full_disk_over_http_is_503_disk_full(ctx, monkeypatch):
    from pki.services import cas
    from tests.support.http_app import app_for, make_user, signed_client

    api = signed_client(app_for(ctx), make_user(ctx, "admin", "PkiAdministratorAccess"))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/var/lib/pki/pki.db-wal")

    monkeypatch.setattr(cas, "list_cas", full)
    response = api.request("GET", "/v1/cas")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "disk_full" and body["family"] == "store" and body["path"] == "/var/lib/pki/pki.db-wal"
    assert "reachable" not in body["detail"]
