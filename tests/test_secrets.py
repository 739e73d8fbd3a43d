"""Per-device secrets: formulas, lifecycle, groups, the broker's check, nothing in clear at rest."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text

from tests.support import cli_json as _json, FIXTURES, snapshot
from pki.cli.render import EXIT_CODES
from pki.errors import ConfigError, Conflict, InvalidInput, InvalidState, NotFound, PermissionDenied
from pki.services import secrets as svc
from pki.services.context import Context
from pki.store import Store


# -- a client written from README's formulas alone (no pki import) ---------------------------


def client_username(access_key_id: str, instance: str = "default") -> str:
    return f"DeviceCredential|{access_key_id}|{instance}"


def client_password(secret: str, client_id: str) -> str:
    return base64.b64encode(hmac.new(secret.encode("utf-8"), client_id.encode("utf-8"), hashlib.sha1).digest()).decode()


def client_sas(secret: str, client_id: str, se: int, *, sr: str | None = None) -> str:
    sr = quote(client_id, safe="") if sr is None else sr
    mac = hmac.new(base64.b64decode(secret), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    return f"SharedAccessSignature sr={sr}&sig={quote(base64.b64encode(mac).decode(), safe='')}&se={se}"


def client_derive(group_key_b64: str, client_id: str) -> str:
    return base64.b64encode(hmac.new(base64.b64decode(group_key_b64), client_id.encode(), hashlib.sha256).digest()).decode()


def _epoch(ctx, delta: float = 0) -> int:
    return int(ctx.clock.now().timestamp() + delta)


def _ok(ctx, client_id, username, password, **kw) -> bool:
    return svc.verify(ctx, client_id=client_id, username=username, password=password, **kw)


# -- known answers ---------------------------------------------------------------------------

# RFC 4231 section 4: (key, data, HMAC-SHA-256); case 5 is truncated to 128 bits.
RFC4231 = [
    ("0b" * 20, b"Hi There".hex(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex(),
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("aa" * 20, "dd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    ("0102030405060708090a0b0c0d0e0f10111213141516171819", "cd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    ("0c" * 20, b"Test With Truncation".hex(), "a3b6167473100ee06e0c796c2955552b"),
    ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ("aa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data. "
     b"The key needs to be hashed before being used by the HMAC algorithm.".hex(),
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


@pytest.mark.parametrize("key, data, expected", RFC4231, ids=[f"case{i}" for i in range(1, 8)])
def test_hmac_sha256_rfc4231(key, data, expected):
    mac = svc.hmac_sha256(bytes.fromhex(key), bytes.fromhex(data)).hex()
    assert mac[: len(expected)] == expected


@pytest.fixture(scope="module")
def vectors():
    return json.loads((FIXTURES / "secret_vectors.json").read_text())


def test_vector_file_matches_the_formulas_computed_here(vectors):
    """The file is checked against this test's own client, so neither the script nor pki is trusted alone."""
    assert vectors["password"] and vectors["sas"] and vectors["derive"]
    for v in vectors["password"]:
        assert client_password(v["secret"], v["client_id"]) == v["password"]
    for v in vectors["sas"]:
        assert client_sas(v["secret"], v["client_id"], v["se"]) == v["token"]
    for v in vectors["derive"]:
        assert client_derive(v["group_key"], v["client_id"]) == v["secret"]
        assert client_password(v["secret"], v["client_id"]) == v["password"]


def test_pki_formulas_give_the_vectors(vectors):
    for v in vectors["password"]:
        assert svc.password_for(v["secret"], v["client_id"]) == v["password"]
    for v in vectors["sas"]:
        assert svc.sas_token(v["secret"], v["client_id"], expires=v["se"]) == v["token"]
    for v in vectors["derive"]:
        assert svc.derive_secret(v["group_key"], v["client_id"]) == v["secret"]


def test_check_password_accepts_vectors_and_only_for_their_client_id(vectors):
    """Ids differing by case, prefix or suffix never share a password."""
    early = _dt.datetime(2023, 1, 1, tzinfo=_dt.timezone.utc)
    ids = {v["client_id"] for v in vectors["password"]}
    for v in vectors["password"]:
        assert svc.check_password(v["password"], secrets=[v["secret"]], client_id=v["client_id"], now=early)
        for other in ids - {v["client_id"]}:
            assert not svc.check_password(v["password"], secrets=[v["secret"]], client_id=other, now=early)
    for v in vectors["sas"]:
        assert svc.check_password(v["token"], secrets=[v["secret"]], client_id=v["client_id"], now=early)
        late = _dt.datetime.fromtimestamp(v["se"] + 3600, _dt.timezone.utc)
        assert not svc.check_password(v["token"], secrets=[v["secret"]], client_id=v["client_id"], now=late)
    derived = [v["secret"] for v in vectors["derive"]]
    assert len(set(derived)) == len(derived)


