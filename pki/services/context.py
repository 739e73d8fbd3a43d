"""What every service call needs: the store, the clock, the instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..clock import Clock, SystemClock
from ..config import Settings
from ..store import Store

__all__ = ["Context", "open_context"]


@dataclass
class Context:
    settings: Settings
    store: Store
    clock: Clock = field(default_factory=SystemClock)

    @property
    def instance(self) -> str:
        return self.settings.instance

    def close(self) -> None:
        self.store.dispose()


def open_context(settings: Settings, *, clock: Clock | None = None, check_schema: bool = True) -> Context:
    store = Store(settings.database_url)
    if check_schema:
        store.check_schema()
    return Context(settings=settings, store=store, clock=clock or SystemClock())
