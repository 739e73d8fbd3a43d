"""MQTT topic names and topic filters (OASIS MQTT 3.1.1 and 5.0, section 4.7), and the placeholders.

- A *topic name* is what a PUBLISH carries: no wildcards.
- A *topic filter* is what a SUBSCRIBE (or a permission rule) carries: ``+`` matches exactly one
  level, ``#`` the parent level and any number of levels below, and must be the last level.
- Both are 1 to 65,535 bytes of UTF-8 (section 1.5.3) without NUL.  Levels are separated by ``/``;
  empty levels (``/a``, ``a//b``) are legal.
- A filter that starts with a wildcard never matches a topic name that starts with ``$``
  (section 4.7.2): ``#`` does not match ``$SYS/uptime``, ``$SYS/#`` does.

Stricter than the specification on one point, on purpose: the control characters U+0001..U+001F and
U+007F..U+009F, which the specification says a sender SHOULD NOT use and a receiver MAY disconnect
for (section 1.5.3), are refused too.  A filter here ends up in files a broker parses line by line
(mosquitto's acl_file), where a newline would start a new rule.

Placeholders (``${clientid}``, ``${username}``) belong to permission rules, not to MQTT: a filter
with placeholders is resolved against one connection by :func:`substitute`.  A value that contains
``+``, ``#`` or ``/`` (or is missing or empty) resolves to ``None``: the rule then matches nothing.
Substituting it would widen the filter (a client id ``#`` would turn ``devices/${clientid}/#`` into
``devices/#/#``, and a client id ``a/b`` would reach into client ``a``'s subtree).
"""

from __future__ import annotations

import re

from ..errors import InvalidInput

__all__ = [
    "MAX_TOPIC_BYTES",
    "PLACEHOLDERS",
    "validate_filter",
    "validate_topic",
    "is_valid_filter",
    "is_valid_topic",
    "has_placeholders",
    "substitute",
    "matches",
    "covers",
    "overlaps",
    "split_shared",
    "match_levels",
    "covers_levels",
]

#: Section 1.5.3: a UTF-8 string is prefixed by a two-byte length.
MAX_TOPIC_BYTES = 65_535
#: The placeholder text and the connection value it stands for.
PLACEHOLDERS = {"${clientid}": "client_id", "${username}": "username"}

# NUL (a MUST), the C0 and C1 controls (SHOULD NOT), and lone surrogates, which are no UTF-8 at all.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_PLACEHOLDER = re.compile(r"\$\{(clientid|username)\}")
# A value substituted into a filter must stay inside its one level and add no wildcard.
_UNSAFE_VALUE = re.compile("[+#/\x00]")
# A four-byte UTF-8 character per code point at most: shorter texts need no encoding to be measured.
_SHORT_ENOUGH = MAX_TOPIC_BYTES // 4


