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

#: Longest manifest line read: a client id and its SANs fit many times over.  A longer one (a file
#: with no newline at all, say) is refused before it is read whole.
MAX_LINE_BYTES = 64 * 1024


class _LineTooLong(Exception):
    pass


def _bounded_lines(handle) -> Iterator[str]:
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise _LineTooLong
        yield line


def _manifest_rows(path: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line number, client id, SAN strings) per data row, each validated."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the manifest {path}: {exc.strerror}", code="manifest_unreadable"
        ) from None
    with handle:
        reader = csv.reader(_bounded_lines(handle))
        first = True
        try:
            for cells in reader:
                if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                    continue
                if first and cells[0].lower() == "client_id":
                    first = False
                    continue
                first = False
                line = reader.line_num
                sans = tuple(c for c in cells[1:] if c)
                try:
                    padded = next((c for c in cells if c != c.strip()), None)
                    if padded is not None:
                        # As for --client-id: an id is compared exactly, so " dev-1" is not "dev-1".
                        raise InvalidInput(f"the cell {padded[:80]!r} has spaces around it; remove them",
                                           code="invalid_client_id")
                    validate_client_id(cells[0])
                    parse_sans(sans)
                except InvalidInput as exc:
                    raise InvalidInput(
                        f"manifest line {line}: {exc.message}; fix the row and run again",
                        code="manifest_invalid_row", line=line, reason=exc.code,
                    ) from None
                yield line, cells[0], sans
        except _LineTooLong:
            raise InvalidInput(
                f"manifest line {reader.line_num + 1}: longer than {MAX_LINE_BYTES} bytes; one device a line",
                code="manifest_invalid_row", line=reader.line_num + 1, reason="line_too_long",
            ) from None
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
