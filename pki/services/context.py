"""What every service call needs: the store, the clock, the instance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..clock import Clock, SystemClock
from ..config import Settings
from ..store import Store

if TYPE_CHECKING:
    from ..keys import Signer, SoftwareKeystore

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
        """Loaded on first use: commands that sign nothing never read the master key."""
        if self._keystore is None:
            from ..keys import SoftwareKeystore, load_master_key  # cryptography: only for what signs

            self._keystore = SoftwareKeystore(load_master_key(self.settings.master_key_file))
        return self._keystore

    def cached_signer(self, key_id: str) -> Signer | None:
        return self._signers.get(key_id)

    def peek(self, key):
        """What :meth:`memo` holds for ``key``, or None."""
        return self._memo.get(key)

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
        self._memo.clear()
        self.store.dispose()


def open_context(settings: Settings, *, clock: Clock | None = None, check_schema: bool = True) -> Context:
    store = Store(settings.database_url)
    if check_schema:
        store.check_schema()
    return Context(settings=settings, store=store, clock=clock or SystemClock())
