"""Subject alternative names of a device certificate, as a user types them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from cryptography import x509

from ..errors import InvalidInput

__all__ = ["parse_sans", "MAX_SANS", "MAX_DNS_NAME_OCTETS", "MAX_URI_OCTETS", "MAX_SANS_OCTETS", "URI_SCHEMES"]

MAX_SANS = 16
#: RFC 1035 2.3.4: 255 octets on the wire, which is 253 in the dotted text form.
MAX_DNS_NAME_OCTETS = 253
#: RFC 3986 sets no limit; an identity URI of a device is short, and 16 of these still fit a
#: certificate far below the size the parser accepts (pki.x509.parse.MAX_ITEM_BYTES).
MAX_URI_OCTETS = 1024
#: All SANs of one certificate together.
MAX_SANS_OCTETS = 4096

#: URI schemes a device identity uses: https/http (a web identity or endpoint), urn (RFC 8141;
#: device URNs of RFC 9039, urn:uuid: of RFC 4122), spiffe (SPIFFE X.509-SVID workload ids), mqtt
#: and mqtts (the broker this PKI serves).  Anything else - javascript:, data:, file: - is not an
#: identity a broker or a relying party matches, only a way to smuggle text into a certificate.
URI_SCHEMES = ("https", "http", "urn", "spiffe", "mqtt", "mqtts")
_AUTHORITY_SCHEMES = ("https", "http", "spiffe", "mqtt", "mqtts")

# RFC 3986 2: the characters a URI may hold (unreserved, reserved, '%'), printable ASCII without
# space, '<', '>', '"', '{', '}', '|', '\\', '^' or '`'; a '%' starts a two-hex-digit escape.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+\Z")
# RFC 8141 2: urn:<NID>:<NSS>, the NID 2-32 letters, digits or hyphens, not starting with a hyphen.
_URN = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,30}[A-Za-z0-9]:.+\Z", re.IGNORECASE)


def parse_sans(values: Sequence[str]) -> tuple[x509.GeneralName, ...]:
    """``dns:x``, ``ip:x``, ``uri:x``; a bare value is an IP if it parses as one, else a DNS name."""
    if len(values) > MAX_SANS:
        raise InvalidInput(f"at most {MAX_SANS} SANs per device", code="invalid_san")
    names: list[x509.GeneralName] = []
    total = 0
    for raw in values:
        value = raw.strip()
        kind, _, rest = value.partition(":")
        try:
            if kind.lower() == "uri" and rest:
                names.append(x509.UniformResourceIdentifier(_uri(rest)))
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
            raise InvalidInput(f"SAN {_shown(raw)}: {exc}", code="invalid_san") from None
        total += len(value.encode("utf-8", "surrogatepass"))
        if total > MAX_SANS_OCTETS:
            raise InvalidInput(f"the SANs of a device take at most {MAX_SANS_OCTETS} octets together",
                               code="invalid_san")
    return tuple(names)


def _shown(raw: str) -> str:
    """The value in an error message: quoted (controls escaped by repr) and cut to a readable length."""
    return repr(raw) if len(raw) <= 80 else repr(raw[:80]) + "..."


def _dns_name(value: str) -> str:
    labels = value.split(".")
    if (
        not value
        or len(value) > MAX_DNS_NAME_OCTETS
        or any(not (1 <= len(label) <= 63) for label in labels)
        or any(not all(c.isascii() and (c.isalnum() or c == "-") for c in label) for label in labels)
        or any(label.startswith("-") or label.endswith("-") for label in labels)
    ):
        raise ValueError("not a DNS name (letters, digits and hyphens, dot-separated)")
    return value.lower()


def _uri(value: str) -> str:
    """An absolute RFC 3986 URI with one of :data:`URI_SCHEMES`; returned as given."""
    if len(value.encode("utf-8", "surrogatepass")) > MAX_URI_OCTETS:
        raise ValueError(f"a URI takes at most {MAX_URI_OCTETS} octets")
    if not _URI.match(value):
        raise ValueError(
            "not a URI (RFC 3986): a scheme, ':', then printable ASCII without spaces, quotes or <>{}|\\^`; "
            "percent-encode anything else"
        )
    scheme = value.partition(":")[0].lower()
    if scheme not in URI_SCHEMES:
        raise ValueError(f"scheme {scheme!r} is not accepted; use one of {', '.join(URI_SCHEMES)}")
    if scheme == "urn":
        if not _URN.match(value):
            raise ValueError("not a URN (RFC 8141): urn:<namespace>:<name>")
        return value
    parts = urlsplit(value)
    try:
        host, port = parts.hostname, parts.port  # port: ValueError when not a number in range
    except ValueError:
        raise ValueError("its port is not a number from 0 to 65535") from None
    if not value[len(scheme) + 1:].startswith("//") or not host:
        raise ValueError(f"a {scheme} URI needs a host: {scheme}://host/...")
    if parts.netloc.startswith("["):
        ipaddress.IPv6Address(host)  # ValueError: not an IPv6 literal
    else:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            _dns_name(host)
    if scheme == "spiffe" and (port is not None or parts.username is not None or parts.query or parts.fragment):
        # SPIFFE ID (spiffe.io standard, 2.2/2.3): a trust domain and a path, nothing else.
        raise ValueError("a SPIFFE ID is spiffe://trust-domain/path, without port, user, query or fragment")
    return value