def test_secrets_are_256_bit_base64():
    secret = svc.new_secret()
    assert len(base64.b64decode(secret, validate=True)) == 32
    assert len({svc.new_secret() for _ in range(100)}) == 100


# -- the acceptance flow -------------------------------------------------------------------------


def test_client_from_the_formulas_passes_and_the_bad_cases_fail(ctx):
    a = svc.register_secret(ctx, client_id="device-1")
    b = svc.register_secret(ctx, client_id="device-2")
    assert a.secret and a.access_key_id.startswith("DC.") and a.status == "ACTIVE"
    user = client_username(a.access_key_id)
    assert a.username == user

    assert _ok(ctx, "device-1", user, client_password(a.secret, "device-1"))
    assert _ok(ctx, "device-1", user, client_sas(a.secret, "device-1", _epoch(ctx, 3600)))

    # a wrong password; another client's secret; another client's username
    assert not _ok(ctx, "device-1", user, client_password(a.secret, "device-1")[:-2] + "AA")
    assert not _ok(ctx, "device-1", user, client_password(b.secret, "device-1"))
    assert not _ok(ctx, "device-1", user, client_sas(b.secret, "device-1", _epoch(ctx, 3600)))
    assert not _ok(ctx, "device-1", client_username(b.access_key_id), client_password(b.secret, "device-1"))
    assert not _ok(ctx, "device-2", user, client_password(a.secret, "device-2"))
    # an expired token (beyond the skew allowance), and one just inside it
    assert not _ok(ctx, "device-1", user, client_sas(a.secret, "device-1", _epoch(ctx, -61)))
    assert _ok(ctx, "device-1", user, client_sas(a.secret, "device-1", _epoch(ctx, -30)))
    assert not _ok(ctx, "device-1", user, client_sas(a.secret, "device-1", _epoch(ctx, -30)),
                   clock_skew=_dt.timedelta(0))
    # a deactivated credential, then active again
    svc.deactivate_secret(ctx, client_id="device-1")
    assert not _ok(ctx, "device-1", user, client_password(a.secret, "device-1"))
    svc.activate_secret(ctx, client_id="device-1")
    assert _ok(ctx, "device-1", user, client_password(a.secret, "device-1"))
    # an old secret after the grace period
    new = svc.refresh_secret(ctx, client_id="device-1", grace=_dt.timedelta(0))
    assert not _ok(ctx, "device-1", user, client_password(a.secret, "device-1"))
    assert _ok(ctx, "device-1", user, client_password(new.secret, "device-1"))
    # unregistered
    svc.unregister_secret(ctx, client_id="device-1")
    assert not _ok(ctx, "device-1", user, client_password(new.secret, "device-1"))


def test_refresh_keeps_the_old_secret_for_the_grace_period_only(ctx, clock):
    old = svc.register_secret(ctx, client_id="dev-r")
    new = svc.refresh_secret(ctx, client_id="dev-r")  # default 24 h
    assert new.secret != old.secret and new.access_key_id == old.access_key_id
    assert new.secondary_expires_at == clock.now() + _dt.timedelta(hours=24)
    user = new.username
    for secret in (old.secret, new.secret):
        assert _ok(ctx, "dev-r", user, client_password(secret, "dev-r"))
        assert _ok(ctx, "dev-r", user, client_sas(secret, "dev-r", _epoch(ctx, 600)))
    clock.advance(_dt.timedelta(hours=23, minutes=59, seconds=59))
    assert _ok(ctx, "dev-r", user, client_password(old.secret, "dev-r"))
    clock.advance(_dt.timedelta(seconds=1))
    assert not _ok(ctx, "dev-r", user, client_password(old.secret, "dev-r"))
    assert not _ok(ctx, "dev-r", user, client_sas(old.secret, "dev-r", _epoch(ctx, 600)))
    assert _ok(ctx, "dev-r", user, client_password(new.secret, "dev-r"))
    assert svc.show_secret(ctx, client_id="dev-r").secondary_expires_at is None


