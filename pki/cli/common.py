"""What every command module shares: state, options, input reading."""

from __future__ import annotations

import click

from ..config import Settings
from ..services import open_context

__all__ = ["State", "json_option", "read_input", "file_arg", "CA_FIELDS"]

CA_FIELDS = ("sn", "name", "status", "source", "subject", "issuer", "not_before", "not_after",
             "fingerprint_sha256", "key_type")

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


class State:
    def __init__(self, settings_kwargs: dict) -> None:
        self._kwargs = settings_kwargs
        self._ctx = None

    @property
    def settings(self) -> Settings:
        return Settings.load(**self._kwargs)

    def context(self):
        if self._ctx is None:
            self._ctx = open_context(self.settings)
        return self._ctx

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()


def read_input(path: str, *, limit: int) -> bytes:
    """Read at most one byte past the limit, so a huge file is refused, not loaded."""
    with open(path, "rb") as fh:
        return fh.read(limit + 1)


def file_arg(**kw):
    return click.Path(exists=True, dir_okay=False, readable=True, **kw)


