"""Tables, engine, repositories and migrations.  Never imports x509 or keys.

The names below load on first use (PEP 562), together with every table module (so that
SQLModel.metadata holds all tables whenever a Store exists): :mod:`.quick` and :mod:`.revision`
are then importable without SQLAlchemy, which a CLI command's start-up needs (pki/cli/main.py).
"""

from __future__ import annotations

import importlib

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

_HOME = {"head_revision": "revision", "Store": "engine", "normalise_url": "engine", "sqlite_url": "engine"}
_TABLE_MODULES = ("models", "access_models", "artifact_models", "dataplane_models", "http_models",
                  "provision_models", "secret_models")


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for module in _TABLE_MODULES:  # registers every table
        importlib.import_module(f"{__name__}.{module}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME.get(name, 'models')}"), name)
    globals()[name] = value
    return value