def test_a_second_refresh_keeps_only_the_previous_secret(ctx):
    first = svc.register_secret(ctx, client_id="dev-r2")
    second = svc.refresh_secret(ctx, client_id="dev-r2", grace=_dt.timedelta(hours=1))
    third = svc.refresh_secret(ctx, client_id="dev-r2", grace=_dt.timedelta(hours=1))
    user = first.username
    assert not _ok(ctx, "dev-r2", user, client_password(first.secret, "dev-r2"))
    assert _ok(ctx, "dev-r2", user, client_password(second.secret, "dev-r2"))
    assert _ok(ctx, "dev-r2", user, client_password(third.secret, "dev-r2"))


def test_show_reveals_only_when_asked_and_list_never(ctx):
    created = svc.register_secret(ctx, client_id="dev-s")
    shown = svc.show_secret(ctx, client_id="dev-s")
    assert "secret" not in shown.as_json() and created.secret not in repr(created)
    assert set(shown.as_json()) >= {"client_id", "access_key_id", "status"}
    assert svc.show_secret(ctx, client_id="dev-s", reveal=True).secret == created.secret
    for i in range(4):
        svc.register_secret(ctx, client_id=f"dev-l{i}")
    seen, cursor = [], None
    while True:
        page = svc.list_secrets(ctx, limit=2, cursor=cursor)
        assert all("secret" not in item.as_json() for item in page.items)
        seen += [item.client_id for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["dev-s", "dev-l0", "dev-l1", "dev-l2", "dev-l3"]
    svc.deactivate_secret(ctx, client_id="dev-l1")
    assert [i.client_id for i in svc.list_secrets(ctx, status="inactive").items] == ["dev-l1"]


# -- client ids compared exactly ----------------------------------------------------------------


def test_ids_differing_by_case_or_prefix_get_their_own_secrets(ctx):
    ids = ["Sensor-1", "sensor-1", "sensor-10", "xsensor-1"]
    creds = {i: svc.register_secret(ctx, client_id=i) for i in ids}
    assert len({c.secret for c in creds.values()}) == len(ids)
    for i in ids:
        assert _ok(ctx, i, creds[i].username, client_password(creds[i].secret, i))
        for other in ids:
            if other != i:
                # their secret under our username, our secret for their id, our username for their id
                assert not _ok(ctx, i, creds[i].username, client_password(creds[other].secret, i))
                assert not _ok(ctx, other, creds[i].username, client_password(creds[i].secret, other))
    with pytest.raises(NotFound):
        svc.show_secret(ctx, client_id="SENSOR-1")


@pytest.mark.parametrize(
    "client_id",
    ["", "dev 1", "dev/1", "dev+1", "dev#1", "dév-1", "dev%2D1", "dev\n", "dev\x00", "ｄｅｖ-1", "a" * 65, " dev-1"],
)
def test_invalid_client_ids_are_refused_everywhere_and_change_nothing(ctx, client_id):
    svc.register_secret(ctx, client_id="dev-1")
    svc.create_group(ctx, name="line-1")
    before = snapshot(ctx)
    for call in (
        lambda: svc.register_secret(ctx, client_id=client_id),
        lambda: svc.show_secret(ctx, client_id=client_id),
        lambda: svc.refresh_secret(ctx, client_id=client_id),
        lambda: svc.unregister_secret(ctx, client_id=client_id),
        lambda: svc.deactivate_secret(ctx, client_id=client_id),
        lambda: svc.deactivate_secret(ctx, client_id=client_id, group="line-1"),
        lambda: svc.derive_member_secret(ctx, group="line-1", client_id=client_id),
    ):
        with pytest.raises(InvalidInput) as err:
            call()
        assert err.value.code in ("invalid_client_id", "invalid_name")
    assert not _ok(ctx, client_id, "DeviceCredential|DC.00000000000000000000|default", "x")
    assert snapshot(ctx) == before


def test_sas_resource_must_be_the_exact_encoding_of_the_client_id(ctx):
    cred = svc.register_secret(ctx, client_id="plant:line@7")
    se = _epoch(ctx, 600)
    assert _ok(ctx, "plant:line@7", cred.username, client_sas(cred.secret, "plant:line@7", se))
    for sr in ("plant:line@7", "plant%3aline%407", "Plant%3ALine%407", "plant%3Aline%407%00", "plant%253Aline%25407"):
        assert not _ok(ctx, "plant:line@7", cred.username, client_sas(cred.secret, "plant:line@7", se, sr=sr))


# -- bad inputs: refused, store unchanged ------------------------------------------------------


def test_registering_twice_is_a_conflict_pointing_to_refresh(ctx):
    svc.register_secret(ctx, client_id="dev-1")
    before = snapshot(ctx)
    with pytest.raises(Conflict) as err:
        svc.register_secret(ctx, client_id="dev-1")
    assert err.value.code == "secret_exists" and err.value.data["client_id"] == "dev-1" and "refresh" in err.value.message
    assert snapshot(ctx) == before


@pytest.mark.parametrize("action", ["show", "refresh", "unregister", "activate", "deactivate"])
def test_unknown_client_id_is_secret_not_found(ctx, action):
    svc.register_secret(ctx, client_id="dev-1")
    before = snapshot(ctx)
    call = {
        "show": svc.show_secret, "refresh": svc.refresh_secret, "unregister": svc.unregister_secret,
        "activate": svc.activate_secret, "deactivate": svc.deactivate_secret,
    }[action]
    with pytest.raises(NotFound) as err:
        call(ctx, client_id="dev-2")
    assert err.value.code == "secret_not_found" and err.value.data["client_id"] == "dev-2"
    assert snapshot(ctx) == before


@pytest.mark.parametrize("grace", [_dt.timedelta(seconds=-1), _dt.timedelta(days=31)])
def test_bad_grace_is_refused(ctx, grace):
    svc.register_secret(ctx, client_id="dev-1")
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as err:
        svc.refresh_secret(ctx, client_id="dev-1", grace=grace)
    assert err.value.code == "invalid_grace"
    assert snapshot(ctx) == before


@pytest.mark.parametrize(
    "kwargs, code",
    [({"status": "REVOKED"}, "invalid_status"), ({"limit": 0}, "invalid_limit"), ({"limit": 100000}, "invalid_limit"),
     ({"cursor": "not-a-cursor"}, "invalid_cursor"), ({"cursor": "eyJpZCI6dHJ1ZX0"}, "invalid_cursor")],
)
def test_bad_list_arguments(ctx, kwargs, code):
    svc.register_secret(ctx, client_id="dev-1")
    before = snapshot(ctx)
    for lister in (svc.list_secrets, svc.list_groups):
        with pytest.raises(InvalidInput) as err:
            lister(ctx, **kwargs)
        assert err.value.code == code
    assert snapshot(ctx) == before


def test_group_errors(ctx):
    svc.create_group(ctx, name="line-1")
    before = snapshot(ctx)
    with pytest.raises(Conflict) as err:
        svc.create_group(ctx, name="line-1")
    assert err.value.code == "group_exists"
    for call in (
        lambda: svc.derive_member_secret(ctx, group="line-2", client_id="dev-1"),
        lambda: svc.show_group(ctx, name="line-2"),
        lambda: svc.disable_group(ctx, name="line-2"),
        lambda: svc.deactivate_secret(ctx, client_id="dev-1", group="line-2"),
    ):
        with pytest.raises(NotFound) as err:
            call()
        assert err.value.code == "group_not_found" and err.value.data["group"] == "line-2"
    for name in ("", "x" * 65, "bad\x07name"):
        with pytest.raises(InvalidInput) as err:
            svc.create_group(ctx, name=name)
        assert err.value.code == "invalid_name"
    assert snapshot(ctx) == before
    svc.disable_group(ctx, name="line-1")
    svc.deactivate_secret(ctx, client_id="dev-9", group="line-1")
    before = snapshot(ctx)
    with pytest.raises(InvalidState) as err:
        svc.derive_member_secret(ctx, group="line-1", client_id="dev-1")
    assert err.value.code == "group_inactive"
    svc.enable_group(ctx, name="line-1")
    before = snapshot(ctx)
    with pytest.raises(InvalidState) as err:
        svc.derive_member_secret(ctx, group="line-1", client_id="dev-9")
    assert err.value.code == "member_inactive" and err.value.data == {"client_id": "dev-9", "group": "line-1"}
    assert snapshot(ctx) == before


@pytest.mark.parametrize("skew", [_dt.timedelta(seconds=-1), _dt.timedelta(hours=1)])
def test_bad_clock_skew_is_refused(ctx, skew):
    cred = svc.register_secret(ctx, client_id="dev-1")
    with pytest.raises(InvalidInput) as err:
        svc.verify(ctx, client_id="dev-1", username=cred.username, password="x", clock_skew=skew)
    assert err.value.code == "invalid_clock_skew"


def test_malformed_credentials_fail_and_change_nothing(ctx, clock):
    """Everything a device can get wrong: only pass/fail, never an exception."""
    cred = svc.register_secret(ctx, client_id="dev-1")
    good_pw = client_password(cred.secret, "dev-1")
    se = _epoch(ctx, 600)
    good_sas = client_sas(cred.secret, "dev-1", se)
    sig = good_sas.split("sig=")[1].split("&")[0]
    before = snapshot(ctx)
    cases = [
        ("dev-1", "", good_pw),
        ("dev-1", cred.username.replace("DeviceCredential", "devicecredential"), good_pw),
        ("dev-1", cred.username + "x", good_pw),  # another instance
        ("dev-1", cred.username.replace("default", "other"), good_pw),
        ("dev-1", cred.username.replace(cred.access_key_id, cred.access_key_id.upper()), good_pw),
        ("dev-1", f"DeviceCredential|{cred.access_key_id}", good_pw),
        ("dev-1", "DeviceCredential|DC.00000000000000000000|default", good_pw),
        ("dev-1", cred.username, ""),
        ("dev-1", cred.username, good_pw + " "),
        ("dev-1", cred.username, good_pw.lower()),
        ("dev-1", cred.username, "x" * 5000),
        ("dev-1", cred.username, "\udcff"),
        ("dev-1", cred.username, cred.secret),  # the secret itself is not the password
        ("dev-1", cred.username, "SharedAccessSignature "),
        ("dev-1", cred.username, good_sas.replace(f"&se={se}", "")),
        ("dev-1", cred.username, good_sas + f"&se={se}"),
        ("dev-1", cred.username, good_sas + "&skn=x"),
        ("dev-1", cred.username, good_sas.replace(f"se={se}", f"se={se + 1}")),
        ("dev-1", cred.username, good_sas.replace(f"se={se}", "se=+" + str(se))),
        ("dev-1", cred.username, good_sas.replace(f"se={se}", "se=١٢")),
        ("dev-1", cred.username, good_sas.replace(sig, sig[:-6])),
        ("dev-1", cred.username, good_sas.replace(sig, "%ZZ")),
        ("dev-1", cred.username, good_sas.replace("SharedAccessSignature ", "sharedaccesssignature ")),
        ("dev-2", cred.username, client_sas(cred.secret, "dev-2", se)),
        (None, cred.username, good_pw),
        ("dev-1", cred.username, b"bytes"),
    ]
    for client_id, username, password in cases:
        assert not _ok(ctx, client_id, username, password), (client_id, username)
    # the good ones still pass: nothing above was refused by accident
    assert _ok(ctx, "dev-1", cred.username, good_pw) and _ok(ctx, "dev-1", cred.username, good_sas)
    unencoded_sig = good_sas.replace(sig, base64.b64encode(base64.b64decode(sig.replace("%2B", "+").replace(
        "%2F", "/").replace("%3D", "="))).decode())
    assert _ok(ctx, "dev-1", cred.username, unencoded_sig)
    assert snapshot(ctx) == before


# -- the caller learns pass/fail, the log learns why, nobody learns the secret ----------------------


def test_refusal_reason_is_logged_never_returned_and_no_secret_is_logged(ctx, caplog):
    caplog.set_level(logging.DEBUG, logger="pki.secrets")
    cred = svc.register_secret(ctx, client_id="dev-1")
    wrong = client_password(cred.secret, "dev-1")[:-4] + "AAA="
    with pytest.raises(PermissionDenied) as err:
        svc.authenticate(ctx, client_id="dev-1", username=cred.username, password=wrong)
    assert err.value.code == "authentication_failed"
    assert err.value.data == {} and "wrong" not in err.value.message
    svc.deactivate_secret(ctx, client_id="dev-1")
    with pytest.raises(PermissionDenied) as err2:
        svc.authenticate(ctx, client_id="dev-1", username=cred.username,
                         password=client_password(cred.secret, "dev-1"))
    assert err2.value.message == err.value.message and err2.value.to_dict() == err.value.to_dict()
    reasons = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("reason=wrong_password" in m for m in reasons)
    assert any("reason=credential_inactive" in m for m in reasons)
    svc.activate_secret(ctx, client_id="dev-1")
    refreshed = svc.refresh_secret(ctx, client_id="dev-1")
    svc.show_secret(ctx, client_id="dev-1", reveal=True)
    assert svc.authenticate(ctx, client_id="dev-1", username=cred.username,
                            password=client_password(refreshed.secret, "dev-1")) == {"result": "pass",
                                                                                      "client_id": "dev-1"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for value in (cred.secret, refreshed.secret, wrong, client_password(refreshed.secret, "dev-1")):
        assert value not in logged


# -- enrollment groups -------------------------------------------------------------------------


def _group_key(ctx, name: str) -> str:
    """The test unseals the group key itself: the service never shows it."""
    from pki.store import secret_repos

    with ctx.store.transaction(readonly=True) as session:
        row = secret_repos.get_group(session, instance=ctx.instance, name=name)
        return base64.b64encode(ctx.keystore.open_secret(row.sealed_key, key_id=row.access_key_id)).decode()


def test_group_members_pass_with_derived_secrets_and_need_no_rows(ctx):
    group = svc.create_group(ctx, name="factory-a")
    assert group.access_key_id.startswith("DG.") and not {"key", "group_key", "secret"} & set(group.as_json())
    key = _group_key(ctx, "factory-a")
    ids = [f"meter-{i:04d}" for i in range(50)] + ["Meter-0001", "meter-00010"]
    for client_id in ids:
        derived = svc.derive_member_secret(ctx, group="factory-a", client_id=client_id)
        assert derived.secret == client_derive(key, client_id)  # the formula, computed here
        assert _ok(ctx, client_id, group.username, client_password(derived.secret, client_id))
        assert _ok(ctx, client_id, group.username, client_sas(derived.secret, client_id, _epoch(ctx, 60)))
    # a member's secret does not pass for an id differing by case or suffix
    m1 = client_derive(key, "meter-0001")
    assert not _ok(ctx, "Meter-0001", group.username, client_password(m1, "Meter-0001"))
    assert not _ok(ctx, "meter-00010", group.username, client_password(m1, "meter-00010"))
    # a secret derived from another group's key does not pass
    svc.create_group(ctx, name="factory-b")
    other = client_derive(_group_key(ctx, "factory-b"), "meter-0001")
    assert not _ok(ctx, "meter-0001", group.username, client_password(other, "meter-0001"))
    with ctx.store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM device_secret")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM secret_group_block")).scalar() == 0


