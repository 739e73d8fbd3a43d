"""A managed CA's CRL is re-signed when it outlives the lifetime asked for, or when its thisUpdate is in
the future (the clock moved back); a reader's default lifetime never shortens the operator's."""

from __future__ import annotations

import datetime as _dt

from pki.services import artifacts, crls, managed


def test_a_shorter_crl_lifetime_resigns_a_fresh_crl(ctx, clock, tmp_path):
    root = managed.create_ca(ctx, name="Lifetime Root")
    artifacts.publish(ctx, out_dir=tmp_path / "out")
    first = crls.current_crl(ctx, ca=root.sn)
    assert first.next_update - first.this_update == crls.DEFAULT_CRL_LIFETIME
    artifacts.publish(ctx, out_dir=tmp_path / "out", crl_lifetime=_dt.timedelta(hours=1))
    short = crls.current_crl(ctx, ca=root.sn)
    assert short.crl_number == first.crl_number + 1
    assert short.next_update - short.this_update == _dt.timedelta(hours=1)


def test_a_longer_lifetime_is_kept_by_readers(ctx, clock, tmp_path):
    root = managed.create_ca(ctx, name="Long Root")
    artifacts.publish(ctx, out_dir=tmp_path / "out", crl_lifetime=_dt.timedelta(days=30))
    published = crls.current_crl(ctx, ca=root.sn)  # what GET /crl/{ca_sn}.pem serves
    assert published.next_update - published.this_update == _dt.timedelta(days=30)
    assert crls.current_crl(ctx, ca=root.sn).crl_number == published.crl_number


def test_a_crl_signed_in_the_future_is_resigned_when_the_clock_moves_back(ctx, clock):
    root = managed.create_ca(ctx, name="Clock Root")
    clock.advance(_dt.timedelta(hours=2))
    ahead = crls.current_crl(ctx, ca=root.sn)
    clock.advance(-_dt.timedelta(hours=2))
    now = clock.now().replace(microsecond=0)
    back = crls.current_crl(ctx, ca=root.sn)
    assert back.crl_number == ahead.crl_number + 1
    assert back.this_update == now and back.this_update < ahead.this_update
