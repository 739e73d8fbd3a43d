"""Output: JSON for machines (--json), short aligned text for people."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

__all__ = ["emit", "emit_page", "EXIT_CODES", "error_line", "printable"]

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
    return f"error[{code}]: {printable(message, keep_newlines=True)}"


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` safe for a terminal: every non-printable character as a Python-style escape.

    Certificates carry text their issuer chose: an ANSI escape (ESC, U+001B) would rewrite the
    terminal, a bidi control (U+202E, U+2066...) reorders what follows, a NUL hides it.  str.isprintable
    is False for all of them (Unicode categories C* and Z* but the space).  Human output only: JSON
    keeps every value exact.
    """
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or (keep_newlines and ch == "\n") else _escape(ch) for ch in text
    )


def _shown(value: Any) -> str:
    # One field may span lines by design (a PEM, a policy document); every other control is escaped.
    # A list reads as its items, never as a Python repr.
    if isinstance(value, (list, tuple)):
        return "; ".join(_shown(v) for v in value)
    return printable(str(value), keep_newlines=True)


def _as_dict(value: Any) -> Any:
    return value.as_json() if hasattr(value, "as_json") else value


def emit(value: Any, *, as_json: bool, fields: tuple[str, ...] | None = None) -> None:
    data = _as_dict(value)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if not isinstance(data, dict):
        click.echo(_shown(data))
        return
    keys = fields or tuple(data)
    width = max((len(k) for k in keys), default=0)
    for key in keys:
        if key in data and data[key] is not None and data[key] != []:
            click.echo(f"{key.ljust(width)}  {_shown(data[key])}")


def emit_page(page: Any, *, as_json: bool, columns: tuple[str, ...]) -> None:
    data = _as_dict(page)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    rows = [[printable(str(item.get(c, ""))) for c in columns] for item in data["items"]]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    if data.get("next_cursor"):
        click.echo(f"(more: --cursor {data['next_cursor']})", err=sys.stdout.isatty())
