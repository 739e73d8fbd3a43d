"""Use cases: one transaction each, domain errors; never imports click or FastAPI."""

from __future__ import annotations

__all__ = ["Context", "open_context"]


def __getattr__(name: str):
    # Imported on first use (PEP 562): `from pki.services.paging import ...` then costs no store
    # import, which the CLI's start-up time needs (pki/cli/main.py LAZY_COMMANDS).
    if name in __all__:
        from . import context

        return getattr(context, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