def test_group_and_member_disabling(ctx):
    group = svc.create_group(ctx, name="line")
    secret = svc.derive_member_secret(ctx, group="line", client_id="m-1").secret
    m2 = svc.derive_member_secret(ctx, group="line", client_id="m-2").secret
    pw = client_password(secret, "m-1")
    assert _ok(ctx, "m-1", group.username, pw)
    member = svc.deactivate_secret(ctx, client_id="m-1", group="line")
    assert member.status == "INACTIVE" and "secret" not in member.as_json()
    assert not _ok(ctx, "m-1", group.username, pw)
    assert _ok(ctx, "m-2", group.username, client_password(m2, "m-2"))
    svc.activate_secret(ctx, client_id="m-1", group="line")
    assert _ok(ctx, "m-1", group.username, pw)
    svc.disable_group(ctx, name="line")
    assert not _ok(ctx, "m-1", group.username, pw) and not _ok(ctx, "m-2", group.username, client_password(m2, "m-2"))
    assert svc.list_groups(ctx, status="INACTIVE").items[0].name == "line"
    svc.enable_group(ctx, name="line")
    assert _ok(ctx, "m-1", group.username, pw)
    # an INACTIVE individual credential of the same client id shuts the group door too
    svc.register_secret(ctx, client_id="m-1")
    assert _ok(ctx, "m-1", group.username, pw)
    svc.deactivate_secret(ctx, client_id="m-1")
    assert not _ok(ctx, "m-1", group.username, pw)


