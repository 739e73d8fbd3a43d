"""mosquitto's own files: ``password_file`` lines and ``acl_file`` text (mosquitto 2.0, no plugin).

Password file (mosquitto.conf(5) ``password_file``, mosquitto_passwd(1)): one ``username:hash`` line
per client, the hash written ``$7$<iterations>$<base64 salt>$<base64 hash>``: PBKDF2-HMAC-SHA512 of
the password's UTF-8 bytes with a 12-byte salt and a 64-byte output, both in standard base64 with
padding.  mosquitto 2.0 refuses an entry whose salt is not 12 bytes or whose hash is not 64
(``unpwd__decode_passwords`` in its src/security_default.c), cuts the username at the first ``:``,
strips blanks around it, and skips lines starting with ``#``: such usernames are refused here.  A
``|`` is an ordinary character (``DeviceCredential|<access key id>|<instance>`` works).

ACL file (mosquitto.conf(5) ``acl_file``): ``user <name>`` starts the lines of one username,
``topic [read|write|readwrite|deny] <filter>`` grants or refuses under it, and ``pattern ...`` lines
apply to every client, with ``%c`` (client id) and ``%u`` (username) substituted.  How mosquitto
2.0 decides a publish (``write``) or a delivery to a subscriber (``read``), and what that means
for rendering :class:`~pki.dataplane.rules.Rule` objects:

- it tries the client's ``user`` lines, denials first, then the ``pattern`` lines, denials first;
  the first matching line decides, and a client nothing grants is refused.  So every deny wins over
  every allow; only rules where each deny comes before the allows it overlaps keep their meaning.
  A rule set where an allow comes first is written anyway, stricter than it is (a warning says so);
- ``user`` lines are tried before any ``pattern``: a deny for everyone is therefore also written
  under each ``user`` block, so that a user's own allow cannot outrun it;
- a subscription itself is always accepted; what is checked is each message delivered, against
  ``read``.  So ``subscribe`` rules become ``read`` lines, and ``deny`` refuses both directions;
- there is no connect check (the password file decides who connects), no client-id section, no
  IP, QoS or retain condition, and the default is always deny.

Whatever the file cannot say is a warning, and the file is never more permissive than the rules:
an allow it cannot express is left out; a deny it cannot express is written broader (without its
condition, for every client, over a wider filter).  Only the placeholders are an exception the file
cannot avoid: mosquitto refuses every client whose username or client id contains ``+`` or ``#``
once a ``pattern`` exists, but substitutes a value containing ``/``, which
:func:`pki.dataplane.topics.substitute` never does; a warning names the rules concerned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from ..errors import InvalidInput
from . import topics
from .rules import Rule

__all__ = [
    "SALT_BYTES",
    "HASH_BYTES",
    "RECOMMENDED_ITERATIONS",
    "MAX_ITERATIONS",
    "check_username",
    "hash_password",
    "check_password",
    "password_entry",
    "password_line",
    "AclWarning",
    "AclFile",
    "acl_file",
]

SALT_BYTES = 12
HASH_BYTES = 64
#: OWASP's Password Storage Cheat Sheet figure for PBKDF2-HMAC-SHA512, for passwords people chose.
#: A high-entropy machine secret needs no stretching (guessing it is hopeless at any speed), so its
#: lines may use far fewer iterations and keep connects cheap.
RECOMMENDED_ITERATIONS = 210_000
#: mosquitto reads the count with atoi(): an int.
MAX_ITERATIONS = 2**31 - 1
#: mosquitto refuses a longer username or password (its MQTT strings carry a two-byte length).
_MAX_FIELD = topics.MAX_TOPIC_BYTES
#: What a line-based file cannot carry, the same characters a topic may not hold.
_CONTROL = topics._FORBIDDEN


def check_username(username: str, *, password_file: bool = True) -> str:
    """``username`` if mosquitto reads it back unchanged; InvalidInput ``invalid_mosquitto_username``.

    Both files strip blanks around it and end it at a newline; the password file also ends it at
    the first ``:`` and skips a line starting with ``#`` (``password_file=False`` for the ACL file,
    where the line starts with ``user``).
    """
    problem = None
    if not isinstance(username, str) or not username:
        problem = "must be a non-empty string"
    elif _CONTROL.search(username):
        problem = "must not contain control characters"
    elif username != username.strip():
        problem = "must not start or end with blanks"
    elif len(username.encode("utf-8")) > _MAX_FIELD:
        problem = f"must be at most {_MAX_FIELD} bytes"
    elif password_file and (":" in username or username.startswith("#")):
        problem = "must not contain ':' or start with '#' in mosquitto's password file"
    if problem:
        shown = repr(username)[:80] if isinstance(username, str) else type(username).__name__
        raise InvalidInput(f"the username {shown} {problem}", code="invalid_mosquitto_username")
    return username


def _password_bytes(password: str | bytes) -> bytes:
    try:
        raw = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    except (UnicodeEncodeError, TypeError):
        raw = None
    # mosquitto hashes strlen(password): bytes after a NUL would be ignored.
    if raw is None or b"\x00" in raw or len(raw) > _MAX_FIELD:
        raise InvalidInput(f"a mosquitto password must be UTF-8 without NUL, at most {_MAX_FIELD} bytes",
                           code="invalid_mosquitto_password")
    return raw


def _check_iterations(iterations: object) -> int:
    if not isinstance(iterations, int) or isinstance(iterations, bool) or not 1 <= iterations <= MAX_ITERATIONS:
        raise InvalidInput(f"the iteration count must be an integer from 1 to {MAX_ITERATIONS}",
                           code="invalid_iterations")
    return iterations


def hash_password(password: str | bytes, *, iterations: int, salt: bytes | None = None) -> str:
    """``$7$<iterations>$<salt>$<hash>`` for ``password``; a fresh random salt unless one is given.

    The value can be stored as it is (it is what :func:`check_password` verifies) and written into
    the password file later with :func:`password_entry`, without the password.
    """
    iterations = _check_iterations(iterations)
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    if not isinstance(salt, bytes) or len(salt) != SALT_BYTES:
        raise InvalidInput(f"a mosquitto salt is {SALT_BYTES} bytes", code="invalid_salt")
    digest = hashlib.pbkdf2_hmac("sha512", _password_bytes(password), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(encoded: str, password: str | bytes) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (False for anything that is not one)."""
    parts = encoded.split("$") if isinstance(encoded, str) else []
    if len(parts) != 5 or parts[0] or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        iterations = _check_iterations(int(parts[2]))
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
        raw = _password_bytes(password)
    except (InvalidInput, binascii.Error, ValueError):
        return False
    if len(salt) != SALT_BYTES or len(expected) != HASH_BYTES:
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", raw, salt, iterations, HASH_BYTES), expected)


