"""`pki artifacts publish`: layout, manifest, generations, failure safety, CRL policy, warnings."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import openssl as openssl_tools
from tests.support import snapshot
from tests.support.certs import make_root, pem, verification_pem
from tests.support.lint import assert_crl_lint_clean
from pki.ids import format_serial
from pki.errors import ConfigError, InvalidState, PkiError
from pki.services import artifacts, cas, codes, crls, devices, managed
from pki.x509 import subject_hash


def _register(ctx, clock, cn="Owner Root"):
    ca_cert, ca_key = make_root(cn, now=clock.now())
    code = codes.new_code(ctx).code
    row = cas.register_ca(ctx, certificate=pem(ca_cert),
                          verification=verification_pem(ca_cert, ca_key, code, now=clock.now()))
    return row.sn, ca_cert, ca_key


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_publish_layout_manifest_and_hashes(ctx, tmp_path, openssl):
    root = managed.create_ca(ctx, name="Layout Root")
    sub = managed.create_ca(ctx, name="Layout Sub", parent=root.sn, days=1000)
    gone = managed.create_ca(ctx, name="Layout Inactive")
    cas.deactivate_ca(ctx, gone.sn)
    d = devices.issue_device(ctx, ca=sub.sn, generate=True, client_id="dev")
    devices.revoke_device(ctx, ca=sub.sn, sn=d.device.sn, reason="keyCompromise")
    out = tmp_path / "out"
    result = artifacts.publish(ctx, out_dir=out)
    current = out / "current"
    assert os.readlink(current) == "generations/1" and result.generation == 1
    files = _files(current)
    bundle = x509.load_pem_x509_certificates(files["ca-bundle.pem"])
    sns = [format_serial(c.serial_number) for c in bundle]
    assert sns == [root.sn, sub.sn]  # id order, the root once although it is also sub's chain; no INACTIVE CA
    manifest = json.loads(files["manifest.json"])
    assert manifest["generation"] == 1 and manifest["format"] == artifacts.MANIFEST_FORMAT
    assert [c["sn"] for c in manifest["cas"]] == [root.sn, sub.sn]
    assert all(c["crl_number"] == "1" for c in manifest["cas"])
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == digest, name
    assert set(manifest["files"]) | {"manifest.json"} == set(files)
    # capath: <hash>.N for each CA, <hash>.rN for each CRL, hashes as openssl computes them.
    for cert in bundle:
        path = tmp_path / "c.pem"
        path.write_bytes(pem(cert))
        h = openssl_tools.subject_hash(path)
        assert subject_hash(cert) == h
        assert f"capath/{h}.0" in files and f"capath/{h}.r0" in files
    crl_pems = [files[f"crl/{sn}.pem"] for sn in (root.sn, sub.sn)]
    assert files["crl.pem"] == b"".join(crl_pems)
    assert f"crl/{gone.sn}.pem" not in files
    for crl_pem in crl_pems:
        assert_crl_lint_clean(crl_pem)
    sub_crl = x509.load_pem_x509_crl(crl_pems[1])
    assert sub_crl.get_revoked_certificate_by_serial_number(d.certificate.serial_number) is not None
    conf = files["mosquitto.conf"].decode()
    assert f"cafile {current / 'ca-bundle.pem'}" in conf and f"crlfile {current / 'crl.pem'}" in conf
    # Same state again: same bundle and CRLs (not re-signed), a new generation.
    again = artifacts.publish(ctx, out_dir=out)
    assert again.generation == 2 and again.crls_signed == []
    files2 = _files(current)
    assert files2["ca-bundle.pem"] == files["ca-bundle.pem"] and files2["crl.pem"] == files["crl.pem"]


def test_failed_publish_leaves_current_on_previous_generation(ctx, tmp_path, monkeypatch):
    root = managed.create_ca(ctx, name="Safe Root")
    out = tmp_path / "out"
    artifacts.publish(ctx, out_dir=out)
    before = _files(out / "current")
    d = devices.issue_device(ctx, ca=root.sn, generate=True, client_id="dev")
    devices.revoke_device(ctx, ca=root.sn, sn=d.device.sn)
    real = artifacts._write_file

    def failing(path, data):
        if path.name == "crl.pem":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(artifacts, "_write_file", failing)
    with pytest.raises(OSError):
        artifacts.publish(ctx, out_dir=out)
    assert os.readlink(out / "current") == "generations/1"
    assert _files(out / "current") == before
    assert sorted(p.name for p in (out / "generations").iterdir()) == ["1"]  # no half-written leftovers
    monkeypatch.setattr(artifacts, "_write_file", real)
    assert artifacts.publish(ctx, out_dir=out).generation == 2
    assert os.readlink(out / "current") == "generations/2"


def test_keep_prunes_old_generations(ctx, tmp_path):
    managed.create_ca(ctx, name="Keep Root")
    out = tmp_path / "out"
    for _ in range(5):
        artifacts.publish(ctx, out_dir=out, keep=2)
    assert sorted(int(p.name) for p in (out / "generations").iterdir()) == [4, 5]
    assert os.readlink(out / "current") == "generations/5"


def test_current_that_is_not_a_symlink_is_refused(ctx, tmp_path):
    managed.create_ca(ctx, name="Root")
    (tmp_path / "out" / "current").mkdir(parents=True)
    with pytest.raises(ConfigError) as exc:
        artifacts.publish(ctx, out_dir=tmp_path / "out")
    assert exc.value.code == "artifacts_dir_invalid"


def test_registered_ca_without_valid_crl_warns_or_fails(ctx, clock, tmp_path):
    managed.create_ca(ctx, name="Managed Root")
    sn, ca_cert, ca_key = _register(ctx, clock)
    out = tmp_path / "out"
    result = artifacts.publish(ctx, out_dir=out)
    assert [(w.code, w.ca_sn) for w in result.warnings] == [("crl_missing", sn)]
    assert not (out / "current" / "crl" / f"{sn}.pem").exists()
    state = snapshot(ctx)
    with pytest.raises(InvalidState) as exc:
        artifacts.publish(ctx, out_dir=out, require_crls=True)
    assert exc.value.code == "crl_missing" and exc.value.data["cas"] == [sn]
    assert os.readlink(out / "current") == "generations/1"
    assert snapshot(ctx) == state
    # Upload a CRL: published, no warning, --require-crls passes.
    request = crls.crl_request(ctx, ca=sn)
    key_pem = ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    crls.upload_crl(ctx, ca=sn, crl=crls.sign_crl_request(
        ca_certificate=pem(ca_cert), ca_private_key=key_pem, request=json.dumps(request).encode(), clock=clock))
    result = artifacts.publish(ctx, out_dir=out, require_crls=True)
    assert result.warnings == []
    assert (out / "current" / "crl" / f"{sn}.pem").exists()
    # Expired: a warning again, and left out (an expired CRL locks out every device just the same).
    clock.advance(_dt.timedelta(days=8))
    result = artifacts.publish(ctx, out_dir=out)
    assert [w.code for w in result.warnings] == ["crl_stale"]
    with pytest.raises(InvalidState):
        artifacts.publish(ctx, out_dir=out, require_crls=True)


def test_intermediate_of_inactive_root_is_left_out(ctx, tmp_path):
    root = managed.create_ca(ctx, name="Parent Root")
    sub = managed.create_ca(ctx, name="Child", parent=root.sn, days=1000)
    cas.deactivate_ca(ctx, root.sn)
    result = artifacts.publish(ctx, out_dir=tmp_path / "out")
    assert [(w.code, w.ca_sn) for w in result.warnings] == [("ca_chain_inactive", sub.sn), ("no_active_ca", None)]
    assert (tmp_path / "out" / "current" / "ca-bundle.pem").read_bytes() == b""


def test_reload_command_runs_and_its_failure_is_reported(ctx, tmp_path):
    managed.create_ca(ctx, name="Reload Root")
    marker = tmp_path / "reloaded"
    result = artifacts.publish(ctx, out_dir=tmp_path / "out", reload_cmd=f"touch {marker}")
    assert marker.exists() and result.reload_exit_code == 0
    with pytest.raises(ConfigError) as exc:
        artifacts.publish(ctx, out_dir=tmp_path / "out", reload_cmd="exit 3")
    assert exc.value.code == "reload_failed" and exc.value.data["generation"] == 2
    assert os.readlink(tmp_path / "out" / "current") == "generations/2"


def test_bad_publish_options(ctx, tmp_path):
    for kw, code in ((dict(keep=0), "invalid_keep"), (dict(listener_port=0), "invalid_port"),
                     (dict(server_cert="x"), "invalid_request"),
                     (dict(crl_lifetime=_dt.timedelta(minutes=5)), "invalid_crl_lifetime")):
        with pytest.raises(PkiError) as exc:
            artifacts.publish(ctx, out_dir=tmp_path / "out", **kw)
        assert exc.value.code == code
    assert not (tmp_path / "out").exists()


def test_device_certificates_carry_crl_and_ocsp_urls(ctx):
    ctx.settings = dataclasses.replace(ctx.settings, crl_url="http://pki.example/crl/{ca_sn}.pem",
                                       ocsp_url="http://pki.example/ocsp")
    root = managed.create_ca(ctx, name="URL Root")
    cert = devices.issue_device(ctx, ca=root.sn, generate=True, client_id="dev").certificate
    dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp[0].full_name[0].value == f"http://pki.example/crl/{root.sn}.pem"
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert aia[0].access_location.value == "http://pki.example/ocsp"


def test_cli_publish(ctx, tmp_path, monkeypatch, capsys):
    from pki.cli.main import main

    monkeypatch.setenv("PKI_HOME", str(ctx.settings.home))
    monkeypatch.setenv("PKI_DATABASE_URL", ctx.settings.database_url)
    managed.create_ca(ctx, name="CLI Root")
    _register(ctx, ctx.clock, cn="CLI Owner")
    out = tmp_path / "out"
    assert main(["artifacts", "publish", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["generation"] == 1
    assert "warning[crl_missing]" in captured.err
    assert main(["artifacts", "publish", "--out", str(out), "--require-crls"]) == 6
    assert "error[crl_missing]" in capsys.readouterr().err
    assert os.readlink(out / "current") == "generations/1"