# -- changes made elsewhere take effect at the next check -----------------------------------------


def test_changes_through_another_context_take_effect_at_once(ctx):
    """Two Contexts on one store stand for the broker's auth server and an operator's CLI."""
    other = Context(settings=ctx.settings, store=Store(ctx.settings.database_url), clock=ctx.clock)
    try:
        cred = svc.register_secret(ctx, client_id="dev-x")
        pw = client_password(cred.secret, "dev-x")
        assert _ok(ctx, "dev-x", cred.username, pw)  # now cached in ctx
        svc.deactivate_secret(other, client_id="dev-x")
        assert not _ok(ctx, "dev-x", cred.username, pw)
        svc.activate_secret(other, client_id="dev-x")
        new = svc.refresh_secret(other, client_id="dev-x", grace=_dt.timedelta(0))
        assert not _ok(ctx, "dev-x", cred.username, pw)
        assert _ok(ctx, "dev-x", cred.username, client_password(new.secret, "dev-x"))
        svc.unregister_secret(other, client_id="dev-x")
        assert not _ok(ctx, "dev-x", cred.username, client_password(new.secret, "dev-x"))
        # with a status cache allowed, a change through the same Context still counts at once
        again = svc.register_secret(ctx, client_id="dev-x")
        pw = client_password(again.secret, "dev-x")
        assert _ok(ctx, "dev-x", again.username, pw, max_status_age=60)
        svc.deactivate_secret(ctx, client_id="dev-x")
        assert not _ok(ctx, "dev-x", again.username, pw, max_status_age=60)
    finally:
        other.close()


