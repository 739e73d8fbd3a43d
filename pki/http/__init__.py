"""The HTTP front end (FastAPI): thin, like the CLI; it calls the same services."""

from .app import PUBLIC_PATHS, create_app

__all__ = ["PUBLIC_PATHS", "create_app"]
