"""The issuance hot path: templated certificates as stored and answered; the provisioning workers default."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pki.ids import format_serial
from pki.services import audit, devices, managed
from pki.services.provision import available_cores
from pki.x509 import fingerprint_sha256_der
from tests.support.lint import assert_lint_clean, assert_openssl_verifies


def test_the_stored_row_describes_the_templated_certificate_exactly(ctx, tmp_path):
    ca = managed.create_ca(ctx, name="Hot Root")
    issued = devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="hot-1", sans=["dns:hot-1.example"])
    cert, der = issued.certificate, issued.certificate.public_bytes(Encoding.DER)
    shown = devices.show_device(ctx, ca=ca.sn, sn=issued.device.sn)
    assert shown.sn == format_serial(cert.serial_number)
    assert (shown.not_before, shown.not_after) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
    assert shown.fingerprint_sha256 == fingerprint_sha256_der(der) == issued.device.fingerprint_sha256
    assert_lint_clean(der)
    assert_openssl_verifies(issued.certificate_pem.encode(), [issued.chain_pem.encode()], tmp_dir=tmp_path)
    record = audit.list_records(ctx, action="mq:IssueDeviceCertificate").items[-1]
    assert record.details["subject"] == f"{ca.sn}/{shown.sn}" and audit.verify(ctx).ok


def test_a_client_id_too_long_for_a_cn_is_refused_and_nothing_is_stored(ctx):
    """40 characters pass as a client id, but 80 octets of UTF-8 do not fit a CN (RFC 5280 ub-common-name)."""
    from tests.support import refused_unchanged

    ca = managed.create_ca(ctx, name="Long Root")
    refused_unchanged(ctx, "invalid_client_id",
                      lambda: devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="é" * 40))


def test_workers_default_to_the_cores_this_process_may_use(monkeypatch):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    assert available_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert available_cores() == 1