def _problem(text: object, *, wildcards: bool) -> str | None:
    """Why ``text`` is not a topic filter (``wildcards``) or a topic name; None when it is one."""
    if not isinstance(text, str):
        return "must be a string"
    if not text:
        return "must not be empty"
    bad = _FORBIDDEN.search(text)
    if bad:
        return f"must not contain the control character U+{ord(bad.group()):04X}" \
            if bad.group() < "\ud800" else "is not valid UTF-8 (a lone surrogate)"
    if len(text) > _SHORT_ENOUGH and len(text.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"is longer than {MAX_TOPIC_BYTES} bytes in UTF-8"
    if "+" not in text and "#" not in text:
        return None
    if not wildcards:
        return "is a topic name: it must not contain the wildcards + or #"
    levels = text.split("/")
    for i, level in enumerate(levels):
        if level == "+":
            continue
        if level == "#":
            if i != len(levels) - 1:
                return "has # before its last level: # must be the last level (a/#, not a/#/b)"
            continue
        if "+" in level or "#" in level:
            return f"has a wildcard inside the level {level[:40]!r}: + and # must be a whole level (a/+/b)"
    return None


def validate_filter(text: str, *, placeholders: bool = False) -> str:
    """``text`` if it is a valid topic filter; InvalidInput ``invalid_topic_filter`` otherwise.

    With ``placeholders``, ``${clientid}`` and ``${username}`` may appear (inside a level or as one),
    and any other ``${`` is refused so that a misspelt placeholder is not taken as literal text.
    """
    problem = _problem(text, wildcards=True)
    if problem is None and placeholders and "${" in _PLACEHOLDER.sub("", text):
        problem = "has an unknown placeholder: only ${clientid} and ${username} are substituted"
    if problem is not None:
        raise InvalidInput(f"the topic filter {_shown(text)} {problem}", code="invalid_topic_filter")
    return text


def validate_topic(text: str) -> str:
    """``text`` if it is a valid topic name (no wildcards); InvalidInput ``invalid_topic`` otherwise."""
    problem = _problem(text, wildcards=False)
    if problem is not None:
        raise InvalidInput(f"the topic {_shown(text)} {problem}", code="invalid_topic")
    return text


def is_valid_filter(text: object) -> bool:
    return _problem(text, wildcards=True) is None


def is_valid_topic(text: object) -> bool:
    return _problem(text, wildcards=False) is None


def _shown(text: object) -> str:
    return repr(text)[:80] if isinstance(text, str) else type(text).__name__


def has_placeholders(text: str) -> bool:
    return _PLACEHOLDER.search(text) is not None


def substitute(text: str, *, client_id: str | None, username: str | None) -> str | None:
    """The filter with its placeholders replaced for one connection, or None: it matches nothing.

    None when a placeholder's value is missing, empty, or contains ``+``, ``#``, ``/`` or NUL
    (see the module's docstring).  A filter without placeholders comes back unchanged.
    """
    if "${" not in text:
        return text
    values = {"clientid": client_id, "username": username}
    for name in set(_PLACEHOLDER.findall(text)):
        value = values[name]
        if not value or _UNSAFE_VALUE.search(value):
            return None
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def match_levels(filter_levels: tuple[str, ...] | list[str], topic_levels: list[str]) -> bool:
    """Section 4.7 matching of a split filter against a split topic name."""
    if topic_levels[0][:1] == "$" and filter_levels[0] in ("+", "#"):
        return False
    n = len(topic_levels)
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True  # the parent level too: sport/# matches sport
        if i >= n or (level != "+" and level != topic_levels[i]):
            return False
    return len(filter_levels) == n


def covers_levels(outer: tuple[str, ...] | list[str], inner: list[str]) -> bool:
    """Whether every topic name the filter ``inner`` matches is matched by the filter ``outer``."""
    if inner[0][:1] == "$" and outer[0] in ("+", "#"):
        return False
    n = len(inner)
    for i, level in enumerate(outer):
        if level == "#":
            return True
        if i >= n or inner[i] == "#":
            return False  # inner's # also matches its parent and deeper levels, which outer does not
        if level != "+" and (inner[i] == "+" or level != inner[i]):
            return False
    return len(outer) == n


def matches(filter_text: str, topic: str) -> bool:
    """Whether the topic filter matches the topic name (both assumed valid)."""
    return match_levels(filter_text.split("/"), topic.split("/"))


def covers(outer: str, inner: str) -> bool:
    """Whether the filter ``outer`` matches every topic name the filter ``inner`` matches.

    This is how a subscription is authorised against a rule: ``a/#`` covers ``a/+/b`` and ``a``;
    ``a/+`` does not cover ``a/#``; ``#`` does not cover ``$SYS/#``.
    """
    return covers_levels(outer.split("/"), inner.split("/"))


def overlaps(first: str, second: str) -> bool:
    """Whether some topic name is matched by both filters."""
    a, b = first.split("/"), second.split("/")
    # A leading wildcard never meets a $-topic, which the other must then start with literally.
    if (a[0] in ("+", "#") and b[0][:1] == "$") or (b[0] in ("+", "#") and a[0][:1] == "$"):
        return False
    for x, y in zip(a, b):
        if x == "#" or y == "#":
            return True
        if x != "+" and y != "+" and x != y:
            return False
    if len(a) == len(b):
        return True
    longer = a if len(a) > len(b) else b
    return longer[min(len(a), len(b))] == "#" and len(longer) == min(len(a), len(b)) + 1


def split_shared(text: str) -> tuple[str | None, str]:
    """``$share/<group>/<filter>`` (MQTT 5.0 section 4.8.2) as (group, filter); (None, text) otherwise.

    InvalidInput ``invalid_topic_filter`` when it starts ``$share/`` without a valid group and filter:
    the group must be non-empty without ``/``, ``+`` or ``#``.
    """
    if not text.startswith("$share/"):
        return None, text
    group, _, rest = text[len("$share/"):].partition("/")
    if not group or "+" in group or "#" in group or not rest:
        raise InvalidInput(f"the shared subscription {_shown(text)} must be $share/<group>/<filter>, "
                           "with a group name without + or #", code="invalid_topic_filter")
    return group, rest
