"""RFC 5280 bounds on CRLs: numbers and listed serials of at most 20 octets, times an X.509 time can carry.

Refused on upload (a CRL number that could never be followed) and by the offline `crl sign`, which
must neither crash on a malformed request nor sign a CRL listing serial 0 or a 21-octet serial."""

from __future__ import annotations

import datetime as _dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.support import snapshot
from tests.support.certs import pem
from pki.errors import InvalidInput
from pki.services import crls
from tests.test_crl import _key_pem, registered  # noqa: F401 - the fixture


def _crl_with_number(ca_cert, ca_key, number: int, now) -> bytes:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now).next_update(now + _dt.timedelta(days=7))
               .add_extension(x509.CRLNumber(number), critical=False))
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_crl_number_over_20_octets_is_refused_on_upload(ctx, clock, registered):  # noqa: F811
    sn, ca_cert, ca_key, _ = registered
    request = crls.crl_request(ctx, ca=sn)
    before = snapshot(ctx)
    for number in (2**159, 2**200):
        signed = crls.sign_crl_request(ca_certificate=pem(ca_cert), ca_private_key=_key_pem(ca_key),
                                       request=json.dumps(request).encode(), clock=ctx.clock)
        big = x509.load_pem_x509_crl(signed)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(big.issuer).last_update(big.last_update_utc)
                   .next_update(big.next_update_utc).add_extension(x509.CRLNumber(number), critical=False))
        for entry in big:
            builder = builder.add_revoked_certificate(entry)
        data = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        with pytest.raises(InvalidInput) as err:
            crls.upload_crl(ctx, ca=sn, crl=data)
        assert err.value.code == "crl_number_too_large"
    assert snapshot(ctx) == before
    # The largest allowed number still goes in.
    signed = crls.sign_crl_request(ca_certificate=pem(ca_cert), ca_private_key=_key_pem(ca_key),
                                   request=json.dumps({**request, "crl_number": format(2**159 - 1, "x")}).encode(),
                                   clock=ctx.clock)
    assert crls.upload_crl(ctx, ca=sn, crl=signed).crl_number == 2**159 - 1


@pytest.mark.parametrize("change", [
    {"lifetime_seconds": 10**20},
    {"lifetime_seconds": -5},
    {"crl_number": "01" * 21},
    {"crl_number": "-1"},
    {"entries": [{"sn": "0", "reason": "keyCompromise", "revoked_at": "2030-01-01T00:00:00Z"}]},
    {"entries": [{"sn": "01" * 21, "reason": "keyCompromise", "revoked_at": "2030-01-01T00:00:00Z"}]},
    {"entries": [{"sn": "1a", "reason": "keyCompromise", "revoked_at": "0001-01-01T00:00:00+01:00"}]},
    {"entries": [{"sn": "1a", "reason": "keyCompromise", "revoked_at": "9999-12-31T23:59:59-01:00"}]},
    {"entries": [{"sn": "1a", "reason": "keyCompromise", "revoked_at": "1900-01-01T00:00:00Z"}]},
    {"entries": [{"sn": "1a", "reason": "keyCompromise", "revoked_at": "2030-01-01T00:00:00"}]},
], ids=lambda c: json.dumps(c)[:60])
def test_crl_sign_refuses_malformed_requests_without_crashing(ctx, registered, change):  # noqa: F811
    sn, ca_cert, ca_key, _ = registered
    request = {**crls.crl_request(ctx, ca=sn), **change}
    with pytest.raises(InvalidInput) as err:
        crls.sign_crl_request(ca_certificate=pem(ca_cert), ca_private_key=_key_pem(ca_key),
                              request=json.dumps(request).encode(), clock=ctx.clock)
    assert err.value.code in ("invalid_crl_request", "invalid_crl_lifetime")
