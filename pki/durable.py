"""Durable files: create, replace and flush so that a crash or power loss leaves whole files.

Pure filesystem (POSIX calls only); the services that write files keep their
own ordering rules (what is written before a commit, what is renamed after)
and use these helpers for the individual steps.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

__all__ = ["write_new", "replace_file", "fsync_dir", "sync_filesystem", "flush_to_disk", "umask_keeps"]


def _read_umask() -> int | None:
    """This process's umask without changing it (os.umask can only be read by setting it,
    which would race with other threads creating files): Linux 4.7+ shows it in
    /proc/self/status (proc(5)).  None where it cannot be read."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def umask_keeps(mode: int) -> bool:
    """Whether a file created with ``mode`` gets exactly ``mode`` (the umask takes no bit of it).

    Read per call, not cached: a process may change its umask, and a stale
    answer would leave a key file with the wrong mode.  Callers that create
    many files ask once (:func:`write_new`'s ``exact_mode``)."""
    umask = _read_umask()
    return umask is not None and mode & umask == 0


def write_new(path, data: bytes, mode: int, *, exact_mode: bool = True, sync: bool = False) -> None:
    """Create ``path`` (refusing to follow or reuse an existing file) and write ``data``.

    ``exact_mode`` sets exactly ``mode`` whatever the umask (key files must be
    0600, no more, no less); without it the umask applies as to ``mkdir``.  A
    caller creating many files that has checked :func:`umask_keeps` may pass
    ``exact_mode=False`` and save the fchmod.  ``sync`` fsyncs the file before
    closing it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        if exact_mode:
            os.fchmod(fd, mode)  # the umask may have taken bits off; set exactly what we mean
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path, data: bytes, mode: int) -> None:
    """Write via a temporary name and rename, so a reader never sees half a file."""
    tmp = f"{path}.tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    write_new(tmp, data, mode)
    os.replace(tmp, path)


def fsync_dir(path) -> None:
    """Make the directory's entries (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs():
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux (or no glibc syncfs): sync() instead
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SYNCFS = _load_syncfs()


def sync_filesystem(path: Path) -> None:
    """Flush every file written on the filesystem that holds ``path``.

    syncfs(2) where there is one: sync() would flush every filesystem of the
    machine, other programs' writes included, and take as long as they do.
    """
    if _SYNCFS is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            # Linux 5.8+ reports write-back errors here; sync() would not, and the caller
            # would go on as if files that never reached the disk were safe.
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def flush_to_disk(directory: Path) -> None:
    """A durability barrier: everything written so far on ``directory``'s filesystem reaches
    the disk, and so do the directory's own entries.  Raises ``OSError`` when it cannot."""
    sync_filesystem(directory)
    fsync_dir(directory)
