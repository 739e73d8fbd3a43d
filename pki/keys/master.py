"""The master key: one AES-256 key in a file only its owner can read.

Everything else the keystore holds is encrypted under it, so the file's
permissions are the whole of the protection at rest: we refuse to run with a
file that group or others could read, the way ssh refuses a loose id_rsa.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ConfigError

__all__ = ["MASTER_KEY_SIZE", "MasterKey", "create_master_key_file", "load_master_key"]

MASTER_KEY_SIZE = 32
# A valid file is 45 bytes; anything much longer is not ours, and we should
# not read an arbitrary file into memory to find that out.
_MAX_FILE_SIZE = 1024


class MasterKey:
    """An AES-256-GCM key; shows nothing of itself in repr or pickles."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)):
            raise TypeError("key must be bytes")
        if len(key) != MASTER_KEY_SIZE:
            raise ValueError(f"key must be {MASTER_KEY_SIZE} bytes")
        # Only the AEAD object keeps the key: nothing here can print it.
        self._aead = AESGCM(bytes(key))
        #: A public name for this key (16 hex digits): every sealed blob carries it, so a store
        #: half-way through a rotation knows which key opens which row.  An HMAC under the key,
        #: so it reveals nothing about the key and cannot be forged without it.
        self.key_id = hmac.new(bytes(key), b"device-pki master key id", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<MasterKey {self.key_id} (hidden)>"

    def __reduce__(self):
        # Pickling would copy the key into caches, queues or worker pipes;
        # a worker process should load the file itself.
        raise TypeError("MasterKey cannot be pickled; load it from the master key file instead")


def create_master_key_file(path: str | os.PathLike[str]) -> None:
    """Write a new random master key to ``path`` (mode 0600), never overwriting."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        # O_EXCL: losing the old key would make every sealed key unreadable.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        raise ConfigError(
            f"master key file {path} already exists; keep it (every stored key is sealed under it) "
            "or move it away first if you really mean to start over",
            code="master_key_exists",
            path=path,
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64encode(secrets.token_bytes(MASTER_KEY_SIZE)) + b"\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        # A half-written file would later fail as "invalid"; better none at all.
        os.unlink(path)
        raise


def load_master_key(path: str | os.PathLike[str]) -> MasterKey:
    """Read the master key, refusing a missing, loose or malformed file."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(
            f"master key file {path} does not exist; initialise the store to create one, "
            "or point PKI_MASTER_KEY_FILE at the existing file",
            code="master_key_missing",
            path=path,
        ) from None
    except PermissionError:
        raise ConfigError(
            f"master key file {path} is not readable by this user; run as the file's owner",
            code="master_key_unreadable",
            path=path,
        ) from None
    try:
        # fstat on the open descriptor: the mode we check is the file we read.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _invalid(path)
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"master key file {path} is accessible by group or others (mode {mode:04o}); "
                f"run `chmod 600 {path}`",
                code="master_key_insecure",
                path=path,
                mode=f"{mode:04o}",
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(_MAX_FILE_SIZE + 1)
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(path) from None
    if len(data) > _MAX_FILE_SIZE or len(key) != MASTER_KEY_SIZE:
        raise _invalid(path)
    return MasterKey(key)


def _invalid(path: str) -> ConfigError:
    # Never echo the content: a damaged key file is still mostly key.
    return ConfigError(
        f"master key file {path} does not hold a base64-encoded {MASTER_KEY_SIZE}-byte key; "
        "restore it from your backup (a new key cannot open keys sealed under the old one)",
        code="master_key_invalid",
        path=path,
    )
