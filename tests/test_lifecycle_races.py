"""Races of the lifecycle, on SQLite and PostgreSQL: renewals of one certificate, enrollments for one claim."""

from __future__ import annotations

import datetime as _dt
import threading

from pki.errors import PkiError
from pki.services import devices, enrollment, est, managed, renewal
from tests.test_est import _csr

from cryptography.hazmat.primitives.asymmetric import ec

THREADS = 4


def _race(fn) -> list:
    start = threading.Barrier(THREADS)
    answers: list = []

    def run(n: int) -> None:
        start.wait()
        try:
            answers.append(fn(n))
        except PkiError as exc:
            answers.append(exc.code)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return answers


def test_concurrent_operator_renewals_of_one_certificate(ctx):
    ca = managed.create_ca(ctx, name="Race Root").sn
    dev = devices.issue_device(ctx, ca=ca, generate=True, client_id="race-1")
    answers = _race(lambda n: renewal.renew_device(ctx, ca=ca, sn=dev.device.sn).issued.device.sn)
    won = [a for a in answers if a != "device_already_renewed"]
    assert len(won) == 1 and len(answers) == THREADS, answers
    assert set(answers) - set(won) <= {"device_already_renewed", "conflicting_change", "store_busy"}, answers
    detail = renewal.device_detail(ctx, ca=ca, sn=dev.device.sn)
    assert detail["replaced_by"] == won


def test_concurrent_enrollments_for_the_last_use_of_a_claim(ctx):
    ca = managed.create_ca(ctx, name="Race Root").sn
    claim = enrollment.create_claim(ctx, ca=ca, uses=1, ttl=_dt.timedelta(hours=1))
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(THREADS)]
    answers = _race(lambda n: est.simpleenroll(ctx, label=None, body=_csr(keys[n], f"race-{n}"),
                                               basic=(claim["claim_id"], claim["password"]), client_cert=None))
    issued = [a for a in answers if isinstance(a, bytes)]
    assert len(issued) == 1, answers
    assert all(a in ("claim_exhausted", "store_busy", "conflicting_change") for a in answers if not isinstance(a, bytes))
    enrolled = [n for n in range(THREADS) if devices.find_devices(ctx, client_id=f"race-{n}").items]
    assert len(enrolled) == 1
