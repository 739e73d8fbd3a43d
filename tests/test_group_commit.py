"""Group commit: jobs that arrive together share one transaction, keep their own outcome and actor."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from tests.support.lint import assert_lint_clean, assert_openssl_verifies
from pki.services import audit, devices, managed
from pki.services.group_commit import GroupCommit


class FakeStore:
    """Transactions over a list: effects land on commit, vanish on rollback; commits are counted."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.commits: list[list[str]] = []
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self):
        pending: list[str] = []
        yield pending
        with self.lock:
            self.rows += pending
            self.commits.append(list(pending))


def _wait_queued(group: GroupCommit, count: int) -> None:
    for _ in range(2000):  # a bound on waiting for threads to queue, not a timed assertion
        if len(list(group.pending())) >= count:
            return
        time.sleep(0.005)
    raise AssertionError("the jobs never queued")


def _batched_run(fail: set[str]):
    """Job "first" holds the lead inside its transaction until four more jobs have queued behind it."""
    store = FakeStore()
    entered, release = threading.Event(), threading.Event()
    seen_actor: dict[str, str | None] = {}

    def write(pending, job: str) -> str:
        if job == "first":
            entered.set()
            release.wait(timeout=60)
        seen_actor[job] = audit.current_actor().request_id
        pending.append(job)
        if job in fail:
            raise ValueError(f"{job} is bad")
        return job.upper()

    group = GroupCommit(store.transaction, write)
    outcomes: dict[str, object] = {}

    def submit(job: str) -> None:
        with audit.acting_as(audit.Actor(principal="p", request_id=f"req-{job}")):
            try:
                outcomes[job] = group.submit(job)
            except ValueError as exc:
                outcomes[job] = exc

    threads = [threading.Thread(target=submit, args=(job,)) for job in ("first", "b", "c", "d", "e")]
    threads[0].start()
    assert entered.wait(timeout=60)
    for t in threads[1:]:
        t.start()
    _wait_queued(group, len(threads) - 1)
    release.set()
    for t in threads:
        t.join(timeout=60)
    return store, outcomes, seen_actor


def test_jobs_queued_behind_a_commit_share_the_next_transaction():
    store, outcomes, seen_actor = _batched_run(fail=set())
    assert outcomes == {"first": "FIRST", "b": "B", "c": "C", "d": "D", "e": "E"}
    assert store.commits[0] == ["first"]
    assert sorted(store.commits[1]) == ["b", "c", "d", "e"] and len(store.commits) == 2
    # Whichever thread committed them, each job ran as the caller that submitted it.
    assert seen_actor == {job: f"req-{job}" for job in outcomes}


def test_a_failing_job_fails_alone_and_leaves_nothing():
    store, outcomes, _ = _batched_run(fail={"c"})
    assert isinstance(outcomes["c"], ValueError) and str(outcomes["c"]) == "c is bad"
    assert {k: v for k, v in outcomes.items() if k != "c"} == {"first": "FIRST", "b": "B", "d": "D", "e": "E"}
    assert sorted(store.rows) == ["b", "d", "e", "first"]  # the failed batch rolled back; c never landed
    assert all(len(c) == 1 for c in store.commits[1:])  # retried one job per transaction


def test_a_caller_alone_commits_alone_and_errors_reach_it():
    store = FakeStore()
    group = GroupCommit(store.transaction, lambda pending, job: pending.append(job) or job * 2)
    assert group.submit(21) == 42 and store.commits == [[21]]

    def bad(pending, job):
        raise KeyError(job)

    with pytest.raises(KeyError):
        GroupCommit(store.transaction, bad).submit("x")
    assert store.rows == [21]


