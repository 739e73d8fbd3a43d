"""Tables, engine, repositories and migrations.  Never imports x509 or keys.

The package's names load on first use (PEP 562), together with every table module (``models`` and
every ``*_models`` module, so that SQLModel.metadata holds all tables whenever a Store exists; a new
table module needs no entry here).  :mod:`.quick` and :mod:`.revision` are then importable without
SQLAlchemy, which a CLI command's start-up needs (pki/cli/main.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

__all__ = [
    "head_revision",
    "Store",
    "normalise_url",
    "sqlite_url",
    "Status",
    "DeviceStatus",
    "CaCertificate",
    "CustodyKey",
    "DeviceCertificate",
    "RegisterCode",
]

#: Where the names that are not in ``models`` live.
_HOMES = ("models", "engine", "revision")


def _load_tables() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name == "models" or info.name.endswith("_models"):
            importlib.import_module(f"{__name__}.{info.name}")


def __getattr__(name: str):
    # A submodule (``from pki.store import repos``) is imported by the import system itself once this
    # says it is no attribute; answering here would load every table for ``from pki.store import quick``.
    if name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _load_tables()
    for home in _HOMES:
        module = importlib.import_module(f"{__name__}.{home}")
        if hasattr(module, name):
            value = getattr(module, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
