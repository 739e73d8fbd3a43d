"""The manifest of a provisioning run: one CSV row per device, read twice.

The first pass (:func:`_check_manifest`) refuses the whole file before
anything is written; the second (:func:`_manifest_rows`) streams the rows to
the workers.  Neither holds the file in memory.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

from ...errors import InvalidInput
from ...ids import validate_client_id
from ..devices import parse_sans


def _manifest_rows(path: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line number, client id, SAN strings) per data row, each validated."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the manifest {path}: {exc.strerror}", code="manifest_unreadable"
        ) from None
    with handle:
        reader = csv.reader(handle)
        first = True
        try:
            for row in reader:
                cells = [c.strip() for c in row]
                if not cells or not any(cells) or cells[0].startswith("#"):
                    continue
                if first and cells[0].lower() == "client_id":
                    first = False
                    continue
                first = False
                line = reader.line_num
                sans = tuple(c for c in cells[1:] if c)
                try:
                    validate_client_id(cells[0])
                    parse_sans(sans)
                except InvalidInput as exc:
                    raise InvalidInput(
                        f"manifest line {line}: {exc.message}; fix the row and run again",
                        code="manifest_invalid_row", line=line, reason=exc.code,
                    ) from None
                yield line, cells[0], sans
        except csv.Error as exc:
            raise InvalidInput(
                f"manifest line {reader.line_num}: not valid CSV ({exc})", code="manifest_invalid_row",
                line=reader.line_num, reason="invalid_csv",
            ) from None
        except UnicodeDecodeError:
            raise InvalidInput(
                f"manifest line {reader.line_num + 1}: not UTF-8 text", code="manifest_invalid_row",
                line=reader.line_num + 1, reason="invalid_encoding",
            ) from None


def _check_manifest(path: Path) -> int:
    """First pass: every row valid, no client id twice.  Returns the row count.

    Duplicates are found with 8-byte digests, not the ids themselves: a set
    of a million of them is tens of MB, and a false duplicate needs a 64-bit
    collision.
    """
    seen: set[bytes] = set()
    total = 0
    for line, client_id, _sans in _manifest_rows(path):
        digest = hashlib.blake2b(client_id.encode(), digest_size=8).digest()
        if digest in seen:
            raise InvalidInput(
                f"manifest line {line}: client id {client_id!r} appears more than once; each device "
                "must be listed once",
                code="manifest_duplicate_client_id", line=line, client_id=client_id,
            )
        seen.add(digest)
        total += 1
    if total == 0:
        raise InvalidInput(f"the manifest {path} lists no devices", code="manifest_empty")
    return total
