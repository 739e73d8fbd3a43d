"""Status changes racing each other, in threads and in processes, on SQLite and PostgreSQL.

A revocation is final: a concurrent activate or deactivate either commits before it (and the
revocation then revokes from that state) or fails with ``device_revoked``.  None may commit after it,
and none may answer success for a change that did not happen.
"""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from cryptography import x509

from pki.config import Settings
from pki.errors import InvalidState, PkiError
from pki.services import audit, crls, devices, managed
from pki.services.context import open_context
from pki.store import repos
from tests.support import snapshot

#: What a racing activate/deactivate may answer: success before the revocation, or device_revoked after
#: it (conflicting_change if it lost a race the lock did not order).
ALLOWED = {"ok", "device_revoked", "conflicting_change"}
TOGGLES = 4  # each toggler alternates deactivate/activate this many times per round


def _toggle(ctx, ca_sn: str, sn: str, first: int) -> list[str]:
    outcomes = []
    for i in range(TOGGLES):
        change = devices.deactivate_device if (i + first) % 2 == 0 else devices.activate_device
        try:
            change(ctx, ca=ca_sn, sn=sn)
            outcomes.append("ok")
        except PkiError as exc:
            outcomes.append(exc.code)
    return outcomes


def _revoke(ctx, ca_sn: str, sn: str) -> list[str]:
    try:
        devices.revoke_device(ctx, ca=ca_sn, sn=sn, reason="keyCompromise")
        return ["ok"]
    except PkiError as exc:
        return [exc.code]


def _role(ctx, role: int, ca_sn: str, sn: str) -> list[str]:
    """Role 0 revokes; the others toggle, starting at different points so both kinds of change race it."""
    return _revoke(ctx, ca_sn, sn) if role == 0 else _toggle(ctx, ca_sn, sn, first=role)


def _check(ctx, ca_sn: str, sns: list[str], outcomes: dict[str, dict[int, list[str]]]) -> None:
    with ctx.store.transaction(readonly=True) as session:
        ca_row = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca_sn)
        rows = {sn: repos.get_device(session, ca_id=ca_row.id, sn=sn) for sn in sns}
    for sn, row in rows.items():
        # REVOKED stayed REVOKED, with the revocation's own time and reason.
        assert (row.status, row.revocation_reason) == ("REVOKED", "keyCompromise"), sn
        assert row.revoked_at is not None, sn
        assert outcomes[sn][0] == ["ok"], f"the revocation of {sn} failed: {outcomes[sn][0]}"
        for role, got in outcomes[sn].items():
            assert set(got) <= ALLOWED, f"{sn} role {role}: {got}"
    # Audit order is commit order (appenders lock the head): nothing changed a device after its revocation,
    # and every change that answered success is on record.
    changes = [r.details for r in audit.list_records(ctx, limit=1000).items
               if r.details.get("operation", "").startswith("device.") and r.details["operation"] != "device.issue"]
    for i, sn in enumerate(sns):
        ops = [d["operation"] for d in changes if d["subject"] == f"{ca_sn}/{sn}"]
        assert ops.count("device.revoke") == 1 and ops[-1] == "device.revoke", f"{sn}: {ops}"
        successes = sum(got.count("ok") for role, got in outcomes[sn].items() if role)
        raced = ops[i % 2:-1]  # less the hold _devices put it on, and the revocation
        assert len(raced) <= successes, f"{sn}: {ops} for {successes} successful toggles"
    # Every revoked device is on the CRL, as keyCompromise.
    crl = x509.load_der_x509_crl(crls.current_crl(ctx, ca=ca_sn).der)
    for sn in sns:
        entry = crl.get_revoked_certificate_by_serial_number(int(sn, 16))
        assert entry is not None, f"{sn} is not on the CRL"
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise


