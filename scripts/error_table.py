"""Print the README's error table from the one registry (pki/errors.py ERROR_CODES).

    python scripts/error_table.py           # print it
    python scripts/error_table.py --write   # replace it in README.md (from "| exit |" to the paragraph after)

tests/test_errors.py fails while a registered code is missing from the README.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pki.cli.render import EXIT_CODES
from pki.errors import ERROR_CODES, FAMILIES
from pki.http.problems import HTTP_STATUS, STATUS_OF_CODE

_MEANING = {
    "internal": "unexpected failure (report it, with `--debug` output)",
    "invalid_input": "the request itself is wrong",
    "not_found": "what it names does not exist",
    "conflict": "it collides with what exists",
    "invalid_state": "the target's state forbids it",
    "permission_denied": "not allowed",
    "config": "the installation is not usable as configured",
    "store": "the database or the server did not answer; nothing changed",
    "unauthenticated": "the request's signature (remote mode)",
    "rate_limited": "too many requests (remote mode)",
}


def table() -> str:
    families = sorted((f.family for f in FAMILIES), key=EXIT_CODES.__getitem__)
    lines = ["| exit | HTTP | family | meaning |", "|---|---|---|---|",
             "| 2 | | usage | unknown option, missing argument (click) |"]
    lines += [f"| {EXIT_CODES[f]} | {HTTP_STATUS[f]} | {f} | {_MEANING[f]} |" for f in families]
    lines += ["", "The codes of each family:", ""]
    for family in families:
        codes = sorted(c for c, f in ERROR_CODES.items() if f == family)
        shown = ", ".join(f"`{c}`" + (f" (HTTP {STATUS_OF_CODE[c]})" if c in STATUS_OF_CODE else "") for c in codes)
        lines.append(f"- **{family}**: {shown}.")
    return "\n".join(lines)


def write(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    start = text.index("| exit | HTTP | family |")
    end = text.index("\n\n", text.index("The codes of each family:") + len("The codes of each family:\n\n"))
    readme.write_text(text[:start] + table() + text[end:], encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write(Path(__file__).resolve().parent.parent / "README.md")
    else:
        print(table())
