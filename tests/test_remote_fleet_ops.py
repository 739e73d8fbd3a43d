"""`pki check run` and the outside-root CA commands in remote mode: the same answers as locally."""

from __future__ import annotations

import json

from tests.support.certs import make_root, pem
from tests.test_remote_cli import admin, env, local, remote, run, serve  # noqa: F401 (fixtures)
from tests.test_ca_subjects import _sign_csr
from pki.services import devices, managed


def test_remote_check_run_matches_local(ctx, remote, local, tmp_path):
    root = managed.create_ca(ctx, name="Remote Root")
    devices.issue_device(ctx, ca=root.sn, generate=True, client_id="soon", days=5)
    code, out, err = remote("check", "run", "--json")
    assert code == 0, err
    served = json.loads(out)
    code, out, err = local("check", "run", "--json")
    assert code == 0, err
    here = json.loads(out)
    # The server judges CRLs on its own --artifacts-dir (nothing published there yet), this store on its
    # CRL state (none signed yet): the same findings, in other words.
    assert [(f["check_id"], f["resource"]) for f in served["findings"]] == \
        [(f["check_id"], f["resource"]) for f in here["findings"]]
    assert served["counts"] == here["counts"]
    assert {f["check_id"] for f in served["findings"]} == {"device_cert_expiring", "ca_crl_not_valid"}
    assert str(tmp_path) not in json.dumps(served) and "current/crl/" in json.dumps(served)
    code, _, _ = remote("check", "run", "--fail-on", "high")
    assert code == 12
    code, _, err = remote("check", "run", "--artifacts-dir", str(tmp_path))
    assert code == 2 and "local-only" in err


def test_remote_csr_only_and_install_signed(ctx, clock, remote, tmp_path):
    out = tmp_path / "ca.csr"
    code, stdout, err = remote("ca", "create", "--subject", "C=DE,O=Acme,CN=Line 3", "--csr-only", "--out",
                               str(out), "--json")
    assert code == 0, err
    ref = json.loads(stdout)["ref"]
    root_cert, root_key = make_root("Offline Root", now=clock.now())
    (tmp_path / "ca.pem").write_bytes(pem(_sign_csr(out.read_bytes(), root_cert, root_key, now=clock.now())))
    (tmp_path / "root.pem").write_bytes(pem(root_cert))
    code, stdout, err = remote("ca", "install-signed", ref, "--cert", str(tmp_path / "ca.pem"), "--chain",
                               str(tmp_path / "root.pem"), "--json")
    assert code == 0, err
    assert json.loads(stdout)["subject"] == "CN=Line 3,O=Acme,C=DE"
