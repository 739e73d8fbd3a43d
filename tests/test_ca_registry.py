"""CA registration with proof of possession, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as _dt
import threading

import pytest

from tests.support import fixture_bytes, snapshot
from tests.support.certs import load_pair, make_root, pem, verification_pem
from pki.ids import format_serial
from pki.errors import Conflict, InvalidInput, InvalidState, NotFound, PkiError
from pki.services import cas, codes
from pki.store import DeviceCertificate

GOOD_ROOTS = ["ca_root_ec_p256", "ca_root_ec_p384", "ca_root_ec_p521", "ca_root_rsa2048", "ca_root_ed25519"]


def _register(ctx, name="ca_root_ec_p256", **kw):
    cert, key = load_pair(name)
    code = codes.new_code(ctx).code
    return cas.register_ca(
        ctx, certificate=pem(cert), verification=verification_pem(cert, key, code, now=ctx.clock.now()), **kw
    )


@pytest.mark.parametrize("name", GOOD_ROOTS)
def test_register_each_key_type_active_and_shown(ctx, name):
    cert, _ = load_pair(name)
    ca = _register(ctx, name)
    assert ca.status == "ACTIVE"
    assert ca.source == "registered"
    assert ca.sn == format_serial(cert.serial_number)  # even-length hex, as openssl prints it
    shown = cas.show_ca(ctx, ca.sn.upper())
    assert shown.fingerprint_sha256 == ca.fingerprint_sha256
    assert cas.show_ca(ctx, ca.fingerprint_sha256).sn == ca.sn
    assert [c.sn for c in cas.list_cas(ctx).items] == [ca.sn]


def test_register_inactive_and_status_changes_are_timestamped(ctx, clock):
    ca = _register(ctx, inactive=True)
    assert ca.status == "INACTIVE"
    clock.advance(_dt.timedelta(minutes=3))
    active = cas.activate_ca(ctx, ca.sn)
    assert active.status == "ACTIVE"
    assert active.status_changed_at == clock.now()
    assert cas.list_cas(ctx, status="inactive").items == []
    clock.advance(_dt.timedelta(minutes=1))
    inactive = cas.deactivate_ca(ctx, ca.sn)
    assert inactive.status == "INACTIVE" and inactive.updated_at == clock.now()
    assert [c.sn for c in cas.list_cas(ctx, status="INACTIVE").items] == [ca.sn]


def test_der_input_and_serial_with_colons(ctx):
    cert, key = load_pair("ca_root_ec_p256")
    code = codes.new_code(ctx).code
    ca = cas.register_ca(
        ctx, certificate=fixture_bytes("ca_root_ec_p256.der"), verification=verification_pem(cert, key, code)
    )
    colons = ":".join(ca.sn[i : i + 2] for i in range(0, len(ca.sn), 2))
    assert cas.show_ca(ctx, colons.upper()).sn == ca.sn


def test_intermediate_with_chain(ctx):
    cert, key = load_pair("ca_intermediate_ec_p256")
    code = codes.new_code(ctx).code
    ca = cas.register_ca(
        ctx,
        certificate=pem(cert),
        verification=verification_pem(cert, key, code),
        chain=fixture_bytes("ca_intermediate_chain.pem"),
    )
    assert ca.has_chain and ca.status == "ACTIVE"


def test_chain_that_does_not_issue_the_ca_is_refused(ctx):
    cert, key = load_pair("ca_intermediate_ec_p256")
    code = codes.new_code(ctx).code
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as err:
        cas.register_ca(
            ctx,
            certificate=pem(cert),
            verification=verification_pem(cert, key, code),
            chain=fixture_bytes("ca_second_root_ec_p256.pem"),
        )
    assert err.value.code == "chain_broken"
    assert snapshot(ctx) == before


# -- refusals: each its own code, the store unchanged -----------------------------------


def _bad_case(ctx, case):
    """Build (certificate, verification) bytes for a named bad case."""
    now = ctx.clock.now()
    good, good_key = load_pair("ca_root_ec_p256")
    code = codes.new_code(ctx).code
    if case == "wrong_signer":
        _, other_key = load_pair("ca_second_root_ec_p256")
        return pem(good), verification_pem(good, other_key, code)
    if case == "cn_not_code":
        return pem(good), verification_pem(good, good_key, "f" * 64)
    if case == "verification_is_ca":
        return pem(good), pem(good)
    if case == "verification_expired":
        return pem(good), verification_pem(
            good, good_key, code, not_before=now - _dt.timedelta(days=3), not_after=now - _dt.timedelta(days=1)
        )
    if case == "verification_issuer_name_differs":
        other, _ = load_pair("ca_second_root_ec_p256")
        return pem(good), verification_pem(good, good_key, code, issuer=other.subject)
    fixture = {
        "not_a_ca": "leaf_no_basic_constraints",
        "ca_false": "cert_ca_false",
        "no_key_cert_sign": "ca_no_key_cert_sign",
        "no_key_usage": "ca_no_key_usage",
        "expired_ca": "ca_expired",
        "not_yet_valid_ca": "ca_not_yet_valid",
        "rsa1024": "ca_rsa1024",
        "dsa": "ca_dsa2048",
        "p192": "ca_ec_p192",
        "bad_self_signature": "ca_bad_self_signature",
        "unknown_critical": "ca_unknown_critical_extension",
    }[case]
    cert, key = load_pair(fixture)
    return pem(cert), verification_pem(cert, key, code, now=now)


BAD_CASES = {
    "wrong_signer": "verification_wrong_signer",
    "verification_issuer_name_differs": "verification_wrong_signer",
    "cn_not_code": "verification_code_mismatch",
    "verification_is_ca": "verification_is_ca_certificate",
    "verification_expired": "verification_expired",
    "not_a_ca": "not_a_ca",
    "ca_false": "not_a_ca",
    "no_key_cert_sign": "ca_missing_key_cert_sign",
    "no_key_usage": "ca_missing_key_cert_sign",
    "expired_ca": "ca_expired",
    "not_yet_valid_ca": "ca_not_yet_valid",
    "rsa1024": "weak_key",
    "dsa": "weak_key",
    "p192": "weak_key",
    "bad_self_signature": "bad_self_signature",
    "unknown_critical": "unknown_critical_extension",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_registration_refused_store_unchanged(ctx, case):
    certificate, verification = _bad_case(ctx, case)
    before = snapshot(ctx)
    with pytest.raises(PkiError) as err:
        cas.register_ca(ctx, certificate=certificate, verification=verification)
    assert err.value.code == BAD_CASES[case]
    assert snapshot(ctx) == before
    # No key material is echoed back.
    assert "PRIVATE" not in err.value.message


@pytest.mark.parametrize(
    "fixture,code",
    [
        ("trailing_garbage.pem", "trailing_data"),
        ("two_certificates.pem", "multiple_certificates"),
        ("csr_as_certificate.pem", "wrong_pem_label"),
        ("ca_root_ec_p256.key.pem", "wrong_pem_label"),
        ("corrupted_base64.pem", "invalid_pem"),
        ("missing_end_line.pem", "invalid_pem"),
        ("der_trailing_bytes.der", "trailing_data"),
        ("der_truncated.der", "invalid_der"),
        ("ber_indefinite_length.der", "invalid_der"),
    ],
)
def test_unparseable_ca_refused_store_unchanged(ctx, fixture, code):
    good, key = load_pair("ca_root_ec_p256")
    verification = verification_pem(good, key, codes.new_code(ctx).code)
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as err:
        cas.register_ca(ctx, certificate=fixture_bytes(fixture), verification=verification)
    assert err.value.code == code
    assert snapshot(ctx) == before


def test_register_code_expired(ctx, clock):
    cert, key = load_pair("ca_root_ec_p256")
    code = codes.new_code(ctx, ttl=_dt.timedelta(minutes=10)).code
    verification = verification_pem(cert, key, code)
    clock.advance(_dt.timedelta(minutes=11))
    before = snapshot(ctx)
    with pytest.raises(InvalidState) as err:
        cas.register_ca(ctx, certificate=pem(cert), verification=verification)
    assert err.value.code == "register_code_expired"
    assert snapshot(ctx) == before


def test_register_code_single_use(ctx):
    first, first_key = load_pair("ca_root_ec_p256")
    second, second_key = load_pair("ca_root_ec_p384")
    code = codes.new_code(ctx).code
    cas.register_ca(ctx, certificate=pem(first), verification=verification_pem(first, first_key, code))
    before = snapshot(ctx)
    with pytest.raises(Conflict) as err:
        cas.register_ca(ctx, certificate=pem(second), verification=verification_pem(second, second_key, code))
    assert err.value.code == "register_code_used"
    assert snapshot(ctx) == before


def test_code_of_another_instance_is_not_accepted(ctx, settings):
    from dataclasses import replace

    from pki.services.context import Context

    other = Context(settings=replace(settings, instance="plant-2"), store=ctx.store, clock=ctx.clock)
    cert, key = load_pair("ca_root_ec_p256")
    code = codes.new_code(other).code
    with pytest.raises(InvalidInput) as err:
        cas.register_ca(ctx, certificate=pem(cert), verification=verification_pem(cert, key, code))
    assert err.value.code == "verification_code_mismatch"


def test_code_compare_is_exact(ctx):
    cert, key = load_pair("ca_root_ec_p256")
    code = codes.new_code(ctx).code
    flipped = code[:-1] + ("0" if code[-1] != "0" else "1")
    for variant in (code.upper(), code[:-1], code[1:] + " ", flipped):
        with pytest.raises(InvalidInput) as err:
            cas.register_ca(ctx, certificate=pem(cert), verification=verification_pem(cert, key, variant))
        assert err.value.code == "verification_code_mismatch"


def test_same_certificate_twice_and_same_key_twice(ctx):
    first = _register(ctx)
    before = snapshot(ctx)
    with pytest.raises(Conflict) as err:
        _register(ctx)
    assert err.value.code == "ca_already_registered" and err.value.data["sn"] == first.sn
    # A new certificate over the same key is the same CA.
    _, key = load_pair("ca_root_ec_p256")
    again, _ = make_root("Same key, new cert", key=key)
    code = codes.new_code(ctx).code
    with pytest.raises(Conflict):
        cas.register_ca(ctx, certificate=pem(again), verification=verification_pem(again, key, code))
    # A refused registration does not spend its code: the code table only grew by new codes.
    after = snapshot(ctx)
    assert after["ca_certificate"] == before["ca_certificate"]
    assert all(row[5] is None for row in after["register_code"][len(before["register_code"]):])


def test_sixteen_concurrent_registrations_with_one_code(ctx):
    code = codes.new_code(ctx).code
    pairs = [make_root(f"Concurrent CA {i}") for i in range(16)]
    requests = [(pem(c), verification_pem(c, k, code)) for c, k in pairs]
    barrier = threading.Barrier(16)
    outcomes: list[object] = [None] * 16

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = cas.register_ca(ctx, certificate=requests[i][0], verification=requests[i][1])
        except PkiError as exc:
            outcomes[i] = exc.code

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    winners = [o for o in outcomes if not isinstance(o, str)]
    assert len(winners) == 1, outcomes
    assert sorted(o for o in outcomes if isinstance(o, str)) == ["register_code_used"] * 15
    assert [c.sn for c in cas.list_cas(ctx).items] == [winners[0].sn]


def test_pagination_with_cursor_and_status_filter(ctx):
    made = []
    for i in range(5):
        cert, key = make_root(f"Paged CA {i}")
        code = codes.new_code(ctx).code
        made.append(cas.register_ca(ctx, certificate=pem(cert), verification=verification_pem(cert, key, code)).sn)
    cas.deactivate_ca(ctx, made[1])
    seen, cursor = [], None
    while True:
        page = cas.list_cas(ctx, limit=2, cursor=cursor)
        assert len(page.items) <= 2
        seen += [c.sn for c in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == made
    assert [c.sn for c in cas.list_cas(ctx, status="ACTIVE").items] == [s for s in made if s != made[1]]
    with pytest.raises(InvalidInput) as err:
        cas.list_cas(ctx, cursor="not-a-cursor")
    assert err.value.code == "invalid_cursor"
    with pytest.raises(InvalidInput):
        cas.list_cas(ctx, limit=0)


def test_unknown_ca(ctx):
    with pytest.raises(NotFound) as err:
        cas.show_ca(ctx, "abcdef")
    assert err.value.code == "ca_not_found"
    with pytest.raises(InvalidInput):
        cas.show_ca(ctx, "not-hex")


def _add_device(ctx, ca_sn: str, sn: str) -> None:
    from pki.store import repos

    with ctx.store.transaction() as session:
        ca = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca_sn)
        now = ctx.clock.now()
        session.add(
            DeviceCertificate(
                instance=ctx.instance, ca_id=ca.id, sn=sn, client_id=f"dev-{sn}", status="ACTIVE",
                fingerprint_sha256=sn.rjust(64, "0"), key_type="ec-p256", not_before=now, not_after=now,
                cert_der=b"\x30\x00", created_at=now, updated_at=now, status_changed_at=now,
            )
        )


def test_delete_refused_with_devices_unless_cascade(ctx):
    ca = _register(ctx)
    _add_device(ctx, ca.sn, "1")
    _add_device(ctx, ca.sn, "2")
    before = snapshot(ctx)
    with pytest.raises(InvalidState) as err:
        cas.delete_ca(ctx, ca.sn)
    assert err.value.code == "ca_has_devices" and err.value.data["devices"] == 2
    assert snapshot(ctx) == before
    result = cas.delete_ca(ctx, ca.sn, cascade=True)
    assert result == {"sn": ca.sn, "deleted": True, "devices_deleted": 2}
    after = snapshot(ctx)
    assert after["ca_certificate"] == [] and after["device_certificate"] == []
    with pytest.raises(NotFound):
        cas.show_ca(ctx, ca.sn)


def test_delete_without_devices(ctx):
    ca = _register(ctx)
    assert cas.delete_ca(ctx, ca.sn)["devices_deleted"] == 0
    assert cas.list_cas(ctx).items == []


@pytest.mark.parametrize("name", ["bad\x00name", "tab\there", "x" * 65, ""])
def test_bad_display_name_refused_store_unchanged(ctx, name):
    cert, key = load_pair("ca_root_ec_p256")
    verification = verification_pem(cert, key, codes.new_code(ctx).code)
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as err:
        cas.register_ca(ctx, certificate=pem(cert), verification=verification, name=name)
    assert err.value.code == "invalid_name"
    assert snapshot(ctx) == before
