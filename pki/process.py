"""Child processes that must not outlive their parent (provisioning workers, `pki serve` workers)."""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["die_with_parent"]


def die_with_parent(parent_pid: int) -> None:
    """Linux: be killed when ``parent_pid`` dies, even by SIGKILL, instead of running on as an orphan.

    An orphaned `pki serve` worker keeps the listening socket, so a restart fails with "address in
    use"; an orphaned provisioning worker idles forever.  PR_SET_PDEATHSIG (prctl(2)) asks the kernel
    to send SIGKILL when the parent goes; the getppid check covers a parent that died before the call.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort: without it an orphan only lingers
        return
    if os.getppid() != parent_pid:
        os._exit(1)
