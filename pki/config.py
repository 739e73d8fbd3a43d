"""Configuration: environment variables, each also a CLI flag."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .ids import validate_name

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    master_key_file: Path
    instance: str

    @classmethod
    def load(
        cls,
        *,
        home: str | os.PathLike | None = None,
        database_url: str | None = None,
        master_key_file: str | os.PathLike | None = None,
        instance: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> "Settings":
        """Flags win over ``PKI_*`` variables, which win over defaults."""
        env = os.environ if environ is None else environ
        home_path = Path(home or env.get("PKI_HOME") or ".pki").expanduser().absolute()
        url = database_url or env.get("PKI_DATABASE_URL") or f"sqlite:///{home_path / 'pki.db'}"
        key_file = Path(
            master_key_file or env.get("PKI_MASTER_KEY_FILE") or home_path / "master.key"
        ).expanduser().absolute()
        inst = validate_name(instance or env.get("PKI_INSTANCE") or "default", what="instance")
        return cls(home=home_path, database_url=url, master_key_file=key_file, instance=inst)
