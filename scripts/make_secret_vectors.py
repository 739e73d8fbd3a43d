"""Known-answer vectors for device secrets: fixtures/secret_vectors.json.

    .venv/bin/python scripts/make_secret_vectors.py [--check]

Computed here from the formulas in README.md ("Device secrets") with hmac, hashlib, base64 and
urllib only: this script must not import `pki`, so the vectors are an
independent statement of what the broker accepts, not a copy of the code
under test.  Inputs are fixed (no randomness), so a rerun reproduces the file
byte for byte; --check says whether it still does.

- password:  Base64(HMAC-SHA1(key = secret as UTF-8, message = client id))
- sas:       SharedAccessSignature sr=<quote(client id)>&sig=<quote(Base64(
             HMAC-SHA256(key = Base64-decoded secret, message = sr "\\n" se)))>&se=<se>
- derive:    Base64(HMAC-SHA256(key = Base64-decoded group key, message = client id))
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path
from urllib.parse import quote

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "secret_vectors.json"

# Secrets: 32 bytes each, derived from a label so the file is reproducible.
def _secret(label: str) -> str:
    return base64.b64encode(hashlib.sha256(label.encode()).digest()).decode()


SECRETS = [_secret("secret-vector-1"), _secret("secret-vector-2"), base64.b64encode(bytes(range(32))).decode()]
# Client ids that differ by case, by a prefix or suffix, and that need URL encoding (: @).
CLIENT_IDS = ["device-1", "Device-1", "device-10", "xdevice-1", "plant:line@7", "a", "A" * 64, "dev_01.sensor"]
GROUP_KEYS = [_secret("group-vector-1"), base64.b64encode(b"\xff" * 32).decode()]
EXPIRIES = [1_700_000_000, 4_102_444_800]


def _password(secret: str, client_id: str) -> str:
    return base64.b64encode(hmac.new(secret.encode("utf-8"), client_id.encode("utf-8"), hashlib.sha1).digest()).decode()


def _sas(secret: str, client_id: str, se: int) -> str:
    sr = quote(client_id, safe="")
    mac = hmac.new(base64.b64decode(secret), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    return f"SharedAccessSignature sr={sr}&sig={quote(base64.b64encode(mac).decode(), safe='')}&se={se}"


def _derive(group_key: str, client_id: str) -> str:
    return base64.b64encode(hmac.new(base64.b64decode(group_key), client_id.encode(), hashlib.sha256).digest()).decode()


def build() -> dict:
    return {
        "description": "Device secret formulas; made by scripts/make_secret_vectors.py with hmac/hashlib only",
        "password": [
            {"secret": s, "client_id": c, "password": _password(s, c)} for s in SECRETS for c in CLIENT_IDS
        ],
        "sas": [
            {"secret": s, "client_id": c, "se": se, "token": _sas(s, c, se)}
            for s in SECRETS[:2] for c in CLIENT_IDS for se in EXPIRIES
        ],
        "derive": [
            {"group_key": g, "client_id": c, "secret": _derive(g, c), "password": _password(_derive(g, c), c)}
            for g in GROUP_KEYS for c in CLIENT_IDS
        ],
    }


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("secret_vectors.json is up to date" if same else "secret_vectors.json differs: regenerate it")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
