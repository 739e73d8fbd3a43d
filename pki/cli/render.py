"""Output: JSON for machines (--json), short aligned text for people."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

__all__ = ["emit", "emit_page", "EXIT_CODES", "error_line"]

#: The one table from error family to exit code (2 is click's usage error).
EXIT_CODES = {
    "internal": 1,
    "invalid_input": 3,
    "not_found": 4,
    "conflict": 5,
    "invalid_state": 6,
    "permission_denied": 7,
    "config": 8,
    "store": 9,
    "unauthenticated": 10,
    "rate_limited": 11,
}


def error_line(code: str, message: str) -> str:
    return f"error[{code}]: {message}"


def _as_dict(value: Any) -> Any:
    return value.as_json() if hasattr(value, "as_json") else value


def emit(value: Any, *, as_json: bool, fields: tuple[str, ...] | None = None) -> None:
    data = _as_dict(value)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if not isinstance(data, dict):
        click.echo(str(data))
        return
    keys = fields or tuple(data)
    width = max((len(k) for k in keys), default=0)
    for key in keys:
        if key in data and data[key] is not None:
            click.echo(f"{key.ljust(width)}  {data[key]}")


def emit_page(page: Any, *, as_json: bool, columns: tuple[str, ...]) -> None:
    data = _as_dict(page)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    rows = [[str(item.get(c, "")) for c in columns] for item in data["items"]]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    if data.get("next_cursor"):
        click.echo(f"(more: --cursor {data['next_cursor']})", err=sys.stdout.isatty())
