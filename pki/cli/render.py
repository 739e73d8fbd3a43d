"""Output: JSON for machines (--json), short aligned text for people."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import click

__all__ = ["emit", "emit_page", "EXIT_CODES", "error_line", "printable", "shown", "openssl_dn", "duration_text"]

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


def duration_text(value: _dt.timedelta) -> str:
    """``8d``, ``1h30m``: the form --ttl and --grace take (pki.ids.format_duration)."""
    from ..ids import format_duration  # pki.ids loads hashlib/hmac: not for every command's start-up

    return format_duration(value)


def _split_rdns(dn: str) -> list[str]:
    """The RDNs of an RFC 4514 string, split on the commas that are not escaped."""
    parts, current, escaped = [], [], False
    for ch in dn:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def openssl_dn(dn: str) -> str:
    """An RFC 4514 DN (most specific RDN first) in openssl's order (``C=DE, O=Acme, CN=Line 3``).

    RFC 4514 section 2.1 writes the RDNs last-to-first; `openssl x509 -subject` prints them in the
    certificate's order.  The RDNs keep their RFC 4514 escaping; only the order and separator change.
    """
    if not dn:
        return dn
    return ", ".join(reversed(_split_rdns(dn)))


#: Fields that hold a DN as RFC 4514 text; people see them in openssl's order.
DN_FIELDS = frozenset({"subject", "issuer"})


def shown(value: Any, key: str | None = None) -> str:
    """A value as people read it: never a Python repr (lists, mappings, timedeltas; booleans as JSON writes them)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "; ".join(shown(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={shown(v)}" for k, v in value.items())
    if isinstance(value, _dt.timedelta):
        return duration_text(value)
    if key in DN_FIELDS and isinstance(value, str):
        return openssl_dn(value)
    return str(value)


def _shown(value: Any, key: str | None = None) -> str:
    # One field may span lines by design (a PEM, a policy document); every other control is escaped.
    return printable(shown(value, key), keep_newlines=True)


def _as_dict(value: Any) -> Any:
    return value.as_json() if hasattr(value, "as_json") else value


def emit(value: Any, *, as_json: bool | str, fields: tuple[str, ...] | None = None) -> None:
    """One resource: JSON, or the one text layout every show command uses (``key  value`` lines)."""
    data = _as_dict(value)
    if as_json is True or as_json in ("json", "jsonl"):
        click.echo(json.dumps(data, indent=None if as_json == "jsonl" else 2, sort_keys=True))
        return
    if not isinstance(data, dict):
        click.echo(_shown(data))
        return
    keys = fields or tuple(data)
    width = max((len(k) for k in keys), default=0)
    for key in keys:
        if key in data and data[key] is not None and data[key] != []:
            click.echo(f"{key.ljust(width)}  {_shown(data[key], key)}")


def emit_page(page: Any, *, as_json: bool | str, columns: tuple[str, ...], fields: tuple[str, ...] | None = None) -> None:
    """A page of a list: ``as_json`` is True/False (--json) or a format of :data:`.output.FORMATS`."""
    from .output import emit_items

    data = _as_dict(page)
    fmt = "json" if as_json is True else "table" if as_json is False else as_json
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    emit_items(data["items"], fmt, columns=columns, fields=fields, next_cursor=data.get("next_cursor"))
