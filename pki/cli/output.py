"""List output: ``--output table|json|jsonl|csv`` (``--json`` its alias), for a page or a stream of pages.

CSV follows RFC 4180 (a header line, CRLF line ends, fields quoted when they hold a comma, a quote or
a line break; Python's csv module writes exactly that with its default dialect).  JSON keeps the
``{"items": [...], "next_cursor": ...}`` shape even when ``--all`` streams every page; jsonl is one
item per line.  Human (table) output escapes what a terminal would act on (:func:`.render.printable`).
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import click

from .render import printable, shown

__all__ = ["FORMATS", "output_option", "emit_items", "emit_csv_rows", "csv_cell"]

FORMATS = ("table", "json", "jsonl", "csv")

#: How many rows a streamed table measures to choose its column widths.
_TABLE_SAMPLE = 1000


def output_option(fn):
    """``--output FORMAT`` and ``--json``; the command receives the format as ``as_json`` (a str).

    Replaces :data:`.common.json_option` on a list command, whose body then passes ``as_json`` on to
    :func:`.render.emit_page` unchanged.
    """

    @click.option("--output", "-o", "output_format", type=click.Choice(FORMATS), default=None,
                  help="Output format [default: table].  csv is RFC 4180 with a header line.")
    @click.option("--json", "json_flag", is_flag=True, help="Same as --output json.")
    @functools.wraps(fn)
    def wrapper(*args, output_format, json_flag, **kwargs):
        if json_flag and output_format not in (None, "json"):
            raise click.UsageError(f"--json and --output {output_format} contradict each other")
        kwargs["as_json"] = "json" if json_flag else (output_format or "table")
        return fn(*args, **kwargs)

    return wrapper


def csv_cell(value: Any) -> str:
    """A value as one CSV field: empty for null, JSON for lists and objects, the text otherwise."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _columns_of(first: dict) -> list[str]:
    return list(first)


def emit_items(items: Iterable[dict], fmt: str, *, columns: Sequence[str],
               fields: Sequence[str] | None = None, next_cursor: str | None = None, out=None) -> int:
    """Write ``items`` (an iterator may stream millions) in ``fmt``; returns how many were written.

    ``columns`` are the table's; ``fields`` the CSV header (default: the first item's keys).
    """
    out = out if out is not None else sys.stdout
    items = iter(items)
    if fmt == "json":
        return _json(items, out, next_cursor)
    if fmt == "jsonl":
        count = 0
        for item in items:
            out.write(json.dumps(item, sort_keys=True))
            out.write("\n")
            count += 1
        return count
    if fmt == "csv":
        return _csv(items, out, fields)
    return _table(items, out, columns, next_cursor)


def _json(items: Iterator[dict], out, next_cursor: str | None) -> int:
    out.write('{\n  "items": [')
    count = 0
    for item in items:
        out.write(",\n    " if count else "\n    ")
        out.write(json.dumps(item, sort_keys=True))
        count += 1
    out.write("\n  ],\n" if count else "],\n")
    out.write(f'  "next_cursor": {json.dumps(next_cursor)}\n}}\n')
    return count


def _csv(items: Iterator[dict], out, fields: Sequence[str] | None) -> int:
    writer = csv.writer(out)  # the excel dialect: RFC 4180's quoting and CRLF
    first = next(items, None)
    header = list(fields) if fields is not None else (_columns_of(first) if first is not None else [])
    if header:
        writer.writerow(header)
    if first is None:
        return 0
    write = writer.writerow
    write([csv_cell(first.get(c)) for c in header])
    count = 1
    for item in items:
        write([csv_cell(item.get(c)) for c in header])
        count += 1
    return count


def _table(items: Iterator[dict], out, columns: Sequence[str], next_cursor: str | None) -> int:
    sample: list[list[str]] = []
    for item in items:
        sample.append([printable(shown(item.get(c, ""), c)) for c in columns])
        if len(sample) >= _TABLE_SAMPLE:
            break
    widths = [max([len(c)] + [len(r[i]) for r in sample]) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    count = 0
    for row in sample:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
        count += 1
    for item in items:  # past the sample: the same widths, a longer value just overflows its column
        row = [printable(shown(item.get(c, ""), c)) for c in columns]
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
        count += 1
    out.flush()
    if next_cursor:
        click.echo(f"(more: --cursor {next_cursor})", err=sys.stdout.isatty())
    return count


def emit_csv_rows(header: Sequence[str], pages: Iterable[list], out=None) -> int:
    """CSV of pages of value lists (str or None, which the csv module writes as an empty field)."""
    out = out if out is not None else sys.stdout
    writer = csv.writer(out)
    writer.writerow(header)
    count = 0
    for page in pages:
        writer.writerows(page)
        count += len(page)
    return count
