"""What every service call needs: the store, the clock, the instance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..clock import Clock, SystemClock
from ..config import Settings
from ..store import Store

if TYPE_CHECKING:  # pki.keys loads cryptography: only for what signs (pki --version, device show do not)
    from ..keys import KeyCustody, KeyHandle, Signer, SoftwareKeystore

__all__ = ["Context", "open_context"]


@dataclass
class Context:
    settings: Settings
    store: Store
    clock: Clock = field(default_factory=SystemClock)
    _keystore: SoftwareKeystore | None = field(default=None, repr=False)
    _signers: dict[str, Signer] = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)

    @property
    def instance(self) -> str:
        return self.settings.instance

    @property
    def keystore(self) -> SoftwareKeystore:
        """Loaded on first use: commands that sign nothing never read the master key.

        While a master-key rotation is under way (pki/services/master_keys.py), new blobs are sealed
        under the store's ``current`` key and rows it has moved open with it, whichever file this
        process was configured with.
        """
        if self._keystore is None:
            from ..keys import load_master_key
            from .master_keys import keystore_for

            self._keystore = keystore_for(self.store, load_master_key(self.settings.master_key_file))
        return self._keystore

    def custody_for(self, handle: KeyHandle) -> KeyCustody:
        """The custody that holds ``handle``'s key (the same one makes its siblings, e.g. OCSP keys)."""
        from ..keys import Pkcs11Custody, SoftwareCustody

        if handle.custody == "pkcs11":
            return Pkcs11Custody.for_uri(handle.key_ref)
        return SoftwareCustody(self.keystore)

    def signer_for(self, handle: KeyHandle) -> Signer:
        """A CA key is immutable: open its signer once per context."""
        signer = self._signers.get(handle.key_id)
        if signer is None:
            signer = self._signers[handle.key_id] = self.custody_for(handle).signer(handle)
        return signer

    def master_key_files(self) -> tuple[str, ...]:
        """The configured master key file first, then the others the store knows (for worker processes)."""
        from .master_keys import known_key_files

        return (str(Path(self.settings.master_key_file)), *known_key_files(self.store,
                                                                           self.settings.master_key_file))

    def cached_signer(self, key_id: str) -> Signer | None:
        return self._signers.get(key_id)

    def peek(self, key):
        """What :meth:`memo` holds for ``key``, or None."""
        return self._memo.get(key)

    def remember(self, key, value):
        """Put ``value`` in the per-context cache under ``key`` (replacing what :meth:`memo` kept)."""
        self._memo[key] = value
        return value

    def memo(self, key, make):
        """Per-context cache for derived values (parsed CA certificates, the secret checker...)."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = make()
            return value

    def signer(self, *, key_id: str, sealed: bytes) -> Signer:
        """Unsealing costs a decryption and a key parse; a CA key is immutable, so keep it."""
        signer = self._signers.get(key_id)
        if signer is None:
            signer = self._signers[key_id] = self.keystore.signer(sealed, key_id=key_id)
        return signer

    def close(self) -> None:
        for value in self._memo.values():
            closer = getattr(value, "close", None)
            if callable(closer):
                closer()
        # The store first: it closes the connections its groups hold (Store.held_connection), which
        # the memo's group commits keep alive; dropped with the memo first, one would stay open.
        self.store.dispose()
        self._memo.clear()


def open_context(settings: Settings, *, clock: Clock | None = None, check_schema: bool = True) -> Context:
    store = Store(settings.database_url)
    if check_schema:
        store.check_schema()
    return Context(settings=settings, store=store, clock=clock or SystemClock())
