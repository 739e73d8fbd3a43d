"""Group commit: writes that arrive together share one transaction.

Every issuance ends in a durable commit (a flush to disk) and, on the way,
queues on the audit log's head row.  When several callers issue at once
(threads of `pki serve`, a factory line with many clients), each paying for
its own flush and its own turn at the head is what limits throughput.  Here
the first caller to arrive becomes the leader: it takes every job queued so
far, its own first, runs them in one transaction and commits once; callers
that arrived meanwhile wait, then the first of them leads the next batch.
A caller alone pays nothing extra: its batch is itself.

Each job keeps its own outcome.  If the batch's transaction fails, the
leader runs each job again in a transaction of its own, so one bad job (a
CA deactivated a moment ago, say) fails alone and the others commit.  A job
runs under the audit Actor of the caller that submitted it, so its record
names the right principal, source IP and request id whichever thread
commits it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from . import audit

__all__ = ["GroupCommit"]

J = TypeVar("J")
R = TypeVar("R")

#: Jobs per transaction at most: bounds how long one batch holds the head lock.
MAX_BATCH = 64


_UNSET = object()


class _Slot(Generic[J]):
    __slots__ = ("job", "actor", "ready", "lead", "result", "error")

    def __init__(self, job: J) -> None:
        self.job = job
        self.actor = audit.current_actor()
        self.ready = threading.Event()
        self.lead = False
        self.result: Any = _UNSET
        self.error: BaseException | None = None

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit(Generic[J, R]):
    """``submit(job)`` runs ``write(conn, job)`` in a transaction from ``transaction()``, shared with
    the jobs submitted at the same time, and answers its result (or raises its error).  ``finish(conn,
    results)``, when given, runs last in every transaction, with the results of the jobs it holds."""

    def __init__(self, transaction: Callable[[], AbstractContextManager[Any]], write: Callable[[Any, J], R], *,
                 max_batch: int = MAX_BATCH, finish: Callable[[Any, list[R]], None] | None = None) -> None:
        self._transaction = transaction
        self._write = write
        # Runs last in each transaction with the results of its jobs (their audit records, chained at once).
        self._finish = finish
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot[J]] = []
        self._leading = False

    def submit(self, job: J) -> R:
        slot = _Slot(job)
        with self._lock:
            self._queue.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            try:
                slot.ready.wait()
            except BaseException:
                self._abandon(slot)
                raise
            if not slot.lead:
                return slot.outcome()
        # Leading: this slot is first in the queue (it arrived with no leader, or was handed the lead).
        with self._lock:
            batch = self._queue[: self._max_batch]
            del self._queue[: len(batch)]
        try:
            self._commit(batch)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.ready.set()
                else:
                    self._leading = False
        return slot.outcome()

    def _run(self, conn, slot: _Slot[J]) -> R:
        with audit.acting_as(slot.actor):
            return self._write(conn, slot.job)

    def _abandon(self, slot: _Slot[J]) -> None:
        """A waiting caller is interrupted: take its job out of the queue, and pass the lead on if it had it."""
        with self._lock:
            if slot not in self._queue:
                return  # a leader has it already, and will answer it
            self._queue.remove(slot)
            if slot.lead:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].ready.set()
                else:
                    self._leading = False

    def _commit(self, batch: list[_Slot[J]]) -> None:
        try:
            failed_at: list[int] = []
            try:
                with self._transaction() as conn:
                    results = []
                    for index, slot in enumerate(batch):
                        failed_at.append(index)
                        results.append(self._run(conn, slot))
                        failed_at.pop()
                    if self._finish is not None:
                        self._finish(conn, results)
            except Exception as exc:
                if not failed_at:
                    # The transaction itself failed (its begin or its commit): the outcome of
                    # a failed commit may be unknown, so nothing is run again; all get the error.
                    for slot in batch:
                        slot.error = exc
                    return
                bad = failed_at[0]
                batch[bad].error = exc
                for slot in batch[:bad] + batch[bad + 1:]:  # alone, so that one job's failure is its own
                    try:
                        with self._transaction() as conn:
                            result = self._run(conn, slot)
                            if self._finish is not None:
                                self._finish(conn, [result])
                            slot.result = result
                    except Exception as one:
                        slot.error = one
                return
            for slot, result in zip(batch, results):
                slot.result = result
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: answer everyone, then go
            for slot in batch:
                if slot.result is _UNSET and slot.error is None:
                    slot.error = exc
            raise
        finally:
            for slot in batch:
                slot.ready.set()

    def pending(self) -> Iterator[J]:
        """The jobs queued behind the current batch (for tests and diagnostics)."""
        with self._lock:
            return iter([s.job for s in self._queue])
