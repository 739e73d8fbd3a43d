"""The custody seam: where a CA key lives, and how a signer for it is obtained.

A :class:`KeyHandle` is what the store keeps for a key: the custody's name,
the key id, and either a sealed blob (``software``) or a reference to the
key on a token (``pkcs11``: an RFC 7512 URI, never with the PIN).  A
:class:`KeyCustody` makes keys and opens signers for handles.  A
:class:`SignerSpec` is the picklable description of a signer that a
provisioning worker process opens for itself: the handle plus where the
master key files are, never a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import InvalidInput
from .master import load_master_key
from .software import SoftwareKeystore, _check_key_id
from .types import PublicKey, Signer

__all__ = ["CUSTODIES", "KeyCustody", "KeyHandle", "SignerSpec", "SoftwareCustody"]

#: Custody names, as stored and as the command line spells them.
CUSTODIES: tuple[str, ...] = ("software", "pkcs11")


@dataclass(frozen=True)
class KeyHandle:
    """What the store holds for one key; no plaintext key material, ever."""

    custody: str
    key_id: str
    key_type: str
    key_ref: str | None = None  #: pkcs11: the key's RFC 7512 URI (no PIN in it)
    sealed: bytes | None = field(default=None, repr=False)  #: software: the sealed private key

    def __post_init__(self) -> None:
        if self.custody not in CUSTODIES:
            raise InvalidInput(f"unknown key custody {self.custody!r}; use one of {', '.join(CUSTODIES)}",
                               code="unsupported_custody")
        _check_key_id(self.key_id)


@runtime_checkable
class KeyCustody(Protocol):
    """Makes keys and hands out signers for them; never reveals a private key."""

    name: str

    def new_key(self, key_type: str, *, key_id: str) -> tuple[Signer, KeyHandle]: ...

    def signer(self, handle: KeyHandle) -> Signer: ...

    def public_key(self, handle: KeyHandle) -> PublicKey: ...

    def describe(self, handle: KeyHandle) -> dict:
        """Where the key is, for people (``pki keys list``): no secret, no PIN."""
        ...

    def destroy(self, handle: KeyHandle) -> None:
        """Remove a key no store row names (a CA refused after its key was made)."""
        ...


class SoftwareCustody:
    """Keys sealed under the master key (:class:`SoftwareKeystore`), the blob kept in the store."""

    name = "software"

    def __init__(self, keystore: SoftwareKeystore) -> None:
        self._keystore = keystore

    def __repr__(self) -> str:
        return "<SoftwareCustody>"

    def new_key(self, key_type: str, *, key_id: str) -> tuple[Signer, KeyHandle]:
        signer, sealed = self._keystore.new_key(key_type, key_id=key_id)
        return signer, KeyHandle("software", key_id, key_type, sealed=sealed)

    def signer(self, handle: KeyHandle) -> Signer:
        return self._keystore.signer(handle.sealed, key_id=handle.key_id)

    def public_key(self, handle: KeyHandle) -> PublicKey:
        return self.signer(handle).public_key()

    def describe(self, handle: KeyHandle) -> dict:
        return {"custody": "software", "master_key_id": SoftwareKeystore.sealed_by(handle.sealed)}

    def destroy(self, handle: KeyHandle) -> None:
        """Nothing to do: the blob lives only in the store row."""


@dataclass(frozen=True)
class SignerSpec:
    """A picklable description of a signer, opened in the process that signs.

    For a software key it names the master key files (the worker reads them
    itself: a MasterKey refuses to be pickled); for a PKCS#11 key, the URI
    (the worker opens its own session and reads the PIN from its own
    environment or file).
    """

    handle: KeyHandle
    master_key_files: tuple[str, ...] = ()

    def open(self) -> Signer:
        if self.handle.custody == "pkcs11":
            from .pkcs11 import Pkcs11Custody

            return Pkcs11Custody.for_uri(self.handle.key_ref).signer(self.handle)
        first, *others = (load_master_key(Path(p)) for p in self.master_key_files)
        return SoftwareKeystore(first, others=others).signer(self.handle.sealed, key_id=self.handle.key_id)
