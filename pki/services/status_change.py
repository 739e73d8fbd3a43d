"""One way to change the status of any row: a conditional UPDATE, and a clear answer for the loser.

Reading a row and then writing it back by id lets a change decided on a stale read overwrite one
committed meanwhile (under PostgreSQL's READ COMMITTED: a REVOKED device put back to ACTIVE, both
callers told success).  :func:`change_status` writes only if the status is still the one it read.
"""

from __future__ import annotations

from ..errors import Conflict, InvalidState
from ..store import DeviceStatus, repos

__all__ = ["change_status"]


def change_status(session, row, target: str, *, what: str, **values) -> bool:
    """Move ``row`` (with a ``status`` column) to ``target``, setting ``values`` too; False if it had it.

    A concurrent change that committed first wins: if it made the same change, this one is a no-op;
    otherwise this one fails (``device_revoked`` against a revocation, ``conflicting_change`` else) and
    changes nothing.  ``what`` names the row in that error ("CA 1f2e").
    """
    seen = row.status
    if seen == target:
        return False
    if repos.update_status(session, row, expected=seen, values={"status": target, **values}):
        return True
    current = repos.current_status(session, row)
    if current == target:
        session.refresh(row)
        return False
    if current == DeviceStatus.REVOKED:
        raise InvalidState(
            f"{what} was revoked by a concurrent request, and a revocation is final; nothing was changed",
            code="device_revoked",
        )
    now = "was deleted" if current is None else f"became {current}"
    raise Conflict(
        f"{what} {now} in a concurrent request while this one was deciding; nothing was changed. "
        "Look at it again and repeat if the change is still wanted",
        code="conflicting_change",
    )