def test_concurrent_issuance_every_certificate_stored_and_audited_once_by_its_caller(ctx, tmp_path):
    ca = managed.create_ca(ctx, name="Group Root")
    threads, per = 8, 6
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def issue(t: int) -> None:
        start.wait()
        out = []
        try:
            for i in range(per):
                with audit.acting_as(audit.Actor(principal=f"line-{t}", request_id=f"r-{t}-{i}")):
                    out.append(devices.issue_device(ctx, ca=ca.sn, generate=True, client_id=f"g-{t}-{i}"))
        except BaseException as exc:  # reported below, not lost in a thread
            errors.append(exc)
        results[t] = out

    workers = [threading.Thread(target=issue, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors
    issued = [d for out in results.values() for d in out]
    assert len(issued) == threads * per
    assert len({d.device.sn for d in issued}) == len(issued)
    stored = devices.list_devices(ctx, ca=ca.sn, limit=1000).items
    assert sorted(d.sn for d in stored) == sorted(d.device.sn for d in issued)
    records = audit.list_records(ctx, action="mq:IssueDeviceCertificate", limit=1000).items
    by_request = {r.request_id: r for r in records}
    assert len(by_request) == len(records) == len(issued)
    for t, out in results.items():
        for i, d in enumerate(out):
            record = by_request[f"r-{t}-{i}"]
            assert record.principal == f"line-{t}"
            assert record.details["subject"] == f"{ca.sn}/{d.device.sn}"
    assert audit.verify(ctx).ok
    sample = issued[0]
    assert_lint_clean(sample.certificate_pem.encode())
    assert_openssl_verifies(sample.certificate_pem.encode(), [sample.chain_pem.encode()], tmp_dir=tmp_path)


def test_a_failed_commit_is_not_run_again():
    """A commit that fails may have happened: running its jobs again could issue twice."""
    runs: list[str] = []

    @contextlib.contextmanager
    def failing_commit():
        yield None
        raise ConnectionError("connection lost during COMMIT")

    release, entered = threading.Event(), threading.Event()

    def write(_conn, job):
        runs.append(job)
        if job == "first":
            entered.set()
            release.wait(timeout=60)
        return job

    group = GroupCommit(failing_commit, write)
    outcomes: dict[str, object] = {}

    def submit(job):
        try:
            outcomes[job] = group.submit(job)
        except ConnectionError as exc:
            outcomes[job] = exc

    threads = [threading.Thread(target=submit, args=(j,)) for j in ("first", "b", "c")]
    threads[0].start()
    assert entered.wait(timeout=60)
    for t in threads[1:]:
        t.start()
    _wait_queued(group, 2)
    release.set()
    for t in threads:
        t.join(timeout=60)
    assert sorted(runs) == ["b", "c", "first"]  # each ran once
    assert all(isinstance(v, ConnectionError) for v in outcomes.values()) and len(outcomes) == 3


def test_an_interrupted_waiter_leaves_the_queue_and_nothing_hangs(monkeypatch):
    from pki.services import group_commit as gc

    class InterruptedEvent(threading.Event):
        def wait(self, timeout=None):
            raise KeyboardInterrupt

    real_init = gc._Slot.__init__

    def init(slot, job):
        real_init(slot, job)
        if job == "interrupted":  # Ctrl-C lands while this caller waits
            slot.ready = InterruptedEvent()

    store = FakeStore()
    release, entered = threading.Event(), threading.Event()

    def write(pending, job):
        if job == "first":
            entered.set()
            release.wait(timeout=60)
        pending.append(job)
        return job

    group = GroupCommit(store.transaction, write)
    monkeypatch.setattr(gc._Slot, "__init__", init)
    interrupted: list[BaseException] = []

    def interrupted_caller():
        try:
            group.submit("interrupted")
        except KeyboardInterrupt as exc:
            interrupted.append(exc)

    leader = threading.Thread(target=lambda: group.submit("first"))
    leader.start()
    assert entered.wait(timeout=60)
    second = threading.Thread(target=interrupted_caller)
    second.start()
    second.join(timeout=60)
    assert interrupted and list(group.pending()) == []
    release.set()
    leader.join(timeout=60)
    monkeypatch.undo()
    assert group.submit("after") == "after"  # no leader left stranded
    assert store.rows == ["first", "after"]


def test_finish_runs_last_in_each_transaction_with_its_jobs_results():
    """The hook that appends a batch's audit records sees exactly the jobs its transaction holds."""
    store = FakeStore()
    finished: list[list[str]] = []

    def finish(pending, results):
        finished.append(list(results))
        pending.append("finish:" + ",".join(results))

    group = GroupCommit(store.transaction, lambda pending, job: pending.append(job) or job.upper(), finish=finish)
    assert group.submit("a") == "A"
    assert finished == [["A"]] and store.commits == [["a", "finish:A"]]


def test_a_failing_finish_fails_every_job_of_its_batch_and_keeps_nothing():
    store = FakeStore()

    def finish(pending, results):
        raise RuntimeError("the audit head is gone")

    group = GroupCommit(store.transaction, lambda pending, job: pending.append(job), finish=finish)
    with pytest.raises(RuntimeError):
        group.submit("a")
    assert store.rows == [] and store.commits == []  # FakeStore rolls back on an exception


def test_batched_audit_records_chain_exactly_as_one_by_one_appends(ctx):
    """append_changes chains N records in memory; the log verifies, seqs are consecutive, each links to the last."""
    with audit.acting_as(audit.Actor(principal="one-by-one")):
        audit.record(ctx, action="mq:RegisterCa", resource="r")
    records = []
    for i in range(5):
        with audit.acting_as(audit.Actor(principal=f"caller-{i}", request_id=f"req-{i}")):
            records.append(audit.change_values(ctx, "device.issue", subject=f"ca/{i}", client_id=f"d-{i}"))
    with ctx.store.core_transaction() as conn:
        audit.append_changes(conn, records)
    assert audit.verify(ctx).ok
    page = audit.list_records(ctx, limit=100).items
    assert [r.seq for r in page] == [1, 2, 3, 4, 5, 6]
    assert [r.principal for r in page[1:]] == [f"caller-{i}" for i in range(5)]
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(page, page[1:]))
    assert [r.details["subject"] for r in page[1:]] == [f"ca/{i}" for i in range(5)]


def test_issuance_with_the_audit_head_gone_is_refused_and_stores_nothing(ctx):
    """The batched append still refuses a broken log; the certificate signed for it is never stored."""
    from sqlalchemy import text

    from pki.errors import InvalidState
    from tests.support import snapshot

    ca = managed.create_ca(ctx, name="Headless Root")
    with ctx.store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_head"))
    before = snapshot(ctx)
    with pytest.raises(InvalidState) as err:
        devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="never-stored")
    assert err.value.code == "audit_chain_broken"
    assert snapshot(ctx) == before
