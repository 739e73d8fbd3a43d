"""Broker tokens: short-lived JWTs for one client id and its topics (seed 003's ApplyToken, QueryToken,
RevokeToken), the keys that sign them, and the checks the broker hooks make of them.

- :mod:`.keys`: signing keys in custody, rotation, the published key set (JWKS);
- :mod:`.issue`: apply, show, list, revoke;
- :mod:`.verify`: the hooks' checks (a token as a password, its acl in authorization);
- :mod:`.state`: what the checks cache, per token revision.
"""

from . import issue, keys, verify
from .issue import TokenPublic, apply, list_tokens, revoke, show
from .keys import KeyPublic, jwks, list_keys, rotate

__all__ = ["issue", "keys", "verify", "TokenPublic", "KeyPublic", "apply", "show", "list_tokens", "revoke",
           "rotate", "list_keys", "jwks"]