def password_entry(username: str, encoded: str) -> str:
    """One password-file line (without its newline) from a username and a stored ``$7$`` hash."""
    if not isinstance(encoded, str) or not re.fullmatch(r"\$7\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+", encoded):
        raise InvalidInput("not a $7$ password hash", code="invalid_mosquitto_password")
    return f"{check_username(username)}:{encoded}"


def password_line(username: str, password: str | bytes, *, iterations: int, salt: bytes | None = None) -> str:
    """One ``mosquitto_passwd`` line (without its newline): ``username:$7$...``."""
    check_username(username)
    return password_entry(username, hash_password(password, iterations=iterations, salt=salt))


# -- acl_file ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AclWarning:
    """What the ACL file cannot say: ``rule_id`` None when it concerns several rules."""

    rule_id: str | None
    message: str


class AclFile(NamedTuple):
    text: str
    warnings: list[AclWarning]


_ACCESS = {"publish": "write", "subscribe": "read", "all": "readwrite"}


class _Writer:
    def __init__(self) -> None:
        self.warnings: list[AclWarning] = []
        self.placeholder_allows: list[str] = []

    def warn(self, rule: Rule, message: str) -> None:
        self.warnings.append(AclWarning(rule.id, message))

    def render(self, rule: Rule, username: str | None) -> tuple[str, str] | None:
        """(access, filter) for ``rule`` under ``user username`` (None: as a pattern), or None to omit."""
        deny = rule.effect == "deny"
        if rule.action == "connect":
            if not deny:
                return None  # the password file decides who connects; nothing to write
            return ("deny", "#")
        access = "deny" if deny else _ACCESS[rule.action]
        levels = rule.topic.split("/")
        widened = False
        for i, level in enumerate(levels):
            if username is None:
                if "%c" in level or "%u" in level:  # literal text mosquitto would substitute
                    if not deny:
                        self.warn(rule, "its filter contains %c or %u literally, which a pattern line substitutes; "
                                  "left out")
                        return None
                    levels[i], widened = "+", True
                    continue
                levels[i] = level.replace("${clientid}", "%c").replace("${username}", "%u")
            else:
                if "${clientid}" in level:
                    if not deny:
                        self.warn(rule, f"its filter names ${{clientid}}, which the lines of user {username!r} "
                                  "cannot say; left out")
                        return None
                    levels[i], widened = "+", True
                    continue
                if "${username}" in level:
                    if topics.substitute("${username}", client_id=None, username=username) is None:
                        return None  # the rule matches nothing for this user: nothing to write
                    levels[i] = level.replace("${username}", username)
        text = "/".join(levels)
        if text != text.strip():  # mosquitto strips blanks around the filter
            if not deny:
                self.warn(rule, "its filter starts or ends with a blank, which mosquitto strips; left out")
                return None
            levels[0], levels[-1] = ("+" if levels[0] != levels[0].lstrip() else levels[0],
                                     "+" if levels[-1] != levels[-1].rstrip() else levels[-1])
            text, widened = "/".join(levels), True
        if widened:
            where = " under the user lines" if username is not None else ""
            self.warn(rule, f"written{where} as the broader deny {text!r}: acl_file cannot say its filter exactly")
        if username is None and not deny and ("%c" in text or "%u" in text):
            self.placeholder_allows.append(rule.id)
        return (access, text)


