"""Use cases: one transaction each, domain errors; never imports click or FastAPI."""

from .context import Context, open_context

__all__ = ["Context", "open_context"]