def _devices(ctx, ca_sn: str, rounds: int) -> list[str]:
    sns = []
    for i in range(rounds):
        sn = devices.issue_device(ctx, ca=ca_sn, generate=True, client_id=f"race-{i}").device.sn
        if i % 2:  # half the rounds start on hold, so that activate writes too
            devices.deactivate_device(ctx, ca=ca_sn, sn=sn)
        sns.append(sn)
    return sns


ROLES = 3


def test_revocation_racing_activate_and_deactivate_in_threads(ctx):
    ca_sn = managed.create_ca(ctx, name="Race Root").sn
    sns = _devices(ctx, ca_sn, rounds=20)
    outcomes: dict[str, dict[int, list[str]]] = {sn: {} for sn in sns}
    for sn in sns:
        start = threading.Barrier(ROLES)

        def run(role: int, sn=sn, start=start) -> None:
            start.wait()
            outcomes[sn][role] = _role(ctx, role, ca_sn, sn)

        threads = [threading.Thread(target=run, args=(role,)) for role in range(ROLES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    _check(ctx, ca_sn, sns, outcomes)


def _process_worker(settings_args: dict, role: int, ca_sn: str, sns: list[str], barrier, results) -> None:
    """A separate process with its own Context on the same database."""
    ctx = open_context(Settings.load(**settings_args))
    try:
        for sn in sns:
            barrier.wait(timeout=120)
            results.put((sn, role, _role(ctx, role, ca_sn, sn)))
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_revocation_racing_activate_and_deactivate_in_processes(ctx, tmp_path, start_method):
    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {start_method} start method here")
    ca_sn = managed.create_ca(ctx, name="Race Root").sn
    sns = _devices(ctx, ca_sn, rounds=10)
    settings_args = dict(home=tmp_path / "home", database_url=ctx.settings.database_url, instance="default",
                         environ={})
    # The processes make their own engines; this one's pooled connections must not be inherited by a fork.
    ctx.store.engine.dispose()
    mp = multiprocessing.get_context(start_method)
    barrier, results = mp.Barrier(ROLES), mp.Queue()
    procs = [mp.Process(target=_process_worker, args=(settings_args, role, ca_sn, sns, barrier, results))
             for role in range(ROLES)]
    for p in procs:
        p.start()
    outcomes: dict[str, dict[int, list[str]]] = {sn: {} for sn in sns}
    for _ in range(ROLES * len(sns)):
        sn, role, got = results.get(timeout=300)
        outcomes[sn][role] = got
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    _check(ctx, ca_sn, sns, outcomes)


# -- the guards below the service: the conditional UPDATE and the database trigger -----------------


def _revoked_device(ctx):
    ca_sn = managed.create_ca(ctx, name="Guard Root").sn
    sn = devices.issue_device(ctx, ca=ca_sn, generate=True, client_id="guarded").device.sn
    devices.revoke_device(ctx, ca=ca_sn, sn=sn, reason="superseded")
    return ca_sn, sn


@pytest.mark.parametrize("values", [{"status": "ACTIVE"}, {"status": "INACTIVE"}, {"revoked_at": None},
                                    {"revocation_reason": "keyCompromise"}, {"revocation_reason": None}])
def test_the_database_keeps_a_revoked_device_revoked(ctx, values):
    """Whatever path writes the row (ORM session or bare connection), REVOKED and its time and reason stay."""
    from sqlalchemy import update

    from pki.store import DeviceCertificate

    _, sn = _revoked_device(ctx)
    before = snapshot(ctx)
    statement = update(DeviceCertificate).where(DeviceCertificate.sn == sn).values(**values)
    with pytest.raises(InvalidState) as err:
        with ctx.store.transaction() as session:
            session.execute(statement)
    assert err.value.code == "device_revoked"
    with pytest.raises(InvalidState) as err:
        with ctx.store.core_transaction() as conn:
            conn.execute(statement)
    assert err.value.code == "device_revoked"
    assert snapshot(ctx) == before
    # Columns that say nothing about the revocation may still change.
    with ctx.store.transaction() as session:
        session.execute(update(DeviceCertificate).where(DeviceCertificate.sn == sn).values(client_id="renamed"))


def _stale(ctx, session, ca_sn: str, sn: str, *, now: str):
    """A device row as read before a concurrent change to ``now`` committed (same session, raw UPDATE)."""
    from sqlalchemy import update

    from pki.store import DeviceCertificate

    ca_row = repos.get_ca_by_sn(session, instance=ctx.instance, sn=ca_sn)
    row = repos.get_device(session, ca_id=ca_row.id, sn=sn)
    values = {"status": now}
    if now == "REVOKED":
        values.update(revoked_at=ctx.clock.now(), revocation_reason="unspecified")
    session.execute(update(DeviceCertificate).where(DeviceCertificate.id == row.id).values(**values)
                    .execution_options(synchronize_session=False))
    return row


@pytest.mark.parametrize("now, target, code", [
    ("INACTIVE", "REVOKED", "conflicting_change"),  # decided on ACTIVE, which is gone
    ("REVOKED", "INACTIVE", "device_revoked"),
])
def test_a_change_decided_on_a_stale_status_changes_nothing(ctx, now, target, code):
    from pki.services.status_change import change_status

    ca_sn = managed.create_ca(ctx, name="Stale Root").sn
    sn = devices.issue_device(ctx, ca=ca_sn, generate=True, client_id="stale").device.sn
    with ctx.store.transaction() as session:
        row = _stale(ctx, session, ca_sn, sn, now=now)
        assert row.status == "ACTIVE"
        with pytest.raises(PkiError) as err:
            change_status(session, row, target, what="the device")
        assert err.value.code == code
    assert devices.show_device(ctx, ca=ca_sn, sn=sn).status == now


def test_a_change_someone_else_already_made_is_a_no_op(ctx):
    from pki.services.status_change import change_status

    ca_sn = managed.create_ca(ctx, name="Same Root").sn
    sn = devices.issue_device(ctx, ca=ca_sn, generate=True, client_id="same").device.sn
    with ctx.store.transaction() as session:
        row = _stale(ctx, session, ca_sn, sn, now="INACTIVE")
        assert change_status(session, row, "INACTIVE", what="the device") is False
        assert row.status == "INACTIVE"


def test_migration_0008_restores_undone_revocations_and_renames_disabled(database_url):
    """Rows the race left ACTIVE with a revocation time go back to REVOKED; DISABLED becomes INACTIVE."""
    import datetime as _dt

    from alembic import command
    from sqlalchemy import insert, select

    from pki.store import CaCertificate, DeviceCertificate, Store
    from pki.store.access_models import AccessKey, AccessUser

    store = Store(database_url)
    with store.engine.begin() as conn:
        command.upgrade(store._alembic_config(conn), "0007")
    t = _dt.datetime(2030, 1, 1, tzinfo=_dt.timezone.utc)
    stamps = dict(created_at=t, updated_at=t)
    with store.engine.begin() as conn:
        ca_id = conn.execute(insert(CaCertificate).values(
            instance="default", sn="ca", name="ca", status="ACTIVE", source="registered", subject="CN=ca",
            issuer="CN=ca", not_before=t, not_after=t, fingerprint_sha256="f" * 64, spki_sha256="s" * 64,
            key_type="ec-p256", cert_der=b"x", status_changed_at=t, **stamps)).inserted_primary_key[0]
        for sn, status, revoked_at in (("a1", "ACTIVE", t), ("a2", "ACTIVE", None), ("i1", "INACTIVE", t)):
            conn.execute(insert(DeviceCertificate).values(
                instance="default", ca_id=ca_id, sn=sn, client_id=sn, status=status, revoked_at=revoked_at,
                revocation_reason="keyCompromise" if revoked_at else None, fingerprint_sha256=sn * 32,
                key_type="ec-p256", not_before=t, not_after=t, cert_der=b"x", status_changed_at=t, **stamps))
        user_id = conn.execute(insert(AccessUser).values(name="u", status="DISABLED", **stamps)).inserted_primary_key[0]
        conn.execute(insert(AccessUser).values(name="v", status="ACTIVE", **stamps))
        conn.execute(insert(AccessKey).values(access_key_id="AK.1", user_id=user_id, status="DISABLED",
                                              sealed_secret=b"x", **stamps))
    store.upgrade()
    with store.engine.connect() as conn:
        assert dict(conn.execute(select(DeviceCertificate.sn, DeviceCertificate.status)).all()) == {
            "a1": "REVOKED", "a2": "ACTIVE", "i1": "REVOKED"}
        assert dict(conn.execute(select(AccessUser.name, AccessUser.status)).all()) == {"u": "INACTIVE", "v": "ACTIVE"}
        assert conn.execute(select(AccessKey.status)).scalar_one() == "INACTIVE"
    store.dispose()


# -- ACTIVE/INACTIVE rows: concurrent switches are ordered, none lost, none recorded twice ----------


def _entities(ctx):
    """name -> (switch(on: bool) -> status answered, current status, audit record -> bool for this row)."""
    from pki.services import cas as cas_svc, secrets, users

    ca_sn = managed.create_ca(ctx, name="Switch Root").sn
    secrets.register_secret(ctx, client_id="switch")
    secrets.create_group(ctx, name="switch-group")
    key = users.create_user(ctx, "switch-user").access_key_id
    return {
        "ca": (lambda on: (cas_svc.activate_ca if on else cas_svc.deactivate_ca)(ctx, ca_sn).status,
               lambda: cas_svc.show_ca(ctx, ca_sn).status,
               lambda d: d["operation"] in ("ca.activate", "ca.deactivate") and d["subject"] == ca_sn),
        "secret": (lambda on: (secrets.activate_secret if on else secrets.deactivate_secret)(
                       ctx, client_id="switch").status,
                   lambda: secrets.show_secret(ctx, client_id="switch").status,
                   lambda d: d["operation"] in ("secret.activate", "secret.deactivate") and d["subject"] == "switch"),
        "group": (lambda on: (secrets.enable_group if on else secrets.disable_group)(ctx, name="switch-group").status,
                  lambda: secrets.show_group(ctx, name="switch-group").status,
                  lambda d: d["operation"] in ("secret.group.enable", "secret.group.disable")),
        "user": (lambda on: (users.enable_user if on else users.disable_user)(ctx, "switch-user").status,
                 lambda: users.show_user(ctx, "switch-user").status,
                 lambda d: d["operation"] in ("user.enable", "user.disable")),
        "access_key": (lambda on: (users.enable_access_key if on else users.disable_access_key)(ctx, key).status,
                       lambda: next(k["status"] for k in users.show_user(ctx, "switch-user").access_keys),
                       lambda d: d["operation"] in ("user.key.enable", "user.key.disable")),
    }


@pytest.mark.parametrize("entity", ["ca", "secret", "group", "user", "access_key"])
def test_concurrent_switches_are_ordered(ctx, entity):
    """Threads switching one row on and off: every answer is a status or conflicting_change, the audit log
    alternates (no change recorded twice, none lost) and ends on the status the row has."""
    switch, current, mine = _entities(ctx)[entity]
    start = threading.Barrier(4)
    answers: list[str] = []

    def run(first: int) -> None:
        start.wait()
        for i in range(6):
            try:
                answers.append(switch((i + first) % 2 == 0))
            except PkiError as exc:
                answers.append(exc.code)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(answers) == 24 and set(answers) <= {"ACTIVE", "INACTIVE", "conflicting_change"}, answers
    ops = [d["operation"] for d in (r.details for r in audit.list_records(ctx, limit=1000).items) if mine(d)]
    on = ("ca.activate", "secret.activate", "secret.group.enable", "user.enable", "user.key.enable")
    states = ["ACTIVE" if op in on else "INACTIVE" for op in ops]
    assert all(a != b for a, b in zip(states, states[1:])), ops
    assert states[:1] in ([], ["INACTIVE"]) and current() == (states[-1] if states else "ACTIVE")