def _conditions(writer: _Writer, rule: Rule) -> bool:
    """Warn about what acl_file cannot condition on; False when the rule is left out for it."""
    deny = rule.effect == "deny"
    missing = [what for what, present in (("an IP condition", rule.ip is not None),
                                           ("a QoS condition", rule.qos is not None and len(rule.qos) < 3),
                                           ("a retain condition", rule.retain is not None)) if present]
    if rule.who == "client_id":
        missing.append(f"a client id ({rule.who_value!r}; acl_file names usernames only)")
    if missing:
        writer.warn(rule, f"acl_file cannot express {', '.join(missing)}: "
                    + ("written without it, for every client it could concern" if deny else "left out"))
        return deny
    if rule.action == "connect":
        writer.warn(rule, "acl_file cannot refuse a connection: written as a deny of every topic" if deny
                    else "acl_file has no connect check (the password file decides): left out")
    elif deny and rule.action != "all":
        writer.warn(rule, f"acl_file's deny refuses reading and writing, not only {rule.action}")
    return True


def acl_file(rules: Iterable[Rule], *, default: str = "deny") -> AclFile:
    """The ``acl_file`` text for ``rules`` (an instance's default ``allow`` or ``deny``), and its warnings.

    The text is deterministic (the same rules give the same bytes).  See the module's docstring for
    what the file can and cannot say.
    """
    ordered = sorted(rules, key=lambda r: r.order)
    writer = _Writer()
    kept = [r for r in ordered if _conditions(writer, r)]
    everyone = [r for r in kept if r.who != "username"]  # client-id denies widen to everyone
    users: dict[str, list[Rule]] = {}
    for rule in kept:
        if rule.who == "username":
            try:
                check_username(rule.who_value, password_file=False)
            except InvalidInput as exc:
                writer.warn(rule, f"{exc.message}: left out")
                continue
            users.setdefault(rule.who_value, []).append(rule)

    out = ["# Generated by device-pki from the permission rules; do not edit.",
           "# mosquitto applies every deny before any allow, and a user's lines before the patterns.", ""]
    patterns = _lines(writer, everyone, None)
    out += [f"pattern {access} {text}" for access, text in patterns]
    if default == "allow":
        out += ["# the instance's default: allow", "pattern readwrite #"]
    for username in sorted(users):
        # Everyone's denies again, since mosquitto tries these lines before any pattern.
        own = users[username] + [r for r in everyone if r.effect == "deny"]
        lines = _lines(writer, sorted(own, key=lambda r: r.order), username)
        if lines:
            out += ["", f"user {username}"] + [f"topic {access} {text}" for access, text in lines]
    _shadowed(writer, everyone, users)
    if writer.placeholder_allows:
        writer.warnings.append(AclWarning(None, (
            "mosquitto substitutes a client id or username containing '/' into %c and %u (it refuses only + "
            "and #), so a client choosing such a client id reaches topics these rules do not give it: "
            + ", ".join(writer.placeholder_allows))))
    # A deny for everyone is rendered once per user block: say each of its warnings once.
    return AclFile("\n".join(out) + "\n", list(dict.fromkeys(writer.warnings)))


def _lines(writer: _Writer, rules: list[Rule], username: str | None):
    """The (access, filter) lines of one section, denies first, without repeats."""
    found: list[tuple[str, str]] = []
    for rule in rules:
        line = writer.render(rule, username)
        if line is not None and line not in found:
            found.append(line)
    return [ln for ln in found if ln[0] == "deny"] + [ln for ln in found if ln[0] != "deny"]


def _shadowed(writer: _Writer, everyone: list[Rule], users: dict[str, list[Rule]]) -> None:
    """Warn for each allow that comes before a deny it overlaps: in mosquitto the deny wins."""
    def acts(rule: Rule) -> set[str]:
        return {"publish", "subscribe"} if rule.action in ("all", "connect") else {rule.action}

    def loose(rule: Rule) -> str:
        return "#" if rule.action == "connect" else re.sub(r"[^/]*\$\{(?:clientid|username)\}[^/]*", "+", rule.topic)

    groups = [everyone] + [sorted(own + everyone, key=lambda r: r.order) for own in users.values()]
    said: set[tuple[str, str]] = set()
    for group in groups:
        for i, allow in enumerate(group):
            if allow.effect != "allow" or allow.action == "connect":
                continue
            for deny in group[i + 1:]:
                if (deny.effect == "deny" and (allow.id, deny.id) not in said and acts(allow) & acts(deny)
                        and topics.overlaps(loose(allow), loose(deny))):
                    said.add((allow.id, deny.id))
                    writer.warn(allow, f"it comes before the deny rule {deny.id}, which overlaps it; mosquitto "
                                "applies denies first, so there the overlap is refused")