def test_a_sealed_secret_moved_to_another_row_does_not_open(ctx):
    a = svc.register_secret(ctx, client_id="dev-a")
    svc.register_secret(ctx, client_id="dev-b")
    with ctx.store.engine.begin() as conn:
        blob = conn.execute(text("SELECT sealed_primary FROM device_secret WHERE client_id = 'dev-a'")).scalar()
        conn.execute(text("UPDATE device_secret SET sealed_primary = :b, version = version + 1 "
                          "WHERE client_id = 'dev-b'"), {"b": blob})
    b_user = svc.show_secret(ctx, client_id="dev-b").username
    with pytest.raises(ConfigError) as err:
        svc.verify(ctx, client_id="dev-b", username=b_user, password=client_password(a.secret, "dev-b"))
    assert err.value.code == "key_unseal_failed"


# -- nothing in clear at rest ------------------------------------------------------------------


def _encodings(raw: bytes) -> set[bytes]:
    b64 = base64.b64encode(raw)
    url = base64.urlsafe_b64encode(raw)
    return {raw, b64, b64.rstrip(b"="), url, url.rstrip(b"="), raw.hex().encode(), raw.hex().upper().encode(),
            base64.b32encode(raw), b64.decode().encode("utf-16-le")}


def test_no_secret_or_group_key_in_the_sqlite_files(sqlite_ctx):
    ctx = sqlite_ctx
    issued: list[bytes] = []
    for i in range(5):
        cred = svc.register_secret(ctx, client_id=f"dev-{i}")
        issued.append(base64.b64decode(cred.secret))
    for i in range(3):
        issued.append(base64.b64decode(svc.refresh_secret(ctx, client_id=f"dev-{i}").secret))  # secondaries kept
    for name in ("g1", "g2"):
        svc.create_group(ctx, name=name)
        issued.append(base64.b64decode(_group_key(ctx, name)))
        issued.append(base64.b64decode(svc.derive_member_secret(ctx, group=name, client_id="m-1").secret))
    assert _ok(ctx, "dev-0", svc.show_secret(ctx, client_id="dev-0").username,
               client_password(base64.b64encode(issued[5]).decode(), "dev-0"))
    ctx.store.dispose()  # close connections so the WAL is checkpointed into the file
    home = Path(ctx.settings.home)
    files = [p for p in home.rglob("*") if p.is_file() and p != Path(ctx.settings.master_key_file)]
    assert any(p.name == "pki.db" for p in files)
    data = b"".join(p.read_bytes() for p in files)
    with Store(ctx.settings.database_url).engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM device_secret")).scalar() == 5  # rows are there
    for raw in issued:
        for form in _encodings(raw):
            assert form not in data


