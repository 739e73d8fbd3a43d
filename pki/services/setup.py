"""`pki init`: data directory, schema, master key."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from ..config import Settings
from ..keys import create_master_key_file, load_master_key
from ..store import Store
from .schemas import InitResult

__all__ = ["initialise"]


def initialise(settings: Settings) -> InitResult:
    """Create or upgrade everything; safe to run again (it never replaces a key)."""
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(settings.database_url)
    try:
        revision = store.upgrade()
    finally:
        store.dispose()
    created = not settings.master_key_file.exists()
    if created:
        create_master_key_file(settings.master_key_file)
    load_master_key(settings.master_key_file)  # refuses a key file others can read
    return InitResult(
        home=str(settings.home),
        database=make_url(store.url).render_as_string(hide_password=True),
        schema_revision=revision,
        master_key_file=str(settings.master_key_file),
        master_key_created=created,
    )
