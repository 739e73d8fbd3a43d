"""GET /v1/cas/{ca_sn}/devices/{sn}'s read (renewal.device_detail): the one-query path answers what the ORM
path answers, byte for byte, and leaves the errors to the ORM path."""

from __future__ import annotations

import pytest

from pki.errors import NotFound, PkiError
from pki.services import devices, managed, renewal
from pki.store import http_repos


@pytest.fixture
def orm_only(monkeypatch):
    """renewal.device_detail as it answers when the joined read finds nothing (its fallback, the ORM)."""
    def detail(ctx, **kw):
        with monkeypatch.context() as m:
            m.setattr(http_repos, "device_detail_row", lambda *a, **k: None)
            return renewal.device_detail(ctx, **kw)
    return detail


def test_joined_read_answers_as_the_orm_path(ctx, orm_only):
    ca = managed.create_ca(ctx, name="Read Root")
    sub = managed.create_ca(ctx, name="Read Sub", parent=ca.sn)
    first = devices.issue_device(ctx, ca=sub.sn, generate=True, client_id="meter-1", sans=("dns:m1.local",))
    second = renewal.renew_device(ctx, ca=sub.sn, sn=first.device.sn)
    third = renewal.renew_device(ctx, ca=sub.sn, sn=second.issued.device.sn)
    plain = devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="meter-2")
    calls = []
    real = http_repos.device_detail_row

    def counting(*a, **k):
        row = real(*a, **k)
        calls.append(row is not None)
        return row

    cases = [(sub.sn, first.device.sn), (sub.sn, second.issued.device.sn), (sub.sn, third.issued.device.sn),
             (ca.sn, plain.device.sn), (sub.fingerprint_sha256, first.device.sn),
             (sub.sn.lower(), first.device.sn.lower())]
    for ca_ref, sn in cases:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(http_repos, "device_detail_row", counting)
            fast = renewal.device_detail(ctx, ca=ca_ref, sn=sn)
        assert fast == orm_only(ctx, ca=ca_ref, sn=sn)
    assert calls == [True] * len(cases)  # every answer above came from the joined read
    middle = renewal.device_detail(ctx, ca=sub.sn, sn=second.issued.device.sn)
    assert middle["replaces"] == first.device.sn and middle["replaced_by"] == [third.issued.device.sn]
    assert middle["supersede_after"] is not None and middle["ca_sn"] == sub.sn
    assert middle["chain_pem"].count("BEGIN CERTIFICATE") == 2  # the sub CA, then its root


@pytest.mark.parametrize("ca_ref, sn", [
    ("0badca", None), (None, "0badde"), ("not a serial", None), (None, "not a serial"),
    ("0badca", "not a serial"),  # the CA is looked up first: ca_not_found, not the serial's error
])
def test_misses_are_the_orm_paths_errors(ctx, orm_only, ca_ref, sn):
    ca = managed.create_ca(ctx, name="Miss Root")
    dev = devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="meter-1")
    kw = dict(ca=ca_ref or ca.sn, sn=sn or dev.device.sn)
    with pytest.raises(PkiError) as expected:
        orm_only(ctx, **kw)
    with pytest.raises(PkiError) as info:
        renewal.device_detail(ctx, **kw)
    assert (type(info.value), info.value.code, info.value.message) == \
        (type(expected.value), expected.value.code, expected.value.message)
    if ca_ref == "0badca":
        assert isinstance(info.value, NotFound) and info.value.code == "ca_not_found"