# -- schema ------------------------------------------------------------------------------------


def test_migration_downgrades_and_upgrades(database_url):
    from alembic import command

    store = Store(database_url)
    try:
        store.upgrade()
        with store.engine.begin() as conn:
            command.downgrade(store._alembic_config(conn), "0002")
        with store.engine.connect() as conn:
            tables = set(conn.dialect.get_table_names(conn))
        assert "device_secret" not in tables and "secret_group" not in tables
        store.upgrade()
        store.check_schema()
    finally:
        store.dispose()


# -- the CLI -----------------------------------------------------------------------------------




def test_cli_flow(pki, ctx):
    created = _json(pki, "secret", "register", "dev-1")
    assert {"client_id", "access_key_id", "status", "secret"} <= set(created)
    shown = _json(pki, "secret", "show", "dev-1")
    assert "secret" not in shown and shown["access_key_id"] == created["access_key_id"]
    assert _json(pki, "secret", "show", "dev-1", "--reveal")["secret"] == created["secret"]
    user = created["username"]
    import time

    for password in (client_password(created["secret"], "dev-1"),
                     client_sas(created["secret"], "dev-1", int(time.time()) + 600)):
        assert _json(pki, "secret", "verify", "--client-id", "dev-1", "--username", user, "--password",
                     password) == {"result": "pass", "client_id": "dev-1"}
    code, out, err = pki("secret", "verify", "--client-id", "dev-1", "--username", user, "--password", "nope")
    assert code == EXIT_CODES["permission_denied"] and out == ""
    assert err.startswith("error[authentication_failed]:") and "nope" not in err
    code, _, err = pki("secret", "verify", "--client-id", "dev-1", "--username", user, "--password",
                       client_sas(created["secret"], "dev-1", int(time.time()) - 3600))
    assert code == EXIT_CODES["permission_denied"]

    before = snapshot(ctx)
    code, _, err = pki("secret", "register", "dev-1")
    assert code == EXIT_CODES["conflict"] and err.startswith("error[secret_exists]:") and "refresh" in err
    code, _, err = pki("secret", "register", "dev 1")
    assert code == EXIT_CODES["invalid_input"] and "error[invalid_client_id]" in err
    code, _, err = pki("secret", "refresh", "dev-1", "--grace", "soon")
    assert code == EXIT_CODES["invalid_input"] and "error[invalid_duration]" in err
    code, _, err = pki("secret", "show", "dev-2")
    assert code == EXIT_CODES["not_found"] and "error[secret_not_found]" in err
    assert snapshot(ctx) == before

    refreshed = _json(pki, "secret", "refresh", "dev-1", "--grace", "0")
    assert refreshed["secret"] != created["secret"] and refreshed["secondary_expires_at"] is None
    code, _, _ = pki("secret", "verify", "--client-id", "dev-1", "--username", user, "--password",
                     client_password(created["secret"], "dev-1"))
    assert code == EXIT_CODES["permission_denied"]
    assert _json(pki, "secret", "deactivate", "dev-1")["status"] == "INACTIVE"
    assert _json(pki, "secret", "activate", "dev-1")["status"] == "ACTIVE"
    listed = _json(pki, "secret", "list")
    assert [i["client_id"] for i in listed["items"]] == ["dev-1"] and listed["next_cursor"] is None
    assert "secret" not in listed["items"][0]
    assert _json(pki, "secret", "unregister", "dev-1")["deleted"] is True
    code, out, _ = pki("secret", "list")
    assert code == 0 and "CLIENT_ID" in out


