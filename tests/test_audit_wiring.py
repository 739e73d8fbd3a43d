"""Every change made through the services lands on the audit log once, in its own transaction."""

from __future__ import annotations

import pytest

from tests.support import snapshot
from tests.support.certs import load_pair, pem, verification_pem
from pki.errors import PkiError
from pki.services import artifacts, audit, cas, codes, devices, managed, secrets
from pki.services.provision import provision


def _records(ctx):
    return audit.list_records(ctx, limit=1000).items


def test_each_change_is_recorded_once_with_its_action(ctx, tmp_path):
    cert, key = load_pair("ca_root_ec_p256")
    code = codes.new_code(ctx).code
    registered = cas.register_ca(ctx, certificate=pem(cert), verification=verification_pem(cert, key, code))
    root = managed.create_ca(ctx, name="Audited Root")
    issued = [devices.issue_device(ctx, ca=root.sn, generate=True, client_id=f"a-{i}").device for i in range(3)]
    devices.revoke_device(ctx, ca=root.sn, sn=issued[0].sn, reason="keyCompromise")
    devices.deactivate_device(ctx, ca=root.sn, sn=issued[1].sn)
    devices.deactivate_device(ctx, ca=root.sn, sn=issued[1].sn)  # no change, no record
    cas.deactivate_ca(ctx, registered.sn)
    secrets.register_secret(ctx, client_id="s-1")
    secrets.show_secret(ctx, client_id="s-1", reveal=True)
    manifest = tmp_path / "m.csv"
    manifest.write_text("client_id\n" + "".join(f"p-{i}\n" for i in range(5)))
    provision(ctx, ca=root.sn, manifest=manifest, out=tmp_path / "out", workers=1, batch_size=2)
    artifacts.publish(ctx, out_dir=tmp_path / "broker")

    records = _records(ctx)
    operations = [r.details["operation"] for r in records]
    assert operations == [
        "code.new", "ca.register", "ca.create", "device.issue", "device.issue", "device.issue",
        "device.revoke", "device.deactivate", "ca.deactivate", "secret.register", "secret.reveal",
        "device.provision", "device.provision", "device.provision", "artifacts.publish",
    ]
    assert records[1].action == "mq:RegisterCa" and records[1].details["subject"] == registered.sn
    assert records[6].action == "mq:RevokeDeviceCertificate" and records[6].details["reason"] == "keyCompromise"
    assert all(r.principal == "account" and r.result == "success" for r in records)
    assert all(r.resource == "acs:mq:local:default:default" for r in records)
    # Every issuance exactly once: three single ones and five in batches of two.
    # A provisioning record names its batch; the batch's devices are listed apart (tests/test_audit_batches.py).
    provisioned = [d["sn"] for r in records if r.details["operation"] == "device.provision"
                   for d in audit.batch_devices(ctx, r.details["batch"]).items]
    singles = [r.details["subject"].split("/")[1] for r in records if r.details["operation"] == "device.issue"]
    assert len(provisioned) == 5 and len(set(provisioned + singles)) == 8
    # Secrets never reach the log.
    text = repr([r.as_json() for r in records])
    assert code not in text and "private" not in text.lower()
    assert audit.verify(ctx).ok


def test_refused_changes_leave_no_record(ctx):
    root = managed.create_ca(ctx, name="Root")
    before = snapshot(ctx)
    for call in (
        lambda: devices.issue_device(ctx, ca=root.sn, generate=True, client_id="bad/id"),
        lambda: devices.issue_device(ctx, ca=root.sn, generate=True, client_id="ok", days=100000),
        lambda: cas.delete_ca(ctx, "abcdef"),
    ):
        with pytest.raises(PkiError):
            call()
    assert snapshot(ctx) == before
