"""Subject alternative names of a device certificate, as a user types them."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cryptography import x509

from ..errors import InvalidInput

__all__ = ["parse_sans", "MAX_SANS"]

MAX_SANS = 16


def parse_sans(values: Sequence[str]) -> tuple[x509.GeneralName, ...]:
    """``dns:x``, ``ip:x``, ``uri:x``; a bare value is an IP if it parses as one, else a DNS name."""
    names: list[x509.GeneralName] = []
    for raw in values:
        value = raw.strip()
        kind, _, rest = value.partition(":")
        try:
            if kind.lower() == "uri" and rest:
                names.append(x509.UniformResourceIdentifier(rest))
            elif kind.lower() == "ip" and rest:
                names.append(x509.IPAddress(ipaddress.ip_address(rest)))
            elif kind.lower() == "dns" and rest:
                names.append(x509.DNSName(_dns_name(rest)))
            else:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(value)))
                except ValueError:
                    names.append(x509.DNSName(_dns_name(value)))
        except ValueError as exc:
            raise InvalidInput(f"SAN {raw!r}: {exc}", code="invalid_san") from None
    if len(names) > MAX_SANS:
        raise InvalidInput(f"at most {MAX_SANS} SANs per device", code="invalid_san")
    return tuple(names)


def _dns_name(value: str) -> str:
    labels = value.split(".")
    if (
        not value
        or len(value) > 253
        or any(not (1 <= len(label) <= 63) for label in labels)
        or any(not all(c.isascii() and (c.isalnum() or c == "-") for c in label) for label in labels)
        or any(label.startswith("-") or label.endswith("-") for label in labels)
    ):
        raise ValueError("not a DNS name (letters, digits and hyphens, dot-separated)")
    return value.lower()