def test_cli_groups(pki, monkeypatch):
    group = _json(pki, "secret", "group", "create", "factory")
    assert group["name"] == "factory" and group["status"] == "ACTIVE"
    member = _json(pki, "secret", "derive", "--group", "factory", "meter-7")
    assert member["username"] == group["username"]
    monkeypatch.setenv("METER_PW", client_password(member["secret"], "meter-7"))
    assert _json(pki, "secret", "verify", "--client-id", "meter-7", "--username", member["username"],
                 "--password-env", "METER_PW")["result"] == "pass"
    assert _json(pki, "secret", "deactivate", "meter-7", "--group", "factory")["status"] == "INACTIVE"
    code, _, _ = pki("secret", "verify", "--client-id", "meter-7", "--username", member["username"],
                     "--password-env", "METER_PW")
    assert code == EXIT_CODES["permission_denied"]
    assert _json(pki, "secret", "activate", "meter-7", "--group", "factory")["status"] == "ACTIVE"
    assert _json(pki, "secret", "group", "disable", "factory")["status"] == "INACTIVE"
    code, _, err = pki("secret", "derive", "--group", "factory", "meter-8")
    assert code == EXIT_CODES["invalid_state"] and "error[group_inactive]" in err
    assert _json(pki, "secret", "group", "enable", "factory")["status"] == "ACTIVE"
    assert [g["name"] for g in _json(pki, "secret", "group", "list")["items"]] == ["factory"]
    assert _json(pki, "secret", "group", "show", "factory")["access_key_id"] == group["access_key_id"]
    code, _, err = pki("secret", "group", "create", "factory")
    assert code == EXIT_CODES["conflict"] and "error[group_exists]" in err
    code, _, err = pki("secret", "derive", "--group", "nope", "meter-8")
    assert code == EXIT_CODES["not_found"] and "error[group_not_found]" in err
    code, _, err = pki("secret", "verify", "--client-id", "m", "--username", "u")
    assert code != 0
